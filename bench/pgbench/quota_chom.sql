-- chom: a tenant's quota (cached row + its tier's limits), what canCreateSite() reads
\set n random(:lo, :hi)
SELECT * FROM chom_tenant_quota(md5('tenant' || :n)::uuid);

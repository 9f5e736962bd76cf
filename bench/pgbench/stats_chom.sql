-- chom: the maintained aggregates
\set n random(:lo, :hi)
SELECT * FROM chom_tenant_stats(md5('tenant' || :n)::uuid);

-- a tenant's site list, newest first (same statement in every configuration)
\set n random(:lo, :hi)
SELECT * FROM sites WHERE tenant_id = md5('tenant' || :n)::uuid AND deleted_at IS NULL
 ORDER BY created_at DESC LIMIT 20;

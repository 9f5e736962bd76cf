-- before / seed: the tenant's live site count and storage, counted on every read
-- (Tenant::getSiteCount() + getStorageUsedMb(), here as one statement, which favours the seed)
\set n random(:lo, :hi)
SELECT count(*) AS sites_count, coalesce(sum(storage_used_mb), 0) AS storage_mb
  FROM sites WHERE tenant_id = md5('tenant' || :n)::uuid AND deleted_at IS NULL;

-- floor for stats_chom.sql on a busy tenant: what any read of exact aggregates kept as a row plus unfolded deltas
-- does at the least, as plain SQL (no function call, no pending-changes overlay): the tenant's row and the sum of
-- its rows of chom.tenant_deltas; run by hand beside the busy tenant's writers (bench/benchmarks-notes.md)
\set n random(:lo, :hi)
SELECT t.cached_sites_count + u.sites AS sites_count, t.cached_storage_mb + u.storage_mb AS storage_mb
  FROM tenants t
 CROSS JOIN LATERAL (SELECT coalesce(sum(d.sites), 0) AS sites, coalesce(sum(d.storage_mb), 0) AS storage_mb
                       FROM chom.tenant_deltas d WHERE d.tenant_id = t.id) u
 WHERE t.id = md5('tenant' || :n)::uuid;

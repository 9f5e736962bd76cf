-- floor for w_insert.sql on one busy tenant with the site quota on, far from its limit: floor_busy_insert.sql
-- plus what a spilled commit must read first to keep the quota exact (src/maintain/deltas.rs,
-- may_spill_under_quota): the tenant's headroom under its tier's max_sites, its cached count and its unfolded
-- deltas summed. The delta is written only when the headroom covers every process's spill in flight (:inflight,
-- MaxBackends + max_prepared_transactions), as chom's rule
\set n random(:lo, :hi)
\set v random(1, :vps_used)
WITH s AS (
    INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                       created_at, updated_at)
    VALUES (gen_random_uuid(), md5('tenant' || :n)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
            'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0))
    RETURNING tenant_id, vps_id, storage_used_mb),
h AS (SELECT l.max_sites - (t.cached_sites_count
                            + (SELECT coalesce(sum(d.sites), 0) FROM chom.tenant_deltas d WHERE d.tenant_id = t.id))
             AS headroom
        FROM s JOIN tenants t ON t.id = s.tenant_id
        LEFT JOIN tier_limits l ON l.tier = t.tier AND l.max_sites >= 0),
d AS (INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb)
      SELECT s.tenant_id, 1, s.storage_used_mb FROM s, h WHERE h.headroom IS NULL OR h.headroom >= 1 + :inflight)
UPDATE chom.vps_load l SET live_sites = l.live_sites + 1 FROM s WHERE l.vps_id = s.vps_id;

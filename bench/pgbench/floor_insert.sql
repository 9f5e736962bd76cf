-- floor for w_insert.sql: the same insert, with chom's triggers off, and the maintenance chom does written by
-- hand in the same statement (the tenant's count and storage, the VPS's live sites): what exact per-commit
-- aggregates cost at the least, with no trigger machinery
\set n random(:lo, :hi)
\set v random(1, :vps_used)
WITH s AS (
    INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                       created_at, updated_at)
    VALUES (gen_random_uuid(), md5('tenant' || :n)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
            'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0))
    RETURNING tenant_id, vps_id, storage_used_mb),
t AS (UPDATE tenants t SET cached_sites_count = t.cached_sites_count + 1,
                           cached_storage_mb = t.cached_storage_mb + s.storage_used_mb
        FROM s WHERE t.id = s.tenant_id)
UPDATE chom.vps_load l SET live_sites = l.live_sites + 1 FROM s WHERE l.vps_id = s.vps_id;

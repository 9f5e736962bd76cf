-- floor for w_insert.sql on one busy tenant: the same insert, with chom's triggers off, and what a spilled commit
-- writes done by hand in the same statement (the tenant's change as a row of chom.tenant_deltas, the VPS's live
-- sites): what exact per-commit aggregates cost at the least when writers of one tenant must not queue on its row
\set n random(:lo, :hi)
\set v random(1, :vps_used)
WITH s AS (
    INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                       created_at, updated_at)
    VALUES (gen_random_uuid(), md5('tenant' || :n)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
            'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0))
    RETURNING tenant_id, vps_id, storage_used_mb),
d AS (INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb) SELECT s.tenant_id, 1, s.storage_used_mb FROM s)
UPDATE chom.vps_load l SET live_sites = l.live_sites + 1 FROM s WHERE l.vps_id = s.vps_id;

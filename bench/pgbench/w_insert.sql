-- single-row site insert for tenant n in [:lo, :hi] on one of the VPSes that hold sites
\set n random(:lo, :hi)
\set v random(1, :vps_used)
INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                   created_at, updated_at)
VALUES (gen_random_uuid(), md5('tenant' || :n)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
        'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0));

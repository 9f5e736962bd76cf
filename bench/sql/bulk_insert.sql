-- bench/sql/bulk_insert.sql: one INSERT ... SELECT of :bulk sites spread over all tenants, timed, rolled back.
-- Prints "BULK_MS <milliseconds>" (statement, including its AFTER triggers; not the commit).
BEGIN;
SELECT clock_timestamp() AS t0 \gset
INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                   created_at, updated_at)
SELECT gen_random_uuid(), md5('tenant' || (1 + (g * 7919) % :tenants))::uuid, md5('vps' || (1 + g % :vps_used))::uuid,
       'bulk-' || g || '.bench', 'wordpress', '8.2', 'creating', g % 700, 'bench', localtimestamp(0), localtimestamp(0)
  FROM generate_series(1, :bulk) g;
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) AS ms \gset
ROLLBACK;
\echo BULK_MS :ms

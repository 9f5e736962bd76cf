-- journal for w_insert.sql: the same insert, with chom's triggers off, and its change recorded as one row of an
-- unindexed journal (bench_journal, the tenant's and the VPS's changes together) in the same statement: what a
-- design that appends one row per writing commit, and folds the journal later, writes at the least. A reference
-- for the goals against no trigger, not a design chom uses: its reads would have to add the unfolded rows.
\set n random(:lo, :hi)
\set v random(1, :vps_used)
WITH s AS (
    INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                       created_at, updated_at)
    VALUES (gen_random_uuid(), md5('tenant' || :n)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
            'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0))
    RETURNING tenant_id, vps_id, storage_used_mb)
INSERT INTO bench_journal (tenant_ids, sites, storage_mb, vps_ids, vps_sites)
SELECT ARRAY[tenant_id], ARRAY[1], ARRAY[storage_used_mb::bigint], ARRAY[vps_id], ARRAY[1] FROM s;

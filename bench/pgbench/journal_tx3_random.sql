-- journal for w_tx3_random.sql (see journal_insert.sql): the same transaction with chom's triggers off, and its
-- changes (A and C: storage + 1; B: one site and its storage; the VPS: one site) recorded as one journal row as its
-- last statement, sent with the COMMIT in one pipeline (one round trip, as chom's maintenance runs inside its
-- COMMIT): no tenant row is locked or updated, so no commit waits for another's
\set a random(1, :ntx)
\set b 1 + (:a + random(0, :ntx - 2)) % :ntx
\set c random(1, :ntx - 2)
\set c :c + case when :c >= least(:a, :b) then 1 else 0 end
\set c :c + case when :c >= greatest(:a, :b) then 1 else 0 end
\set ka 2 * random(1, :per) - 1
\set kc 2 * random(1, :per)
\set v random(1, :vps_used)
BEGIN;
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :a AND k = :ka);
INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                   created_at, updated_at)
VALUES (gen_random_uuid(), md5('tenant' || :b)::uuid, md5('vps' || :v)::uuid, 'w-' || gen_random_uuid() || '.bench',
        'wordpress', '8.2', 'creating', :v % 700, 'bench', localtimestamp(0), localtimestamp(0));
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :c AND k = :kc);
\startpipeline
INSERT INTO bench_journal (tenant_ids, sites, storage_mb, vps_ids, vps_sites)
VALUES (ARRAY[md5('tenant' || :a)::uuid, md5('tenant' || :b)::uuid, md5('tenant' || :c)::uuid], ARRAY[0, 1, 0],
        ARRAY[1, :v % 700, 1]::bigint[], ARRAY[md5('vps' || :v)::uuid], ARRAY[1]);
COMMIT;
\endpipeline

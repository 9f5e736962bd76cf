-- one transaction over three different tenants A, B, C taken at random (in random order) from the :ntx tenants of
-- bench_tx_sites (run.sh builds it before the writes: tenants 1..:ntx, their live sites of the restored sample,
-- numbered k = 1, 2, ...): a storage update of a site of A, an insert of a site of B on a VPS, a storage update of
-- a site of C. A's site has an odd k and C's an even one, so two transactions never update the same two sites
-- in opposite orders: without chom's triggers this script cannot deadlock, and any deadlock is chom's.
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
COMMIT;

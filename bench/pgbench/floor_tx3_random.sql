-- floor for w_tx3_random.sql: the same transaction with chom's triggers off, and the maintenance chom does at
-- commit written by hand as its last statement, as chom does it: the three tenant rows locked in id order without
-- waiting (SKIP LOCKED), the locked ones updated (A and C: storage + 1; B: one site and its storage), the changes of
-- those another commit holds spilled as rows of chom.tenant_deltas (run.sh keeps a fold worker folding them), then
-- the VPS's live sites. Those statements go with the COMMIT in one pipeline: one round trip, as chom's maintenance
-- runs inside its COMMIT. What exact aggregates of a multi-statement transaction cost at the least when no commit
-- waits for another's tenant rows.
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
WITH d(id, sites, storage) AS (VALUES (md5('tenant' || :a)::uuid, 0, 1), (md5('tenant' || :b)::uuid, 1, :v % 700),
                                     (md5('tenant' || :c)::uuid, 0, 1)),
l AS (SELECT t.id FROM tenants t WHERE t.id IN (SELECT id FROM d) ORDER BY t.id FOR NO KEY UPDATE OF t SKIP LOCKED),
u AS (UPDATE tenants t SET cached_sites_count = t.cached_sites_count + d.sites,
                           cached_storage_mb = t.cached_storage_mb + d.storage
        FROM d JOIN l USING (id) WHERE t.id = d.id)
INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb)
SELECT d.id, d.sites, d.storage FROM d WHERE d.id NOT IN (SELECT id FROM l);
UPDATE chom.vps_load SET live_sites = live_sites + 1 WHERE vps_id = md5('vps' || :v)::uuid;
COMMIT;
\endpipeline

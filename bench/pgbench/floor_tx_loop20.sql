-- floor for w_tx_loop20.sql: the same 20 updates with chom's triggers off, and the maintenance chom does at commit
-- written by hand as the last statement (the tenant's storage, + 1 per updated live site), sent with the COMMIT in
-- one pipeline (one round trip, as chom's maintenance runs inside its COMMIT). What exact aggregates of the ORM loop
-- cost at the least, with no trigger machinery.
\set t 1 + :client_id + :nclients * random(0, :ntx / :nclients - 1)
BEGIN;
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 1);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 2);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 3);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 4);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 5);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 6);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 7);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 8);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 9);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 10);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 11);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 12);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 13);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 14);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 15);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 16);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 17);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 18);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 19);
UPDATE sites SET storage_used_mb = storage_used_mb + 1, updated_at = localtimestamp(0)
 WHERE id = (SELECT id FROM bench_tx_sites WHERE t = :t AND k = 20);
\startpipeline
UPDATE tenants SET cached_storage_mb = cached_storage_mb + 20 WHERE id = md5('tenant' || :t)::uuid;
COMMIT;
\endpipeline

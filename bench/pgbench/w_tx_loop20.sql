-- the ORM loop: one transaction that updates 20 sites of one tenant one row at a time (foreach ($tenant->sites
-- as $site) $site->update(...) inside DB::transaction). The tenant is one of the :ntx tenants of bench_tx_sites;
-- client i of :nclients takes tenants i+1, i+1+:nclients, ..., so concurrent clients never share a tenant.
-- k = 1..20 are the tenant's first 20 live sites of the restored sample (repeated if it has fewer).
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
COMMIT;

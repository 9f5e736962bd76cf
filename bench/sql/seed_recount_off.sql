-- bench/sql/seed_recount_off.sql: removes what seed_recount_on.sql added.
DROP TRIGGER IF EXISTS bench_seed_recount ON sites;
DROP FUNCTION IF EXISTS bench_seed_recount();
ALTER TABLE tenants DROP COLUMN IF EXISTS cached_sites_count, DROP COLUMN IF EXISTS cached_storage_mb,
                    DROP COLUMN IF EXISTS cached_at;

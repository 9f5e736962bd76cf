-- journal for w_update.sql (see journal_insert.sql): the storage update, the tenant's storage as a journal row
\set g random(1, :pool)
WITH s AS (
    UPDATE sites SET storage_used_mb = storage_used_mb + 1 + :g % 7, updated_at = localtimestamp(0)
     WHERE id = md5('site' || :g)::uuid
    RETURNING tenant_id, deleted_at)
INSERT INTO bench_journal (tenant_ids, sites, storage_mb)
SELECT ARRAY[tenant_id], ARRAY[0], ARRAY[1 + :g % 7]::bigint[] FROM s WHERE s.deleted_at IS NULL;

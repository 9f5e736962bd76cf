-- journal for w_softdelete.sql (see journal_insert.sql): the soft delete, the tenant's and the VPS's changes as a
-- journal row
\set g random(1, :pool)
WITH s AS (
    UPDATE sites SET deleted_at = localtimestamp(0), status = 'deleting', updated_at = localtimestamp(0)
     WHERE id = md5('site' || :g)::uuid AND deleted_at IS NULL
    RETURNING tenant_id, vps_id, storage_used_mb)
INSERT INTO bench_journal (tenant_ids, sites, storage_mb, vps_ids, vps_sites)
SELECT ARRAY[tenant_id], ARRAY[-1], ARRAY[-storage_used_mb::bigint], ARRAY[vps_id], ARRAY[-1] FROM s;

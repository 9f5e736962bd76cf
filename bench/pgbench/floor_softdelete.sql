-- floor for w_softdelete.sql (see floor_insert.sql): the soft delete, the tenant's count and storage, the VPS's
-- live sites, in one statement
\set g random(1, :pool)
WITH s AS (
    UPDATE sites SET deleted_at = localtimestamp(0), status = 'deleting', updated_at = localtimestamp(0)
     WHERE id = md5('site' || :g)::uuid AND deleted_at IS NULL
    RETURNING tenant_id, vps_id, storage_used_mb),
t AS (UPDATE tenants t SET cached_sites_count = t.cached_sites_count - 1,
                           cached_storage_mb = t.cached_storage_mb - s.storage_used_mb
        FROM s WHERE t.id = s.tenant_id)
UPDATE chom.vps_load l SET live_sites = l.live_sites - 1 FROM s WHERE l.vps_id = s.vps_id;

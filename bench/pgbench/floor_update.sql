-- floor for w_update.sql (see floor_insert.sql): the storage update and the tenant's storage, in one statement
\set g random(1, :pool)
WITH s AS (
    UPDATE sites SET storage_used_mb = storage_used_mb + 1 + :g % 7, updated_at = localtimestamp(0)
     WHERE id = md5('site' || :g)::uuid
    RETURNING tenant_id, deleted_at)
UPDATE tenants t SET cached_storage_mb = t.cached_storage_mb + 1 + :g % 7
  FROM s WHERE t.id = s.tenant_id AND s.deleted_at IS NULL;

-- soft delete of an existing site (from the same sample)
\set g random(1, :pool)
UPDATE sites SET deleted_at = localtimestamp(0), status = 'deleting', updated_at = localtimestamp(0)
 WHERE id = md5('site' || :g)::uuid AND deleted_at IS NULL;

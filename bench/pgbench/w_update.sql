-- storage update of an existing site (sites 1..:pool are a random sample; run.sh restores them afterwards)
\set g random(1, :pool)
UPDATE sites SET storage_used_mb = storage_used_mb + 1 + :g % 7, updated_at = localtimestamp(0)
 WHERE id = md5('site' || :g)::uuid;

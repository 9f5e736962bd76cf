-- bench/sql/seed_recount_on.sql: the application's own cache (what chom replaces), as a database trigger.
-- CHOM's cached-aggregates migration adds the three columns; on every Site save (Laravel model event) the app
-- recounts the tenant:
--   UPDATE tenants SET cached_sites_count = (count of live sites), cached_storage_mb = (their storage),
--                      cached_at = now() WHERE id = X
-- Here that recount runs in a plpgsql AFTER ... FOR EACH ROW trigger, once per written row (for an UPDATE
-- that moves a site to another tenant, both tenants). No round trip is charged to it: a lower bound for the app.
ALTER TABLE tenants ADD COLUMN cached_sites_count integer NOT NULL DEFAULT 0,
                    ADD COLUMN cached_storage_mb bigint NOT NULL DEFAULT 0,
                    ADD COLUMN cached_at timestamp(0) without time zone;
UPDATE tenants t SET cached_sites_count = l.n, cached_storage_mb = l.mb, cached_at = localtimestamp(0)
  FROM (SELECT tenant_id, count(*) AS n, coalesce(sum(storage_used_mb), 0) AS mb
          FROM sites WHERE deleted_at IS NULL GROUP BY tenant_id) l
 WHERE l.tenant_id = t.id;

CREATE FUNCTION bench_seed_recount() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tid uuid;
BEGIN
    FOREACH tid IN ARRAY CASE TG_OP
            WHEN 'INSERT' THEN ARRAY[NEW.tenant_id]
            WHEN 'DELETE' THEN ARRAY[OLD.tenant_id]
            ELSE CASE WHEN NEW.tenant_id = OLD.tenant_id THEN ARRAY[NEW.tenant_id]
                      ELSE ARRAY[OLD.tenant_id, NEW.tenant_id] END END
    LOOP
        UPDATE tenants
           SET cached_sites_count = (SELECT count(*) FROM sites WHERE tenant_id = tid AND deleted_at IS NULL),
               cached_storage_mb  = (SELECT coalesce(sum(storage_used_mb), 0) FROM sites
                                      WHERE tenant_id = tid AND deleted_at IS NULL),
               cached_at          = now()
         WHERE id = tid;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER bench_seed_recount AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION bench_seed_recount();

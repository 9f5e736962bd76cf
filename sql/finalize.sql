-- Privileges (SECURITY.md). The application role may call chom_pick_vps(), chom_tenant_stats(),
-- chom_tenant_quota(), chom_cache_drift(), chom_vps_drift(), chom_status() and chom_vps_load() (EXECUTE is PUBLIC
-- by default). chom_install() and chom_uninstall() are PUBLIC too and refuse (42501) any caller who is neither a
-- superuser nor the owner of CHOM's tables: the application's migrations install chom after a DBA created the
-- extension. The other DBA functions are not for PUBLIC; delegate them with GRANT EXECUTE ON FUNCTION ... TO
-- <role> (see README).
-- (granted explicitly: the update from 0.3.0, which had revoked it, grants it back, and both give one ACL)
GRANT EXECUTE ON FUNCTION chom_install(), chom_uninstall() TO PUBLIC;
REVOKE ALL ON FUNCTION chom_index_ddl(boolean), chom_repair_drift(), chom_refresh_all(integer),
    chom_refresh_tenant(uuid), chom_drain_vps_deltas(), chom_fold_deltas() FROM PUBLIC;
-- The batched refresh is a DBA's too; its batches are chom.refresh_batch() (a procedure cannot be SECURITY
-- DEFINER and commit), so delegating it grants both. chom_metrics() and chom_drift_probe() are for monitoring
-- roles: PUBLIC.
REVOKE ALL ON PROCEDURE chom_refresh_all_batched(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION chom.refresh_batch(uuid, integer, timestamptz, bigint) FROM PUBLIC;
-- Every function of chom's resolves names in pg_catalog only, whoever calls it with whatever search_path: a
-- function or operator that another role put in a schema of the caller's path is never chom's. (Rows of CHOM's
-- tables are written as their owner, inside a security-restricted operation: src/schema/identity.rs.) The
-- trigger functions below are the exception to the SET clause, not to the rule: they fire on every write, and
-- a SET clause would set and reset search_path at each firing, while their hot path runs no SQL; the look-ups
-- they and chom's commit step make on a cache miss pin it themselves (src/pg/settings.rs).
ALTER FUNCTION chom_install() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_uninstall() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_index_ddl(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_status() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_index_usage() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_tenant_stats(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_tenant_quota(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_refresh_tenant(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_refresh_all(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_cache_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_vps_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_repair_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_drain_vps_deltas() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_fold_deltas() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_drift_probe(integer, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_metrics() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_vps_load() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.refresh_batch(uuid, integer, timestamptz, bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.guard_dropped_columns(oid[], text[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.guard_altered_tables(oid[], integer[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.refuse_transaction_block(text) SET search_path = pg_catalog, pg_temp;

-- chom records its runs through chom.record_run(), as chom's owner (whoever runs the repair or the probe needs
-- no grant on chom.runs); it refuses any call that is not chom's own recording.
ALTER FUNCTION chom.record_run() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The migrations guard's checks are called by chom's event triggers only.
REVOKE ALL ON FUNCTION chom.guard_dropped_columns(oid[], text[]), chom.guard_altered_tables(oid[], integer[]) FROM PUBLIC;

-- chom's tables hold no secrets; reading them needs no grant.
GRANT USAGE ON SCHEMA chom TO PUBLIC;
GRANT SELECT ON chom.managed_index, chom.vps_load, chom.runs, chom.tenant_deltas TO PUBLIC;

-- The trigger functions only read their transition tables into backend memory; only chom_install() attaches
-- them (CREATE TRIGGER needs EXECUTE, which PUBLIC does not have), and they refuse other tables.
REVOKE ALL ON FUNCTION chom_sites_aggregates(), chom_vps_registry() FROM PUBLIC;

-- chom applies each transaction's changes at commit from its library's own transaction callback, as the
-- tables' owner and as chom (src/schema/identity.rs). chom_apply_pending() is only what chom 0.3.0's library looks up at
-- commit: it applies nothing and refuses every call (42501), so such a transaction rolls back whole.
REVOKE ALL ON FUNCTION chom_apply_pending() FROM PUBLIC;

-- chom_pick_vps() reads chom.vps_load (readable by all) and reserves with an advisory lock: it needs no
-- privilege of its owner. Its NULL-able filters make every custom plan look cheaper than the generic one:
-- plan it once.
ALTER FUNCTION chom_pick_vps(integer, integer, text, text)
    SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;

-- Install on CHOM's tables right away when they exist. When they don't (an empty database, or pg_restore,
-- which creates extensions before tables), only chom's functions are installed: CREATE EXTENSION must never
-- fail a restore.
-- SET chom.install_on_create = off before CREATE EXTENSION defers it (the online path: chom_index_ddl() first).
-- On a Citus worker (Citus repeats CREATE EXTENSION on every node) chom_install() refuses with 0A000: chom is
-- installed from the coordinator, and the worker gets the functions its shards' triggers call.
DO $chom$
DECLARE
    created integer;
    total integer;
BEGIN
    IF NOT coalesce(pg_catalog.current_setting('chom.install_on_create', true), 'on')::pg_catalog.bool THEN
        RAISE NOTICE 'chom: only chom''s functions were installed (chom.install_on_create is off)'
            USING HINT = 'Build the indexes with SELECT s FROM chom_index_ddl() s \gexec, then run SELECT * FROM chom_install();';
        RETURN;
    END IF;
    SELECT pg_catalog.count(*) FILTER (WHERE action OPERATOR(pg_catalog.=) 'created'), pg_catalog.count(*)
      INTO created, total FROM @extschema@.chom_install();
    RAISE NOTICE 'chom: installed on CHOM''s tables (% objects created, % in all)', created, total
        USING HINT = 'SELECT * FROM chom_status() lists every object chom manages.';
EXCEPTION WHEN undefined_table OR undefined_column THEN
    RAISE NOTICE 'chom: only chom''s functions were installed: %', SQLERRM
        USING HINT = 'Once CHOM''s tables exist, run SELECT * FROM chom_install();';
WHEN feature_not_supported THEN
    -- on Citus, the expected refusal of a worker; elsewhere a layout chom refuses (tables of several owners, FORCE
    -- ROW LEVEL SECURITY, rules on tenants), which must not pass unseen: ALTER/CREATE EXTENSION shows WARNINGs only
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE NOTICE 'chom: only chom''s functions were installed: %', SQLERRM
            USING HINT = 'On Citus, run SELECT * FROM chom_install(); on the coordinator (docs/scaling.md).';
    ELSE
        RAISE WARNING 'chom: only chom''s functions were installed: %', SQLERRM
            USING HINT = 'Change what the message names, then run SELECT * FROM chom_install();';
    END IF;
END
$chom$;

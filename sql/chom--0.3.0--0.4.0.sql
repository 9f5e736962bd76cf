-- chom 0.3.0 -> 0.4.0: trust boundaries (SECURITY.md).
--
-- Run by a superuser (ALTER EXTENSION chom UPDATE) in a database whose owner, and the owner of schema public,
-- may be the application's role: every function, operator and cast this script calls is schema-qualified, and
-- the objects it creates are named with their schema. It changes none of CHOM's tables and takes no lock on them:
-- the functions below are re-pointed at this release's library, and their settings and grants are set as a
-- fresh install of 0.4.0 sets them.
--
-- What changes for a running application: chom's commit step applies each transaction's changes in the library
-- that recorded them, as the owner of CHOM's tables (tenants) and as chom (chom.vps_load), each inside a
-- security-restricted operation; no function of chom's is SECURITY DEFINER but chom.record_run() and the bridge
-- below. A transaction that wrote through 0.3.0's library before this update and commits after it is applied
-- exactly once, by 0.3.0's library, through chom_apply_pending() (see the end of this script).

\echo Use "ALTER EXTENSION chom UPDATE TO '0.4.0'" to load this file. \quit

-- Each release has a library of its own (chom-<version>); cargo pgrx substitutes @CARGO_VERSION@ when it
-- installs this script, so the update relies only on the library installed with it.

CREATE OR REPLACE FUNCTION @extschema@."chom_cache_drift"() RETURNS TABLE (
	"tenant_id" uuid,
	"cached_sites_count" INT,
	"actual_sites_count" bigint,
	"cached_storage_mb" bigint,
	"actual_storage_mb" bigint
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_cache_drift_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_drain_vps_deltas"() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_drain_vps_deltas_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_drift_probe"(
	"sample_size" INT DEFAULT 100,
	"max_ms" INT DEFAULT 200
) RETURNS TABLE (
	"sampled" bigint,
	"drifted" bigint,
	"vps_sampled" bigint,
	"vps_drifted" bigint,
	"elapsed_ms" double precision,
	"complete" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_drift_probe_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_index_ddl"(
	"concurrently" bool DEFAULT true
) RETURNS SETOF TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_index_ddl_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_index_usage"() RETURNS TABLE (
	"index_name" TEXT,
	"table_name" TEXT,
	"scans" bigint,
	"tuples_read" bigint,
	"size_bytes" bigint,
	"unused" bool,
	"redundant_with" TEXT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_index_usage_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_install"() RETURNS TABLE (
	"kind" TEXT,
	"name" TEXT,
	"action" TEXT
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_install_wrapper';

-- chom_metrics() gains two columns (the busy tenants' unfolded deltas): its row type changes, so it is dropped
-- and created again (monitoring that selects it by column name is unaffected).
DROP FUNCTION @extschema@.chom_metrics();
CREATE FUNCTION @extschema@."chom_metrics"() RETURNS TABLE (
	"chom_version" TEXT,
	"installed" bool,
	"triggers_enabled" INT,
	"triggers_disabled" INT,
	"triggers_missing" INT,
	"indexes_installed" INT,
	"indexes_reused" INT,
	"indexes_missing" INT,
	"indexes_invalid" INT,
	"indexes_conflict" INT,
	"tenants_fillfactor" INT,
	"tenants_row_updates" bigint,
	"tenants_hot_update_ratio" NUMERIC,
	"tenants_tracked" bigint,
	"vps_tracked" bigint,
	"last_check_at" timestamp with time zone,
	"last_check_kind" TEXT,
	"last_check_tenants_examined" bigint,
	"last_check_tenants_drifted" bigint,
	"last_check_vps_examined" bigint,
	"last_check_vps_drifted" bigint,
	"last_repair_at" timestamp with time zone,
	"last_repair_tenants_fixed" bigint,
	"last_repair_vps_fixed" bigint,
	"last_refresh_at" timestamp with time zone,
	"last_refresh_tenants" bigint,
	"unfolded_deltas" bigint,
	"oldest_unfolded_delta_at" timestamp with time zone
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_metrics_wrapper';

-- The busy tenant (src/maintain/deltas.rs): changes that a commit could not apply to a tenant's row held by another
-- commit, kept as insert-only rows and folded into tenants by a background worker, and the function that folds
-- on demand. As sql/schema.sql and sql/finalize.sql create them.
CREATE TABLE chom.tenant_deltas (
    tenant_id  uuid NOT NULL,
    sites      integer NOT NULL,
    storage_mb bigint NOT NULL,
    spilled_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0,
       vacuum_truncate = false);
CREATE INDEX tenant_deltas_tenant ON chom.tenant_deltas (tenant_id);
-- Grown once, never truncated: the reads of one tenant's deltas are planned as index scans (sql/schema.sql).
INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb)
SELECT '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid, 0, 0 FROM pg_catalog.generate_series(1, 4000);
DELETE FROM chom.tenant_deltas;
SELECT pg_catalog.pg_extension_config_dump('chom.tenant_deltas', '');
GRANT SELECT ON chom.tenant_deltas TO PUBLIC;

CREATE FUNCTION @extschema@."chom_fold_deltas"() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_fold_deltas_wrapper';
REVOKE ALL ON FUNCTION @extschema@.chom_fold_deltas() FROM PUBLIC;
ALTER FUNCTION @extschema@.chom_fold_deltas() SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.chom_fold_deltas() IS
    'chom: folds the busy tenants'' deltas (chom.tenant_deltas) into tenants now, as the tables'' owner; returns how many tenants had some; a background worker does the same on its own. DBA.';

CREATE OR REPLACE FUNCTION @extschema@."chom_pick_vps"(
	"min_memory_mb" INT DEFAULT NULL,
	"min_disk_gb" INT DEFAULT NULL,
	"region" TEXT DEFAULT NULL,
	"provider" TEXT DEFAULT NULL
) RETURNS uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_pick_vps_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_refresh_all"(
	"batch_size" INT DEFAULT 1000
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_refresh_all_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_refresh_tenant"(
	"tenant" uuid
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_refresh_tenant_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_repair_drift"() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_repair_drift_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_status"() RETURNS TABLE (
	"kind" TEXT,
	"name" TEXT,
	"table_name" TEXT,
	"state" TEXT,
	"detail" TEXT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_status_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_tenant_quota"(
	"tenant" uuid
) RETURNS TABLE (
	"sites_count" INT,
	"max_sites" INT,
	"storage_mb" bigint,
	"max_storage_mb" bigint,
	"sites_left" INT,
	"over_storage" bool
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_tenant_quota_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_tenant_stats"(
	"tenant" uuid
) RETURNS TABLE (
	"sites_count" INT,
	"storage_mb" bigint,
	"cached_at" timestamp
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_tenant_stats_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_uninstall"() RETURNS TABLE (
	"kind" TEXT,
	"name" TEXT,
	"action" TEXT
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_uninstall_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_vps_drift"() RETURNS TABLE (
	"vps_id" uuid,
	"cached_live_sites" bigint,
	"actual_live_sites" bigint
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_vps_drift_wrapper';

CREATE OR REPLACE FUNCTION @extschema@."chom_vps_load"() RETURNS TABLE (
	"vps_id" uuid,
	"hostname" TEXT,
	"live_sites" bigint,
	"eligible" bool
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_vps_load_wrapper';

CREATE OR REPLACE FUNCTION chom."refresh_batch"(
	"after" uuid,
	"batch_size" INT,
	"started_at" timestamp with time zone,
	"refreshed_before" bigint
) RETURNS TABLE (
	"last_id" uuid,
	"refreshed" bigint,
	"total" bigint
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'refresh_batch_wrapper';

CREATE OR REPLACE FUNCTION chom."refuse_transaction_block"(
	"procedure" TEXT
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'refuse_transaction_block_wrapper';

CREATE OR REPLACE FUNCTION chom."record_run"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'record_run_wrapper';

CREATE OR REPLACE FUNCTION chom."guard_altered_tables"(
	"tables" oid[],
	"attnums" INT[]
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'guard_altered_tables_wrapper';

CREATE OR REPLACE FUNCTION chom."guard_dropped_columns"(
	"tables" oid[],
	"columns" TEXT[]
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'guard_dropped_columns_wrapper';

CREATE OR REPLACE FUNCTION @extschema@.chom_sites_aggregates() RETURNS trigger
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_sites_aggregates_wrapper';
CREATE OR REPLACE FUNCTION @extschema@.chom_vps_registry() RETURNS trigger
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_vps_registry_wrapper';

-- The DDL guard finds chom's functions by the extension's schema, not by its name at install: a renamed schema
-- must not make every DROP in the database fail.
CREATE OR REPLACE FUNCTION chom.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    columns text[];
BEGIN
    SELECT array_agg(o.objid), array_agg(o.address_names[3])
      INTO tables, columns
      FROM pg_catalog.pg_event_trigger_dropped_objects() o
     WHERE o.object_type = 'table column' AND o.original;
    IF tables IS NOT NULL THEN
        PERFORM chom.guard_dropped_columns(tables, columns);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() o WHERE o.object_type IN ('table', 'trigger'))
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                        WHERE p.proname = 'chom_vps_registry'
                          AND p.pronamespace = (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                                 WHERE e.extname = 'chom'))
    THEN
        DELETE FROM chom.vps_load;
    END IF;
END
$$;

-- CREATE OR REPLACE FUNCTION above reset the functions' SECURITY and SET clauses: give back the ones a fresh
-- install of 0.4.0 sets (sql/finalize.sql). The trigger functions lose the search_path 0.3.0 gave them: since
-- 0.4.0 the look-ups they make on a cache miss pin it themselves, and their firings pay for no SET clause.
ALTER FUNCTION chom.record_run() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_pick_vps(integer, integer, text, text)
    SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;

-- The batched refresh names every function, operator and type with its schema (it cannot pin its search_path:
-- a procedure with a SET clause cannot commit).
CREATE OR REPLACE PROCEDURE @extschema@.chom_refresh_all_batched(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    started_at pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    after pg_catalog.uuid;
    batch pg_catalog.record;
    done bigint := 0;
    total bigint;
    batches integer := 0;
BEGIN
    PERFORM chom.refuse_transaction_block('chom_refresh_all_batched()');
    LOOP
        SELECT b.last_id, b.refreshed, b.total INTO batch
          FROM chom.refresh_batch(after, batch_size, started_at, done) b;
        total := coalesce(total, batch.total);
        EXIT WHEN batch.last_id IS NULL;
        done := done OPERATOR(pg_catalog.+) batch.refreshed;
        batches := batches OPERATOR(pg_catalog.+) 1;
        after := batch.last_id;
        COMMIT;
        RAISE NOTICE 'chom_refresh_all_batched: % of % tenants refreshed (% batches committed)', done, total, batches;
    END LOOP;
END
$$;

-- The bridge for transactions that meet this update. 0.3.0's library hands a committing transaction's changes to
-- chom_apply_pending(), which it looks up by name, through its own memory: so the function is not re-pointed
-- at this release's library (above) but stays bound to 0.3.0's, which the package keeps installed. A
-- transaction that wrote sites through 0.3.0's library before this update and commits after it is then applied
-- once, by the library that recorded it; what it wrote after the update went through this release's triggers
-- and is applied by this release's commit step, once too.
--
-- It no longer runs as the superuser who installed chom: it is SECURITY DEFINER owned by the owner of CHOM's
-- tables, so whatever that role's triggers on tenants do in it, they do as that role. 0.3.0's step also
-- writes chom.vps_load (a copy of per-VPS counts of sites that role owns, which it could skew by editing
-- vps_servers anyway): the role is given those rights on it. Without an installation there is nothing to
-- apply: the function is left to chom's owner, as invoker. The next release's update binds the function to
-- its own library again and revokes these rights.
REVOKE ALL ON FUNCTION @extschema@.chom_apply_pending() FROM PUBLIC;
DO $chom$
DECLARE
    tables_owner pg_catalog.text := (
        SELECT c.relowner::pg_catalog.regrole::pg_catalog.text
          FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
         WHERE t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.chom_sites_aggregates()'::pg_catalog.regprocedure
         ORDER BY c.oid LIMIT 1);
    -- false when this update started from 0.1.0 or 0.2.0: 0.2.0 -> 0.3.0 above then created the function on
    -- this release's library, and no transaction of 0.3.0's library can exist
    bound_to_0_3_0 pg_catalog.bool := (
        SELECT p.probin OPERATOR(pg_catalog.<>) 'chom-@CARGO_VERSION@' FROM pg_catalog.pg_proc p
         WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.chom_apply_pending()'::pg_catalog.regprocedure);
BEGIN
    IF tables_owner IS NULL OR NOT bound_to_0_3_0 THEN
        -- as a fresh install of this release has it: a stub on this release's library that refuses every call
        CREATE OR REPLACE FUNCTION @extschema@.chom_apply_pending() RETURNS void
        STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_apply_pending_wrapper';
        ALTER FUNCTION @extschema@.chom_apply_pending() SECURITY INVOKER RESET ALL;
        RETURN;
    END IF;
    ALTER FUNCTION @extschema@.chom_apply_pending() SECURITY DEFINER RESET ALL;
    ALTER FUNCTION @extschema@.chom_apply_pending()
        SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;
    EXECUTE pg_catalog.format('ALTER FUNCTION @extschema@.chom_apply_pending() OWNER TO %s', tables_owner);
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON chom.vps_load TO %s', tables_owner);
END
$chom$;

-- The tables' owner installs and uninstalls (the functions refuse other roles but superusers). 0.3.0 revoked
-- EXECUTE from PUBLIC; the grants are made again in the order a fresh install has them, so both give one ACL.
DO $chom$
DECLARE
    owner pg_catalog.text := (SELECT p.proowner::pg_catalog.regrole::pg_catalog.text FROM pg_catalog.pg_proc p
                               WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.chom_install()'::pg_catalog.regprocedure);
BEGIN
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION @extschema@.chom_install(), @extschema@.chom_uninstall() FROM %s', owner);
    GRANT EXECUTE ON FUNCTION @extschema@.chom_install(), @extschema@.chom_uninstall() TO PUBLIC;
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.chom_install(), @extschema@.chom_uninstall() TO %s', owner);
END
$chom$;

-- Every function of chom's resolves names in pg_catalog only.
ALTER FUNCTION @extschema@.chom_install() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_uninstall() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_index_ddl(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_status() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_index_usage() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_tenant_stats(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_tenant_quota(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_refresh_tenant(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_refresh_all(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_cache_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_vps_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_repair_drift() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_drain_vps_deltas() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_drift_probe(integer, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.chom_metrics() SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.chom_metrics() IS
    'chom: one row of typed figures for monitoring: objects by state, tenants'' fillfactor and HOT share, rows tracked, last check, repair and refresh, unfolded deltas (docs/monitoring.md).';
ALTER FUNCTION @extschema@.chom_vps_load() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.refresh_batch(uuid, integer, timestamptz, bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.guard_dropped_columns(oid[], text[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.guard_altered_tables(oid[], integer[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom.refuse_transaction_block(text) SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION @extschema@.chom_tenant_stats(uuid) IS
    'chom: a tenant''s live sites, storage (MB) and cached_at, exact (the transaction''s own writes included); recounted when older than chom.max_staleness.';

-- Settings: the ones that weaken a guarantee are superuser-set under new names (chom.site_quota,
-- chom.max_staleness, chom.install_schema). A database-wide chom.enforce_site_quota = on, which 0.3.0's
-- documentation asked a DBA to set, becomes chom.site_quota = on, which a session cannot turn off; the retired
-- names are reported where a database or role still sets them.
DO $chom$
DECLARE
    setting record;
BEGIN
    FOR setting IN
        SELECT s.setdatabase, s.setrole, pg_catalog.split_part(c.entry, '=', 1) AS name,
               pg_catalog.substr(c.entry, pg_catalog.length(pg_catalog.split_part(c.entry, '=', 1)) OPERATOR(pg_catalog.+) 2) AS value
          FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(entry)
         WHERE pg_catalog.split_part(c.entry, '=', 1) OPERATOR(pg_catalog.=) ANY (ARRAY['chom.enforce_site_quota', 'chom.stale_after', 'chom.target_schema'])
    LOOP
        IF setting.name OPERATOR(pg_catalog.=) 'chom.enforce_site_quota' AND setting.setrole OPERATOR(pg_catalog.=) 0::pg_catalog.oid
           AND setting.setdatabase OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
           AND pg_catalog.lower(setting.value) OPERATOR(pg_catalog.=) ANY (ARRAY['on', 'true', 'yes', '1'])
        THEN
            EXECUTE pg_catalog.format('ALTER DATABASE %I SET chom.site_quota = on', pg_catalog.current_database());
            RAISE NOTICE 'chom: this database''s chom.enforce_site_quota = on is now chom.site_quota = on, which sessions cannot turn off';
        ELSIF setting.name OPERATOR(pg_catalog.<>) 'chom.enforce_site_quota' THEN
            RAISE WARNING 'chom: % is set for a database or role (%), but chom 0.4.0 no longer reads it',
                setting.name, setting.value
                USING HINT = 'A superuser sets ' OPERATOR(pg_catalog.||)
                    CASE WHEN setting.name OPERATOR(pg_catalog.=) 'chom.stale_after' THEN 'chom.max_staleness'
                         ELSE 'chom.install_schema' END OPERATOR(pg_catalog.||) ' instead.';
        END IF;
    END LOOP;
END
$chom$;

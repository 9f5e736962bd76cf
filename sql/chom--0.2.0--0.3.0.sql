-- chom 0.2.0 -> 0.3.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION chom UPDATE TO '0.3.0'" to load this file. \quit

-- What it locks, from 0.2.0: chom's own objects (catalogue rows), and, to re-create chom's triggers with their
-- new arguments, sites and vps_servers in SHARE ROW EXCLUSIVE (writers wait, readers do not) for milliseconds
-- at any scale; no row of CHOM's tables is rewritten. From 0.1.0 (through 0.2.0) chom_install() also adds the
-- vps_servers UPDATE trigger 0.2.0 introduced and recounts every tenant and VPS under the same locks: seconds
-- at 1M sites. Set lock_timeout to bound the wait for those locks. Transactions that wrote sites before the
-- update and commit after it apply their changes as they were made (0.2.0: in each statement).

-- Every C function now points at this release's own library, chom-<version> (each release installs its
-- library under its own name and leaves the others in place, so that databases not yet updated keep the
-- library their objects name; see the README's Upgrading). cargo pgrx substitutes @CARGO_VERSION@ when it
-- installs this script: an update only ever relies on the library installed with it. CREATE OR REPLACE keeps
-- each function's owner and privileges and resets its SECURITY and SET clauses to what is written here
-- (0.2.0's SECURITY DEFINER of the trigger functions and chom_pick_vps() goes); the settings below give each
-- function its 0.3.0 ones, as finalize.sql does for a fresh install.
CREATE OR REPLACE FUNCTION chom_cache_drift() RETURNS TABLE (
    tenant_id uuid,
    cached_sites_count integer,
    actual_sites_count bigint,
    cached_storage_mb bigint,
    actual_storage_mb bigint
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_cache_drift_wrapper';

CREATE FUNCTION chom_drain_vps_deltas() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_drain_vps_deltas_wrapper';
REVOKE ALL ON FUNCTION chom_drain_vps_deltas() FROM PUBLIC;
COMMENT ON FUNCTION chom_drain_vps_deltas() IS
    'chom on Citus: moves the per-VPS changes queued by the workers'' commits into chom.vps_load (run it on a schedule on the coordinator); returns the VPS rows changed; 0 without Citus. DBA.';

CREATE OR REPLACE FUNCTION chom_index_ddl(concurrently boolean DEFAULT true) RETURNS SETOF text
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_index_ddl_wrapper';

CREATE OR REPLACE FUNCTION chom_index_usage() RETURNS TABLE (
    index_name text,
    table_name text,
    scans bigint,
    tuples_read bigint,
    size_bytes bigint,
    unused boolean,
    redundant_with text
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_index_usage_wrapper';

CREATE OR REPLACE FUNCTION chom_install() RETURNS TABLE (kind text, name text, action text)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_install_wrapper';

CREATE OR REPLACE FUNCTION chom_pick_vps(
    min_memory_mb integer DEFAULT NULL,
    min_disk_gb integer DEFAULT NULL,
    region text DEFAULT NULL,
    provider text DEFAULT NULL
) RETURNS uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_pick_vps_wrapper';

CREATE OR REPLACE FUNCTION chom_refresh_all(batch_size integer DEFAULT 1000) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_refresh_all_wrapper';

CREATE OR REPLACE FUNCTION chom_refresh_tenant(tenant uuid) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_refresh_tenant_wrapper';

CREATE OR REPLACE FUNCTION chom_repair_drift() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_repair_drift_wrapper';

CREATE OR REPLACE FUNCTION chom_status() RETURNS TABLE (
    kind text,
    name text,
    table_name text,
    state text,
    detail text
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_status_wrapper';

CREATE OR REPLACE FUNCTION chom_tenant_stats(tenant uuid) RETURNS TABLE (
    sites_count integer,
    storage_mb bigint,
    cached_at timestamp
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_tenant_stats_wrapper';

CREATE OR REPLACE FUNCTION chom_uninstall() RETURNS TABLE (kind text, name text, action text)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_uninstall_wrapper';

CREATE OR REPLACE FUNCTION chom_vps_drift() RETURNS TABLE (
    vps_id uuid,
    cached_live_sites bigint,
    actual_live_sites bigint
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_vps_drift_wrapper';

CREATE OR REPLACE FUNCTION chom_vps_load() RETURNS TABLE (
    vps_id uuid,
    hostname text,
    live_sites bigint,
    eligible boolean
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_vps_load_wrapper';

CREATE OR REPLACE FUNCTION chom_sites_aggregates() RETURNS trigger
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_sites_aggregates_wrapper';

CREATE OR REPLACE FUNCTION chom_vps_registry() RETURNS trigger
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_vps_registry_wrapper';

-- Each transaction's net change is now applied once, at commit, by chom_apply_pending(), called by chom
-- itself (see finalize.sql).
CREATE FUNCTION chom_apply_pending() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_apply_pending_wrapper';
ALTER FUNCTION chom_apply_pending()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;
REVOKE ALL ON FUNCTION chom_apply_pending() FROM PUBLIC;

-- The trigger functions (replaced above without 0.2.0's SECURITY DEFINER: they only fold transition tables
-- into backend memory now) keep a pinned search_path; chom_pick_vps(), which reserves with an advisory lock
-- instead of a row lock of chom_vps_load and so needs no rights of its owner either, keeps its generic plan.
ALTER FUNCTION chom_sites_aggregates() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_vps_registry() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION chom_pick_vps(integer, integer, text, text)
    SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;

-- chom_tenant_quota(): a tenant's live sites and storage beside its tier's limits (chom.enforce_site_quota makes
-- max_sites hold at commit).
CREATE FUNCTION chom_tenant_quota(tenant uuid) RETURNS TABLE (
    sites_count integer,
    max_sites integer,
    storage_mb bigint,
    max_storage_mb bigint,
    sites_left integer,
    over_storage boolean
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_tenant_quota_wrapper';

-- chom's own tables move into a schema of chom's own, out of the way of Laravel's migrate:fresh,
-- RefreshDatabase and DatabaseTruncation (they drop or truncate every table of the application's schema). A
-- schema "chom" that is already there was made by someone else: whoever owns it could create, drop or replace
-- objects in it, chom's tables among them, so chom refuses it rather than adopt it (as sql/schema.sql does).
DO $chom$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'chom') THEN
        RAISE EXCEPTION 'a schema "chom" already exists: chom will not adopt a schema it did not create'
            USING ERRCODE = '42P06',
                  HINT = 'Drop or rename that schema, then ALTER EXTENSION chom UPDATE again.';
    END IF;
END
$chom$;
CREATE SCHEMA chom;
COMMENT ON SCHEMA chom IS 'chom''s own tables (the index catalogue, the per-VPS loads): see chom_status()';
ALTER TABLE chom_managed_index SET SCHEMA chom;
ALTER TABLE chom.chom_managed_index RENAME TO managed_index;
ALTER TABLE chom_vps_load SET SCHEMA chom;
ALTER TABLE chom.chom_vps_load RENAME TO vps_load;
ALTER INDEX chom.chom_vps_load_pick RENAME TO vps_load_pick;
ALTER TABLE chom.vps_load RENAME CONSTRAINT chom_vps_load_pkey TO vps_load_pkey;
ALTER TABLE chom.managed_index RENAME CONSTRAINT chom_managed_index_pkey TO managed_index_pkey;
ALTER TABLE chom.managed_index RENAME CONSTRAINT chom_managed_index_key_columns_check TO managed_index_key_columns_check;
ALTER TABLE chom.managed_index RENAME CONSTRAINT chom_managed_index_check TO managed_index_check;
-- Postgres 18 records NOT NULL constraints too, named after their table when they were made
-- (chom_vps_load_vps_id_not_null): they follow the rename as a fresh install names them (none before 18).
DO $chom$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS rel, conname,
                    pg_catalog.regexp_replace(conname, '^chom_(managed_index|vps_load)_', '\1_') AS renamed
               FROM pg_catalog.pg_constraint
              WHERE conrelid OPERATOR(pg_catalog.=)
                    ANY (ARRAY['chom.managed_index'::regclass, 'chom.vps_load'::regclass])
                AND conname OPERATOR(pg_catalog.~) '^chom_(managed_index|vps_load)_'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', c.rel, c.conname, c.renamed);
    END LOOP;
END
$chom$;
ALTER FUNCTION chom_index_key_columns(oid) SET SCHEMA chom;
ALTER FUNCTION chom.chom_index_key_columns(oid) RENAME TO index_key_columns;
GRANT USAGE ON SCHEMA chom TO PUBLIC;

-- What chom added is now recorded in CHOM's schema itself (a schema-only dump keeps it): the cached columns chom
-- added carry chom's comment, and the comment on chom's sites INSERT trigger says whether chom set tenants'
-- fillfactor. chom_installed's rows become those comments; the installed schema is the one carrying chom's
-- triggers.
DO $chom$
DECLARE
    target text;
    column_row record;
    fillfactor_by_chom boolean;
BEGIN
    SELECT name INTO target FROM @extschema@.chom_installed WHERE kind OPERATOR(pg_catalog.=) 'schema';
    IF target IS NOT NULL THEN
        FOR column_row IN
            SELECT i.name FROM @extschema@.chom_installed i
              JOIN pg_catalog.pg_attribute a
                ON a.attrelid OPERATOR(pg_catalog.=) pg_catalog.format('%I.tenants', target)::regclass
               AND a.attname OPERATOR(pg_catalog.=) i.name AND NOT a.attisdropped
             WHERE i.kind OPERATOR(pg_catalog.=) 'column' AND i.origin OPERATOR(pg_catalog.=) 'created'
        LOOP
            EXECUTE pg_catalog.format('COMMENT ON COLUMN %I.tenants.%I IS %L', target, column_row.name,
                                      'managed by chom: added by chom_install(), dropped by chom_uninstall()');
        END LOOP;
        SELECT EXISTS (SELECT FROM @extschema@.chom_installed
                        WHERE kind OPERATOR(pg_catalog.=) 'storage' AND origin OPERATOR(pg_catalog.=) 'created')
          INTO fillfactor_by_chom;
        IF EXISTS (SELECT FROM pg_catalog.pg_trigger
                    WHERE tgname OPERATOR(pg_catalog.=) 'chom_sites_insert'
                      AND tgrelid OPERATOR(pg_catalog.=) pg_catalog.format('%I.sites', target)::regclass) THEN
            EXECUTE pg_catalog.format('COMMENT ON TRIGGER chom_sites_insert ON %I.sites IS %L', target,
                                      CASE WHEN fillfactor_by_chom
                                           THEN 'managed by chom: see chom_status(); chom set tenants'' fillfactor'
                                           ELSE 'managed by chom: see chom_status()' END);
        END IF;
    END IF;
END
$chom$;
ALTER EXTENSION chom DROP TABLE chom_installed;
DROP TABLE chom_installed;

-- The migrations guard (sql/guard.sql): event triggers refuse application DDL that would leave chom broken,
-- and take chom's per-VPS loads with CHOM's tables when they are dropped.
CREATE FUNCTION chom.guard_dropped_columns(tables oid[], columns text[]) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'guard_dropped_columns_wrapper';
CREATE FUNCTION chom.guard_altered_tables(tables oid[], attnums integer[]) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'guard_altered_tables_wrapper';
REVOKE ALL ON FUNCTION chom.guard_dropped_columns(oid[], text[]), chom.guard_altered_tables(oid[], integer[]) FROM PUBLIC;

CREATE FUNCTION chom.on_sql_drop() RETURNS event_trigger
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
                        WHERE p.proname = 'chom_vps_registry' AND p.pronamespace = '@extschema@'::regnamespace)
    THEN
        DELETE FROM chom.vps_load;
    END IF;
END
$$;

CREATE FUNCTION chom.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    attnums integer[];
BEGIN
    SELECT array_agg(c.objid), array_agg(c.objsubid) INTO tables, attnums
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
     WHERE c.object_type IN ('table', 'table column') AND c.classid = 'pg_catalog.pg_class'::regclass;
    IF tables IS NOT NULL THEN
        PERFORM chom.guard_altered_tables(tables, attnums);
    END IF;
END
$$;

CREATE EVENT TRIGGER chom_sql_drop ON sql_drop EXECUTE FUNCTION chom.on_sql_drop();
CREATE EVENT TRIGGER chom_ddl_command_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION chom.on_ddl_command_end();

-- Monitoring (issue 12): chom's record of its own runs, chom_metrics(), chom_drift_probe() and the batched
-- refresh, as sql/schema.sql, src/monitoring.rs, sql/monitoring.sql and finalize.sql create them; then the
-- comments \df+ shows (sql/comments.sql). New objects only: nothing of CHOM's is touched.
-- chom's record of its own runs, read by chom_metrics() (when drift was last checked and repaired, what was
-- found and fixed, the last full refresh). Written by chom_repair_drift() ('repair'), chom_drift_probe()
-- ('probe'), chom_refresh_all() and CALL chom_refresh_all_batched() ('refresh'), through chom.record_run(), and
-- only in transactions that may write: on a hot standby or in a read-only transaction a run is not recorded.
-- The plain drift reads (chom_cache_drift(), chom_vps_drift(): STABLE, parallel safe) and
-- chom_refresh_tenant() (the application's per-tenant call) record nothing. Bounded: each recorded run deletes
-- the runs of its kind beyond the newest 1000. Not dumped: a restored database is a new question (its
-- aggregates are whatever the restore made them), so its metrics say "never checked" until a probe or repair.
CREATE TABLE chom.runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['probe', 'repair', 'refresh'])),
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    -- NULL: not counted by this kind of run
    tenants_examined bigint,
    tenants_drifted  bigint,
    tenants_fixed    bigint,
    vps_examined     bigint,
    vps_drifted      bigint,
    vps_fixed        bigint,
    CHECK (finished_at OPERATOR(pg_catalog.>=) started_at)
);
CREATE INDEX runs_kind_id ON chom.runs (kind, id);

CREATE FUNCTION chom_metrics() RETURNS TABLE (
    chom_version text,
    installed boolean,
    triggers_enabled integer,
    triggers_disabled integer,
    triggers_missing integer,
    indexes_installed integer,
    indexes_reused integer,
    indexes_missing integer,
    indexes_invalid integer,
    indexes_conflict integer,
    tenants_fillfactor integer,
    tenants_row_updates bigint,
    tenants_hot_update_ratio numeric,
    tenants_tracked bigint,
    vps_tracked bigint,
    last_check_at timestamptz,
    last_check_kind text,
    last_check_tenants_examined bigint,
    last_check_tenants_drifted bigint,
    last_check_vps_examined bigint,
    last_check_vps_drifted bigint,
    last_repair_at timestamptz,
    last_repair_tenants_fixed bigint,
    last_repair_vps_fixed bigint,
    last_refresh_at timestamptz,
    last_refresh_tenants bigint
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_metrics_wrapper';

CREATE FUNCTION chom_drift_probe(sample_size integer DEFAULT 100, max_ms integer DEFAULT 200) RETURNS TABLE (
    sampled bigint,
    drifted bigint,
    vps_sampled bigint,
    vps_drifted bigint,
    elapsed_ms double precision,
    complete boolean
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'chom_drift_probe_wrapper';

CREATE FUNCTION chom.record_run() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'record_run_wrapper';

CREATE FUNCTION chom.refuse_transaction_block(procedure text) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'refuse_transaction_block_wrapper';

CREATE FUNCTION chom.refresh_batch(after uuid, batch_size integer, started_at timestamptz, refreshed_before bigint)
RETURNS TABLE (last_id uuid, refreshed bigint, total bigint)
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'chom-@CARGO_VERSION@', 'refresh_batch_wrapper';

-- CALL chom_refresh_all_batched(): chom_refresh_all() as a procedure that commits after each batch, so each
-- batch's row locks on tenants are held only while that batch is recounted (writers of a tenant wait at most
-- one batch, never the whole run), with a NOTICE per committed batch. A procedure, not a function: only a
-- CALL may commit. It refuses to run inside a transaction block (25001), where it could not commit; there,
-- SELECT chom_refresh_all() does the same work in the caller's transaction. No SET clause (a procedure with
-- one cannot commit), so its body is resolved in the caller's search_path, which need not start with pg_catalog
-- (ALTER DATABASE ... SET search_path is the database owner's): every function, operator and type it names is
-- schema-qualified. Interrupted, it keeps the batches it committed; running it again starts over. The run is
-- recorded in chom.runs ('refresh') when it ends.
CREATE PROCEDURE chom_refresh_all_batched(batch_size integer DEFAULT 1000)
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

REVOKE ALL ON PROCEDURE chom_refresh_all_batched(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION chom.refresh_batch(uuid, integer, timestamptz, bigint) FROM PUBLIC;
ALTER FUNCTION chom.record_run() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
GRANT SELECT ON chom.runs TO PUBLIC;

-- What \df+ and \dfS+ say of each of chom's functions (the README's SQL reference has the details).
COMMENT ON FUNCTION chom_install() IS
    'chom: installs chom on CHOM''s tables (indexes, cached columns, fillfactor, triggers) or completes the installation; idempotent; one row per object with the action taken. DBA.';
COMMENT ON FUNCTION chom_uninstall() IS
    'chom: removes exactly what chom added to CHOM''s tables (triggers, its indexes, the columns it added, the fillfactor it set); then DROP EXTENSION chom. DBA.';
COMMENT ON FUNCTION chom_index_ddl(boolean) IS
    'chom: the statements that build the missing or invalid managed indexes (CREATE INDEX CONCURRENTLY by default), for \gexec before chom_install(). DBA.';
COMMENT ON FUNCTION chom_status() IS
    'chom: every object chom manages with its state (installed, reused, missing, invalid, disabled, conflict) and what to do.';
COMMENT ON FUNCTION chom_index_usage() IS
    'chom: scans, tuples read and size of the indexes serving chom''s catalogue, and the indexes they make redundant.';
COMMENT ON FUNCTION chom_tenant_stats(uuid) IS
    'chom: a tenant''s live sites, storage (MB) and cached_at, exact (the transaction''s own writes included); recounted when older than chom.stale_after.';
COMMENT ON FUNCTION chom_tenant_quota(uuid) IS
    'chom: a tenant''s live sites and storage beside its tier''s limits (sites left, over storage).';
COMMENT ON FUNCTION chom_refresh_tenant(uuid) IS
    'chom: locks one tenant and recounts its cached aggregates. NULL: 22004; unknown tenant: P0002. DBA.';
COMMENT ON FUNCTION chom_refresh_all(integer) IS
    'chom: recounts every tenant in id-ordered batches in the caller''s transaction (locks held until it ends; CALL chom_refresh_all_batched() commits per batch); returns how many. DBA.';
COMMENT ON PROCEDURE chom_refresh_all_batched(integer) IS
    'chom: CALL it to recount every tenant, committing after each batch (locks held one batch at a time), a NOTICE per batch; refused inside a transaction block (25001). DBA.';
COMMENT ON FUNCTION chom_cache_drift() IS
    'chom: every tenant whose cached aggregates differ from a recount of its live sites (full check; empty when exact).';
COMMENT ON FUNCTION chom_vps_drift() IS
    'chom: every VPS whose live-site count in chom.vps_load differs from a recount (full check; empty when exact).';
COMMENT ON FUNCTION chom_repair_drift() IS
    'chom: locks, re-checks and recounts every drifted tenant and VPS, safe with writers running; returns how many were fixed; recorded in chom.runs. DBA.';
COMMENT ON FUNCTION chom_drift_probe(integer, integer) IS
    'chom: drift in a random sample of tenants and VPSes within max_ms: sampled, drifted, vps_sampled, vps_drifted, elapsed_ms, complete; recorded in chom.runs (not on a standby).';
COMMENT ON FUNCTION chom_metrics() IS
    'chom: one row of typed figures for monitoring: objects by state, tenants'' fillfactor and HOT share, rows tracked, last check, repair and refresh (docs/monitoring.md).';
COMMENT ON FUNCTION chom_pick_vps(integer, integer, text, text) IS
    'chom: the least-loaded eligible VPS (active, shared, healthy), reserved until the transaction ends; NULL when none.';
COMMENT ON FUNCTION chom_vps_load() IS
    'chom: every VPS with its live-site count and whether chom_pick_vps() may choose it, least loaded first.';
COMMENT ON FUNCTION chom_apply_pending() IS
    'chom internal: applies a committing transaction''s changes to the cached aggregates; called by chom at commit only.';
COMMENT ON FUNCTION chom_sites_aggregates() IS
    'chom internal: statement trigger on sites keeping the tenant aggregates and VPS loads exact (applied at commit).';
COMMENT ON FUNCTION chom_vps_registry() IS
    'chom internal: statement trigger on vps_servers keeping chom.vps_load''s copy of the attributes the pick filters on.';
COMMENT ON FUNCTION chom.record_run() IS
    'chom internal: records a run of chom''s in chom.runs; called by chom only.';
COMMENT ON FUNCTION chom.refresh_batch(uuid, integer, timestamptz, bigint) IS
    'chom internal: one batch of CALL chom_refresh_all_batched().';
COMMENT ON FUNCTION chom.refuse_transaction_block(text) IS
    'chom internal: raises 25001 inside a transaction block (for procedures that commit).';

-- Where chom is installed, chom_install() completes it: chom's triggers now carry the names of the columns chom
-- uses (so that it follows the application's renames), and coming from 0.1.0 the vps_servers UPDATE trigger of
-- 0.2.0 is added and every tenant and VPS recounted.
-- This runs at the end of the chain because chom_install() is chom's library, and the only library an update
-- can rely on is this release's, which works on chom's objects as this release shapes them. Its locks (sites
-- and vps_servers SHARE ROW EXCLUSIVE: writers wait, readers do not) are held until the update commits, and
-- lock_timeout applies to them: with it set, a busy database fails the update (changing nothing) instead of
-- queueing its writers behind it.
DO $chom$
DECLARE
    target text;
    started timestamptz := pg_catalog.clock_timestamp();
BEGIN
    SELECT n.nspname INTO target
      FROM pg_catalog.pg_trigger t
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE t.tgname OPERATOR(pg_catalog.=) 'chom_sites_insert' AND c.relname OPERATOR(pg_catalog.=) 'sites';
    IF target IS NOT NULL THEN
        -- ALTER EXTENSION runs its scripts with client_min_messages at least WARNING: these notices are shown
        -- at the level the session was configured with (until the script ends)
        PERFORM pg_catalog.set_config('client_min_messages',
            (SELECT reset_val FROM pg_catalog.pg_settings
              WHERE name OPERATOR(pg_catalog.=) 'client_min_messages'), true);
        RAISE NOTICE 'chom: updating the installation on schema % (sites and vps_servers are locked against writes until the update commits)', target;
        -- chom_install() runs with the search_path a fresh install pins on it (finalize.sql), not the script's,
        -- whose public holds whatever public's owner put there (it finds CHOM's tables by chom's triggers);
        -- ALTER EXTENSION restores the script's when the script ends
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        PERFORM @extschema@.chom_install();
        RAISE NOTICE 'chom: installation completed in % s',
            pg_catalog.round(
                extract(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)::numeric, 2);
    END IF;
END
$chom$;

-- chom's own tables, in a schema of chom's own ("chom"), out of the way of the application: Laravel's
-- migrate:fresh, RefreshDatabase and DatabaseTruncation drop or truncate every table of the connection's
-- schema, and chom's functions stay where the extension is created (default public), callable unqualified.
-- A schema "chom" that is already there was made by someone else (chom's own goes with DROP EXTENSION): whoever
-- owns it could create, drop or replace objects in it, chom's tables among them, so chom refuses it rather than
-- adopt it.
DO $chom$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'chom') THEN
        RAISE EXCEPTION 'a schema "chom" already exists: chom will not adopt a schema it did not create'
            USING ERRCODE = '42P06',
                  HINT = 'Drop or rename that schema, then CREATE EXTENSION chom again.';
    END IF;
END
$chom$;
CREATE SCHEMA chom;
COMMENT ON SCHEMA chom IS 'chom''s own tables (the index catalogue, the per-VPS loads): see chom_status()';

-- The catalogue of indexes chom manages: one row per index, read by chom_install(), chom_status(),
-- chom_index_ddl() and chom_uninstall(). Its rows ship with the extension (managed_indexes.sql), so it is not
-- dumped: CREATE EXTENSION recreates it.
CREATE TABLE chom.managed_index (
    name        text PRIMARY KEY,
    table_name  text NOT NULL,
    key_columns text[] NOT NULL CHECK (pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.>) 0),
    -- columns of key_columns sorted descending (the chronological listings ask for newest first)
    descending  text[] NOT NULL DEFAULT '{}' CHECK (descending OPERATOR(pg_catalog.<@) key_columns),
    query_shape text NOT NULL
);

-- What chom added to CHOM's schema is recorded in that schema itself, so that a schema-only dump (Laravel's
-- schema:dump) keeps it: chom's indexes carry chom's comment, the cached columns it added carry one too, and
-- the comment on chom's sites INSERT trigger says whether chom set tenants' fillfactor. The schema chom is
-- installed on is the one whose sites table carries chom's triggers.

-- Live (not soft-deleted) sites per VPS, kept exact at each commit beside a copy of the VPS attributes
-- chom_pick_vps() filters on, so that "least loaded eligible VPS" is one walk along one index, with no join.
CREATE TABLE chom.vps_load (
    vps_id          uuid PRIMARY KEY,
    live_sites      integer NOT NULL DEFAULT 0,
    status          text,
    allocation_type text,
    health_status   text,
    spec_memory_mb  integer,
    spec_disk_gb    integer,
    region          text,
    provider        text
);
-- CHOM's active()->shared() scopes; health, size, region and provider are checked on the row.
CREATE INDEX vps_load_pick ON chom.vps_load (live_sites, vps_id)
    WHERE status OPERATOR(pg_catalog.=) 'active' AND allocation_type OPERATOR(pg_catalog.=) 'shared';
-- dumped with the database, so that a restored database has exact loads at once
SELECT pg_catalog.pg_extension_config_dump('chom.vps_load', '');

-- Changes to tenants' cached aggregates that a committing writer could not apply in place because another
-- commit held the tenant's row (a busy tenant: concurrent durable commits would otherwise flush one at a time on
-- that row lock). Insert-only for writers, so they share no lock; chom's fold worker adds them to tenants and
-- deletes them, and chom's reads (chom_tenant_stats(), chom_tenant_quota(), drift, repair) add the rows not yet
-- folded, so that every read through chom stays exact. A site and its delta commit together. See docs/busy-tenant.md.
-- A queue: rows come and go by the thousand a second for a busy tenant, so autovacuum takes its dead rows after
-- every thousand, unthrottled, whatever the table's size (the reads of a tenant's deltas scan their index).
CREATE TABLE chom.tenant_deltas (
    tenant_id  uuid NOT NULL,
    sites      integer NOT NULL,
    storage_mb bigint NOT NULL,
    spilled_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0,
       vacuum_truncate = false);
CREATE INDEX tenant_deltas_tenant ON chom.tenant_deltas (tenant_id);
-- Grown once to about 32 pages, and never truncated by vacuum: the planner sizes a table by its pages on disk, and
-- would plan the reads of one tenant's deltas on an empty one as sequential scans. Every backend keeps that plan
-- for its prepared statements, and scans every page a burst of spills fills.
INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb)
SELECT '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid, 0, 0 FROM pg_catalog.generate_series(1, 4000);
DELETE FROM chom.tenant_deltas;
-- dumped with the database: a restored database's tenants plus its deltas are exact, as they were
SELECT pg_catalog.pg_extension_config_dump('chom.tenant_deltas', '');

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

-- chom 0.1.0 -> 0.2.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION chom UPDATE TO '0.2.0'" to load this file. \quit

-- Run by ALTER EXTENSION chom UPDATE on the way to the installed version, whose library, chom-<version>
-- (cargo pgrx substitutes @CARGO_VERSION@), is the only one an update can rely on: the function this step adds
-- points at it, and chom--0.2.0--0.3.0.sql points every other one at it. What it locks: chom's own tables,
-- chom_vps_load (ACCESS EXCLUSIVE, for its new columns and index: one row per VPS, milliseconds) and
-- chom_installed; 0.1.0's triggers write chom_vps_load, so site writes wait from there until the whole update
-- commits.

-- chom_index_usage(): usage of chom's indexes and the indexes they make redundant.
CREATE FUNCTION chom_index_usage() RETURNS TABLE (
    index_name text,
    table_name text,
    scans bigint,
    tuples_read bigint,
    size_bytes bigint,
    unused boolean,
    redundant_with text
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'chom-@CARGO_VERSION@', 'chom_index_usage_wrapper';

-- Plan the trigger's and the pick's statements once per session (see finalize.sql).
ALTER FUNCTION chom_sites_aggregates() SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION chom_pick_vps(integer, integer, text, text) SET plan_cache_mode = force_generic_plan;

-- chom_pick_vps() without a join: chom_vps_load keeps a copy of the VPS attributes the pick filters on, kept by
-- a new UPDATE trigger on vps_servers, and a partial index over active shared VPSes replaces the full one.
ALTER TABLE chom_vps_load
    ADD COLUMN status text,
    ADD COLUMN allocation_type text,
    ADD COLUMN health_status text,
    ADD COLUMN spec_memory_mb integer,
    ADD COLUMN spec_disk_gb integer,
    ADD COLUMN region text,
    ADD COLUMN provider text;
DROP INDEX chom_vps_load_least_loaded;
CREATE INDEX chom_vps_load_pick ON chom_vps_load (live_sites, vps_id)
    WHERE status OPERATOR(pg_catalog.=) 'active' AND allocation_type OPERATOR(pg_catalog.=) 'shared';

-- chom_install() now gives tenants a fillfactor (chom.tenants_fillfactor) and records it, so that
-- chom_uninstall() resets it. On an installed database the existing rows get that room as they are updated;
-- VACUUM FULL tenants (or pg_repack) lays the whole table out at once.
ALTER TABLE chom_installed DROP CONSTRAINT chom_installed_kind_check;
ALTER TABLE chom_installed ADD CONSTRAINT chom_installed_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['schema', 'column', 'index', 'trigger', 'storage']));

-- Where chom is installed on CHOM's tables, the new vps_servers UPDATE trigger and the copied attributes are
-- added by the next update (0.2.0 -> 0.3.0 runs chom_install(), which needs chom's 0.3.0 tables): the library
-- installed with this script is always the newest, and it works on the newest schema only.

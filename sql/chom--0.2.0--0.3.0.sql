-- chom 0.2.0 -> 0.3.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION chom UPDATE TO '0.3.0'" to load this file. \quit

-- What it locks: nothing of CHOM's tables and no row; it changes chom's own functions only (catalogue rows,
-- a brief lock on each), so it runs in milliseconds at any scale. Transactions that wrote sites before the
-- update and commit after it apply their changes as they were made (0.2.0: in each statement).

-- Each transaction's net change is now applied once, at commit, by chom_apply_pending(), called by chom
-- itself (see finalize.sql).
CREATE FUNCTION chom_apply_pending() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'chom_apply_pending_wrapper';
ALTER FUNCTION chom_apply_pending()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan;
REVOKE ALL ON FUNCTION chom_apply_pending() FROM PUBLIC;

-- The trigger functions only fold transition tables into backend memory now, and chom_pick_vps() reserves
-- with an advisory lock instead of a row lock of chom_vps_load: none of them needs its owner's rights.
ALTER FUNCTION chom_sites_aggregates() SECURITY INVOKER RESET plan_cache_mode;
ALTER FUNCTION chom_vps_registry() SECURITY INVOKER;
ALTER FUNCTION chom_pick_vps(integer, integer, text, text) SECURITY INVOKER;

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
AS 'MODULE_PATHNAME', 'chom_tenant_quota_wrapper';

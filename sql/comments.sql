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
COMMENT ON FUNCTION chom_drain_vps_deltas() IS
    'chom on Citus: moves the per-VPS changes queued by the workers'' commits into chom.vps_load (run it on a schedule on the coordinator); returns the VPS rows changed; 0 without Citus. DBA.';
COMMENT ON FUNCTION chom_fold_deltas() IS
    'chom: folds the busy tenants'' deltas (chom.tenant_deltas) into tenants now, as the tables'' owner; returns how many tenants had some; a background worker does the same on its own. DBA.';
COMMENT ON FUNCTION chom_drift_probe(integer, integer) IS
    'chom: drift in a random sample of tenants and VPSes within max_ms: sampled, drifted, vps_sampled, vps_drifted, elapsed_ms, complete; recorded in chom.runs (not on a standby).';
COMMENT ON FUNCTION chom_metrics() IS
    'chom: one row of typed figures for monitoring: objects by state, tenants'' fillfactor and HOT share, rows tracked, last check, repair and refresh, unfolded deltas (docs/monitoring.md).';
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

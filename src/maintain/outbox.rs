//! chom's outbox on Citus (docs/scaling.md): the per-VPS changes the workers' commits queue, and the drain
//! that moves them into the coordinator's `chom.vps_load`.
//!
//! On Citus the `sites` triggers fire on the workers, once per shard statement. The commit step there updates
//! the colocated `tenants` shard (exact and synchronous, as on one node) and appends the per-VPS net change to
//! the colocated shard of `chom.vps_delta`, in the same local transaction as the site rows. The coordinator's
//! `chom.vps_load` is moved only by [`chom_drain_vps_deltas`], which deletes the outbox rows and adds them up in
//! one distributed (two-phase) transaction: every change is counted exactly once. Per shard, live sites minus
//! the outbox rows equals what `chom.vps_load` holds from it, at any snapshot; the drift check and the repair
//! rest on that.

use crate::pg::errors::raise;
use crate::schema::identity::{run_as, Principal};
use crate::schema::layout::OUTBOX;
use crate::schema::queries::{self, Query};
use crate::schema::target::{Target, CHOM_SCHEMA};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Runs `work` with the Citus settings chom's DDL and repairs need (triggers on distributed and reference
/// tables; one connection per node, without which Citus refuses a write to `chom.vps_load` that reads the
/// reference table `vps_servers` after a parallel read of the shards), restored afterwards as a function's SET
/// clause would. Set before the transaction's first parallel operation, as Citus requires.
pub fn with_citus_settings<T>(target: &Target, work: impl FnOnce() -> T) -> T {
    if !target.layout.distributed() {
        return work();
    }
    let _scope = crate::pg::settings::SettingsScope::open();
    crate::pg::db::run(
        "SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true), \
                pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)",
        &[],
    );
    work()
}

/// Creates the outbox (distributed, colocated with `tenants`) when it is not there yet.
pub fn ensure_outbox(target: &Target) {
    let outbox = format!("{CHOM_SCHEMA}.{OUTBOX}");
    if crate::pg::db::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NULL", &[outbox.into()]).unwrap_or(true) {
        crate::pg::db::run(&queries::sql(target, Query::CreateOutbox), &[]);
        crate::pg::db::run(&queries::sql(target, Query::OutboxIdentity), &[]);
    }
    crate::pg::db::run(&queries::sql(target, Query::DistributeOutbox), &[target.table("tenants").into()]);
}

/// Drops what is left of chom's triggers on the shards once the distributed table's are gone (chom_uninstall()).
pub fn drop_shard_trigger_copies(target: &Target) {
    let failed: Vec<i64> = crate::pg::db::rows(
        &queries::sql(target, Query::DropShardTriggerCopies),
        &[target.table("sites").into()],
        |row| row.required(1),
    );
    if !failed.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
            format!("chom: could not drop chom's triggers on shards {failed:?} of sites"),
            Some("Check that every worker is reachable from the coordinator, then run chom_uninstall() again."),
        )
    }
}

/// Drops the outbox (chom_uninstall()).
pub fn drop_outbox(target: &Target) {
    crate::pg::db::run(&queries::sql(target, Query::DropOutbox), &[]);
}

/// Holds off drains of the outbox until this transaction ends: a lock on the outbox that Citus takes on every
/// node, where it lasts until the node's part of the transaction has committed. Writers (ROW EXCLUSIVE) are
/// not held up. A drain commits on the coordinator before its deletes commit on the workers; the lock makes a
/// second drain, or a recount against the outbox, wait for both.
pub fn hold_off_drains(target: &Target) {
    run_as(target, Principal::Chom, || crate::pg::db::run(&queries::sql(target, Query::HoldOffDrains), &[]));
}

/// Moves the per-VPS changes the workers' commits left in the outbox into `chom.vps_load`, in one distributed
/// transaction: the outbox rows are deleted where `chom.vps_load` is updated, so each change counts exactly
/// once whatever fails. An empty outbox costs one read of its shards. Returns the number of VPS rows changed.
/// Runs as chom, whose tables these are, whoever calls it.
pub fn drain(target: &Target) -> i64 {
    run_as(target, Principal::Chom, || {
        if crate::pg::db::one::<i32>(&queries::sql(target, Query::OutboxQueued), &[]).is_none() {
            return 0;
        }
        hold_off_drains(target);
        Spi::connect_mut(|client| {
            crate::pg::plans::execute(client, &queries::sql(target, Query::DrainVpsDeltas), &[], &[]).len() as i64
        })
    })
}

/// Applies the per-VPS changes that Citus workers' commits queued in chom's outbox to `chom.vps_load`, which
/// `chom_pick_vps()` reads (docs/scaling.md). Run it on the coordinator on a schedule (pg_cron, every few
/// seconds; see the README): between two runs the pick sees the counts of the last one. Returns the number of
/// VPS rows it changed; 0 on a database without Citus, where every commit updates `chom.vps_load` itself.
/// Errors: on a Citus worker (0A000); chom not installed (55000).
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_drain_vps_deltas() -> i64 {
    let target = crate::schema::resolve::require_installed();
    if !target.layout.distributed() {
        return 0;
    }
    drain(&target)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn without_citus_every_commit_updates_the_vps_loads_itself() {
        install_with_data();
        assert_eq!(count("SELECT chom_drain_vps_deltas()"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname = 'vps_delta'"), 0, "no outbox on one node");
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('chom.drain_interval')").unwrap().as_deref(),
            Some("1s")
        );
    }

    #[pg_test]
    fn on_a_worker_the_commit_step_addresses_the_colocated_shards() {
        use crate::schema::layout::Placement;
        use crate::schema::target::Target;
        let placement = Placement {
            shard: 102023,
            tenants: "tenants_102015".into(),
            tier_limits: "tier_limits_102001".into(),
            vps_delta: "vps_delta_102063".into(),
        };
        let shard = Target::new("public".into(), "public".into()).on_placement(Some(placement));
        assert!(shard.layout.distributed());
        assert_eq!(
            shard.render("UPDATE {tenants} SET x = 1; SELECT {tier_limits}, {vps_delta}, {sites}"),
            "UPDATE public.tenants_102015 SET x = 1; SELECT public.tier_limits_102001, chom.vps_delta_102063, public.sites"
        );
        let coordinator = Target::new("public".into(), "public".into());
        assert_eq!(coordinator.render("{tenants} {vps_delta}"), "public.tenants chom.vps_delta");
    }
}

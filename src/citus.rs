//! chom on a Citus cluster (docs/scaling.md): which kind of node this backend runs on, whether CHOM's tables
//! are distributed, the shards a trigger fires on, and the outbox that carries per-VPS changes from the
//! workers to the coordinator.
//!
//! On Citus the `sites` triggers fire on the workers, once per shard statement. The commit step there updates
//! the colocated `tenants` shard (exact and synchronous, as on one node) and appends the per-VPS net change to
//! the colocated shard of `chom.vps_delta`, in the same local transaction as the site rows. The coordinator's
//! `chom.vps_load` is moved only by [`chom_drain_vps_deltas`], which deletes the outbox rows and adds them up in
//! one distributed (two-phase) transaction: every change is counted exactly once. Per shard, live sites minus
//! the outbox rows equals what `chom.vps_load` holds from it, at any snapshot; the drift check and the repair
//! rest on that.

use crate::errors::raise;
use crate::identity::{run_as, Principal};
use crate::plans::types::{INT8, TEXT};
use crate::queries::{self, Query};
use crate::target::{Target, CHOM_SCHEMA};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// chom's outbox of per-VPS changes on Citus: a table of chom's schema, distributed by tenant and colocated
/// with `tenants`, created by chom_install() (it is not part of the extension: Citus distributes no table an
/// extension owns).
pub const OUTBOX: &str = "vps_delta";

/// What kind of node this backend runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    /// No Citus in this database.
    Plain,
    /// The Citus coordinator (group 0): chom's control plane and `chom.vps_load` live here.
    Coordinator,
    /// A Citus worker: it holds shards; chom's triggers fire here, its functions run on the coordinator.
    Worker,
}

/// The shards colocated with one shard of `sites` on a worker, by relation name (in CHOM's schema, and
/// chom's for the outbox).
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub shard: i64,
    pub tenants: String,
    pub tier_limits: String,
    pub vps_delta: String,
}

/// What a relation a trigger of chom's fired on is, when it is not one of CHOM's tables by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Shard {
    /// a shard of CHOM's distributed `sites`, with its colocated shards
    Sites(Placement),
    /// the copy of CHOM's reference table `vps_servers` on this node
    VpsServers,
}

thread_local! {
    static NODE: Cell<Option<Node>> = const { Cell::new(None) };
    /// What each relation chom's triggers fired on in this backend is (None: no shard of CHOM's tables).
    static SHARDS: std::mem::ManuallyDrop<RefCell<HashMap<pg_sys::Oid, Option<Shard>>>> =
        std::mem::ManuallyDrop::new(RefCell::new(HashMap::new()));
}

/// Drops what this backend remembers of the cluster (any relcache invalidation: a shard move, a split, DDL).
pub fn forget() {
    NODE.with(|node| node.set(None));
    SHARDS.with(|shards| shards.borrow_mut().clear());
}

/// The kind of node this backend runs on (looked up once per backend).
pub fn node() -> Node {
    if let Some(node) = NODE.with(Cell::get) {
        return node;
    }
    let citus: bool = crate::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') \
            AND pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL",
        &[],
    )
    .unwrap_or(false);
    let node = if !citus {
        Node::Plain
    } else {
        match crate::db::one::<i32>("SELECT groupid FROM pg_catalog.pg_dist_local_group", &[]) {
            Some(0) => Node::Coordinator,
            _ => Node::Worker,
        }
    };
    NODE.with(|cached| cached.set(Some(node)));
    node
}

/// The target with its layout: distributed when Citus knows CHOM's `sites`.
pub fn with_layout(mut target: Target) -> Target {
    target.distributed = node() != Node::Plain
        && crate::db::one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = pg_catalog.to_regclass($1))",
            &[target.table("sites").into()],
        )
        .unwrap_or(false);
    target
}

/// Refuses to run `what` anywhere but on the coordinator of a Citus cluster (on one node it always runs).
pub fn require_coordinator(what: &str) {
    if node() == Node::Worker {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{what} runs on the Citus coordinator, not on a worker"),
            Some("Connect to the coordinator: chom's aggregates, placement and control plane are answered there."),
        )
    }
}

/// Refuses to install on Citus from inside `CREATE EXTENSION chom` (finalize.sql's install on create): Citus
/// repeats the command on the workers only after the coordinator's script has run, and chom's outbox, a
/// distributed table in chom's schema, cannot be created before the workers have that schema.
pub fn refuse_inside_create_extension() {
    // SAFETY: reads a backend-local flag of Postgres.
    if unsafe { pg_sys::creating_extension } {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "on Citus, chom is installed on CHOM's tables after CREATE EXTENSION chom",
            Some("Run SELECT * FROM chom_install(); on the coordinator once CREATE EXTENSION chom has committed."),
        )
    }
}

/// For a trigger that fired on relation `relid` named `relname` in CHOM's schema, on a Citus node: which shard
/// of CHOM's `table` it is; None when it is none.
pub fn shard_of(target: &Target, table: &str, relid: pg_sys::Oid, relname: &str) -> Option<Shard> {
    if let Some(known) = SHARDS.with(|shards| shards.borrow().get(&relid).cloned()) {
        return known;
    }
    let shard: Option<i64> =
        relname.strip_prefix(table).and_then(|rest| rest.strip_prefix('_')).and_then(|id| id.parse().ok());
    let found = match (shard, node()) {
        (Some(shard), Node::Worker | Node::Coordinator) => lookup(target, table, shard),
        _ => None,
    };
    SHARDS.with(|shards| shards.borrow_mut().insert(relid, found.clone()));
    found
}

/// Whether shard `shard` belongs to CHOM's `table`, and for `sites` its colocated shards.
fn lookup(target: &Target, table: &str, shard: i64) -> Option<Shard> {
    let belongs: bool = crate::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_shard WHERE shardid = $1 AND logicalrelid = pg_catalog.to_regclass($2))",
        &[shard.into(), target.table(table).into()],
    )
    .unwrap_or(false);
    match (belongs, table) {
        (false, _) => None,
        (true, "sites") => Some(Shard::Sites(colocated(target, shard))),
        (true, _) => Some(Shard::VpsServers),
    }
}

/// The shards colocated with shard `shard` of CHOM's `sites`.
fn colocated(target: &Target, shard: i64) -> Placement {
    let row = Spi::connect(|client| {
        let rows = crate::plans::read(
            client,
            &queries::sql(target, Query::ColocatedShards),
            &[INT8, TEXT, TEXT, TEXT],
            &[
                shard.into(),
                target.table("tenants").into(),
                format!("{CHOM_SCHEMA}.{OUTBOX}").into(),
                target.table("tier_limits").into(),
            ],
        );
        rows.into_iter().next().map(|row| {
            (row.get::<i64>(1).ok().flatten(), row.get::<i64>(2).ok().flatten(), row.get::<i64>(3).ok().flatten())
        })
    });
    let Some((Some(tenants), Some(vps_delta), tier_limits)) = row else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("chom: shard {shard} of sites has no colocated shard of tenants or of {CHOM_SCHEMA}.{OUTBOX} on this node"),
            Some("chom_install() on the coordinator creates the outbox colocated with tenants; run chom_status() there."),
        )
    };
    Placement {
        shard,
        tenants: format!("tenants_{tenants}"),
        tier_limits: tier_limits.map_or_else(|| "tier_limits".to_string(), |id| format!("tier_limits_{id}")),
        vps_delta: format!("{OUTBOX}_{vps_delta}"),
    }
}

/// Runs `work` with the Citus settings chom's DDL and repairs need (triggers on distributed and reference
/// tables; one connection per node, without which Citus refuses a write to `chom.vps_load` that reads the
/// reference table `vps_servers` after a parallel read of the shards), restored afterwards as a function's SET
/// clause would. Set before the transaction's first parallel operation, as Citus requires.
pub fn with_citus_settings<T>(target: &Target, work: impl FnOnce() -> T) -> T {
    if !target.distributed {
        return work();
    }
    // SAFETY: a GUC nest level opened and closed around the settings, as fmgr does for a SET clause; an error
    // in between aborts the (sub)transaction, which unwinds the level.
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    crate::db::run(
        "SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true), \
                pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)",
        &[],
    );
    let result = work();
    // SAFETY: closes the level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Refuses a Citus layout chom cannot keep exact: `sites` must be distributed by its tenant, `tenants` by its
/// id, both colocated, and `vps_servers` a reference table.
pub fn check_layout(target: &Target) {
    let problems: Option<String> = crate::db::one(
        &queries::sql(target, Query::CitusLayoutProblems),
        &[
            target.table("sites").into(),
            target.table("tenants").into(),
            target.table("vps_servers").into(),
            target.column("sites", "tenant_id").to_string().into(),
            target.column("tenants", "id").to_string().into(),
        ],
    );
    if let Some(problems) = problems {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("chom cannot be installed on this Citus layout: {problems}"),
            Some("Distribute CHOM's schema with sql/citus/distribute.sql (see docs/scaling.md)."),
        )
    }
}

/// Creates the outbox (distributed, colocated with `tenants`) when it is not there yet.
pub fn ensure_outbox(target: &Target) {
    let outbox = format!("{CHOM_SCHEMA}.{OUTBOX}");
    if crate::db::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NULL", &[outbox.into()]).unwrap_or(true) {
        crate::db::run(&queries::sql(target, Query::CreateOutbox), &[]);
        crate::db::run(&queries::sql(target, Query::OutboxIdentity), &[]);
    }
    crate::db::run(&queries::sql(target, Query::DistributeOutbox), &[target.table("tenants").into()]);
}

/// Drops what is left of chom's triggers on the shards once the distributed table's are gone (chom_uninstall()).
pub fn drop_shard_trigger_copies(target: &Target) {
    let failed: Vec<i64> =
        crate::db::rows(&queries::sql(target, Query::DropShardTriggerCopies), &[target.table("sites").into()], |row| {
            row.required(1)
        });
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
    crate::db::run(&queries::sql(target, Query::DropOutbox), &[]);
}

/// Holds off drains of the outbox until this transaction ends: a lock on the outbox that Citus takes on every
/// node, where it lasts until the node's part of the transaction has committed. Writers (ROW EXCLUSIVE) are
/// not held up. A drain commits on the coordinator before its deletes commit on the workers; the lock makes a
/// second drain, or a recount against the outbox, wait for both.
pub fn hold_off_drains(target: &Target) {
    run_as(target, Principal::Chom, || crate::db::run(&queries::sql(target, Query::HoldOffDrains), &[]));
}

/// Moves the per-VPS changes the workers' commits left in the outbox into `chom.vps_load`, in one distributed
/// transaction: the outbox rows are deleted where `chom.vps_load` is updated, so each change counts exactly
/// once whatever fails. An empty outbox costs one read of its shards. Returns the number of VPS rows changed.
/// Runs as chom, whose tables these are, whoever calls it.
pub fn drain(target: &Target) -> i64 {
    run_as(target, Principal::Chom, || {
        if crate::db::one::<i32>(&queries::sql(target, Query::OutboxQueued), &[]).is_none() {
            return 0;
        }
        hold_off_drains(target);
        Spi::connect_mut(|client| {
            crate::plans::execute(client, &queries::sql(target, Query::DrainVpsDeltas), &[], &[]).len() as i64
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
    let target = crate::target::require_installed();
    if !target.distributed {
        return 0;
    }
    drain(&target)
}

/// The shards of `sites` on which one of chom's triggers is missing or disabled, as `trigger name → shards`.
pub fn shards_missing_triggers(target: &Target, triggers: &[&str]) -> HashMap<String, Vec<i64>> {
    let names: Vec<String> = triggers.iter().map(|t| t.to_string()).collect();
    let rows = crate::db::rows(
        &queries::sql(target, Query::ShardsMissingTriggers),
        &[target.table("sites").into(), names.into()],
        |row| (row.required::<String>(1), row.required::<i64>(2)),
    );
    let mut missing: HashMap<String, Vec<i64>> = HashMap::new();
    for (trigger, shard) in rows {
        missing.entry(trigger).or_default().push(shard);
    }
    missing
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
        use crate::citus::Placement;
        use crate::target::Target;
        let placement = Placement {
            shard: 102023,
            tenants: "tenants_102015".into(),
            tier_limits: "tier_limits_102001".into(),
            vps_delta: "vps_delta_102063".into(),
        };
        let shard = Target::new("public".into(), "public".into()).on_placement(Some(placement));
        assert!(shard.distributed);
        assert_eq!(
            shard.render("UPDATE {tenants} SET x = 1; SELECT {tier_limits}, {vps_delta}, {sites}"),
            "UPDATE public.tenants_102015 SET x = 1; SELECT public.tier_limits_102001, chom.vps_delta_102063, public.sites"
        );
        let coordinator = Target::new("public".into(), "public".into());
        assert_eq!(coordinator.render("{tenants} {vps_delta}"), "public.tenants chom.vps_delta");
    }
}

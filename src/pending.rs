//! The transaction's pending changes: what its statements did to the tenant aggregates and the per-VPS loads,
//! held in backend memory until commit.
//!
//! The statement triggers fold each statement's net change into the frame of the current (sub)transaction;
//! `RELEASE` merges a frame into its parent, `ROLLBACK TO SAVEPOINT` (or a failed PL/pgSQL block) drops it.
//! At pre-commit (and pre-prepare, for two-phase commit) the frames are folded into one [`Changes`] and
//! applied once, in one lock order (tenants by id, then VPS rows by id, see [`crate::aggregates`]): row locks
//! on `tenants` and `chom.vps_load` are held only while the transaction commits, so no two transactions can
//! deadlock on chom's account, whatever order they write sites in.
//!
//! chom's read functions overlay the folded changes on the stored values, so a transaction sees its own
//! writes through them (read-your-writes); the raw columns change at commit, for everybody at once.
//!
//! On a Citus worker the changes of each shard statement are applied when it ends instead ([`apply_now`]), to
//! the shard's colocated `tenants` and outbox shards: one target per shard.

use crate::target::Target;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode, PgTryBuilder, Uuid};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::mem::ManuallyDrop;

/// A uuid as Postgres stores it; BTreeMaps keyed by it iterate in Postgres' uuid order (bytewise), the lock
/// order.
pub type UuidBytes = [u8; 16];

/// The most tenants one part of the changes (a statement's fold, a (sub)transaction's frame) keeps a change
/// for. Past it, the part stops counting per tenant and every tenant is recounted at commit instead (a
/// transaction that touches this many tenants is a bulk operation, which a recount of every tenant does not
/// slow by much), so a fold takes at most about 12 MB, whatever the number of tenants a transaction touches.
/// High enough for the bulk inserts an application runs (100,000 sites over 200,000 tenants touch about
/// 80,000 of them). VPSes are not bounded this way: there are as many entries as VPSes, a few thousand.
pub const TENANTS_FOLDED_AT_MOST: usize = 1 << 18;

/// A net change to the aggregates: per tenant (live sites, storage MB), per VPS (live sites), and the
/// wholesale events that restart counts from zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// `TRUNCATE sites` ran: every tenant's and VPS's count restarts from zero (deltas before it are void).
    pub sites_truncated: bool,
    /// `TRUNCATE vps_servers` ran: chom.vps_load restarts empty; the VPSes inserted since are in `vps_touched`.
    pub vps_truncated: bool,
    /// More tenants changed than [`TENANTS_FOLDED_AT_MOST`]: every tenant is recounted at commit, and
    /// `tenants` and `tenant_recounts` stay empty.
    pub all_tenants_recounted: bool,
    pub tenants: BTreeMap<UuidBytes, (i64, i128)>,
    pub vps: BTreeMap<UuidBytes, i64>,
    /// VPSes inserted, updated or deleted: their copy of the pick's attributes is refreshed at commit.
    pub vps_touched: BTreeSet<UuidBytes>,
    /// Tenants recounted from scratch at commit (a stale chom_tenant_stats() read, a recount beside pending
    /// deltas); a recount supersedes their deltas.
    pub tenant_recounts: BTreeSet<UuidBytes>,
    /// VPSes recounted from scratch at commit, likewise.
    pub vps_recounts: BTreeSet<UuidBytes>,
    /// One of the tenants whose sites changed (even when their changes cancel out): on a Citus worker, the
    /// distribution value of the outbox row that carries the per-VPS changes (any tenant of the shard will do).
    pub some_tenant: Option<UuidBytes>,
}

impl Changes {
    /// Counts a live site row in (`sign` 1) or out (`sign` -1).
    pub fn add_site(&mut self, tenant: UuidBytes, vps: Option<UuidBytes>, storage_mb: i64, sign: i64) {
        self.some_tenant.get_or_insert(tenant);
        if !self.all_tenants_recounted {
            let entry = self.tenants.entry(tenant).or_default();
            entry.0 += sign;
            entry.1 += i128::from(sign) * i128::from(storage_mb);
            self.bound();
        }
        if let Some(vps) = vps {
            *self.vps.entry(vps).or_default() += sign;
        }
    }

    /// Marks every tenant for a recount at commit, which supersedes every per-tenant change.
    pub fn recount_all_tenants(&mut self) {
        self.all_tenants_recounted = true;
        self.tenants = BTreeMap::new();
        self.tenant_recounts = BTreeSet::new();
    }

    /// Keeps the per-tenant part within [`TENANTS_FOLDED_AT_MOST`].
    pub fn bound(&mut self) {
        if self.tenants.len() + self.tenant_recounts.len() > TENANTS_FOLDED_AT_MOST {
            self.recount_all_tenants();
        }
    }

    pub fn truncate_sites(&mut self) {
        self.tenants.clear();
        self.vps.clear();
        self.sites_truncated = true;
    }

    pub fn truncate_vps(&mut self) {
        self.vps.clear();
        self.vps_touched.clear();
        self.vps_recounts.clear();
        self.vps_truncated = true;
    }

    /// Appends the changes of a later (or inner, committed) part of the transaction.
    pub fn merge(&mut self, later: Changes) {
        if later.sites_truncated {
            self.truncate_sites();
        }
        if later.vps_truncated {
            self.truncate_vps();
        }
        if later.all_tenants_recounted {
            self.recount_all_tenants();
        }
        if !self.all_tenants_recounted {
            for (id, (sites, storage)) in later.tenants {
                let entry = self.tenants.entry(id).or_default();
                entry.0 += sites;
                entry.1 += storage;
            }
            self.tenant_recounts.extend(later.tenant_recounts);
            self.bound();
        }
        for (id, sites) in later.vps {
            *self.vps.entry(id).or_default() += sites;
        }
        self.vps_touched.extend(later.vps_touched);
        self.vps_recounts.extend(later.vps_recounts);
        self.some_tenant = self.some_tenant.or(later.some_tenant);
    }

    /// Drops the ids whose changes cancelled out (an update of an unrelated column, a move and back).
    pub fn retain_changes(&mut self) {
        self.tenants.retain(|_, (sites, storage)| *sites != 0 || *storage != 0);
        self.vps.retain(|_, sites| *sites != 0);
    }

    pub fn is_empty(&self) -> bool {
        *self == Changes { some_tenant: self.some_tenant, ..Changes::default() }
    }

    /// Whether anything here changes what chom_vps_load will hold at commit.
    pub fn touches_vps(&self) -> bool {
        self.sites_truncated
            || self.vps_truncated
            || !self.vps.is_empty()
            || !self.vps_touched.is_empty()
            || !self.vps_recounts.is_empty()
    }

    /// A tenant's stored (sites, storage) with this transaction's changes laid over them, as the commit will
    /// leave them; None when the tenant is recounted at commit (the stored values say nothing then).
    pub fn tenant_after(&self, tenant: &UuidBytes, stored: (i32, i64)) -> Option<(i32, i64)> {
        let (sites_change, storage_change) = self.tenant_delta(tenant)?;
        let (sites, storage) = if self.sites_truncated { (0, 0) } else { stored };
        let out_of_range = || -> ! {
            crate::errors::raise(
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                "chom: a tenant's aggregates are out of range",
                None,
            )
        };
        Some((
            i32::try_from(i64::from(sites) + sites_change).unwrap_or_else(|_| out_of_range()),
            i64::try_from(i128::from(storage) + storage_change).unwrap_or_else(|_| out_of_range()),
        ))
    }

    /// The tenant's (sites, storage) change, or None when it is recounted at commit (its stored value will be
    /// replaced by a recount, which already sees this transaction's rows).
    pub fn tenant_delta(&self, tenant: &UuidBytes) -> Option<(i64, i128)> {
        (!self.all_tenants_recounted && !self.tenant_recounts.contains(tenant))
            .then(|| self.tenants.get(tenant).copied().unwrap_or_default())
    }
}

/// What the read queries lay over the stored values of tenants (see sql/queries.sql): pending ids with their
/// changes, whether the stored values restart from zero, the ids recounted at commit.
pub struct TenantOverlay {
    pub ids: Vec<Uuid>,
    pub sites: Vec<i64>,
    pub storage: Vec<i64>,
    pub zero: bool,
    pub recounted: Vec<Uuid>,
    /// Every tenant is recounted at commit (the ids above are then empty).
    pub all_recounted: bool,
}

/// The same for chom.vps_load, with the VPSes whose row is refreshed from vps_servers at commit.
pub struct VpsOverlay {
    pub ids: Vec<Uuid>,
    pub sites: Vec<i64>,
    pub zero: bool,
    pub refreshed: Vec<Uuid>,
    pub all_refreshed: bool,
    pub recounted: Vec<Uuid>,
}

fn uuids<'a>(ids: impl Iterator<Item = &'a UuidBytes>) -> Vec<Uuid> {
    ids.map(|id| Uuid::from_bytes(*id)).collect()
}

impl Changes {
    pub fn tenant_overlay(&self) -> TenantOverlay {
        let deltas = self.tenants.iter().filter(|(id, _)| !self.tenant_recounts.contains(*id));
        let (ids, (sites, storage)): (Vec<Uuid>, (Vec<i64>, Vec<i64>)) = deltas
            .map(|(id, (sites, storage))| {
                let storage = i64::try_from(*storage).unwrap_or_else(|_| {
                    crate::errors::raise(
                        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                        "chom: this transaction changes a tenant's storage by more than bigint can hold",
                        None,
                    )
                });
                (Uuid::from_bytes(*id), (*sites, storage))
            })
            .unzip();
        TenantOverlay {
            ids,
            sites,
            storage,
            zero: self.sites_truncated,
            recounted: uuids(self.tenant_recounts.iter()),
            all_recounted: self.all_tenants_recounted,
        }
    }

    pub fn vps_overlay(&self) -> VpsOverlay {
        let deltas = self.vps.iter().filter(|(id, _)| !self.vps_recounts.contains(*id));
        let (ids, sites): (Vec<Uuid>, Vec<i64>) = deltas.map(|(id, sites)| (Uuid::from_bytes(*id), *sites)).unzip();
        VpsOverlay {
            ids,
            sites,
            zero: self.sites_truncated || self.vps_truncated,
            refreshed: uuids(self.vps_touched.iter()),
            all_refreshed: self.vps_truncated,
            recounted: uuids(self.vps_recounts.iter()),
        }
    }
}

/// One open (sub)transaction's part of the changes, per target (index into [`Pending::targets`]).
struct Frame {
    subtransaction: pg_sys::SubTransactionId,
    changes: BTreeMap<usize, Changes>,
}

#[derive(Default)]
struct Pending {
    /// Where the changes apply: one installation per database, so one target, except on a Citus worker, where
    /// each shard of `sites` the transaction wrote is a target of its own (its colocated shards).
    targets: Vec<Target>,
    /// Innermost last; only (sub)transactions that recorded something have a frame.
    frames: Vec<Frame>,
}

thread_local! {
    /// Never dropped, like the plan cache ([`crate::plans`]): no chom code runs inside the backend's exit(),
    /// where Postgres has already shut down (docs/crash-hunt.md). A transaction's end empties it.
    static PENDING: ManuallyDrop<RefCell<Pending>> = ManuallyDrop::new(RefCell::new(Pending::default()));
}

fn current_subtransaction() -> pg_sys::SubTransactionId {
    // SAFETY: reads backend-local transaction state.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

fn shard(target: &Target) -> Option<i64> {
    target.placement.as_ref().map(|placement| placement.shard)
}

/// Records changes in the current (sub)transaction's frame.
pub fn record(target: &Target, record: impl FnOnce(&mut Changes)) {
    let subtransaction = current_subtransaction();
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if let Some(existing) = pending.targets.iter().find(|existing| existing.schema != target.schema) {
            crate::errors::raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "chom: one transaction writes CHOM's tables in two schemas ({} and {})",
                    existing.schema, target.schema
                ),
                Some("chom maintains one installation per database; see chom_status()."),
            )
        }
        let index = match pending.targets.iter().position(|existing| shard(existing) == shard(target)) {
            Some(index) => index,
            None => {
                pending.targets.push(target.clone());
                pending.targets.len() - 1
            }
        };
        if pending.frames.last().is_none_or(|frame| frame.subtransaction != subtransaction) {
            pending.frames.push(Frame { subtransaction, changes: BTreeMap::new() });
        }
        let frame = pending.frames.last_mut().expect("a frame was just ensured");
        let changes = frame.changes.entry(index).or_default();
        record(changes);
        changes.bound();
    });
}

/// This transaction's changes so far, folded (empty when it has none). chom's read functions run where there is
/// one target (one node, or the Citus coordinator).
pub fn folded() -> Changes {
    PENDING.with(|pending| {
        let pending = pending.borrow();
        let mut all = Changes::default();
        for frame in &pending.frames {
            for changes in frame.changes.values() {
                all.merge(changes.clone());
            }
        }
        all.retain_changes();
        all
    })
}

/// Takes the whole transaction's changes out, folded per target, in shard order; empty when there are none.
fn take() -> Vec<(Target, Changes)> {
    let Pending { targets, frames } = PENDING.with(|pending| pending.take());
    let mut all: Vec<Changes> = vec![Changes::default(); targets.len()];
    for frame in frames {
        for (index, changes) in frame.changes {
            all[index].merge(changes);
        }
    }
    let mut taken: Vec<(Target, Changes)> = targets
        .into_iter()
        .zip(all)
        .filter_map(|(target, mut changes)| {
            changes.retain_changes();
            (!changes.is_empty()).then_some((target, changes))
        })
        .collect();
    taken.sort_by_key(|(target, _)| shard(target));
    taken
}

/// After `ids` were recounted from scratch in this transaction, mid-way: the recount saw the transaction's
/// own rows, so their pending deltas must not be added on top, and a TRUNCATE pending in it must not zero them
/// at commit. They are recounted again at commit, which both rules respect.
pub fn recounted(target: &Target, tenants: &[Uuid], vps: &[Uuid]) {
    if folded().is_empty() {
        return;
    }
    record(target, |changes| {
        changes.tenant_recounts.extend(tenants.iter().map(|id| *id.as_bytes()));
        changes.vps_recounts.extend(vps.iter().map(|id| *id.as_bytes()));
    });
}

/// Forgets the transaction's changes (chom_uninstall() removes what they would apply to).
pub fn discard() {
    PENDING.with(|pending| pending.take());
}

fn end_subtransaction(subtransaction: pg_sys::SubTransactionId, parent: pg_sys::SubTransactionId, committed: bool) {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        while pending.frames.last().is_some_and(|frame| frame.subtransaction >= subtransaction) {
            let frame = pending.frames.pop().expect("checked above");
            if !committed {
                continue;
            }
            match pending.frames.last_mut() {
                Some(outer) if outer.subtransaction == parent => {
                    for (index, changes) in frame.changes {
                        outer.changes.entry(index).or_default().merge(changes);
                    }
                }
                _ => pending.frames.push(Frame { subtransaction: parent, changes: frame.changes }),
            }
            break;
        }
    });
}

/// Applies the transaction's changes, in this library, from its own transaction callback: at pre-commit and
/// pre-prepare. Rows of CHOM's tables are written as their owner and chom's own rows as chom, each inside a
/// security-restricted operation ([`crate::identity`]); an error here fails the COMMIT and rolls the whole
/// transaction back, with a DETAIL naming chom's step.
fn apply_at_commit() {
    // The statements that apply the changes could, through the application's own triggers on tenants, write
    // sites again: apply until nothing is left, a bounded number of rounds.
    for _ in 0..8 {
        let taken = take();
        if taken.is_empty() {
            return;
        }
        // SAFETY: at commit no statement is running, so there is no active snapshot for SPI: one is pushed
        // (each of chom's statements then takes a fresh one of its own, as in any READ COMMITTED statement) and
        // popped again; after an error, the transaction's abort clears the snapshot stack.
        PgTryBuilder::new(move || unsafe {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            apply(taken);
            pg_sys::PopActiveSnapshot();
        })
        .catch_others(|caught| match caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => failed_at_commit(&report),
            panic => panic.rethrow(),
        })
        .execute();
    }
    crate::errors::raise(
        PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
        "chom: applying the transaction's changes kept producing new ones",
        Some("A trigger on tenants or chom.vps_load writes sites; chom cannot settle its aggregates."),
    )
}

/// Applies changes taken out of the pending frames, to the installation as it is now (the cache is dropped by
/// any change to CHOM's tables: the transaction may have renamed a column chom uses since it wrote).
fn apply(taken: Vec<(Target, Changes)>) {
    for (target, changes) in taken {
        if let Some(now) = crate::target::installed().filter(|now| now.schema == target.schema) {
            crate::aggregates::apply(&now.on_placement(target.placement), &changes);
        }
        // else chom was uninstalled from these tables in this very transaction: nothing is left to maintain
    }
}

/// Applies the changes recorded so far right away, as at commit; an error fails the statement. For a Citus
/// worker's shard statements: there the commit is a PREPARE TRANSACTION sent to every node at once, and row
/// locks first taken then would wait on transactions prepared on other nodes, a cycle Citus's deadlock
/// detector does not see (the transactions would hang). Taken during the statement, they are ordinary waits,
/// which it resolves.
pub fn apply_now() {
    apply(take());
}

/// Raises again, with its SQLSTATE, message and hint, an error that stopped the changes from being applied,
/// with a DETAIL saying that it was chom's step of the COMMIT and that nothing of the transaction was kept.
fn failed_at_commit(report: &ErrorReportWithLevel) -> ! {
    let mut detail = String::from(
        "chom was applying this transaction's changes to the cached aggregates at commit, as the owner of CHOM's \
         tables in a security-restricted operation: the COMMIT failed and the whole transaction was rolled back.",
    );
    if let Some(original) = report.detail() {
        detail = format!("{original} {detail}");
    }
    let mut error = ErrorReport::new(report.sql_error_code(), report.message().to_string(), "chom").set_detail(detail);
    if let Some(hint) = report.hint() {
        error = error.set_hint(hint.to_string());
    }
    error.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Kept for chom 0.3.0's library, which looks this function up by name at commit: since 0.4.0 each library
/// applies its own transaction's changes, so a call always finds nothing to apply (42501). A transaction that
/// wrote through 0.3.0's library and commits after `ALTER EXTENSION chom UPDATE` is therefore rolled back
/// whole, never half-applied.
#[pg_extern(volatile, parallel_unsafe)]
fn chom_apply_pending() {
    crate::errors::raise_with_detail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "chom_apply_pending() is called by chom at commit only",
        "A transaction that wrote through chom 0.3.0's library and commits after ALTER EXTENSION chom UPDATE \
         reaches this function; it is rolled back whole.",
        "Retry the transaction: it now runs with this release's library.",
    )
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => apply_at_commit(),
        pg_sys::XactEvent::XACT_EVENT_PARALLEL_PRE_COMMIT => {}
        _ => discard(),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subtransaction_event(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => end_subtransaction(subtransaction, parent, true),
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => end_subtransaction(subtransaction, parent, false),
        _ => {}
    }
}

/// Registers the transaction callbacks; called once from _PG_init.
pub fn register_callbacks() {
    // SAFETY: static functions registered as Postgres expects from _PG_init.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_transaction_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subtransaction_event), std::ptr::null_mut());
    }
}

#[cfg(test)]
mod unit_tests {
    use super::Changes;

    fn id(first: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = first;
        id
    }

    #[test]
    fn a_move_between_tenants_nets_out_per_tenant() {
        let mut changes = Changes::default();
        changes.add_site(id(1), Some(id(9)), 100, -1);
        changes.add_site(id(2), Some(id(9)), 100, 1);
        changes.retain_changes();
        assert_eq!(changes.tenants[&id(1)], (-1, -100));
        assert_eq!(changes.tenants[&id(2)], (1, 100));
        assert!(changes.vps.is_empty(), "same VPS before and after: no VPS change");
    }

    #[test]
    fn ids_come_out_in_uuid_order() {
        let mut changes = Changes::default();
        for first in [7u8, 1, 200, 3] {
            changes.add_site(id(first), None, 1, 1);
        }
        let firsts: Vec<u8> = changes.tenants.keys().map(|k| k[0]).collect();
        assert_eq!(firsts, vec![1, 3, 7, 200]);
    }

    #[test]
    fn a_truncate_voids_what_came_before_it_but_not_after() {
        let mut before = Changes::default();
        before.add_site(id(1), Some(id(9)), 10, 1);
        let mut truncate = Changes::default();
        truncate.truncate_sites();
        truncate.add_site(id(2), Some(id(8)), 5, 1);
        before.merge(truncate);
        assert!(before.sites_truncated);
        assert_eq!(before.tenants.keys().copied().collect::<Vec<_>>(), vec![id(2)]);
        assert_eq!(before.vps.keys().copied().collect::<Vec<_>>(), vec![id(8)]);
    }

    fn tenant_id(n: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn past_the_bound_every_tenant_is_recounted_and_nothing_is_kept_per_tenant() {
        let mut changes = Changes::default();
        let limit = super::TENANTS_FOLDED_AT_MOST as u32;
        for n in 0..limit {
            changes.add_site(tenant_id(n), Some(id(9)), 1, 1);
        }
        assert!(!changes.all_tenants_recounted, "at the bound, still per tenant");
        assert_eq!(changes.tenant_delta(&tenant_id(0)), Some((1, 1)));
        changes.add_site(tenant_id(limit), Some(id(9)), 1, 1);
        assert!(changes.all_tenants_recounted);
        assert!(changes.tenants.is_empty() && changes.tenant_recounts.is_empty());
        assert_eq!(changes.tenant_delta(&tenant_id(0)), None, "every tenant's value is a recount now");
        assert_eq!(changes.vps[&id(9)], i64::from(limit) + 1, "VPS changes are still counted");
        changes.add_site(tenant_id(limit + 1), None, 1, 1);
        assert!(changes.tenants.is_empty(), "nothing more is kept per tenant");
    }

    #[test]
    fn a_bounded_part_merged_into_another_makes_it_recount_every_tenant() {
        let mut earlier = Changes::default();
        earlier.add_site(id(1), None, 10, 1);
        let mut later = Changes::default();
        later.recount_all_tenants();
        earlier.merge(later);
        assert!(earlier.all_tenants_recounted && earlier.tenants.is_empty());
        let mut small = Changes::default();
        small.add_site(id(2), None, 10, 1);
        small.tenant_recounts.insert(id(3));
        earlier.merge(small);
        assert!(earlier.tenants.is_empty() && earlier.tenant_recounts.is_empty());
        assert!(!earlier.is_empty());
    }

    #[test]
    fn a_recount_supersedes_the_tenant_delta() {
        let mut changes = Changes::default();
        changes.add_site(id(1), None, 10, 1);
        assert_eq!(changes.tenant_delta(&id(1)), Some((1, 10)));
        changes.tenant_recounts.insert(id(1));
        assert_eq!(changes.tenant_delta(&id(1)), None);
        assert_eq!(changes.tenant_delta(&id(2)), Some((0, 0)));
    }
}

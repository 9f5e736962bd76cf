//! The transaction's pending changes: what its statements did to the tenant aggregates and the per-VPS loads,
//! held in backend memory until commit.
//!
//! The statement triggers fold each statement's net change into the frame of the current (sub)transaction;
//! `RELEASE` merges a frame into its parent, `ROLLBACK TO SAVEPOINT` (or a failed PL/pgSQL block) drops it.
//! At pre-commit (and pre-prepare, for two-phase commit) the frames are folded into one [`Changes`] and
//! applied once, in one lock order (tenants by id, then VPS rows by id, see [`crate::maintain::triggers`]): row locks
//! on `tenants` and `chom.vps_load` are held only while the transaction commits, so no two transactions can
//! deadlock on chom's account, whatever order they write sites in.
//!
//! chom's read functions overlay the folded changes on the stored values, so a transaction sees its own
//! writes through them (read-your-writes); the raw columns change at commit, for everybody at once.
//!
//! On a Citus worker the changes of each shard statement are applied when it ends instead ([`apply_now`]), to
//! the shard's colocated `tenants` and outbox shards: one target per shard.

use crate::maintain::changes::Changes;
use crate::schema::target::Target;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode, PgTryBuilder, Uuid};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::mem::ManuallyDrop;

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
    /// Never dropped, like the plan cache ([`crate::pg::plans`]): no chom code runs inside the backend's exit(),
    /// where Postgres has already shut down (docs/crash-hunt.md). A transaction's end empties it.
    static PENDING: ManuallyDrop<RefCell<Pending>> = ManuallyDrop::new(RefCell::new(Pending::default()));
}

fn current_subtransaction() -> pg_sys::SubTransactionId {
    // SAFETY: reads backend-local transaction state.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

fn shard(target: &Target) -> Option<i64> {
    target.layout.placement().map(|placement| placement.shard)
}

/// Records changes in the current (sub)transaction's frame.
pub fn record(target: &Target, record: impl FnOnce(&mut Changes)) {
    let subtransaction = current_subtransaction();
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if let Some(existing) = pending.targets.iter().find(|existing| existing.schema != target.schema) {
            crate::pg::errors::raise(
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
/// security-restricted operation ([`crate::schema::identity`]); an error here fails the COMMIT and rolls the whole
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
    crate::pg::errors::raise(
        PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
        "chom: applying the transaction's changes kept producing new ones",
        Some("A trigger on tenants or chom.vps_load writes sites; chom cannot settle its aggregates."),
    )
}

/// Applies changes taken out of the pending frames, to the installation as it is now (the cache is dropped by
/// any change to CHOM's tables: the transaction may have renamed a column chom uses since it wrote).
fn apply(taken: Vec<(Target, Changes)>) {
    for (target, changes) in taken {
        if let Some(now) = crate::schema::resolve::installed().filter(|now| now.schema == target.schema) {
            crate::maintain::commit::apply(&now.on_placement(target.layout.placement().cloned()), &changes);
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
    crate::pg::errors::raise_with_detail(
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

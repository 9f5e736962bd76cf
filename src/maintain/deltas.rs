//! The busy tenant: changes that a committing writer could not apply to a tenant's row in place, kept as
//! insert-only rows of `chom.tenant_deltas` and folded into `tenants` later (docs/busy-tenant.md).
//!
//! chom's commit step updates the tenant's row, and the row lock is held until the commit record is flushed:
//! concurrent durable commits of one tenant would flush one at a time. A writer that finds the row held by
//! another transaction instead inserts its net change as a delta row ("spills"), which shares no lock with
//! other writers, and commits at once. Every read through chom adds the unfolded deltas ({unfolded} in
//! sql/queries.sql), so it stays exact at every moment; `tenants.cached_sites_count` read directly is behind
//! by the deltas not yet folded.
//!
//! - **Gates**: every spill holds its tenant's gate (an advisory lock of chom's own class, in share mode,
//!   taken without waiting) until it commits. A recount and an exact quota check close the gate (exclusive
//!   mode): they wait for the spills in flight to commit and no new one starts, so a recount and the deltas it
//!   replaces are read as one state. Gates are per partition of tenant ids, so that "every tenant" is a fixed
//!   number of locks.
//! - **The fold**: a background worker per database, started by the first spill when none runs (no
//!   `shared_preload_libraries`, no configuration), locks the tenant rows in id order, deletes their deltas
//!   and adds them, as the tables' owner and as chom in security-restricted operations ([`crate::schema::identity`]).
//!   The worker waits for no table lock and at most [`FOLD_LOCK_TIMEOUT`] for a row: a transaction that waits
//!   for it (an uninstall that has folded, then drops the triggers) would be in a cycle with it, and the
//!   deadlock detector could abort the DBA's transaction rather than the worker's. It folds the tenants whose
//!   rows are free first, then waits briefly for the others (a busy tenant's row passes from one committing
//!   writer to the next), and leaves those still held for its next round; a round that finds chom's tables
//!   locked against it is retried after [`FOLD_LOCKED_RETRY`].
//!   An error (an owner's trigger on tenants raising) rolls the round back, keeps every delta, is logged, and
//!   the round is retried after [`FOLD_RETRY`]. `chom_fold_deltas()` folds on demand, waiting for held rows.
//! - **Not on Citus**: there each shard's changes are applied during the statement (see
//!   [`crate::maintain::pending::apply_now`]), not at commit, so no commit queues on a tenant's row.

use crate::maintain::changes::{out_of_range, UuidBytes};
use crate::maintain::rows::{apply_locked, existing_tenants, lock_tenants};
use crate::pg::plans::execute;
use crate::pg::plans::types::{INT4, INT4_ARRAY, INT8, INT8_ARRAY, UUID, UUID_ARRAY};
use crate::pg::settings;
use crate::schema::identity::{run_as, Principal};
use crate::schema::queries::{self, Query};
use crate::schema::target::Target;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{pg_sys, PgSqlErrorCode, Uuid};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

/// Partitions of tenant ids, one gate each.
const GATE_PARTITIONS: u32 = 256;
/// `locktag_field4` of chom's advisory locks, apart from pg_advisory_lock()'s 1 and 2 (pg_locks shows it as
/// objsubid): the gates, and the lock that marks a database's fold worker.
const GATE_LOCK: u16 = 0x6367;
const FOLDER_LOCK: u16 = 0x6366;
/// Where a quota applies, a change that raises a tenant by at most this many sites may spill (see
/// [`may_spill_under_quota`]).
pub const QUOTA_SPILL_AT_MOST: i64 = 1;
/// After a commit found a tenant's row held by another commit, this backend's commits spill that tenant's
/// changes for this long without trying the row first. On a busy tenant the try is the dearest part of a
/// commit: an UPDATE's executor start, and a row lock taken beside the inserting transactions' foreign-key
/// locks (a new multixact each time) or found held; the spill itself is one insert.
const HELD_RECENTLY: Duration = Duration::from_millis(500);
/// Tenants a backend remembers as held, at most (the oldest is forgotten first).
const HELD_REMEMBERED_AT_MOST: usize = 16;
/// Tenants folded in one transaction of the fold.
const FOLD_BATCH: i64 = 1000;
/// How often the fold worker looks for deltas when few come, and how long it stays without finding any before
/// it exits.
const FOLD_INTERVAL: Duration = Duration::from_millis(20);
/// How many deltas a busy tenant's reads should find unfolded. Every read through chom and every quota check of
/// a spill sums them, so the worker comes back sooner the more deltas its last round found (a busy tenant's 16
/// writers spill 100 and more in 20 ms), down to [`FOLD_INTERVAL_MIN`].
const FOLD_DEPTH: f64 = 16.0;
/// The shortest wait between two rounds of the fold.
const FOLD_INTERVAL_MIN: Duration = Duration::from_millis(1);
const FOLD_IDLE_EXIT: Duration = Duration::from_secs(5);
/// After a failed round, the fold waits this long before retrying.
const FOLD_RETRY: Duration = Duration::from_secs(5);
/// How long the fold worker waits for a tenant row that another transaction holds: a committing writer holds a
/// busy tenant's row for a few milliseconds; a transaction that holds it longer keeps that tenant's deltas for a
/// later round. Far below the default `deadlock_timeout` (1 s).
const FOLD_LOCK_TIMEOUT: &std::ffi::CStr = c"50ms";
/// After a round that found chom's tables locked against it (DDL, an uninstall).
const FOLD_LOCKED_RETRY: Duration = Duration::from_millis(100);
/// A backend starts the fold worker at most this often (it starts only when none holds the folder lock).
const LAUNCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// When this backend last started a fold worker. Never dropped (docs/crash-hunt.md).
    static LAST_LAUNCH: ManuallyDrop<Cell<Option<Instant>>> = const { ManuallyDrop::new(Cell::new(None)) };
    /// The tenants whose rows this backend found held, and when ([`HELD_RECENTLY`]). Never dropped.
    static HELD: ManuallyDrop<RefCell<Vec<(UuidBytes, Instant)>>> = const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// Whether this backend found `tenant`'s row held by another commit less than [`HELD_RECENTLY`] ago: its
/// change then spills without trying the row (spilling is always exact; this only decides what is cheaper).
pub fn held_recently(tenant: &UuidBytes) -> bool {
    let now = Instant::now();
    HELD.with(|held| held.borrow().iter().any(|(id, at)| id == tenant && now.duration_since(*at) < HELD_RECENTLY))
}

/// Remembers that a commit of this backend found `tenant`'s row held just now.
pub fn remember_held(tenant: &UuidBytes) {
    let now = Instant::now();
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.retain(|(id, at)| id != tenant && now.duration_since(*at) < HELD_RECENTLY);
        if held.len() >= HELD_REMEMBERED_AT_MOST {
            held.remove(0);
        }
        held.push((*tenant, now));
    });
}

/// Whether `chom.tenant_deltas` exists: not yet while an update from a release before 0.4.0 runs the scripts
/// before 0.3.0--0.4.0 (the 0.2.0--0.3.0 script calls chom_install() on this release's library).
fn deltas_table_exists() -> bool {
    crate::schema::target::relation_oid(crate::schema::target::CHOM_SCHEMA, c"tenant_deltas").is_some()
}

/// Whether this installation spills: not on Citus, and `chom.busy_tenant_spill` on.
pub fn spills(target: &Target) -> bool {
    !target.layout.distributed() && settings::BUSY_TENANT_SPILL.get()
}

fn lock_tag(class: u16, key: u32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: reads the backend's database id.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: key,
        locktag_field3: 0,
        locktag_field4: class,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

fn gate(tenant: &UuidBytes) -> pg_sys::LOCKTAG {
    // the last bytes of a v4 (or v7) uuid are random
    let key = u32::from_le_bytes([tenant[12], tenant[13], tenant[14], tenant[15]]) % GATE_PARTITIONS;
    lock_tag(GATE_LOCK, key)
}

fn acquire(tag: &pg_sys::LOCKTAG, mode: u32, session: bool, wait: bool) -> bool {
    // SAFETY: an advisory lock of chom's own class; a transaction lock is released by the transaction's end,
    // a session lock by the process's exit.
    let result = unsafe { pg_sys::LockAcquire(tag, mode as pg_sys::LOCKMODE, session, !wait) };
    result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Opens `tenant`'s gate for this transaction's spill, without waiting: false when a recount or an exact
/// quota check has it closed (the caller then waits for the row instead).
pub fn try_open_gate(tenant: &UuidBytes) -> bool {
    acquire(&gate(tenant), pg_sys::ShareLock, false, false)
}

/// Lets go of a gate [`try_open_gate`] opened, for a caller that will not spill after all.
pub fn release_gate(tenant: &UuidBytes) {
    // SAFETY: releases one hold of a lock this transaction took.
    unsafe { pg_sys::LockRelease(&gate(tenant), pg_sys::ShareLock as pg_sys::LOCKMODE, false) };
}

/// Closes the gates of `tenants` until this transaction ends: waits for their spills in flight to commit, and
/// keeps new ones out. Taken in partition order, before any row lock, so that closers never wait in a cycle.
pub fn close_gates<'a>(tenants: impl IntoIterator<Item = &'a UuidBytes>) {
    let mut partitions: Vec<pg_sys::LOCKTAG> = tenants.into_iter().map(gate).collect();
    partitions.sort_by_key(|tag| tag.locktag_field2);
    partitions.dedup_by_key(|tag| tag.locktag_field2);
    for tag in &partitions {
        acquire(tag, pg_sys::ExclusiveLock, false, true);
    }
}

/// Closes every tenant's gate (a recount of every tenant).
pub fn close_all_gates() {
    for key in 0..GATE_PARTITIONS {
        acquire(&lock_tag(GATE_LOCK, key), pg_sys::ExclusiveLock, false, true);
    }
}

/// What the quota's rule says about a raise that would spill ([`may_spill_under_quota`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSpill {
    /// Too big a raise, or a tenant too near its limit: the raise takes the locked path.
    Refused,
    /// The raise may spill; the same read told whether the tenant has a row (a change of a tenant without one
    /// is dropped, never spilled).
    Allowed { tenant_exists: bool },
}

/// Whether a change raising `tenant` by `sites` may spill where the site quota applies: only a small raise
/// ([`QUOTA_SPILL_AT_MOST`]) of a tenant that stays under its limit even if every other process of the
/// server had a spill of the same size in flight (at most one each), or of an unlimited tenant. Spills in
/// flight hold the tenant's gate and each passed this test, so the limit holds without their commits waiting
/// for each other; a tenant near its limit takes the locked path, where the check is exact.
pub fn may_spill_under_quota(
    client: &mut SpiClient<'_>,
    target: &Target,
    tenant: &UuidBytes,
    sites: i64,
) -> QuotaSpill {
    if sites > QUOTA_SPILL_AT_MOST {
        return QuotaSpill::Refused;
    }
    let headroom =
        execute(client, &queries::sql(target, Query::TenantHeadroom), &[UUID], &[Uuid::from_bytes(*tenant).into()])
            .next()
            // the row's columns: the headroom, NULL when the tenant is unlimited
            .map(|row| crate::pg::db::nullable::<i64>(&row, 1));
    match headroom {
        None => QuotaSpill::Allowed { tenant_exists: false },
        Some(None) => QuotaSpill::Allowed { tenant_exists: true },
        Some(Some(left)) if left >= sites + processes_at_most() * QUOTA_SPILL_AT_MOST => {
            QuotaSpill::Allowed { tenant_exists: true }
        }
        Some(Some(_)) => QuotaSpill::Refused,
    }
}

/// How many transactions can be in flight at once: every process that may write, and every prepared one.
fn processes_at_most() -> i64 {
    let prepared = settings::by_name(c"max_prepared_transactions").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    // SAFETY: reads a value fixed at server start.
    i64::from(unsafe { pg_sys::MaxBackends }) + prepared
}

/// Spills the changes of `tenants` (whose gates this transaction holds open) as delta rows, and makes sure a
/// fold worker will fold them. Run as chom ([`crate::maintain::commit`] writes chom's own rows in one switch).
/// One tenant's change (a busy tenant's single-row commit) is one row of VALUES, without the arrays and the
/// function scan that several need.
pub fn spill(client: &mut SpiClient<'_>, target: &Target, tenants: &[(UuidBytes, (i32, i64))]) {
    match tenants {
        [] => return,
        [(id, (sites, storage))] => {
            let args = [Uuid::from_bytes(*id).into(), (*sites).into(), (*storage).into()];
            execute(client, &queries::sql(target, Query::SpillTenantDelta), &[UUID, INT4, INT8], &args);
        }
        _ => {
            let ids: Vec<Uuid> = tenants.iter().map(|(id, _)| Uuid::from_bytes(*id)).collect();
            let sites: Vec<i32> = tenants.iter().map(|(_, (sites, _))| *sites).collect();
            let storage: Vec<i64> = tenants.iter().map(|(_, (_, storage))| *storage).collect();
            let sql = queries::sql(target, Query::SpillTenantDeltas);
            execute(client, &sql, &[UUID_ARRAY, INT4_ARRAY, INT8_ARRAY], &[ids.into(), sites.into(), storage.into()]);
        }
    }
    ensure_fold_worker();
}

/// One tenant's deltas, taken.
struct Taken {
    sites: i64,
    storage_mb: i64,
    rows: i64,
}

/// Deletes the unfolded deltas of `tenants` (every tenant when None), as chom, and returns their sums per
/// tenant. The caller holds those tenants' rows locked or their gates closed.
fn take(client: &mut SpiClient<'_>, target: &Target, tenants: Option<Vec<Uuid>>) -> BTreeMap<UuidBytes, Taken> {
    use crate::pg::db::required;
    let sql = queries::sql(target, Query::TakeTenantDeltas);
    run_as(target, Principal::Chom, || {
        execute(client, &sql, &[UUID_ARRAY], &[tenants.into()])
            .map(|row| {
                let taken = Taken { sites: required(&row, 2), storage_mb: required(&row, 3), rows: required(&row, 4) };
                (*required::<Uuid>(&row, 1).as_bytes(), taken)
            })
            .collect()
    })
}

/// Forgets the unfolded deltas of `tenants` (every tenant when None) after a recount replaced them, or after
/// TRUNCATE sites. The caller closed their gates (or holds sites exclusively), so none is in flight.
pub fn forget(client: &mut SpiClient<'_>, target: &Target, tenants: Option<Vec<Uuid>>) {
    if !target.layout.distributed() && deltas_table_exists() {
        take(client, target, tenants);
    }
}

/// Recounts the tenants `ids` from their live sites, replacing their unfolded deltas (the recount counts what
/// they stand for); returns how many rows it rewrote. The caller has closed their gates and locked their rows,
/// so no spill of theirs is in flight and no commit changes them meanwhile: the commit step's recounts, chom's
/// recount functions and the repair all come through here.
pub fn recount_locked(client: &mut SpiClient<'_>, target: &Target, ids: &[Uuid]) -> i64 {
    let rewritten =
        crate::maintain::rows::run(client, target, Query::RecountTenants, &[UUID_ARRAY], &[ids.to_vec().into()]).len();
    forget(client, target, Some(ids.to_vec()));
    rewritten as i64
}

/// How a fold meets a tenant row that another transaction holds.
#[derive(Clone, Copy)]
enum HeldRows {
    /// Waits for it: chom_fold_deltas() and an uninstall fold every delta.
    Wait,
    /// Folds the free rows first, then waits for the others at most the session's lock_timeout and leaves
    /// those still held for a later round: the fold worker (see the module's documentation).
    Skip,
}

/// What a fold took.
#[derive(Default)]
struct Folded {
    tenants: usize,
    deltas: i64,
}

/// Folds the deltas of `tenants` into their rows: locks the rows in id order, takes their deltas, adds them.
/// Runs as the tables' owner, taking chom's own rows as chom.
fn fold(client: &mut SpiClient<'_>, target: &Target, tenants: Vec<Uuid>, held: HeldRows) -> Folded {
    let ids = || tenants.iter().map(|id| *id.as_bytes());
    let lock = match held {
        HeldRows::Wait => Query::LockTenants,
        HeldRows::Skip => Query::TryLockTenants,
    };
    let locked = lock_tenants(client, target, lock, ids());
    let unlocked: Vec<UuidBytes> = ids().filter(|id| !locked.contains_key(id)).collect();
    // the deltas of a tenant without a row (deleted since) are taken and dropped, as its change would be; a
    // tenant whose row another transaction holds keeps them
    let held_by_others = match held {
        HeldRows::Skip if !unlocked.is_empty() => existing_tenants(client, target, unlocked.into_iter()),
        _ => BTreeSet::new(),
    };
    let to_take: Vec<Uuid> = tenants.into_iter().filter(|id| !held_by_others.contains(id.as_bytes())).collect();
    let mut folded = if to_take.is_empty() { Folded::default() } else { fold_taken(client, target, to_take, &locked) };
    if !held_by_others.is_empty() {
        // a busy tenant's row passes from one committing writer to the next, so the rows skipped are waited for
        // too, each wait cut short by the worker's lock_timeout (FOLD_LOCK_TIMEOUT, far below deadlock_timeout:
        // the worker gives up before a transaction that waits for it could take it for a deadlock). A timeout
        // rolls back only this part.
        let held: Vec<Uuid> = held_by_others.into_iter().map(Uuid::from_bytes).collect();
        match in_subtransaction(|| fold(client, target, held, HeldRows::Wait)) {
            Ok(waited) => {
                folded.tenants += waited.tenants;
                folded.deltas += waited.deltas;
            }
            Err(caught) => match *caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report)
                    if report.sql_error_code() == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => {}
                other => other.rethrow(),
            },
        }
    }
    folded
}

/// Takes the deltas of `tenants` and adds those of the tenants in `locked` to their rows.
fn fold_taken(
    client: &mut SpiClient<'_>,
    target: &Target,
    tenants: Vec<Uuid>,
    locked: &BTreeMap<UuidBytes, pg_sys::ItemPointerData>,
) -> Folded {
    let taken = take(client, target, Some(tenants));
    let changes: BTreeMap<UuidBytes, (i32, i64)> = taken
        .iter()
        .filter(|(id, _)| locked.contains_key(*id))
        .map(|(id, taken)| {
            let sites = i32::try_from(taken.sites).unwrap_or_else(|_| out_of_range("a tenant's unfolded deltas"));
            (*id, (sites, taken.storage_mb))
        })
        .collect();
    apply_locked(client, target, &changes, locked);
    Folded { tenants: taken.len(), deltas: taken.values().map(|taken| taken.rows).sum() }
}

/// One batch of the fold, in the current transaction: how many tenants had deltas, and what was folded.
fn fold_batch(target: &Target, held: HeldRows) -> (usize, Folded) {
    run_as(target, Principal::TablesOwner, || {
        Spi::connect_mut(|client| {
            let batch: Vec<Uuid> = run_as(target, Principal::Chom, || {
                execute(client, &queries::sql(target, Query::DeltaTenants), &[INT8], &[FOLD_BATCH.into()])
                    .map(|row| crate::pg::db::required::<Uuid>(&row, 1))
                    .collect()
            });
            let had_deltas = batch.len();
            if had_deltas == 0 {
                return (0, Folded::default());
            }
            (had_deltas, fold(client, target, batch, held))
        })
    })
}

/// Folds every unfolded delta into `tenants` now, in batches of the current transaction, and returns how many
/// tenants had some. For a DBA's schedule, a test, or a database whose fold worker cannot start (no free
/// `max_worker_processes` slot); the worker does the same on its own. Only the owner of CHOM's tables or a
/// superuser may run it (42501).
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_fold_deltas() -> i64 {
    let target = crate::schema::resolve::require_installed();
    crate::schema::identity::require_tables_owner_or_superuser(&target, "chom_fold_deltas()");
    fold_all(&target)
}

/// Folds every unfolded delta, in batches of the current transaction; returns how many tenants had some.
pub fn fold_all(target: &Target) -> i64 {
    if target.layout.distributed() || !deltas_table_exists() {
        return 0;
    }
    let mut folded = 0;
    loop {
        let (_, batch) = fold_batch(target, HeldRows::Wait);
        if batch.tenants == 0 {
            return folded;
        }
        folded += batch.tenants as i64;
    }
}

/// Starts this database's fold worker unless one runs (it holds the folder lock) or `chom.fold_in_background`
/// is off; at most once per [`LAUNCH_AT_MOST_EVERY`] per backend. Without a free worker slot nothing starts,
/// and the deltas wait for the next spill's attempt or `chom_fold_deltas()`: reads through chom stay exact.
fn ensure_fold_worker() {
    if !settings::FOLD_IN_BACKGROUND.get() {
        return;
    }
    let folder = lock_tag(FOLDER_LOCK, 0);
    if !acquire(&folder, pg_sys::ShareLock, false, false) {
        return; // a worker holds it: folding
    }
    // SAFETY: releases the probe just taken.
    unsafe { pg_sys::LockRelease(&folder, pg_sys::ShareLock as pg_sys::LOCKMODE, false) };
    let now = Instant::now();
    if LAST_LAUNCH.with(|last| last.get().is_some_and(|at| now.duration_since(at) < LAUNCH_AT_MOST_EVERY)) {
        return;
    }
    LAST_LAUNCH.with(|last| last.set(Some(now)));
    // SAFETY: reads the backend's database id.
    let database = unsafe { pg_sys::MyDatabaseId };
    let started = BackgroundWorkerBuilder::new("chom fold")
        .set_type("chom fold")
        .set_library(&format!("chom-{}", env!("CARGO_PKG_VERSION")))
        .set_function("chom_fold_worker_main")
        .set_argument(Some(pg_sys::Datum::from(database.to_u32())))
        .enable_spi_access()
        .set_restart_time(None)
        .load_dynamic();
    if started.is_err() {
        debug1!("chom: no free background worker slot for the fold; deltas wait for the next attempt");
    }
}

/// What one round of the fold worker found.
enum Round {
    /// This many deltas folded.
    Folded(i64),
    Nothing,
    /// Deltas whose tenant rows other transactions hold: left for the next round.
    RowsHeld,
    /// chom's tables locked against the fold.
    TablesLocked,
    Failed,
    Stop,
}

/// Locks the tables a round of the fold writes, without waiting; false when another transaction holds a lock
/// that excludes the fold's (a DDL statement, an uninstall, DROP EXTENSION).
fn try_lock_fold_tables(target: &Target) -> bool {
    use crate::schema::target::{relation_oid, CHOM_SCHEMA};
    [relation_oid(CHOM_SCHEMA, c"tenant_deltas"), relation_oid(&target.schema, c"tenants")].into_iter().all(|relid| {
        // SAFETY: a conditional lock on an existing relation, held to the end of the transaction.
        relid.is_some_and(|relid| unsafe {
            pg_sys::ConditionalLockRelationOid(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE)
        })
    })
}

fn fold_round() -> Round {
    if !settings::FOLD_IN_BACKGROUND.get() {
        return Round::Stop;
    }
    let installed: bool = crate::pg::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'chom')",
        &[],
    )
    .unwrap_or(false);
    let Some(target) =
        installed.then(crate::schema::resolve::installed).flatten().filter(|target| !target.layout.distributed())
    else {
        return Round::Stop;
    };
    if !try_lock_fold_tables(&target) {
        return Round::TablesLocked;
    }
    // a round is a subtransaction: an error rolls back its deletes and updates together, and every delta stays
    match in_subtransaction(|| fold_batch(&target, HeldRows::Skip)) {
        Ok((0, _)) => Round::Nothing,
        Ok((_, folded)) if folded.tenants == 0 => Round::RowsHeld,
        Ok((_, folded)) => Round::Folded(folded.deltas),
        Err(caught) => {
            let message = match &*caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report.message().to_string(),
                _ => "an unexpected error".to_string(),
            };
            warning!("chom: folding the busy tenants' deltas failed, every delta is kept and retried: {message}");
            Round::Failed
        }
    }
}

/// Runs `work` in a subtransaction, as a PL/pgSQL exception block does: released when it returns; rolled back,
/// with everything it changed and every lock it took, when it raises, and the error handed back.
fn in_subtransaction<R>(work: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    // SAFETY: the same calls as a PL/pgSQL exception block: the memory context and resource owner saved, the
    // subtransaction begun, then released or rolled back exactly once, and both restored after each.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::CurrentMemoryContext = context;
        PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
            let result = work();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::CurrentMemoryContext = context;
            pg_sys::CurrentResourceOwner = owner;
            Ok(result)
        }))
        .catch_others(|caught| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::CurrentMemoryContext = context;
            pg_sys::CurrentResourceOwner = owner;
            Err(Box::new(caught))
        })
        .execute()
    }
}

/// The fold worker's main function (named in [`ensure_fold_worker`]'s registration): one per database, it
/// exits when the deltas have stayed empty for [`FOLD_IDLE_EXIT`], on SIGTERM, or when
/// `chom.fold_in_background` is turned off.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn chom_fold_worker_main(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = pg_sys::Oid::from(argument.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // one worker per database: a second one started meanwhile leaves at once
    if !acquire(&lock_tag(FOLDER_LOCK, 0), pg_sys::ExclusiveLock, true, false) {
        return;
    }
    // a fold moves committed changes from one table to another in one transaction: lost in a crash, it is lost
    // whole and the deltas are still there, so its commit need not wait for its flush (and holds the busy
    // tenant's row for less time)
    settings::set(c"synchronous_commit", c"off", pg_sys::GucAction::GUC_ACTION_SET);
    settings::set(c"lock_timeout", FOLD_LOCK_TIMEOUT, pg_sys::GucAction::GUC_ACTION_SET);
    let mut idle_since = Instant::now();
    let mut last_round = Instant::now();
    let mut wait = FOLD_INTERVAL;
    while BackgroundWorker::wait_latch(Some(wait)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloads the configuration files, as Postgres' own background processes do on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let since_last_round = last_round.elapsed();
        last_round = Instant::now();
        // the worker's session takes the database's settings, search_path among them
        match BackgroundWorker::transaction(|| settings::with_catalog_search_path(fold_round)) {
            Round::Folded(deltas) => {
                idle_since = Instant::now();
                wait = interval_for_depth(since_last_round, deltas);
            }
            Round::RowsHeld => {
                // a committing writer holds a busy tenant's row for a moment, an application's transaction
                // perhaps for long: back to the usual interval by doubling
                idle_since = Instant::now();
                wait = (wait * 2).clamp(FOLD_INTERVAL_MIN, FOLD_INTERVAL);
            }
            Round::TablesLocked => {
                idle_since = Instant::now();
                wait = FOLD_LOCKED_RETRY;
            }
            Round::Failed => {
                idle_since = Instant::now();
                wait = FOLD_RETRY;
            }
            Round::Nothing if idle_since.elapsed() < FOLD_IDLE_EXIT => wait = FOLD_INTERVAL,
            Round::Nothing | Round::Stop => return,
        }
    }
}

/// The wait after a round that folded `deltas` spilled since the round before, `since_last_round` ago: at that
/// rate, the next round finds about [`FOLD_DEPTH`].
fn interval_for_depth(since_last_round: Duration, deltas: i64) -> Duration {
    since_last_round.mul_f64((FOLD_DEPTH / deltas.max(1) as f64).min(1.0)).clamp(FOLD_INTERVAL_MIN, FOLD_INTERVAL)
}

/// How many deltas wait to be folded, and when the oldest was written (chom_status(), chom_metrics()); None
/// without chom.tenant_deltas (an update to 0.4.0 not run yet).
pub fn depth(target: &Target) -> Option<(i64, Option<TimestampWithTimeZone>)> {
    if !deltas_table_exists() {
        return None;
    }
    let depth =
        crate::pg::db::rows(&queries::sql(target, Query::UnfoldedDepth), &[], |row| (row.required(1), row.get(2)));
    Some(depth.into_iter().next().unwrap_or_else(|| crate::pg::db::missing("unfolded_depth")))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn the_fold_comes_back_sooner_the_more_deltas_a_round_found() {
        let ms = Duration::from_millis;
        assert_eq!(interval_for_depth(ms(20), 0), FOLD_INTERVAL, "nothing folded: the usual interval");
        assert_eq!(interval_for_depth(ms(20), 16), FOLD_INTERVAL, "as many as it aims at: the same pace");
        assert_eq!(interval_for_depth(ms(20), 160), ms(2), "ten times as many: a tenth of the wait");
        assert_eq!(interval_for_depth(ms(2), 16), ms(2), "a steady rate keeps its pace");
        assert_eq!(interval_for_depth(ms(20), 100_000), FOLD_INTERVAL_MIN);
        assert_eq!(interval_for_depth(Duration::from_secs(5), 1), FOLD_INTERVAL, "never longer than the interval");
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn reads_add_the_unfolded_deltas_and_a_fold_moves_them_into_the_row() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000001'";
        let live = count(&format!("SELECT count(*) FROM sites WHERE tenant_id = {tenant} AND deleted_at IS NULL"));
        // what a writer that found the row held leaves behind, with the site it inserted
        Spi::run(&format!(
            "INSERT INTO sites (id, tenant_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {tenant}, 'spilled.test', 7); \
             ALTER TABLE sites DISABLE TRIGGER USER; \
             INSERT INTO sites (id, tenant_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {tenant}, 'spilled2.test', 3); \
             ALTER TABLE sites ENABLE TRIGGER USER; \
             INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb) VALUES ({tenant}, 1, 3)"
        ))
        .unwrap();
        let stats = || count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})"));
        assert_eq!(stats(), live + 2);
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_quota({tenant})")), live + 2);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        assert_eq!(count(&format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = {tenant}")), live);
        assert_eq!(count("SELECT chom_fold_deltas()"), 1);
        assert_eq!(count("SELECT count(*) FROM chom.tenant_deltas"), 0);
        assert_eq!(count("SELECT unfolded_deltas FROM chom_metrics()"), 0);
        // the row holds it now, the transaction's own insert still pending on top until commit
        assert_eq!(count(&format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = {tenant}")), live + 1);
        assert_eq!(stats(), live + 2);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
    }

    #[pg_test]
    fn a_recount_replaces_the_unfolded_deltas() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000002'";
        Spi::run(&format!("INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb) VALUES ({tenant}, 5, 50)"))
            .unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 1, "a delta without its sites is drift");
        assert_eq!(count("SELECT unfolded_deltas FROM chom_metrics()"), 1);
        assert_eq!(count("SELECT chom_repair_drift()"), 1);
        assert_eq!(count("SELECT count(*) FROM chom.tenant_deltas"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
    }

    #[pg_test]
    fn only_the_tables_owner_or_a_superuser_folds() {
        install_with_data();
        Spi::run("CREATE ROLE chom_fold_stranger; GRANT EXECUTE ON FUNCTION chom_fold_deltas() TO chom_fold_stranger; SET ROLE chom_fold_stranger").unwrap();
        assert_eq!(sqlstate("SELECT chom_fold_deltas()").as_deref(), Some("42501"));
        Spi::run("RESET ROLE").unwrap();
    }
}

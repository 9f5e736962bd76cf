//! Monitoring that a machine can read: chom_metrics() (one row of typed figures, from the same inspection and
//! decision as chom_status()), chom_drift_probe() (drift in a random sample of tenants and VPSes, in bounded
//! time), the history of chom's runs (chom.runs, through chom.record_run()), and the pieces of
//! `CALL chom_refresh_all_batched()` (sql/monitoring.sql), which commits after each batch.

use crate::control::{self, Health, StorageState, TriggerState};
use crate::errors::{invalid_argument, raise};
use crate::queries::{self, Query};
use crate::target::{self, Target, CHOM_SCHEMA};
use pgrx::datum::{AnyNumeric, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, Uuid};
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// How many runs of each kind chom.runs keeps: recording a run deletes the older ones of its kind.
pub const RUNS_KEPT: i64 = 1000;

/// Tenants checked per drift statement of the probe; the time bound is looked at between them.
const PROBE_CHUNK: usize = 25;

/// Tables of at most this many pages are sampled whole (1 MB: under a millisecond to read); larger ones
/// from at least as many random pages.
const SAMPLE_MIN_PAGES: f64 = 128.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunKind {
    Probe,
    Repair,
    Refresh,
}

impl RunKind {
    fn name(self) -> &'static str {
        match self {
            RunKind::Probe => "probe",
            RunKind::Repair => "repair",
            RunKind::Refresh => "refresh",
        }
    }
}

/// One run, as chom.runs records it; None: not counted by this kind of run.
#[derive(Debug)]
pub struct Run {
    pub kind: RunKind,
    pub started_at: TimestampWithTimeZone,
    pub tenants_examined: Option<i64>,
    pub tenants_drifted: Option<i64>,
    pub tenants_fixed: Option<i64>,
    pub vps_examined: Option<i64>,
    pub vps_drifted: Option<i64>,
    pub vps_fixed: Option<i64>,
}

impl Run {
    /// A run starting now.
    pub fn start(kind: RunKind) -> Run {
        Run::started(kind, now())
    }

    pub fn started(kind: RunKind, started_at: TimestampWithTimeZone) -> Run {
        Run {
            kind,
            started_at,
            tenants_examined: None,
            tenants_drifted: None,
            tenants_fixed: None,
            vps_examined: None,
            vps_drifted: None,
            vps_fixed: None,
        }
    }
}

/// The current time (the clock, not the transaction's start).
pub fn now() -> TimestampWithTimeZone {
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity())
}

thread_local! {
    /// The run being recorded, handed to chom.record_run() (which refuses to run without one).
    static RECORDING: std::mem::ManuallyDrop<RefCell<Option<Run>>> =
        const { std::mem::ManuallyDrop::new(RefCell::new(None)) };
}

/// Clears [`RECORDING`] however the recording ends (an error unwinds through it).
struct ClearRecording;

impl Drop for ClearRecording {
    fn drop(&mut self) {
        RECORDING.with(|recording| recording.borrow_mut().take());
    }
}

/// Records a run in chom.runs, as chom's owner (chom.record_run() is SECURITY DEFINER: a role that was granted
/// chom_repair_drift() needs no grant on chom's tables). Nothing is recorded where nothing may be written: a
/// read-only transaction, a hot standby.
pub fn record(run: Run) {
    if crate::stats::read_only() {
        return;
    }
    RECORDING.with(|recording| *recording.borrow_mut() = Some(run));
    let _clear = ClearRecording;
    crate::db::run("SELECT chom.record_run()", &[]);
}

/// chom's own statements (on chom.runs) render only `{chom}`: any target renders them.
fn own(query: Query) -> std::rc::Rc<str> {
    queries::sql(&Target::new(CHOM_SCHEMA.into(), CHOM_SCHEMA.into()), query)
}

fn count_tenants(target: &Target) -> i64 {
    crate::db::one(&queries::sql(target, Query::CountTenants), &[])
        .unwrap_or_else(|| crate::db::missing("count_tenants"))
}

/// Object counts of chom_metrics(), from chom's one decision ([`control::classify`]); indexes by the state
/// chom_status() shows for them.
#[derive(Debug, Default, PartialEq)]
pub struct ObjectCounts {
    pub triggers_enabled: i32,
    pub triggers_disabled: i32,
    pub triggers_missing: i32,
    pub indexes_installed: i32,
    pub indexes_reused: i32,
    pub indexes_missing: i32,
    pub indexes_invalid: i32,
    pub indexes_conflict: i32,
}

pub fn object_counts(states: &control::States) -> ObjectCounts {
    let mut counts = ObjectCounts::default();
    for (_, state) in &states.triggers {
        match state {
            // a trigger of an older chom works: enabled (chom_status() says it is installed)
            TriggerState::Installed | TriggerState::Outdated => counts.triggers_enabled += 1,
            TriggerState::Disabled => counts.triggers_disabled += 1,
            TriggerState::Missing | TriggerState::MissingOnShards(_) => counts.triggers_missing += 1,
        }
    }
    for (index, state) in &states.indexes {
        match control::index_health(index, state, states.installed).0 {
            Health::Installed => counts.indexes_installed += 1,
            Health::Reused => counts.indexes_reused += 1,
            Health::Missing | Health::Disabled => counts.indexes_missing += 1,
            Health::Invalid => counts.indexes_invalid += 1,
            Health::Conflict => counts.indexes_conflict += 1,
        }
    }
    counts
}

/// tenants' fillfactor as the storage state says: None for a partitioned table.
fn fillfactor(state: &StorageState) -> Option<i32> {
    match state {
        StorageState::SetByChom(ff) | StorageState::Own(ff) => Some(*ff),
        StorageState::Default | StorageState::ResetSinceChom => Some(100),
        StorageState::NotApplicable => None,
    }
}

/// One row of typed figures for monitoring (no numbers inside prose): chom's version; whether chom is installed
/// on CHOM's tables; its triggers enabled / disabled / missing and its catalogue indexes installed / reused /
/// missing / invalid / conflict (the states chom_status() shows, from the same inspection); tenants'
/// fillfactor, its row updates and the share of them that were HOT (NULL before any); the rows of tenants and
/// of chom.vps_load; the last drift check (a probe or a repair: when, which, tenants and VPSes examined and
/// drifted), the last repair (when, tenants and VPSes fixed) and the last full refresh (when, tenants), from
/// chom.runs; and the busy tenants' deltas waiting to be folded into `tenants` and when the oldest was
/// written (docs/busy-tenant.md: `tenants.cached_sites_count` read directly is behind by them). Without CHOM's
/// tables the object and row counts are NULL.
// one row of many typed columns: pgrx needs the tuple written out in the signature
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe)]
pub fn chom_metrics() -> TableIterator<
    'static,
    (
        name!(chom_version, Option<String>),
        name!(installed, bool),
        name!(triggers_enabled, Option<i32>),
        name!(triggers_disabled, Option<i32>),
        name!(triggers_missing, Option<i32>),
        name!(indexes_installed, Option<i32>),
        name!(indexes_reused, Option<i32>),
        name!(indexes_missing, Option<i32>),
        name!(indexes_invalid, Option<i32>),
        name!(indexes_conflict, Option<i32>),
        name!(tenants_fillfactor, Option<i32>),
        name!(tenants_row_updates, Option<i64>),
        name!(tenants_hot_update_ratio, Option<AnyNumeric>),
        name!(tenants_tracked, Option<i64>),
        name!(vps_tracked, Option<i64>),
        name!(last_check_at, Option<TimestampWithTimeZone>),
        name!(last_check_kind, Option<String>),
        name!(last_check_tenants_examined, Option<i64>),
        name!(last_check_tenants_drifted, Option<i64>),
        name!(last_check_vps_examined, Option<i64>),
        name!(last_check_vps_drifted, Option<i64>),
        name!(last_repair_at, Option<TimestampWithTimeZone>),
        name!(last_repair_tenants_fixed, Option<i64>),
        name!(last_repair_vps_fixed, Option<i64>),
        name!(last_refresh_at, Option<TimestampWithTimeZone>),
        name!(last_refresh_tenants, Option<i64>),
        name!(unfolded_deltas, Option<i64>),
        name!(oldest_unfolded_delta_at, Option<TimestampWithTimeZone>),
    ),
> {
    let target = target::installed().or_else(target::discover);
    let inspected = target.as_ref().map(|target| {
        let facts = crate::inspect::inspect(target);
        let states = control::classify(&facts);
        (facts, states)
    });
    let (updates, hot) = inspected
        .as_ref()
        .map(|(facts, _)| (facts.storage.updates.unwrap_or(0), facts.storage.hot_updates.unwrap_or(0)))
        .unwrap_or((0, 0));
    let history = crate::db::rows(&own(Query::MetricsRuns), &[updates.into(), hot.into()], |row| {
        (
            row.get::<String>(1),
            row.get::<AnyNumeric>(2),
            (row.get(3), row.get::<String>(4), row.get(5), row.get(6), row.get(7), row.get(8)),
            (row.get(9), row.get(10), row.get(11)),
            (row.get(12), row.get(13)),
        )
    });
    let Some((version, ratio, check, repair, refresh)) = history.into_iter().next() else {
        crate::db::missing("metrics_runs")
    };
    let (installed, counts, fillfactor, updates, tenants, vps) = match (&target, &inspected) {
        (Some(target), Some((facts, states))) => (
            states.installed,
            Some(object_counts(states)),
            fillfactor(&states.storage),
            facts.storage.updates,
            Some(count_tenants(target)),
            Some(facts.vps_rows),
        ),
        _ => (false, None, None, None, None, None),
    };
    let count = |pick: fn(&ObjectCounts) -> i32| counts.as_ref().map(pick);
    let (unfolded, oldest_unfolded) = match &target {
        Some(target) => {
            let (depth, oldest) = crate::deltas::depth(target);
            (Some(depth), oldest)
        }
        None => (None, None),
    };
    TableIterator::once((
        version,
        installed,
        count(|c| c.triggers_enabled),
        count(|c| c.triggers_disabled),
        count(|c| c.triggers_missing),
        count(|c| c.indexes_installed),
        count(|c| c.indexes_reused),
        count(|c| c.indexes_missing),
        count(|c| c.indexes_invalid),
        count(|c| c.indexes_conflict),
        fillfactor,
        updates,
        ratio,
        tenants,
        vps,
        check.0,
        check.1,
        check.2,
        check.3,
        check.4,
        check.5,
        repair.0,
        repair.1,
        repair.2,
        refresh.0,
        refresh.1,
        unfolded,
        oldest_unfolded,
    ))
}

/// Up to `size` ids of `table` (tenants or vps_servers) at random: TABLESAMPLE SYSTEM reads a random share of
/// the table's pages, sized from the planner's row estimate (all of a small table).
fn sample(target: &Target, table: &str, query: Query, size: i32) -> Vec<Uuid> {
    let estimate =
        crate::db::rows(&queries::sql(target, Query::SampleEstimate), &[target.table(table).into()], |row| {
            (row.get::<f64>(1).unwrap_or(0.0), row.get::<f64>(2).unwrap_or(0.0))
        });
    let (rows, pages) = estimate.first().copied().unwrap_or((0.0, 0.0));
    // three times the rows the sample needs (pages hold fewer rows than the average), from at least
    // SAMPLE_MIN_PAGES pages; a small table is read whole
    let wanted = 3.0 * f64::from(size);
    let percent = if rows <= wanted || pages <= SAMPLE_MIN_PAGES {
        100.0
    } else {
        (100.0 * wanted / rows).max(100.0 * SAMPLE_MIN_PAGES / pages).min(100.0)
    };
    crate::db::one::<Vec<Uuid>>(&queries::sql(target, query), &[percent.into(), i64::from(size).into()])
        .unwrap_or_default()
}

fn probe_argument(value: Option<i32>, name: &str, max: i32, default: &str) -> i32 {
    match value {
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{name} must not be NULL"),
            Some(&format!("Omit it for the default of {default}.")),
        ),
        Some(n) if (1..=max).contains(&n) => n,
        Some(n) => invalid_argument(
            format!("{name} must be between 1 and {max}, not {n}"),
            &format!("The default ({default}) suits a check every minute; chom_cache_drift() checks every tenant."),
        ),
    }
}

/// A cheap drift check for frequent runs: up to `sample_size` tenants and as many VPSes, chosen at random
/// (TABLESAMPLE: only a share of the pages is read), are checked as chom_cache_drift() and chom_vps_drift()
/// check them, `PROBE_CHUNK` tenants a statement, stopping once `max_ms` milliseconds have gone by (at least
/// one statement runs). Returns how many tenants and VPSes were checked and how many of them drifted, the time
/// taken, and whether the whole sample was checked in time. Recorded in chom.runs as a 'probe' (not in a
/// read-only transaction or on a standby, where the probe still answers). sample_size 1..100000 and max_ms
/// 1..60000 (22023; NULL: 22004).
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_drift_probe(
    sample_size: default!(Option<i32>, 100),
    max_ms: default!(Option<i32>, 200),
) -> TableIterator<
    'static,
    (
        name!(sampled, i64),
        name!(drifted, i64),
        name!(vps_sampled, i64),
        name!(vps_drifted, i64),
        name!(elapsed_ms, f64),
        name!(complete, bool),
    ),
> {
    let sample_size = probe_argument(sample_size, "sample_size", 100_000, "100");
    let max_ms = probe_argument(max_ms, "max_ms", 60_000, "200");
    let target = target::require_installed();
    let mut run = Run::start(RunKind::Probe);
    let clock = Instant::now();
    let deadline = Duration::from_millis(u64::try_from(max_ms).unwrap_or(200));
    let mut complete = true;
    let (mut sampled, mut drifted) = (0i64, 0i64);
    let tenants = sample(&target, "tenants", Query::TenantSample, sample_size);
    for (i, chunk) in tenants.chunks(PROBE_CHUNK).enumerate() {
        if i > 0 && clock.elapsed() >= deadline {
            complete = false;
            break;
        }
        drifted += crate::drift::tenant_drift(&target, Some(chunk.to_vec())).len() as i64;
        sampled += chunk.len() as i64;
    }
    let (mut vps_sampled, mut vps_drifted) = (0i64, 0i64);
    if complete && clock.elapsed() < deadline {
        let vps = sample(&target, "vps_servers", Query::VpsSample, sample_size);
        for chunk in vps.chunks(PROBE_CHUNK) {
            if clock.elapsed() >= deadline {
                complete = false;
                break;
            }
            vps_drifted += crate::drift::vps_drift(&target, Some(chunk.to_vec())).len() as i64;
            vps_sampled += chunk.len() as i64;
        }
    } else {
        complete = false;
    }
    let elapsed_ms = (clock.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    run.tenants_examined = Some(sampled);
    run.tenants_drifted = Some(drifted);
    run.vps_examined = Some(vps_sampled);
    run.vps_drifted = Some(vps_drifted);
    record(run);
    TableIterator::once((sampled, drifted, vps_sampled, vps_drifted, elapsed_ms, complete))
}

/// chom's internal functions for the history and the batched refresh.
#[pg_schema]
pub mod chom {
    use super::*;

    /// Inserts the run chom is recording (see [`record`]) into chom.runs and keeps the newest `RUNS_KEPT` of
    /// its kind. SECURITY DEFINER (finalize.sql); for anyone but chom itself an error (42501), so the history
    /// holds only runs that happened.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn record_run() {
        let Some(run) = RECORDING.with(|recording| recording.borrow_mut().take()) else {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "chom.record_run() is called by chom only",
                Some("chom records its probes, repairs and refreshes itself: see chom.runs and chom_metrics()."),
            )
        };
        let kind = run.kind.name();
        crate::db::run(
            &own(Query::RecordRun),
            &[
                kind.into(),
                run.started_at.into(),
                run.tenants_examined.into(),
                run.tenants_drifted.into(),
                run.tenants_fixed.into(),
                run.vps_examined.into(),
                run.vps_drifted.into(),
                run.vps_fixed.into(),
            ],
        );
        crate::db::run(&own(Query::PruneRuns), &[kind.into(), RUNS_KEPT.into()]);
    }

    /// Raises 25001 (active_sql_transaction) inside a transaction block: `procedure` commits as it goes.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn refuse_transaction_block(procedure: &str) {
        // SAFETY: reads backend-local transaction state.
        let in_block = unsafe { pg_sys::IsTransactionBlock() || pg_sys::IsSubTransaction() };
        if in_block {
            raise(
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                format!("{procedure} cannot run inside a transaction block"),
                Some(
                    "It commits after each batch: CALL it on its own (autocommit). Inside a transaction, SELECT \
                     chom_refresh_all() does the same work, holding every batch's locks until the transaction ends.",
                ),
            );
        }
    }

    /// One batch of `CALL chom_refresh_all_batched()`: the next `batch_size` tenants after `after` (from the
    /// first when NULL), locked and recounted; returns the last of them (NULL when none was left), how many
    /// were refreshed, and, on the first batch, how many tenants there are. When none is left the run is
    /// recorded ('refresh', from `started_at`, `refreshed_before` tenants).
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn refresh_batch(
        after: Option<Uuid>,
        batch_size: Option<i32>,
        started_at: Option<TimestampWithTimeZone>,
        refreshed_before: Option<i64>,
    ) -> TableIterator<'static, (name!(last_id, Option<Uuid>), name!(refreshed, i64), name!(total, Option<i64>))> {
        let batch_size = crate::stats::valid_batch_size(batch_size);
        let target = target::require_installed();
        let total = after.is_none().then(|| count_tenants(&target));
        let ids = crate::stats::next_batch(&target, after, batch_size);
        let Some(last) = ids.last().copied() else {
            let mut run = Run::started(RunKind::Refresh, started_at.unwrap_or_else(now));
            run.tenants_examined = Some(refreshed_before.unwrap_or(0));
            record(run);
            return TableIterator::once((None, 0, total));
        };
        let refreshed = crate::stats::recount(&target, &ids);
        TableIterator::once((Some(last), refreshed, total))
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    fn metric(column: &str) -> i64 {
        count(&format!("SELECT ({column})::bigint FROM chom_metrics()"))
    }

    fn is_null(column: &str) -> bool {
        Spi::get_one::<bool>(&format!("SELECT ({column}) IS NULL FROM chom_metrics()")).unwrap().unwrap()
    }

    #[pg_test]
    fn metrics_without_chom_tables_say_not_installed_with_null_counts() {
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        for column in ["triggers_missing", "indexes_missing", "tenants_tracked", "vps_tracked", "last_check_at"] {
            assert!(is_null(column), "{column}");
        }
        assert_eq!(
            Spi::get_one::<String>("SELECT chom_version FROM chom_metrics()").unwrap().as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[pg_test]
    fn metrics_of_tables_chom_is_not_installed_on() {
        load_schema();
        Spi::run(SMALL_DATA).unwrap();
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_enabled"), 0);
        assert_eq!(metric("triggers_missing"), crate::catalog::TRIGGERS.len() as i64);
        // CHOM's schema has three equivalents of catalogue indexes: reused; the rest are missing
        assert_eq!(metric("indexes_reused"), 3);
        assert_eq!(metric("indexes_missing"), metric("indexes_reused + indexes_missing") - 3);
        assert_eq!(metric("indexes_installed + indexes_invalid + indexes_conflict"), 0);
        assert_eq!(metric("tenants_tracked"), 4);
        assert_eq!(metric("vps_tracked"), 0);
        assert_eq!(metric("tenants_fillfactor"), 100);
    }

    #[pg_test]
    fn metrics_of_an_installation_in_each_state_agree_with_chom_status() {
        install_with_data();
        let triggers = crate::catalog::TRIGGERS.len() as i64;
        assert!(Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_enabled"), triggers);
        assert_eq!(metric("triggers_disabled + triggers_missing"), 0);
        assert_eq!(
            metric("indexes_installed"),
            count("SELECT count(*) FROM chom_status() WHERE kind = 'index' AND state = 'installed'")
        );
        assert_eq!(metric("indexes_reused"), 3);
        assert_eq!(metric("indexes_missing + indexes_invalid + indexes_conflict"), 0);
        assert_eq!(metric("tenants_fillfactor"), 70);
        assert_eq!(metric("tenants_tracked"), 4);
        assert_eq!(metric("vps_tracked"), 4);
        // a disabled trigger, an invalid index, a dropped one
        Spi::run("ALTER TABLE sites DISABLE TRIGGER chom_sites_insert").unwrap();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_sites_vps_status'::regclass").unwrap();
        Spi::run("DROP INDEX idx_users_org_role").unwrap();
        assert_eq!(metric("triggers_disabled"), 1);
        assert_eq!(metric("triggers_enabled"), triggers - 1);
        assert_eq!(metric("indexes_invalid"), 1);
        assert_eq!(metric("indexes_missing"), 1);
        for (column, state) in
            [("indexes_invalid", "invalid"), ("indexes_missing", "missing"), ("triggers_disabled", "disabled")]
        {
            let kind = if column.starts_with("index") { "index" } else { "trigger" };
            assert_eq!(
                metric(column),
                count(&format!("SELECT count(*) FROM chom_status() WHERE kind = '{kind}' AND state = '{state}'")),
                "{column} agrees with chom_status()"
            );
        }
        // a squatter on a catalogue name: conflict
        Spi::run("CREATE INDEX idx_users_org_role ON users (email)").unwrap();
        assert_eq!(metric("indexes_conflict"), 1);
        assert_eq!(metric("indexes_missing"), 0);
        // HOT share: a ratio between 0 and 1 once tenants had row updates, NULL never
        let ratio =
            "SELECT tenants_hot_update_ratio IS NULL OR tenants_hot_update_ratio BETWEEN 0 AND 1 FROM chom_metrics()";
        assert!(Spi::get_one::<bool>(ratio).unwrap().unwrap());
        assert_eq!(
            Spi::get_one::<String>("SELECT pg_typeof(tenants_hot_update_ratio)::text FROM chom_metrics()")
                .unwrap()
                .as_deref(),
            Some("numeric")
        );
        // uninstalled: not installed, triggers missing
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_missing"), triggers);
    }

    #[pg_test]
    fn the_probe_finds_drift_in_its_sample_and_is_recorded() {
        install_with_data();
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
        assert!(is_null("last_check_at") && is_null("last_repair_at") && is_null("last_refresh_at"));
        // a small table is sampled whole
        assert_eq!(count("SELECT sampled FROM chom_drift_probe()"), 4);
        assert_eq!(count("SELECT drifted + vps_drifted FROM chom_drift_probe()"), 0);
        assert_eq!(count("SELECT vps_sampled FROM chom_drift_probe(100, 1000) WHERE complete"), 4);
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), 3);
        // drift behind chom's back
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("UPDATE tenants SET cached_sites_count = cached_sites_count + 1 WHERE id = 'a0000000-0000-0000-0000-000000000002'").unwrap();
        Spi::run("UPDATE chom.vps_load SET live_sites = live_sites + 5 WHERE vps_id = 'b0000000-0000-0000-0000-000000000001'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        let found = "SELECT drifted::text || '/' || vps_drifted FROM chom_drift_probe(10, 5000)";
        assert_eq!(Spi::get_one::<String>(found).unwrap().as_deref(), Some("1/1"));
        assert_eq!(metric("last_check_tenants_drifted"), 1);
        assert_eq!(metric("last_check_vps_drifted"), 1);
        assert_eq!(metric("last_check_tenants_examined"), 4);
        assert_eq!(
            Spi::get_one::<String>("SELECT last_check_kind FROM chom_metrics()").unwrap().as_deref(),
            Some("probe")
        );
        // a sample smaller than the table
        assert_eq!(count("SELECT sampled FROM chom_drift_probe(2)"), 2);
        // the repair is recorded, and becomes the last check
        assert_eq!(count("SELECT chom_repair_drift()"), 2);
        assert_eq!(
            Spi::get_one::<String>("SELECT last_check_kind FROM chom_metrics()").unwrap().as_deref(),
            Some("repair")
        );
        assert_eq!(metric("last_repair_tenants_fixed"), 1);
        assert_eq!(metric("last_repair_vps_fixed"), 1);
        assert_eq!(metric("last_check_tenants_examined"), 4);
        assert_eq!(metric("last_check_tenants_drifted"), 1);
        assert_eq!(count("SELECT drifted + vps_drifted FROM chom_drift_probe()"), 0);
        // the refresh too
        assert!(is_null("last_refresh_at"));
        Spi::run("SELECT chom_refresh_all(3)").unwrap();
        assert_eq!(metric("last_refresh_tenants"), 4);
        assert!(!is_null("last_refresh_at"));
        assert_eq!(
            count(
                "SELECT count(*) FROM chom.runs WHERE finished_at >= started_at AND finished_at <= clock_timestamp()"
            ),
            count("SELECT count(*) FROM chom.runs")
        );
    }

    #[pg_test]
    fn a_read_only_transaction_probes_without_recording() {
        install_with_data();
        Spi::run("SET LOCAL transaction_read_only = on").unwrap();
        assert_eq!(count("SELECT sampled FROM chom_drift_probe()"), 4);
        assert_eq!(count("SELECT chom_repair_drift()"), 0);
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
    }

    #[pg_test]
    fn the_history_keeps_the_newest_runs_of_each_kind() {
        install_with_data();
        Spi::run("SELECT chom_repair_drift()").unwrap();
        Spi::run(&format!(
            "INSERT INTO chom.runs (kind, started_at, finished_at) \
             SELECT 'probe', now(), now() FROM generate_series(1, {})",
            super::RUNS_KEPT + 10
        ))
        .unwrap();
        Spi::run("SELECT count(*) FROM chom_drift_probe()").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), super::RUNS_KEPT);
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'repair'"), 1, "other kinds are kept");
        // the newest probe is the one just recorded (it has counts; the filler rows have none)
        assert_eq!(count("SELECT tenants_examined FROM chom.runs WHERE kind = 'probe' ORDER BY id DESC LIMIT 1"), 4);
        // nobody but chom records a run
        assert_eq!(sqlstate("SELECT chom.record_run()").as_deref(), Some("42501"));
    }

    #[pg_test]
    fn bad_input_gets_specific_sqlstates() {
        install_with_data();
        for (call, expected) in [
            ("SELECT * FROM chom_drift_probe(0)", "22023"),
            ("SELECT * FROM chom_drift_probe(100001)", "22023"),
            ("SELECT * FROM chom_drift_probe(-1)", "22023"),
            ("SELECT * FROM chom_drift_probe(100, 0)", "22023"),
            ("SELECT * FROM chom_drift_probe(100, 60001)", "22023"),
            ("SELECT * FROM chom_drift_probe(NULL)", "22004"),
            ("SELECT * FROM chom_drift_probe(100, NULL)", "22004"),
            ("SELECT * FROM chom.refresh_batch(NULL, 0, now(), 0)", "22023"),
            // a pg_test runs inside a transaction block
            ("CALL chom_refresh_all_batched()", "25001"),
            ("CALL chom_refresh_all_batched(0)", "25001"),
        ] {
            assert_eq!(sqlstate(call).as_deref(), Some(expected), "{call}");
        }
        assert_eq!(sqlstate("SELECT * FROM chom_metrics()"), None);
        assert_eq!(sqlstate("SELECT * FROM chom_drift_probe(1, 1)"), None);
    }

    #[pg_test]
    fn the_probe_needs_an_installation() {
        load_schema();
        assert_eq!(sqlstate("SELECT * FROM chom_drift_probe()").as_deref(), Some("55000"));
        assert_eq!(sqlstate("SELECT * FROM chom_metrics()"), None);
    }

    #[pg_test]
    fn a_batch_of_the_procedure_refreshes_and_the_last_records_the_run() {
        install_with_data();
        let first =
            "SELECT last_id::text || ' ' || refreshed || ' ' || total FROM chom.refresh_batch(NULL, 3, now(), 0)";
        let row = Spi::get_one::<String>(first).unwrap().unwrap();
        assert!(row.starts_with("a0000000-0000-0000-0000-000000000003 3 4"), "{row}");
        let rest = "SELECT refreshed FROM chom.refresh_batch('a0000000-0000-0000-0000-000000000003', 3, now(), 3)";
        assert_eq!(count(rest), 1);
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
        let last = "SELECT (last_id IS NULL AND total IS NULL)::int::bigint FROM chom.refresh_batch('a0000000-0000-0000-0000-000000000004', 3, now(), 4)";
        assert_eq!(count(last), 1);
        assert_eq!(metric("last_refresh_tenants"), 4);
        assert_eq!(drifted_tenants(), 0);
    }
}

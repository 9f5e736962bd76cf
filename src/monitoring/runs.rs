//! The history of chom's runs (chom.runs): probes, repairs and refreshes, recorded through chom.record_run().

use crate::pg::errors::raise;
use crate::schema::queries::{self, Query};
use crate::schema::target::{Target, CHOM_SCHEMA};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::RefCell;

/// How many runs of each kind chom.runs keeps: recording a run deletes the older ones of its kind.
pub const RUNS_KEPT: i64 = 1000;

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
    if crate::pg::xact::read_only() {
        return;
    }
    RECORDING.with(|recording| *recording.borrow_mut() = Some(run));
    let _clear = ClearRecording;
    crate::pg::db::run("SELECT chom.record_run()", &[]);
}

/// chom's own statements (on chom.runs) render only `{chom}`: any target renders them.
pub fn own(query: Query) -> std::rc::Rc<str> {
    queries::sql(&Target::new(CHOM_SCHEMA.into(), CHOM_SCHEMA.into()), query)
}

/// chom's internal function for the history.
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
        crate::pg::db::run(
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
        crate::pg::db::run(&own(Query::PruneRuns), &[kind.into(), RUNS_KEPT.into()]);
    }
}

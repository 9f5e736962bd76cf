//! chom_drift_probe(): drift in a random sample of tenants and VPSes, in bounded time.

use crate::monitoring::runs::{record, Run, RunKind};
use crate::pg::errors::{invalid_argument, raise};
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use crate::schema::target::Target;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};
use std::time::{Duration, Instant};

/// Tenants checked per drift statement of the probe; the time bound is looked at between them.
const PROBE_CHUNK: usize = 25;

/// Tables of at most this many pages are sampled whole (1 MB: under a millisecond to read); larger ones
/// from at least as many random pages.
const SAMPLE_MIN_PAGES: f64 = 128.0;

/// Up to `size` ids of `table` (tenants or vps_servers) at random: TABLESAMPLE SYSTEM reads a random share of
/// the table's pages, sized from the planner's row estimate (all of a small table).
fn sample(target: &Target, table: &str, query: Query, size: i32) -> Vec<Uuid> {
    let estimate =
        crate::pg::db::rows(&queries::sql(target, Query::SampleEstimate), &[target.table(table).into()], |row| {
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
    crate::pg::db::one::<Vec<Uuid>>(&queries::sql(target, query), &[percent.into(), i64::from(size).into()])
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
    let target = resolve::require_installed();
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
        drifted += crate::monitoring::drift::tenant_drift(&target, Some(chunk.to_vec())).len() as i64;
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
            vps_drifted += crate::monitoring::drift::vps_drift(&target, Some(chunk.to_vec())).len() as i64;
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

//! chom's drain worker: a background process on a Citus coordinator that moves the per-VPS changes the workers'
//! commits queue in chom's outbox into `chom.vps_load`, every `chom.drain_interval` ([`crate::maintain::outbox::drain`]).
//! One per database named in `chom.drain_databases`, started with the server when chom's library is in
//! `shared_preload_libraries`. Without it, `chom_drain_vps_deltas()` on a schedule does the same.

use crate::maintain::outbox;
use crate::pg::settings::{self, DRAIN_DATABASES, DRAIN_INTERVAL_MS};
use crate::schema::layout::{node, Layout, Node};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// Registers one drain worker per database of `chom.drain_databases`; called from _PG_init, which does so
/// only while shared_preload_libraries are loaded (a worker can be registered then only).
pub fn register() {
    // SAFETY: reads a flag of the postmaster.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    let databases = settings::string_value(&DRAIN_DATABASES);
    for database in databases.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        BackgroundWorkerBuilder::new(&format!("chom drain {database}"))
            .set_type("chom drain")
            .set_library(&format!("chom-{}", env!("CARGO_PKG_VERSION")))
            .set_function("chom_drain_worker_main")
            .set_extra(database)
            .enable_spi_access()
            // an error (a worker node unreachable, the database gone) ends the process: start again later
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

fn interval() -> Duration {
    Duration::from_millis(u64::try_from(DRAIN_INTERVAL_MS.get()).unwrap_or(1000))
}

/// One drain, when this database has chom installed on distributed tables and this is the coordinator.
fn drain_once() {
    let installed: bool =
        crate::pg::db::one("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'chom')", &[])
            .unwrap_or(false);
    if !installed || node() != Node::Coordinator {
        return;
    }
    if let Some(target) = crate::schema::resolve::installed().filter(|target| target.layout == Layout::Distributed) {
        outbox::drain(&target);
    }
}

/// The drain worker's main function (named in its registration).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn chom_drain_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("chom: draining the Citus outbox of database \"{database}\" every {:?}", interval());
    while BackgroundWorker::wait_latch(Some(interval())) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloads the configuration files, as Postgres' own background processes do on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // the worker's session takes the database's settings, search_path among them
        BackgroundWorker::transaction(|| crate::pg::settings::with_catalog_search_path(drain_once));
    }
}

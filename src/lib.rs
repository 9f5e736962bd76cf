//! chom: CHOM's database optimisations as a PostgreSQL extension, in six planes, each a folder, declared
//! bottom-up (each uses only those before it; scripts/layers.py checks it):
//!
//! - [`pg`]: Postgres itself (errors, SPI, prepared plans, settings);
//! - [`schema`]: CHOM's tables, who chom acts as, chom's statements and catalogue, the one resolution of the
//!   installation;
//! - [`maintain`]: the triggers, the commit step, the busy tenant's deltas, the recounts, Citus's outbox;
//! - [`control`]: one inspection, one decision, install/uninstall, status, the migrations guard;
//! - [`monitoring`]: chom.runs, drift and repair, the probe, the metrics, the batched refresh;
//! - [`api`]: what the application calls: tenant stats, the quota, VPS placement.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

// The planes, bottom-up: each uses only those above it (scripts/layers.py checks it).
mod pg;
mod schema;
mod maintain;
mod control;
mod monitoring;
mod api;

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/managed_indexes.sql", name = "managed_indexes", requires = ["schema"]);
extension_sql_file!("../sql/catalog.sql", name = "catalog", requires = ["schema"]);
extension_sql_file!(
    "../sql/guard.sql",
    name = "guard",
    requires = ["schema", control::guard::chom::guard_dropped_columns, control::guard::chom::guard_altered_tables]
);
extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires =
        ["schema", monitoring::refresh::chom::refresh_batch, monitoring::refresh::chom::refuse_transaction_block]
);
extension_sql_file!(
    "../sql/comments.sql",
    name = "comments",
    requires = [
        "monitoring",
        "catalog",
        control::install::chom_install,
        control::install::chom_uninstall,
        control::install::chom_index_ddl,
        control::status::chom_status,
        control::status::chom_index_usage,
        api::stats::chom_tenant_stats,
        api::quota::chom_tenant_quota,
        api::stats::chom_refresh_tenant,
        api::stats::chom_refresh_all,
        monitoring::drift::chom_cache_drift,
        monitoring::drift::chom_vps_drift,
        monitoring::drift::chom_repair_drift,
        maintain::deltas::chom_fold_deltas,
        maintain::outbox::chom_drain_vps_deltas,
        monitoring::probe::chom_drift_probe,
        monitoring::metrics::chom_metrics,
        monitoring::runs::chom::record_run,
        api::placement::chom_pick_vps,
        api::placement::chom_vps_load,
        maintain::pending::chom_apply_pending,
        maintain::triggers::chom_sites_aggregates,
        maintain::triggers::chom_vps_registry
    ]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::settings::register();
    schema::resolve::register_invalidation();
    maintain::shards::register_invalidation();
    maintain::triggers::register_invalidation();
    maintain::pending::register_callbacks();
    maintain::drain_worker::register();
}

#[cfg(any(test, feature = "pg_test"))]
mod test_support;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

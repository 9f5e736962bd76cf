//! chom: CHOM's database optimisations as a PostgreSQL extension.
//!
//! - [`install`]: chom_install() / chom_uninstall() / chom_index_ddl() over the [`catalog`] of managed objects
//!   on CHOM's tables ([`target`]);
//! - [`aggregates`]: statement-level triggers that keep tenant aggregates and per-VPS loads exact, through the
//!   transaction's [`pending`] changes, applied at commit;
//! - [`stats`], [`placement`], [`drift`], [`status`]: the SQL functions the application and DBAs call;
//! - [`monitoring`]: chom_metrics(), chom_drift_probe(), the history of chom's runs, the batched refresh.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod aggregates;
mod catalog;
mod citus;
mod control;
mod db;
mod deltas;
mod drain_worker;
mod drift;
mod errors;
mod guard;
mod identity;
mod inspect;
mod install;
mod monitoring;
mod pending;
mod placement;
mod plans;
mod queries;
mod quota;
mod settings;
mod stats;
mod status;
mod target;

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/managed_indexes.sql", name = "managed_indexes", requires = ["schema"]);
extension_sql_file!("../sql/catalog.sql", name = "catalog", requires = ["schema"]);
extension_sql_file!(
    "../sql/guard.sql",
    name = "guard",
    requires = ["schema", guard::chom::guard_dropped_columns, guard::chom::guard_altered_tables]
);
extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["schema", monitoring::chom::refresh_batch, monitoring::chom::refuse_transaction_block]
);
extension_sql_file!(
    "../sql/comments.sql",
    name = "comments",
    requires = [
        "monitoring",
        "catalog",
        install::chom_install,
        install::chom_uninstall,
        install::chom_index_ddl,
        status::chom_status,
        status::chom_index_usage,
        stats::chom_tenant_stats,
        quota::chom_tenant_quota,
        stats::chom_refresh_tenant,
        stats::chom_refresh_all,
        drift::chom_cache_drift,
        drift::chom_vps_drift,
        drift::chom_repair_drift,
        deltas::chom_fold_deltas,
        citus::chom_drain_vps_deltas,
        monitoring::chom_drift_probe,
        monitoring::chom_metrics,
        monitoring::chom::record_run,
        placement::chom_pick_vps,
        placement::chom_vps_load,
        pending::chom_apply_pending,
        aggregates::chom_sites_aggregates,
        aggregates::chom_vps_registry
    ]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    target::register_invalidation();
    pending::register_callbacks();
    drain_worker::register();
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

//! chom_status(): every object chom manages and the state it is in, rendered from the same decision as
//! chom_install() ([`crate::control::decide`]); chom_index_usage().

use crate::control::decide::{self, Health, IndexState};
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use crate::schema::target::Target;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

type StatusRow = (String, String, String, String, Option<String>);

/// One row per managed object: `kind` (column, storage, index, trigger, table), its `name` and `table_name`,
/// its `state` — installed, missing, reused (an equivalent index or the application's own column serves;
/// `detail` names it), invalid (an INVALID index of chom's, e.g. from a failed concurrent build), disabled (a
/// trigger someone disabled: aggregates drift), conflict (another relation has a managed index's name) — and
/// a `detail` saying what to do; following it works. Without CHOM's tables, one row says so. When chom is not
/// installed on them (never installed, or the tables were dropped and created again, as by Laravel's
/// migrate:fresh), a NOTICE says so with a HINT.
#[pg_extern(stable, parallel_safe)]
pub fn chom_status() -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(name, String),
        name!(table_name, String),
        name!(state, String),
        name!(detail, Option<String>),
    ),
> {
    let Some(target) = resolve::installed_or_discovered() else {
        return TableIterator::once((
            "schema".into(),
            "tenants".into(),
            "tenants".into(),
            Health::Missing.to_string(),
            Some("no tenants table: run chom_install() once CHOM's tables exist".into()),
        ));
    };
    let facts = crate::control::inspect::inspect(&target);
    let states = decide::classify(&facts);
    if !states.installed {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("chom is not installed on the tables of schema \"{}\"", target.schema),
            "chom_status",
        )
        .set_hint("Run SELECT * FROM chom_install(); to install it (also after migrations that create CHOM's tables).")
        .report(PgLogLevel::NOTICE);
    }
    let row = |kind: &str, name: &str, table: &str, (health, detail): (Health, Option<String>)| -> StatusRow {
        (kind.into(), name.into(), table.into(), health.to_string(), detail)
    };
    let mut rows: Vec<StatusRow> = Vec::new();
    for (column, state) in &states.columns {
        let name = target.column(column.col);
        rows.push(row("column", name, "tenants", decide::column_health(state, states.installed)));
    }
    let (health, mut detail) = decide::storage_health(&states.storage, states.installed);
    if let (Some(updates), Some(hot)) = (facts.storage.updates, facts.storage.hot_updates) {
        if updates > 0 {
            detail.push_str(&format!("; {}% of {updates} row updates HOT", (100 * hot + updates / 2) / updates));
        }
    }
    rows.push(row("storage", "fillfactor", "tenants", (health, Some(detail))));
    for (index, state) in &states.indexes {
        rows.push(row("index", &index.name, &index.table, decide::index_health(index, state, states.installed)));
    }
    for (trigger, state) in &states.triggers {
        rows.push(row("trigger", trigger.name, trigger.table, decide::trigger_health(trigger, state)));
    }
    for (name, table, health, detail) in decide::own_table_health(&facts.own_tables, states.installed) {
        rows.push(row("table", name, table, (health, Some(detail))));
    }
    TableIterator::new(rows)
}

/// The index serving each catalogue index (chom's own, or the one it reuses), with the catalogue's name.
fn serving_indexes(target: &Target) -> (Vec<String>, Vec<String>) {
    let states = decide::classify(&crate::control::inspect::inspect(target));
    states
        .indexes
        .into_iter()
        .filter_map(|(index, state)| match state {
            IndexState::Installed | IndexState::Untied => Some((index.name.clone(), index.name)),
            IndexState::Reused(other) => Some((other, index.name)),
            _ => None,
        })
        .unzip()
}

/// Usage of the indexes serving chom's catalogue (chom's own, or the equivalent index it reused): scans and
/// tuples read since the statistics were reset, size, and `unused` when never scanned; then every other index
/// that a chom index makes redundant (a non-unique index whose key columns are a left prefix of a chom
/// index's), with `redundant_with` naming it — a candidate to drop after checking the application's queries.
#[pg_extern(stable, parallel_safe)]
pub fn chom_index_usage() -> TableIterator<
    'static,
    (
        name!(index_name, String),
        name!(table_name, String),
        name!(scans, i64),
        name!(tuples_read, i64),
        name!(size_bytes, i64),
        name!(unused, bool),
        name!(redundant_with, Option<String>),
    ),
> {
    let target = resolve::require_installed();
    let (serving, catalogue) = serving_indexes(&target);
    let args = [target.schema.clone().into(), serving.into(), catalogue.into()];
    let rows = crate::pg::db::rows(&queries::sql(&target, Query::IndexUsage), &args, |row| {
        (
            row.required(1),
            row.required(2),
            row.required(3),
            row.required(4),
            row.required(5),
            row.required(6),
            row.get(7),
        )
    });
    TableIterator::new(rows)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn index_usage_names_chom_indexes_and_the_indexes_they_make_redundant() {
        install_with_data();
        assert_eq!(count("SELECT count(*) FROM chom_index_usage() WHERE redundant_with IS NULL"), 21);
        // sites_vps_id_index (vps_id) is a left prefix of idx_sites_vps_status (vps_id, status)
        assert_eq!(
            count("SELECT count(*) FROM chom_index_usage() WHERE index_name = 'sites_vps_id_index' AND redundant_with = 'idx_sites_vps_status'"),
            1
        );
        // unique indexes enforce constraints: never reported as redundant
        assert_eq!(count("SELECT count(*) FROM chom_index_usage() u JOIN pg_index i ON i.indexrelid = u.index_name::regclass WHERE u.redundant_with IS NOT NULL AND i.indisunique"), 0);
    }

    #[pg_test]
    fn status_reports_chom_own_tables() {
        install_with_data();
        let deltas = "SELECT state || ': ' || detail FROM chom_status() WHERE name = 'chom.tenant_deltas'";
        assert_eq!(Spi::get_one::<String>(deltas).unwrap().as_deref(), Some("installed: no unfolded deltas"));
        Spi::run("INSERT INTO chom.tenant_deltas (tenant_id, sites, storage_mb) SELECT id, 1, 0 FROM tenants LIMIT 2")
            .unwrap();
        assert_eq!(
            Spi::get_one::<String>(deltas).unwrap().as_deref(),
            Some("installed: 2 unfolded deltas (the fold worker adds them to tenants; chom_fold_deltas() folds them now)")
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE name = 'chom.vps_load' AND state = 'installed'"), 1);
        assert_eq!(
            count("SELECT count(*) FROM chom_status() WHERE name = 'chom.vps_delta'"),
            0,
            "no outbox on one node"
        );
    }

    #[pg_test]
    fn status_reports_an_invalid_index() {
        install_with_data();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_sites_vps_status'::regclass").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM chom_status() WHERE name = 'idx_sites_vps_status' AND state = 'invalid'"),
            1
        );
        Spi::run("ALTER TABLE sites DISABLE TRIGGER chom_sites_insert").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM chom_status() WHERE name = 'chom_sites_insert' AND state = 'disabled'"),
            1
        );
    }

    #[pg_test]
    fn an_invalid_index_of_chom_name_and_definition_is_rebuilt_by_following_the_advice() {
        load_schema();
        // what an interrupted CREATE INDEX CONCURRENTLY from chom_index_ddl() leaves: chom's name and columns,
        // INVALID, and no comment (the COMMENT statement never ran)
        Spi::run("CREATE INDEX idx_audit_resource_lookup ON audit_logs (resource_type, resource_id)").unwrap();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_audit_resource_lookup'::regclass")
            .unwrap();
        let state = "SELECT state FROM chom_status() WHERE name = 'idx_audit_resource_lookup'";
        assert_eq!(Spi::get_one::<String>(state).unwrap().as_deref(), Some("invalid"));
        let ddl: Vec<String> = Spi::connect(|c| {
            c.select("SELECT s FROM chom_index_ddl() s WHERE s LIKE '%idx_audit_resource_lookup%'", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        assert_eq!(ddl.len(), 3, "{ddl:?}");
        assert!(ddl[0].starts_with("DROP INDEX CONCURRENTLY IF EXISTS"), "{ddl:?}");
        assert!(ddl[1].starts_with("CREATE INDEX CONCURRENTLY"), "{ddl:?}");
        // chom_install() (the blocking way) rebuilds it too
        assert_eq!(
            count("SELECT count(*) FROM chom_install() WHERE name = 'idx_audit_resource_lookup' AND action LIKE 'created (replaced%'"),
            1
        );
        assert_eq!(Spi::get_one::<String>(state).unwrap().as_deref(), Some("installed"));
        assert_eq!(
            count(
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'idx_audit_resource_lookup'::regclass AND indisvalid"
            ),
            1
        );
    }

    #[pg_test]
    fn an_index_squatting_on_a_chom_name_is_a_conflict_for_install_status_and_ddl_alike() {
        load_schema();
        Spi::run("CREATE INDEX idx_sites_vps_status ON sites (domain)").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM chom_install() WHERE name = 'idx_sites_vps_status' AND action LIKE 'skipped (another relation has its name%'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE name = 'idx_sites_vps_status' AND state = 'conflict' AND detail LIKE '%RENAME%'"), 1);
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl() s WHERE s LIKE '%idx_sites_vps_status%'"), 0);
        // following the advice gets out
        Spi::run("ALTER INDEX idx_sites_vps_status RENAME TO sites_domain_lookup").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM chom_install() WHERE name = 'idx_sites_vps_status' AND action = 'created'"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM chom_status() WHERE name = 'idx_sites_vps_status' AND state = 'installed'"),
            1
        );
        // and uninstall leaves the application's index alone
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname = 'sites_domain_lookup'"), 1);
    }

    #[pg_test]
    fn every_unhealthy_state_is_left_by_running_chom_install() {
        install_with_data();
        Spi::run("ALTER TABLE sites DISABLE TRIGGER chom_sites_update; DROP INDEX idx_sites_vps_status; ALTER TABLE tenants RESET (fillfactor)").unwrap();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_users_org_role'::regclass").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 4);
        Spi::run("SELECT count(*) FROM chom_install()").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
        assert_eq!(drifted_tenants(), 0);
    }
}

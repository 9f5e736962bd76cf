//! chom_status(): every object chom manages and the state it is in.

use crate::catalog::{self, Named};
use crate::queries::{self, Query};
use crate::target::{self, CACHED_COLUMNS};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// One row per managed object: `kind` (column, storage, index, trigger, table), its `name` and `table_name`,
/// its `state` — installed, missing, reused (an equivalent index serves; `detail` names it), invalid (e.g. an
/// INVALID index left by a failed concurrent build), disabled (a trigger someone disabled: aggregates will
/// drift) — and a `detail` saying what to do. Without CHOM's tables, one row says so.
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
    let Some(target) = target::installed().or_else(target::discover) else {
        return TableIterator::once((
            "schema".into(),
            "tenants".into(),
            "tenants".into(),
            "missing".into(),
            Some("no tenants table: run chom_install() once CHOM's tables exist".into()),
        ));
    };
    let installed = target::installed().is_some();
    let not_installed = || Some("run chom_install()".to_string());
    let mut rows: Vec<(String, String, String, String, Option<String>)> = Vec::new();
    for (column, _, _) in CACHED_COLUMNS {
        let present = target::column_type(&target, "tenants", column).is_some();
        let (state, detail) = match (present, installed) {
            (true, true) => ("installed", None),
            (true, false) => {
                ("missing", Some("the column exists but chom does not maintain it: run chom_install()".into()))
            }
            (false, _) => ("missing", not_installed()),
        };
        rows.push(("column".into(), (*column).into(), "tenants".into(), state.into(), detail));
    }
    rows.push(fillfactor_status(&target, installed));
    for index in catalog::managed_indexes(&target.extension_schema) {
        let (state, detail) = if let Some(why) = index.missing_prerequisite(&target) {
            ("missing".to_string(), Some(why))
        } else {
            match index.named(&target) {
                Named::Index { valid: true, marked: true, .. } => ("installed".into(), None),
                Named::Index { valid: true, .. } => ("reused".into(), Some(index.name.clone())),
                Named::Index { valid: false, .. } => (
                    "invalid".into(),
                    Some(
                        "INVALID index (failed concurrent build): run chom_index_ddl() again or chom_install()".into(),
                    ),
                ),
                Named::Other => ("missing".into(), Some(format!("another relation is named {}", index.name))),
                Named::Absent => match index.equivalent(&target) {
                    Some(equivalent) => ("reused".into(), Some(equivalent)),
                    None => ("missing".into(), not_installed()),
                },
            }
        };
        rows.push(("index".into(), index.name.clone(), index.table.clone(), state, detail));
    }
    for trigger in catalog::TRIGGERS {
        let (state, detail) = match trigger.enabled(&target) {
            Some(true) => ("installed", None),
            Some(false) => (
                "disabled",
                Some(format!(
                    "aggregates drift while it is disabled: ALTER TABLE {} ENABLE TRIGGER {}, then SELECT chom_repair_drift()",
                    target.table(trigger.table),
                    trigger.name
                )),
            ),
            None => ("missing", not_installed()),
        };
        rows.push(("trigger".into(), trigger.name.into(), trigger.table.into(), state.into(), detail));
    }
    let load_rows: i64 = crate::db::one(
        &format!("SELECT count(*) FROM {}.chom_vps_load", quote_identifier(&target.extension_schema)),
        &[],
    )
    .unwrap_or(0);
    rows.push((
        "table".into(),
        "chom_vps_load".into(),
        "vps_servers".into(),
        if installed { "installed" } else { "missing" }.into(),
        Some(format!("{load_rows} VPS rows")),
    ));
    TableIterator::new(rows)
}

/// The `tenants.fillfactor` row: the fillfactor and how many of the table's row updates were HOT since the
/// statistics were reset (the triggers' counter updates are most of them).
fn fillfactor_status(target: &target::Target, installed: bool) -> (String, String, String, String, Option<String>) {
    let origin = crate::install::recorded(target, "storage", "fillfactor");
    let fillfactor = target::fillfactor(target, "tenants").flatten().unwrap_or(100);
    let hot: Option<String> = crate::db::one(
        "SELECT format('%s%% of %s row updates HOT', round(100.0 * n_tup_hot_upd / n_tup_upd), n_tup_upd) \
           FROM pg_catalog.pg_stat_all_tables WHERE schemaname = $1 AND relname = 'tenants' AND n_tup_upd > 0",
        &[target.schema.clone().into()],
    );
    let state = match (installed, origin.as_deref()) {
        (true, Some("created")) if fillfactor < 100 => "installed",
        (true, Some("reused")) => "reused",
        _ => "missing",
    };
    let mut detail = format!("fillfactor {fillfactor}");
    if let Some(hot) = hot {
        detail.push_str("; ");
        detail.push_str(&hot);
    }
    if state == "missing" {
        detail.push_str(if installed {
            "; reset since chom_install(): chom_install() sets it again"
        } else {
            "; run chom_install()"
        });
    }
    ("storage".into(), "fillfactor".into(), "tenants".into(), state.into(), Some(detail))
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
    let target = target::require_installed();
    let rows = crate::db::rows(&queries::sql(&target, Query::IndexUsage), &[], |row| {
        (
            row.get(1).unwrap_or_default(),
            row.get(2).unwrap_or_default(),
            row.get(3).unwrap_or(0),
            row.get(4).unwrap_or(0),
            row.get(5).unwrap_or(0),
            row.get(6).unwrap_or(false),
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
}

//! Installing chom on CHOM's tables and removing it again: chom_install(), chom_uninstall(), chom_index_ddl().
//!
//! Lock order (both directions, documented in the README): sites, vps_servers, then tenants. Site writers take
//! sites before tenants too, so an install waits for them instead of deadlocking with them.

use crate::catalog::{self, ManagedIndex, Named};
use crate::queries::{self, Query};
use crate::target::{self, Target, CACHED_COLUMNS};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

fn run(sql: &str) {
    crate::db::run(sql, &[]);
}

fn record(target: &Target, kind: &str, name: &str, table: Option<&str>, origin: &str, reused: Option<&str>) {
    let sql = format!(
        "INSERT INTO {}.chom_installed (kind, name, table_name, origin, reused_index) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, name) DO NOTHING",
        quote_identifier(&target.extension_schema)
    );
    crate::db::run(&sql, &[kind.into(), name.into(), table.into(), origin.into(), reused.into()]);
}

/// How chom_install() recorded an object in chom_installed (`created` or `reused`), None when it did not.
pub(crate) fn recorded(target: &Target, kind: &str, name: &str) -> Option<String> {
    let sql = format!(
        "SELECT origin FROM {}.chom_installed WHERE kind = $1 AND name = $2",
        quote_identifier(&target.extension_schema)
    );
    crate::db::one(&sql, &[kind.into(), name.into()])
}

fn depends_on_extension(kind: &str, object: &str) {
    run(&format!("ALTER {kind} {object} DEPENDS ON EXTENSION chom"));
}

fn lock_tables(target: &Target) {
    run(&format!("LOCK TABLE {}, {} IN SHARE ROW EXCLUSIVE MODE", target.table("sites"), target.table("vps_servers")));
}

/// Installs everything chom manages on CHOM's tables, in one transaction: the cached aggregate columns on
/// `tenants` (filled by one set-based pass, after giving the table room for HOT updates), the per-VPS load
/// table, the managed indexes (reusing equivalent ones) and the triggers. Idempotent; each row says what was done: `created`, `exists`, `reused <index>` or
/// `skipped <why>`. Errors name what is missing or mistyped (42P01, 42703, 42804) and leave nothing behind.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_install() -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let target = target::installed().or_else(target::discover).unwrap_or_else(|| {
        crate::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "chom cannot be installed: no tenants table was found",
            Some("Create CHOM's tables (or restore them) first, or SET chom.target_schema to their schema."),
        )
    });
    target::check_required(&target);
    lock_tables(&target);
    target::forget_installed();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let first_install = target::installed().is_none();
    record(&target, "schema", &target.schema, None, "created", None);

    // Columns: add the missing ones in one ALTER (ACCESS EXCLUSIVE on tenants for a moment, no rewrite).
    let mut added = Vec::new();
    for (column, definition, _) in CACHED_COLUMNS {
        if target::column_type(&target, "tenants", column).is_none() {
            added.push(format!("ADD COLUMN {} {definition}", quote_identifier(column)));
            record(&target, "column", column, Some("tenants"), "created", None);
            rows.push(("column".into(), format!("tenants.{column}"), "created".into()));
        } else if recorded(&target, "column", column).is_none() {
            record(&target, "column", column, Some("tenants"), "reused", None);
            rows.push(("column".into(), format!("tenants.{column}"), "reused (already present)".into()));
        } else {
            rows.push(("column".into(), format!("tenants.{column}"), "exists".into()));
        }
    }
    if !added.is_empty() {
        run(&format!("ALTER TABLE {} {}", target.table("tenants"), added.join(", ")));
    }
    let fillfactor = install_fillfactor(&target);
    rows.push(("storage".into(), "tenants.fillfactor".into(), fillfactor));
    if first_install {
        // Exact from the start: every tenant recounted while sites writers wait on the lock taken above.
        crate::db::run(&queries::sql(&target, Query::RecountTenants), &[Option::<Vec<pgrx::Uuid>>::None.into()]);
        crate::db::run(&queries::sql(&target, Query::RecountVps), &[Option::<Vec<pgrx::Uuid>>::None.into()]);
        crate::db::run(&queries::sql(&target, Query::ForgetGoneVps), &[Option::<Vec<pgrx::Uuid>>::None.into()]);
        rows.push(("table".into(), "chom_vps_load".into(), "filled".into()));
    }

    for index in catalog::managed_indexes(&target.extension_schema) {
        let action = install_index(&target, &index);
        rows.push(("index".into(), index.name.clone(), action));
    }

    for trigger in catalog::TRIGGERS {
        let action = if trigger.enabled(&target).is_some() {
            "exists"
        } else {
            run(&trigger.create_sql(&target));
            depends_on_extension("TRIGGER", &format!("{} ON {}", trigger.name, target.table(trigger.table)));
            "created"
        };
        record(&target, "trigger", trigger.name, Some(trigger.table), "created", None);
        rows.push(("trigger".into(), trigger.name.into(), action.into()));
    }
    TableIterator::new(rows)
}

/// Gives `tenants` room on every page for new row versions (chom.tenants_fillfactor), so that the triggers'
/// counter updates stay HOT (no index entries) even when one statement changes many tenants of one page. Set
/// before the first fill, which rewrites every tenant row and so lays the table out with that room at no extra
/// cost. A fillfactor the table already has is the DBA's and is kept; chom_uninstall() resets only its own.
fn install_fillfactor(target: &Target) -> String {
    let wanted = crate::settings::TENANTS_FILLFACTOR.get();
    match (recorded(target, "storage", "fillfactor").as_deref(), target::fillfactor(target, "tenants")) {
        (Some("created"), Some(None)) if wanted < 100 => {
            set_fillfactor(target, wanted);
            format!("set to {wanted} again (it had been reset)")
        }
        (Some(_), current) => format!("exists ({})", current.flatten().unwrap_or(100)),
        (None, None) => "skipped (partitioned table: set fillfactor on its partitions)".into(),
        (None, Some(Some(own))) => {
            record(target, "storage", "fillfactor", Some("tenants"), "reused", None);
            format!("kept ({own}, the table's own setting)")
        }
        (None, Some(None)) if wanted >= 100 => {
            record(target, "storage", "fillfactor", Some("tenants"), "reused", None);
            "kept (100: chom.tenants_fillfactor = 100)".into()
        }
        (None, Some(None)) => {
            set_fillfactor(target, wanted);
            record(target, "storage", "fillfactor", Some("tenants"), "created", None);
            format!("set to {wanted} (room for HOT updates of the cached aggregates)")
        }
    }
}

fn set_fillfactor(target: &Target, fillfactor: i32) {
    run(&format!("ALTER TABLE {} SET (fillfactor = {fillfactor})", target.table("tenants")));
}

fn create_index(target: &Target, index: &ManagedIndex) {
    run(&index.create_sql(target, false));
    run(&index.mark_sql(target));
}

/// Creates, adopts, reuses or skips one catalogue index; returns the action for chom_install()'s report.
fn install_index(target: &Target, index: &ManagedIndex) -> String {
    if let Some(why) = index.missing_prerequisite(target) {
        return format!("skipped ({why})");
    }
    let mut action = "created".to_string();
    match index.named(target) {
        Named::Other => {
            return format!("skipped (a relation named {} exists and is not this index)", index.name);
        }
        Named::Index { valid: true, marked, same_keys } => {
            if marked || recorded(target, "index", &index.name).as_deref() == Some("created") {
                // built by chom_install() or by chom_index_ddl() (the online path): chom's own
                record(target, "index", &index.name, Some(&index.table), "created", None);
                depends_on_extension("INDEX", &index.qualified(target));
                return "exists".into();
            }
            if !same_keys {
                return format!("skipped (an index named {} with other key columns exists)", index.name);
            }
            record(target, "index", &index.name, Some(&index.table), "reused", Some(&index.name));
            return format!("reused {}", index.name);
        }
        Named::Index { valid: false, marked: true, .. } => {
            // a concurrent build of chom's that failed: rebuild it
            run(&format!("DROP INDEX {}", index.qualified(target)));
            action = "created (replaced an INVALID index left by a failed concurrent build)".into();
        }
        Named::Index { valid: false, marked: false, .. } => {
            return format!("skipped (index {} is INVALID; drop or REINDEX it, then install again)", index.name);
        }
        Named::Absent => {
            if let Some(equivalent) = index.equivalent(target) {
                record(target, "index", &index.name, Some(&index.table), "reused", Some(&equivalent));
                return format!("reused {equivalent}");
            }
        }
    }
    create_index(target, index);
    depends_on_extension("INDEX", &index.qualified(target));
    record(target, "index", &index.name, Some(&index.table), "created", None);
    action
}

/// Removes exactly what chom_install() added: the triggers, the indexes chom created (never reused ones), the
/// cached columns unless they were there before, the fillfactor chom gave `tenants`, and chom's per-VPS
/// counts. Afterwards `DROP EXTENSION chom` succeeds and CHOM's schema is as it was. Returns one row per object with `dropped` or `kept (...)`.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_uninstall() -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let Some(target) = target::installed() else {
        pgrx::notice!("chom is not installed on CHOM's tables: nothing to remove");
        return TableIterator::new(Vec::new());
    };
    // what this transaction's writes would still apply at commit goes with the triggers and columns
    crate::pending::discard();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let sites_exist = target::table_exists(&target, "sites");
    if sites_exist && target::table_exists(&target, "vps_servers") {
        lock_tables(&target);
    }
    for trigger in catalog::TRIGGERS {
        if trigger.enabled(&target).is_some() {
            run(&format!("DROP TRIGGER {} ON {}", trigger.name, target.table(trigger.table)));
            rows.push(("trigger".into(), trigger.name.into(), "dropped".into()));
        }
    }
    let sql = format!(
        "SELECT kind, name, origin, reused_index FROM {}.chom_installed WHERE kind IN ('index', 'column', 'storage') \
         ORDER BY kind DESC, name",
        quote_identifier(&target.extension_schema)
    );
    let installed: Vec<(String, String, String, Option<String>)> = crate::db::rows(&sql, &[], |row| {
        (row.get(1).unwrap_or_default(), row.get(2).unwrap_or_default(), row.get(3).unwrap_or_default(), row.get(4))
    });
    let mut dropped_columns = Vec::new();
    let tenants_exist = target::table_exists(&target, "tenants");
    for (kind, name, origin, reused) in installed {
        match (kind.as_str(), origin.as_str()) {
            ("storage", "created") => {
                if tenants_exist {
                    run(&format!("ALTER TABLE {} RESET ({})", target.table("tenants"), quote_identifier(&name)));
                }
                rows.push(("storage".into(), format!("tenants.{name}"), "reset".into()));
            }
            ("storage", _) => rows.push(("storage".into(), format!("tenants.{name}"), "kept (not chom's)".into())),
            ("index", "created") => {
                run(&format!("DROP INDEX IF EXISTS {}.{}", quote_identifier(&target.schema), quote_identifier(&name)));
                rows.push(("index".into(), name, "dropped".into()));
            }
            ("index", _) => rows.push(("index".into(), name, format!("kept (reused {})", reused.unwrap_or_default()))),
            ("column", "created") => {
                dropped_columns.push(format!("DROP COLUMN IF EXISTS {}", quote_identifier(&name)));
                rows.push(("column".into(), format!("tenants.{name}"), "dropped".into()));
            }
            _ => rows.push(("column".into(), format!("tenants.{name}"), "kept (was there before chom)".into())),
        }
    }
    if !dropped_columns.is_empty() && tenants_exist {
        run(&format!("ALTER TABLE {} {}", target.table("tenants"), dropped_columns.join(", ")));
    }
    let chom = quote_identifier(&target.extension_schema);
    run(&format!("DELETE FROM {chom}.chom_vps_load"));
    run(&format!("DELETE FROM {chom}.chom_installed"));
    target::forget_installed();
    rows.push(("table".into(), "chom_vps_load".into(), "emptied".into()));
    TableIterator::new(rows)
}

/// The statements that build the managed indexes still missing (neither present nor reused), for `\gexec` on
/// a busy database: `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (or plain CREATE INDEX when `concurrently` is
/// false) each followed by the COMMENT that marks the index as chom's, so that chom_install() adopts it and
/// chom_uninstall() removes it. CONCURRENTLY cannot run inside a transaction block: run them with psql's \gexec.
/// NULL: 22004.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_index_ddl(concurrently: default!(Option<bool>, true)) -> SetOfIterator<'static, String> {
    let Some(concurrently) = concurrently else {
        crate::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "concurrently must not be NULL",
            Some("Pass true (CREATE INDEX CONCURRENTLY, the default) or false."),
        )
    };
    let target = target::installed().or_else(target::discover).unwrap_or_else(|| {
        crate::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "no tenants table was found: there is no CHOM schema to index",
            Some("SET chom.target_schema to the schema that holds CHOM's tables."),
        )
    });
    let mut statements = Vec::new();
    for index in catalog::managed_indexes(&target.extension_schema) {
        if index.missing_prerequisite(&target).is_some() {
            continue;
        }
        let wanted = match index.named(&target) {
            Named::Absent => index.equivalent(&target).is_none(),
            Named::Index { valid: false, marked: true, .. } => {
                statements.push(format!(
                    "DROP INDEX {}{}",
                    if concurrently { "CONCURRENTLY " } else { "" },
                    index.qualified(&target)
                ));
                true
            }
            _ => false,
        };
        if wanted {
            statements.push(index.create_sql(&target, concurrently));
            statements.push(index.mark_sql(&target));
        }
    }
    SetOfIterator::new(statements)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn without_chom_tables_install_refuses_with_undefined_table() {
        define_sqlstate_of();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42P01"));
        assert_eq!(sqlstate("SELECT chom_pick_vps()").as_deref(), Some("55000"));
    }

    #[pg_test]
    fn install_is_idempotent() {
        install_with_data();
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE action = 'created'"), 0);
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn install_fills_the_aggregates_exactly() {
        install_with_data();
        assert!(count("SELECT count(*) FROM sites WHERE deleted_at IS NOT NULL") > 0, "fixture has soft-deleted sites");
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM tenants WHERE cached_at IS NULL"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
    }

    #[pg_test]
    fn uninstall_removes_what_chom_added_and_keeps_what_it_reused() {
        install_with_data();
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname LIKE 'idx\\_%' AND relkind = 'i'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname LIKE 'cached\\_%' AND NOT attisdropped"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname = 'sites_tenant_id_status_index'"), 1);
        assert_eq!(count("SELECT count(*) FROM chom_installed"), 0);
        assert_eq!(
            count("SELECT count(*) FROM pg_class WHERE relname = 'tenants' AND reloptions IS NULL"),
            1,
            "fillfactor reset"
        );
    }

    #[pg_test]
    fn a_fillfactor_the_table_already_has_is_kept() {
        load_schema();
        Spi::run("ALTER TABLE tenants SET (fillfactor = 90)").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE kind = 'storage' AND action = 'kept (90, the table''s own setting)'"), 1);
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE kind = 'storage' AND state = 'reused'"), 1);
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM pg_class WHERE relname = 'tenants' AND reloptions = '{fillfactor=90}'"),
            1
        );
    }

    #[pg_test]
    fn columns_added_by_the_application_are_adopted_and_kept() {
        load_schema();
        Spi::run("ALTER TABLE tenants ADD COLUMN cached_storage_mb bigint NOT NULL DEFAULT 0, ADD COLUMN cached_sites_count integer NOT NULL DEFAULT 0, ADD COLUMN cached_at timestamp(0) NULL").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE kind = 'column' AND action LIKE 'reused%'"), 3);
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname LIKE 'cached\\_%' AND NOT attisdropped"), 3);
    }

    #[pg_test]
    fn index_ddl_lists_only_missing_indexes() {
        load_schema();
        // 17 of 18: idx_tenants_cached_at needs the column chom_install() adds
        assert_eq!(
            count("SELECT count(*) FROM chom_index_ddl() s WHERE s LIKE 'CREATE INDEX CONCURRENTLY IF NOT EXISTS %'"),
            17
        );
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl(false) s WHERE s LIKE 'COMMENT ON INDEX %'"), 17);
        Spi::run("SELECT count(*) FROM chom_install()").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl()"), 0);
        Spi::run("DROP INDEX idx_sites_vps_status").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl()"), 2);
    }

    #[pg_test]
    fn indexes_built_from_index_ddl_are_adopted_as_chom_own() {
        load_schema();
        let ddl: Vec<String> = Spi::connect(|c| {
            c.select("SELECT s FROM chom_index_ddl(false) s", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        for statement in ddl {
            Spi::run(&statement).unwrap();
        }
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE kind = 'index' AND action = 'exists'"), 17);
        assert_eq!(count("SELECT count(*) FROM chom_installed WHERE kind = 'index' AND origin = 'created'"), 18);
    }
}

//! The migrations guard: chom's event triggers (sql/guard.sql) call these checks on DDL against CHOM's tables,
//! so that an application migration that would leave chom broken is refused before it takes effect, never
//! accepted to fail every later write.

use crate::control::decide::Step;
use crate::schema::resolve;
use crate::schema::target::{self, Problem, Target};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::ffi::CStr;

const UNINSTALL_HINT: &str = "To make this change, SELECT * FROM chom_uninstall(); first, migrate, then SELECT * FROM \
     chom_install(); (it checks what it needs). Integer widths of sites.storage_used_mb and tenants.cached_sites_count \
     may change while chom is installed.";

/// Schema and name of a relation.
fn relation(oid: pg_sys::Oid) -> Option<(String, String)> {
    // SAFETY: catalogue cache look-ups; a missing relation gives NULL names.
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        (!name.is_null() && !schema.is_null()).then(|| {
            (CStr::from_ptr(schema).to_string_lossy().into_owned(), CStr::from_ptr(name).to_string_lossy().into_owned())
        })
    }
}

/// Refuses (42P16) renaming the table that carries chom's sites triggers: chom is installed on CHOM's `sites` by
/// name, and would silently stop keeping the aggregates of a `sites` by another name.
fn refuse_renamed_sites(tables: &[pg_sys::Oid]) {
    let renamed: Option<String> = crate::pg::db::one(
        "SELECT c.relname::text FROM pg_catalog.pg_trigger t \
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid \
           JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid \
          WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY ($1) AND p.proname OPERATOR(pg_catalog.=) 'chom_sites_aggregates' \
            AND c.relname OPERATOR(pg_catalog.<>) 'sites' LIMIT 1",
        &[tables.to_vec().into()],
    );
    if let Some(name) = renamed {
        crate::pg::errors::raise_with_detail(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!("chom cannot work with this change: table sites renamed to {name}"),
            "chom keeps its aggregates from CHOM's sites table, found by its name.",
            UNINSTALL_HINT,
        );
    }
}

/// Where chom is installed, looked up afresh (the DDL being checked may have changed it).
fn installed() -> Option<Target> {
    resolve::forget_installed();
    resolve::installed()
}

/// What of chom reads or writes a column.
fn needed_for(table: &str, column: &str) -> &'static str {
    match (table, column) {
        ("tenants", "cached_sites_count" | "cached_storage_mb" | "cached_at") => {
            "chom keeps the tenant's cached aggregates in it (chom_tenant_stats(), the sites triggers)"
        }
        ("sites", _) => "chom's triggers on sites read it to keep the tenant aggregates and VPS loads exact",
        ("vps_servers", _) => "chom_pick_vps() and chom's vps_servers triggers read it",
        _ => "chom's triggers and functions use it as the table's key",
    }
}

/// The target with the new names of the columns chom uses that `changed` (a command's (table, column) pairs)
/// renamed; None when a missing column is not explained by exactly one renamed column of its table.
fn followed_renames(target: &Target, problems: &[Problem], changed: &[(pg_sys::Oid, i32)]) -> Option<Target> {
    let mut renamed = target.clone();
    for problem in problems {
        let Problem::MissingColumn { table, column } = problem else { return None };
        let role =
            target::column_roles().zip(&target.columns).position(|((t, _), name)| t == table && name == column)?;
        let in_use =
            |name: &str| target::column_roles().zip(&renamed.columns).any(|((t, _), n)| t == table && n == name);
        let candidates: Vec<String> = changed
            .iter()
            .filter(|(oid, attnum)| *attnum > 0 && relation(*oid) == Some((target.schema.clone(), table.clone())))
            .filter_map(|(oid, attnum)| column_name(*oid, *attnum))
            .filter(|name| !in_use(name))
            .collect();
        let [new_name] = candidates.as_slice() else { return None };
        renamed.columns[role] = new_name.clone();
    }
    (renamed != *target).then_some(renamed)
}

/// A column's current name.
fn column_name(table: pg_sys::Oid, attnum: i32) -> Option<String> {
    let attnum = i16::try_from(attnum).ok()?;
    // SAFETY: a catalogue cache look-up; a missing column gives NULL.
    unsafe {
        let name = pg_sys::get_attname(table, attnum, true);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Re-creates chom's triggers so that they carry `renamed`'s column names, one at a time (never without a
/// vps_servers trigger, which would make the drop event trigger take chom's per-VPS loads away), keeping what
/// the marked trigger's comment records.
fn carry_column_names(target: &Target, renamed: &Target) {
    let fillfactor_by_chom = crate::control::inspect::inspect(target).fillfactor_by_chom();
    for trigger in crate::schema::catalog::TRIGGERS {
        crate::control::install::apply(renamed, &Step::ReplaceTrigger(trigger));
    }
    crate::control::install::apply(renamed, &Step::MarkTrigger { fillfactor_by_chom });
    resolve::forget_installed();
}

/// The checks, in chom's own schema (called by chom's event triggers only).
#[pg_schema]
pub mod chom {
    use super::*;

    /// Refuses (2BP01) the drop of a column chom reads or writes from a table chom is installed on. Called by the
    /// sql_drop event trigger with the dropped columns and their tables.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn guard_dropped_columns(tables: Vec<pg_sys::Oid>, columns: Vec<String>) {
        let Some(target) = installed() else { return };
        for (table, column) in tables.into_iter().zip(columns) {
            let Some((schema, name)) = relation(table) else { continue };
            if schema == target.schema && target::needs_column(&name, &column) {
                crate::pg::errors::raise_with_detail(
                    PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop column {name}.{column}: chom needs it"),
                    needed_for(&name, &column),
                    UNINSTALL_HINT,
                );
            }
        }
    }

    /// Follows a rename of a column chom uses (chom's triggers then carry its new name), and refuses (42P16) an
    /// ALTER TABLE that leaves chom unable to work with CHOM's tables: a column type it cannot read, a column or
    /// table it needs dropped or renamed away. Called by the ddl_command_end event trigger with the tables the
    /// command changed and, for each, the column it changed (0 for the table itself).
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn guard_altered_tables(tables: Vec<pg_sys::Oid>, attnums: Vec<i32>) {
        let Some(target) = installed() else {
            // chom's sites triggers on no table named sites any more: the command renamed it. On a Citus worker
            // the shards of sites (sites_<shardid>) carry chom's triggers under their own names, and Citus
            // renames them itself (shard moves, splits)
            if crate::schema::layout::node() != crate::schema::layout::Node::Worker {
                refuse_renamed_sites(&tables);
            }
            return;
        };
        let changed: Vec<(pg_sys::Oid, i32)> = tables.into_iter().zip(attnums).collect();
        let touches_chom = changed.iter().filter_map(|(oid, _)| relation(*oid)).any(|(schema, name)| {
            schema == target.schema || ["tenants", "sites", "vps_servers"].contains(&name.as_str())
        });
        if !touches_chom {
            return;
        }
        target::check_row_security(&target);
        let mut problems: Vec<Problem> = target::problems(&target, true);
        if let Some(renamed) = followed_renames(&target, &problems, &changed) {
            carry_column_names(&target, &renamed);
            problems = target::problems(&renamed, true);
        }
        if problems.is_empty() {
            return;
        }
        let described: Vec<String> = problems.iter().map(|p| p.describe(&target)).collect();
        crate::pg::errors::raise_with_detail(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!("chom cannot work with this change: {}", described.join("; ")),
            format!("chom is installed on schema \"{}\" and keeps its aggregates from these columns.", target.schema),
            UNINSTALL_HINT,
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn drops_of_columns_chom_needs_are_refused_before_they_happen() {
        install_with_data();
        for (statement, expected) in [
            ("ALTER TABLE sites DROP COLUMN storage_used_mb", "2BP01"),
            ("ALTER TABLE sites DROP COLUMN tenant_id CASCADE", "2BP01"),
            ("ALTER TABLE sites DROP COLUMN deleted_at", "2BP01"),
            ("ALTER TABLE tenants DROP COLUMN cached_sites_count", "2BP01"),
            ("ALTER TABLE vps_servers DROP COLUMN health_status CASCADE", "2BP01"),
            ("ALTER TABLE sites ALTER COLUMN storage_used_mb TYPE numeric", "42P16"),
            ("ALTER TABLE sites ALTER COLUMN deleted_at TYPE text", "42P16"),
            ("ALTER TABLE vps_servers ALTER COLUMN spec_memory_mb TYPE bigint", "42P16"),
            ("ALTER TABLE tenants ALTER COLUMN cached_storage_mb TYPE numeric", "42P16"),
            ("ALTER TABLE tenants RENAME TO organizations_tenants", "42P16"),
            ("ALTER TABLE sites RENAME TO sites_archive", "42P16"),
            ("ALTER TABLE sites FORCE ROW LEVEL SECURITY", "0A000"),
            ("ALTER TABLE tenants FORCE ROW LEVEL SECURITY", "0A000"),
        ] {
            assert_eq!(sqlstate(statement).as_deref(), Some(expected), "{statement}");
        }
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
        // what chom does not use is the application's to change
        assert_eq!(sqlstate("ALTER TABLE sites DROP COLUMN site_type"), None);
        assert_eq!(sqlstate("ALTER TABLE tenants ALTER COLUMN name TYPE text"), None);
        Spi::run("UPDATE sites SET storage_used_mb = storage_used_mb + 1").unwrap();
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn integer_widenings_chom_can_follow_keep_it_exact() {
        install_with_data();
        assert_eq!(sqlstate("ALTER TABLE tenants ALTER COLUMN cached_sites_count TYPE bigint"), None);
        assert_eq!(sqlstate("ALTER TABLE sites ALTER COLUMN storage_used_mb TYPE integer"), None);
        Spi::run(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES \
             (gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000001', 'wide.test', -7)",
        )
        .unwrap();
        Spi::run("UPDATE sites SET storage_used_mb = storage_used_mb * 2 WHERE tenant_id = 'a0000000-0000-0000-0000-000000000002'").unwrap();
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        assert!(count("SELECT sites_count::bigint FROM chom_tenant_stats('a0000000-0000-0000-0000-000000000001')") > 0);
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    }

    #[pg_test]
    fn uninstall_and_drop_extension_pass_the_guard() {
        install_with_data();
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname LIKE 'cached\\_%' AND NOT attisdropped"), 0);
        // once chom is not installed, the application's schema is its own
        assert_eq!(sqlstate("ALTER TABLE sites DROP COLUMN storage_used_mb"), None);
    }

    #[pg_test]
    fn dropping_chom_tables_takes_chom_loads_with_them() {
        install_with_data();
        assert!(count("SELECT count(*) FROM chom.vps_load") > 0);
        Spi::run("DROP TABLE sites, vps_servers, tenants CASCADE").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom.vps_load"), 0, "no ghost VPS");
        assert_eq!(sqlstate("SELECT chom_pick_vps()").as_deref(), Some("55000"));
    }

    #[pg_test]
    fn renamed_columns_are_followed_and_stay_exact() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000001'";
        let exact = |storage: &str| {
            count(&format!(
                "SELECT count(*) FROM tenants t CROSS JOIN LATERAL chom_tenant_stats(t.id) chom \
                 CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(s.{storage}), 0) AS mb FROM sites s \
                                      WHERE s.tenant_id = t.id AND s.deleted_at IS NULL) live \
                 WHERE (chom.sites_count, chom.storage_mb) IS DISTINCT FROM (live.n, live.mb)"
            ))
        };
        let write = |domain: &str, storage: &str| {
            Spi::run(&format!(
                "INSERT INTO sites (id, tenant_id, vps_id, domain, {storage}) VALUES \
                 (gen_random_uuid(), {tenant}, 'b0000000-0000-0000-0000-000000000001', '{domain}', 11); \
                 UPDATE sites SET {storage} = {storage} + 1 WHERE tenant_id = {tenant}"
            ))
            .unwrap()
        };
        write("before.test", "storage_used_mb");
        // Laravel's renameColumn: ALTER TABLE ... RENAME COLUMN
        assert_eq!(sqlstate("ALTER TABLE sites RENAME COLUMN storage_used_mb TO storage_mb"), None);
        write("after.test", "storage_mb");
        assert_eq!(exact("storage_mb"), 0);
        assert_eq!(sqlstate("ALTER TABLE tenants RENAME COLUMN cached_sites_count TO sites_total"), None);
        assert_eq!(sqlstate("ALTER TABLE vps_servers RENAME COLUMN health_status TO health"), None);
        write("later.test", "storage_mb");
        assert_eq!(exact("storage_mb"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
        assert!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap().is_some());
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE kind = 'column' AND name = 'sites_total' AND state = 'installed'"), 1);
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
        // the triggers carry the new names, so a schema dump says them too; uninstall drops the renamed column
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%' AND position('storage_mb' in encode(tgargs, 'escape')) > 0"), 8);
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname = 'sites_total' AND NOT attisdropped"), 0);
    }
}

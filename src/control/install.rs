//! Installing chom on CHOM's tables and removing it again: chom_install(), chom_uninstall(), chom_index_ddl().
//! Each inspects the schema once ([`crate::control::inspect`]) and acts on the one decision of [`crate::control::decide`].
//!
//! Lock order (both directions, documented in the README): sites, vps_servers, then tenants. Site writers take
//! sites before tenants too, so an install waits for them instead of deadlocking with them.

use crate::control::decide::{self, IndexDdl, Step, UninstallStep};
use crate::schema::catalog::{self, ManagedIndex, ManagedTrigger};
use crate::schema::identity::{self, Principal};
use crate::schema::queries::{self, Query};
use crate::schema::resolve::{self, Need};
use crate::schema::target::{self, Target, CHOM_SCHEMA};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::{pg_sys, PgSqlErrorCode};

fn run(sql: &str) {
    crate::pg::db::run(sql, &[]);
}

fn lock_tables(target: &Target) {
    run(&format!("LOCK TABLE {}, {} IN SHARE ROW EXCLUSIVE MODE", target.table("sites"), target.table("vps_servers")));
}

/// Installs everything chom manages on CHOM's tables, in one transaction: the cached aggregate columns on
/// `tenants` (filled by one set-based pass, after giving the table room for HOT updates), the per-VPS loads,
/// the managed indexes (reusing equivalent ones, rebuilding chom's INVALID ones) and the triggers. Idempotent,
/// and the way back from every state chom_status() reports; each row says what was done: `created`, `exists`,
/// `reused <index>`, `enabled`, `filled`, `skipped (<why>)`. Errors name what is missing or mistyped (42P01,
/// 42703, 42804) and leave nothing behind.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_install() -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let target = resolve::require(Need::ToInstall);
    target::check_required(&target);
    identity::require_tables_owner_or_superuser(&target, "chom_install()");
    target::check_ownership(&target);
    if target.layout.distributed() {
        crate::control::citus::check_layout(&target);
        crate::schema::layout::refuse_inside_create_extension();
    }
    // chom's DDL as chom: the caller may be the tables' owner, who cannot attach chom's trigger functions
    let plan = identity::run_as(&target, Principal::Chom, || {
        crate::maintain::outbox::with_citus_settings(&target, || {
            lock_tables(&target);
            resolve::forget_installed();
            if target.layout.distributed() {
                crate::maintain::outbox::ensure_outbox(&target);
            }
            let states = decide::classify(&crate::control::inspect::inspect(&target));
            let plan = decide::plan_install(&states, crate::pg::settings::tenants_fillfactor());
            for step in &plan.steps {
                apply(&target, step);
            }
            plan
        })
    });
    resolve::forget_installed();
    let rows: Vec<(String, String, String)> =
        plan.report.into_iter().map(|(kind, name, action)| (kind.to_string(), name, action.to_string())).collect();
    TableIterator::new(rows)
}

/// Ties an index or trigger to the extension, so that DROP EXTENSION removes it. Not on Citus: it refuses the
/// tie for triggers, and records it for indexes on the coordinator only (DROP EXTENSION would then leave every
/// shard's copy behind); chom_uninstall() removes them there.
fn depends_on_extension(target: &Target, kind: &str, object: &str) {
    if !target.layout.distributed() {
        run(&format!("ALTER {kind} {object} DEPENDS ON EXTENSION chom"));
    }
}

fn create_index(target: &Target, index: &ManagedIndex) {
    run(&index.create_sql(target, false));
    run(&index.mark_sql(target));
    depends_on_extension(target, "INDEX", &index.qualified(target));
}

/// Makes one change of chom_install()'s plan.
pub(crate) fn apply(target: &Target, step: &Step) {
    let tenants = target.table("tenants");
    match step {
        Step::AddColumns(columns) => {
            let added: Vec<String> =
                columns.iter().map(|c| format!("ADD COLUMN {} {}", quote_identifier(c.name()), c.definition)).collect();
            run(&format!("ALTER TABLE {tenants} {}", added.join(", ")));
            for column in columns {
                let comment = quote_literal(catalog::COLUMN_MARKER);
                run(&format!("COMMENT ON COLUMN {tenants}.{} IS {comment}", quote_identifier(column.name())));
            }
        }
        Step::SetFillfactor(fillfactor) => run(&format!("ALTER TABLE {tenants} SET (fillfactor = {fillfactor})")),
        Step::Fill => {
            // exact from here on: every tenant and VPS recounted while sites writers wait on the install's lock
            let all = || Option::<Vec<pgrx::Uuid>>::None.into();
            identity::run_as(target, Principal::TablesOwner, || {
                crate::pg::db::run(&queries::sql(target, Query::RecountTenants), &[all()])
            });
            // deltas left by an earlier installation are part of what the recount replaced
            pgrx::Spi::connect_mut(|client| crate::maintain::deltas::forget(client, target, None));
            crate::pg::db::run(&queries::sql(target, Query::RecountVps), &[all()]);
            crate::pg::db::run(&queries::sql(target, Query::ForgetGoneVps), &[all()]);
        }
        Step::CreateIndex(index) => create_index(target, index),
        Step::RebuildIndex(index) => {
            run(&index.drop_sql(target, false));
            create_index(target, index);
        }
        Step::AdoptIndex(index) => depends_on_extension(target, "INDEX", &index.qualified(target)),
        Step::CreateTrigger(trigger) => {
            run(&trigger.create_sql(target));
            depends_on_extension(target, "TRIGGER", &trigger.on(target));
        }
        // in place (SHARE ROW EXCLUSIVE on the table: readers go on), keeping its tie to the extension
        Step::ReplaceTrigger(trigger) => {
            run(&trigger.create_sql(target).replacen("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER", 1))
        }
        Step::EnableTrigger(trigger) => run(&format!(
            "ALTER TABLE {} ENABLE TRIGGER {}",
            target.table(trigger.table),
            quote_identifier(trigger.name)
        )),
        Step::MarkTrigger { fillfactor_by_chom } => {
            let marker = if *fillfactor_by_chom { catalog::TRIGGER_MARKER_FILLFACTOR } else { catalog::TRIGGER_MARKER };
            let trigger = ManagedTrigger::by_name(catalog::MARKED_TRIGGER);
            run(&format!("COMMENT ON TRIGGER {} IS {}", trigger.on(target), quote_literal(marker)));
        }
    }
}

/// Removes exactly what chom_install() added, as CHOM's schema itself records it: the triggers, the indexes
/// chom built (never reused ones), the cached columns chom added (never the application's), the fillfactor chom
/// gave `tenants`, and chom's per-VPS loads. Afterwards `DROP EXTENSION chom` succeeds and CHOM's schema is as
/// it was. Returns one row per object with `dropped`, `reset` or `emptied`.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_uninstall() -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let Some(target) = resolve::installed() else {
        pgrx::notice!("chom is not installed on CHOM's tables: nothing to remove");
        // the loads of tables chom is no longer on mean nothing (chom_pick_vps() refuses without an install);
        // with no tables there is no owner to act for, so only a superuser empties them
        // SAFETY: reads the current user id.
        if unsafe { pg_sys::superuser() } {
            crate::pg::db::run(&format!("DELETE FROM {CHOM_SCHEMA}.vps_load"), &[]);
        }
        return TableIterator::new(Vec::new());
    };
    identity::require_tables_owner_or_superuser(&target, "chom_uninstall()");
    // what this transaction's writes would still apply at commit goes with the triggers and columns
    crate::maintain::pending::discard();
    identity::run_as(&target, Principal::Chom, || {
        crate::maintain::outbox::with_citus_settings(&target, || uninstall(&target))
    })
}

fn uninstall(
    target: &Target,
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    if target.layout.distributed() {
        // first, over connections of their own: they would wait for this transaction's locks on the shards
        crate::maintain::outbox::drop_shard_trigger_copies(target);
    }
    lock_tables(target);
    let states = decide::classify(&crate::control::inspect::inspect(target));
    let tenants = target.table("tenants");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for step in decide::plan_uninstall(&states) {
        match &step {
            UninstallStep::FoldDeltas => {
                crate::maintain::deltas::fold_all(target);
            }
            UninstallStep::DropTrigger(trigger) => run(&format!("DROP TRIGGER {}", trigger.on(target))),
            UninstallStep::DropIndex(index) => run(&index.drop_sql(target, false)),
            UninstallStep::DropColumns(columns) => {
                let dropped: Vec<String> =
                    columns.iter().map(|c| format!("DROP COLUMN {}", quote_identifier(target.column(c.col)))).collect();
                run(&format!("ALTER TABLE {tenants} {}", dropped.join(", ")));
            }
            UninstallStep::ResetFillfactor => run(&format!("ALTER TABLE {tenants} RESET (fillfactor)")),
            UninstallStep::EmptyVpsLoad => {
                crate::pg::db::run(&format!("DELETE FROM {CHOM_SCHEMA}.vps_load"), &[]);
                resolve::forget_installed();
            }
            UninstallStep::DropOutbox => crate::maintain::outbox::drop_outbox(target),
        }
        rows.extend(step.reported().into_iter().map(|(kind, name, action)| (kind.into(), name, action.to_string())));
    }
    TableIterator::new(rows)
}

/// The statements that build the managed indexes chom_install() would build, for `\gexec` on a busy database:
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (or plain CREATE INDEX when `concurrently` is false) each followed
/// by the COMMENT that marks the index as chom's, so that chom_install() adopts it and chom_uninstall() removes
/// it; an INVALID index of chom's (a failed concurrent build) is dropped first (`DROP INDEX CONCURRENTLY`).
/// CONCURRENTLY cannot run inside a transaction block: run them with psql's \gexec. NULL: 22004.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_index_ddl(concurrently: default!(Option<bool>, true)) -> SetOfIterator<'static, String> {
    let Some(concurrently) = concurrently else {
        crate::pg::errors::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "concurrently must not be NULL",
            Some("Pass true (CREATE INDEX CONCURRENTLY, the default) or false."),
        )
    };
    let target = resolve::require(Need::ToIndex);
    let states = decide::classify(&crate::control::inspect::inspect(&target));
    let mut statements = Vec::new();
    for ddl in decide::plan_index_ddl(&states) {
        let index = match ddl {
            IndexDdl::Create(index) => index,
            IndexDdl::Rebuild(index) => {
                statements.push(index.drop_sql(&target, concurrently));
                index
            }
        };
        statements.push(index.create_sql(&target, concurrently));
        statements.push(index.mark_sql(&target));
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
        assert_eq!(count("SELECT count(*) FROM chom.vps_load"), 0);
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
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE kind = 'index' AND state = 'installed'"), 18);
    }
}

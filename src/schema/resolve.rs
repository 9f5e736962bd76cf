//! Which installation of chom a function works on, resolved once per backend: the schema whose `sites`
//! carries chom's trigger (with the column names the trigger carries), its Citus layout, and for a new
//! install the schema to install on.

use crate::pg::errors::{raise, spi};
use crate::pg::plans::types::TEXT;
use crate::pg::settings;
use crate::schema::layout::{self, node, Layout, Node};
use crate::schema::target::{relation_oid, trigger_arguments, Target};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

/// The schema chom is installed in (a prepared look-up: this runs on every chom_tenant_stats() call).
pub fn extension_schema() -> String {
    let schema: Option<String> = Spi::connect(|client| {
        crate::pg::plans::read(
            client,
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'chom'",
            &[],
            &[],
        )
        .first()
        .get_one()
        .ok()
        .flatten()
    });
    schema
        .unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, "extension \"chom\" is not installed", None))
}

thread_local! {
    /// Where chom is installed, looked up once per backend: the application's calls (chom_tenant_stats(),
    /// chom_pick_vps()) then run a single statement. Cleared by [`forget_installed`] on any relcache
    /// invalidation: installing or uninstalling chom, or dropping CHOM's tables, in any backend, is DDL on
    /// CHOM's tables.
    static INSTALLED: std::mem::ManuallyDrop<std::cell::RefCell<Option<Target>>> =
        const { std::mem::ManuallyDrop::new(std::cell::RefCell::new(None)) };
}

/// Drops the cached installation (see [`INSTALLED`]) and what is kept beside it: the node, which tables exist,
/// the roles chom writes as.
pub fn forget_installed() {
    INSTALLED.with(|cached| cached.borrow_mut().take());
    crate::schema::layout::forget_node();
    crate::schema::target::forget_tables_found();
    crate::schema::identity::forget_roles();
}

/// Registers [`forget_installed`] with the invalidations (any relcache one, and a schema renamed: the
/// installation's schema name may be the old one); called once from _PG_init.
pub fn register_invalidation() {
    crate::pg::invalidation::forget_on_invalidation(forget_installed, &[pg_sys::SysCacheIdentifier::NAMESPACEOID]);
}

/// The schema chom is installed on: the one whose `sites` table carries chom's trigger (the schema itself is
/// the record, so a schema-only dump keeps it). None when no table has it (not installed yet, or CHOM's tables
/// were dropped, as by Laravel's migrate:fresh).
pub fn installed() -> Option<Target> {
    if let Some(target) = INSTALLED.with(|cached| cached.borrow().clone()) {
        return Some(target);
    }
    // chom's commit step and its Citus triggers come here outside any function of chom's
    let target = settings::with_catalog_search_path(look_up_installation);
    INSTALLED.with(|cached| *cached.borrow_mut() = target.clone());
    target
}

fn look_up_installation() -> Option<Target> {
    let extension_schema = extension_schema();
    // chom's sites triggers all carry the current names of the columns chom uses as their arguments
    let schemas: Vec<(String, Vec<String>)> = Spi::connect(|client| {
        crate::pg::plans::read(
            client,
            "SELECT DISTINCT ON (n.nspname) n.nspname::text, t.tgargs FROM pg_catalog.pg_trigger t \
               JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
              WHERE p.proname = 'chom_sites_aggregates' AND pn.nspname = $1 AND c.relname = 'sites' \
              ORDER BY n.nspname, t.tgname",
            &[TEXT],
            &[extension_schema.clone().into()],
        )
        .map(|row| {
            (
                crate::pg::db::required::<String>(&row, 1),
                trigger_arguments(&crate::pg::db::required::<Vec<u8>>(&row, 2)),
            )
        })
        .collect()
    });
    let schemas_named = || schemas.iter().map(|(schema, _)| schema.as_str()).collect::<Vec<_>>().join(", ");
    match schemas.as_slice() {
        [] => None,
        [(schema, names)] => {
            let target = Target::new(schema.clone(), extension_schema).with_columns(names.clone());
            refuse_relations_other_than_tables(&target);
            Some(crate::schema::resolve::with_layout(target))
        }
        _ => raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("chom's triggers are on the sites tables of several schemas ({})", schemas_named()),
            Some("chom maintains one installation per database: SELECT * FROM chom_uninstall() in all but one."),
        ),
    }
}

/// Refuses (0A000) an installation one of whose tables was replaced by something that runs code when read: a
/// view (or a materialized or foreign table) in place of `tenants`, `sites`, `vps_servers` or `tier_limits` would
/// run its owner's functions as whoever reads it, and chom reads these tables as chom and as the superusers who
/// call its functions. Checked where the installation is looked up, that is again after any change to a
/// relation (the cache is dropped on every relcache invalidation): at every commit that writes CHOM's tables.
fn refuse_relations_other_than_tables(target: &Target) {
    for table in [c"tenants", c"sites", c"vps_servers", c"tier_limits"] {
        let Some(kind) = relation_kind(&target.schema, table) else { continue };
        if kind != pg_sys::RELKIND_RELATION as std::ffi::c_char
            && kind != pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char
        {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("chom works on tables: {}.{} is not one", target.schema, table.to_string_lossy()),
                Some("A view in place of one of CHOM's tables would run its owner's code as chom: make it a table again, or SELECT * FROM chom_uninstall()."),
            )
        }
    }
}

/// The relkind of `schema.name`, None when there is no such relation (catalogue cache look-ups, no query).
fn relation_kind(schema: &str, name: &std::ffi::CStr) -> Option<std::ffi::c_char> {
    let relid = relation_oid(schema, name)?;
    // SAFETY: a catalogue cache look-up by the oid just found.
    Some(unsafe { pg_sys::get_rel_relkind(relid) })
}

/// The target with its layout: distributed when Citus knows CHOM's `sites`.
pub fn with_layout(mut target: Target) -> Target {
    let distributed = node() != Node::Plain
        && crate::pg::db::one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = pg_catalog.to_regclass($1))",
            &[target.table("sites").into()],
        )
        .unwrap_or_else(|| crate::pg::db::missing("looking up the distribution of sites"));
    target.layout = if distributed { Layout::Distributed } else { Layout::Local };
    target
}

/// What a function needs of the installation: each need has its one way to fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Need {
    /// chom installed on CHOM's tables, on the coordinator (the application's and DBAs' functions): 55000
    /// without an installation, 0A000 on a Citus worker.
    Installed,
    /// The installation, or the schema an install would take, for chom_install(): 42P01 without a `tenants`
    /// table, 0A000 on a Citus worker.
    ToInstall,
    /// The same for chom_index_ddl(): 42P01 without a `tenants` table.
    ToIndex,
}

/// The installation, or else the schema an install would take; None when there is neither (chom_status() and
/// chom_metrics() report that instead of failing).
pub fn installed_or_discovered() -> Option<Target> {
    installed().or_else(discover)
}

/// The target a function with `need` works on, or its error (see [`Need`]).
pub fn require(need: Need) -> Target {
    let (found, code, missing, hint) = match need {
        Need::Installed => {
            layout::require_coordinator("this function of chom's");
            (
                installed(),
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "chom is not installed on CHOM's tables",
                "Run SELECT * FROM chom_install(); once the tenants, sites and vps_servers tables exist.",
            )
        }
        Need::ToInstall => {
            layout::require_coordinator("chom_install()");
            (
                installed_or_discovered(),
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                "chom cannot be installed: no tenants table was found",
                "Create CHOM's tables (or restore them) first, or have a superuser set chom.install_schema.",
            )
        }
        Need::ToIndex => (
            installed_or_discovered(),
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "no tenants table was found: there is no CHOM schema to index",
            "A superuser sets chom.install_schema to the schema that holds CHOM's tables.",
        ),
    };
    found.unwrap_or_else(|| raise(code, missing, Some(hint)))
}

/// [`require`] with [`Need::Installed`]: what nearly every function of chom's needs.
pub fn require_installed() -> Target {
    require(Need::Installed)
}

/// Finds CHOM's schema for a new install: `chom.install_schema` if set, otherwise the schema of the `tenants`
/// table (the one first in search_path when several schemas have one). None when there is no such table.
pub fn discover() -> Option<Target> {
    let extension_schema = extension_schema();
    for (retired, replacement) in settings::RETIRED {
        if settings::by_name(retired).is_some() {
            pgrx::warning!(
                "{} is set but no longer read: a superuser sets {replacement} instead",
                retired.to_string_lossy()
            );
        }
    }
    let configured = settings::string_value(&settings::INSTALL_SCHEMA);
    if !configured.is_empty() {
        let exists: bool = crate::pg::db::one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[configured.clone().into()],
        )
        .unwrap_or_else(|| crate::pg::db::missing("looking for chom.install_schema"));
        if !exists {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                format!("schema \"{configured}\" named by chom.install_schema does not exist"),
                Some("Set chom.install_schema to the schema that holds CHOM's tables, or RESET it."),
            );
        }
        return Some(crate::schema::resolve::with_layout(Target::new(configured, extension_schema)));
    }
    let candidates: Vec<(String, bool)> = Spi::connect(|client| {
        let rows = spi(
            client.select(
                "SELECT n.nspname::text, n.nspname = ANY (pg_catalog.current_schemas(false)) \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = 'tenants' AND c.relkind IN ('r', 'p') \
                   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
                 ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), n.nspname::text) NULLS LAST, 1",
                None,
                &[],
            ),
            "looking for the tenants table",
        );
        rows.map(|row| (crate::pg::db::required::<String>(&row, 1), crate::pg::db::required::<bool>(&row, 2))).collect()
    });
    match candidates.as_slice() {
        [] => None,
        [(schema, _)] | [(schema, true), ..] => {
            Some(crate::schema::resolve::with_layout(Target::new(schema.clone(), extension_schema)))
        }
        _ => raise(
            PgSqlErrorCode::ERRCODE_AMBIGUOUS_PARAMETER,
            format!(
                "several schemas have a tenants table ({}) and none of them is in search_path",
                candidates.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Some("A superuser sets chom.install_schema = '<schema>' to say which one holds CHOM's tables."),
        ),
    }
}

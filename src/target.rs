//! Where CHOM's tables are and whether chom can work with them: the schema that holds `tenants`, the columns
//! chom reads and writes with the types it needs, and rendering of chom's SQL templates for that schema.

use crate::errors::{raise, spi};
use crate::settings;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{pg_sys, PgSqlErrorCode};

/// The columns chom reads or writes, with the types it accepts. Keys must be uuid: the triggers read them as
/// 16-byte values, so a schema with other key types is refused at install rather than half-working.
const REQUIRED_COLUMNS: &[(&str, &str, &[&str])] = &[
    ("tenants", "id", &["uuid"]),
    ("sites", "id", &["uuid"]),
    ("sites", "tenant_id", &["uuid"]),
    ("sites", "vps_id", &["uuid"]),
    ("sites", "storage_used_mb", &["bigint"]),
    ("sites", "deleted_at", &["timestamp without time zone", "timestamp with time zone"]),
    ("vps_servers", "id", &["uuid"]),
    ("vps_servers", "hostname", &["character varying", "text"]),
    ("vps_servers", "status", &["character varying", "text"]),
    ("vps_servers", "allocation_type", &["character varying", "text"]),
    ("vps_servers", "health_status", &["character varying", "text"]),
    ("vps_servers", "spec_memory_mb", &["integer"]),
    ("vps_servers", "spec_disk_gb", &["integer"]),
    ("vps_servers", "region", &["character varying", "text"]),
    ("vps_servers", "provider", &["character varying", "text"]),
];

/// The cached aggregate columns chom adds to `tenants` (or adopts, when the application's migration added them).
pub const CACHED_COLUMNS: &[(&str, &str, &[&str])] = &[
    ("cached_storage_mb", "bigint NOT NULL DEFAULT 0", &["bigint"]),
    ("cached_sites_count", "integer NOT NULL DEFAULT 0", &["integer"]),
    ("cached_at", "timestamp(0) without time zone NULL", &["timestamp without time zone"]),
];

/// CHOM's schema, resolved, with chom's own schema for its tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub schema: String,
    pub extension_schema: String,
}

impl Target {
    /// `"schema"."table"` for one of CHOM's tables.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_identifier(&self.schema), quote_identifier(name))
    }

    /// Whether CHOM's three tables and chom_vps_load still exist (catalogue cache look-ups, no query): a
    /// transaction may drop them after writing sites, and its commit then has nothing to maintain.
    pub fn tables_exist(&self) -> bool {
        [c"tenants", c"sites", c"vps_servers"].into_iter().all(|table| relation_exists(&self.schema, table))
            && relation_exists(&self.extension_schema, c"chom_vps_load")
    }

    /// Whether CHOM's `tier_limits` table exists (a catalogue cache look-up).
    pub fn tier_limits_exist(&self) -> bool {
        relation_exists(&self.schema, c"tier_limits")
    }

    /// Substitutes `{tenants}`, `{sites}`, `{vps_servers}`, `{tier_limits}` and `{chom}` (chom's schema) in a SQL
    /// template.
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{tenants}", &self.table("tenants"))
            .replace("{tier_limits}", &self.table("tier_limits"))
            .replace("{sites}", &self.table("sites"))
            .replace("{vps_servers}", &self.table("vps_servers"))
            .replace("{chom}", &quote_identifier(&self.extension_schema))
    }
}

/// Whether a relation exists (catalogue cache look-ups by name, no query).
fn relation_exists(schema: &str, name: &std::ffi::CStr) -> bool {
    let Ok(schema) = std::ffi::CString::new(schema) else { return false };
    // SAFETY: catalogue look-ups by name; a missing schema or relation gives InvalidOid.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        namespace != pg_sys::InvalidOid && pg_sys::get_relname_relid(name.as_ptr(), namespace) != pg_sys::InvalidOid
    }
}

/// The schema chom is installed in (a prepared look-up: this runs on every chom_tenant_stats() call).
pub fn extension_schema() -> String {
    let schema: Option<String> = Spi::connect(|client| {
        crate::plans::read(
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
    /// chom_installed's schema row, read once per backend: the application's calls (chom_tenant_stats(),
    /// chom_pick_vps()) then run a single statement. Cleared by [`forget_installed`] on any relcache
    /// invalidation: installing or uninstalling chom, in any backend, is DDL on CHOM's tables.
    static INSTALLED: std::cell::RefCell<Option<Target>> = const { std::cell::RefCell::new(None) };
}

/// Drops the cached installation (see [`INSTALLED`]).
pub fn forget_installed() {
    INSTALLED.with(|cached| cached.borrow_mut().take());
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    forget_installed();
}

/// Registers the invalidation callback; called once from _PG_init.
pub fn register_invalidation() {
    // SAFETY: registering a callback with a static function, as Postgres expects from _PG_init.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) };
}

/// The schema recorded by chom_install(), if chom is installed on CHOM's tables.
pub fn installed() -> Option<Target> {
    if let Some(target) = INSTALLED.with(|cached| cached.borrow().clone()) {
        return Some(target);
    }
    let extension_schema = extension_schema();
    let sql = format!("SELECT name FROM {}.chom_installed WHERE kind = 'schema'", quote_identifier(&extension_schema));
    let schema: Option<String> =
        Spi::connect(|client| crate::plans::read(client, &sql, &[], &[]).first().get_one().ok().flatten());
    let target = schema.map(|schema| Target { schema, extension_schema });
    INSTALLED.with(|cached| *cached.borrow_mut() = target.clone());
    target
}

/// Like [`installed`], but an error with a hint when chom has not been installed on CHOM's tables yet.
pub fn require_installed() -> Target {
    installed().unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "chom is not installed on CHOM's tables",
            Some("Run SELECT * FROM chom_install(); once the tenants, sites and vps_servers tables exist."),
        )
    })
}

/// Finds CHOM's schema for a new install: `chom.target_schema` if set, otherwise the schema of the `tenants`
/// table (the one first in search_path when several schemas have one). None when there is no such table.
pub fn discover() -> Option<Target> {
    let extension_schema = extension_schema();
    let configured = settings::string_value(&settings::TARGET_SCHEMA);
    if !configured.is_empty() {
        let exists: bool = crate::db::one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[configured.clone().into()],
        )
        .unwrap_or(false);
        if !exists {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                format!("schema \"{configured}\" named by chom.target_schema does not exist"),
                Some("Set chom.target_schema to the schema that holds CHOM's tables, or RESET it."),
            );
        }
        return Some(Target { schema: configured, extension_schema });
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
        rows.map(|row| {
            (
                row.get::<String>(1).ok().flatten().unwrap_or_default(),
                row.get::<bool>(2).ok().flatten().unwrap_or(false),
            )
        })
        .collect()
    });
    match candidates.as_slice() {
        [] => None,
        [(schema, _)] => Some(Target { schema: schema.clone(), extension_schema }),
        [(schema, true), ..] => Some(Target { schema: schema.clone(), extension_schema }),
        _ => raise(
            PgSqlErrorCode::ERRCODE_AMBIGUOUS_PARAMETER,
            format!(
                "several schemas have a tenants table ({}) and none of them is in search_path",
                candidates.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Some("SET chom.target_schema = '<schema>' to say which one holds CHOM's tables."),
        ),
    }
}

/// The type of a column (as format_type without modifiers), or None when the table or column is missing.
pub fn column_type(target: &Target, table: &str, column: &str) -> Option<String> {
    crate::db::one(
        "SELECT a.atttypid::pg_catalog.regtype::text FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
               AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped",
        &[target.schema.clone().into(), table.into(), column.into()],
    )
}

/// The fillfactor storage parameter of one of CHOM's tables: `Some(None)` when a plain table uses the default,
/// None when the table is partitioned (partitioned tables take no storage parameters) or missing.
pub fn fillfactor(target: &Target, table: &str) -> Option<Option<i32>> {
    crate::db::rows(
        "SELECT (SELECT o.option_value::integer FROM pg_catalog.pg_options_to_table(c.reloptions) o \
                  WHERE o.option_name = 'fillfactor') \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'",
        &[target.schema.clone().into(), table.into()],
        |row| row.get::<i32>(1),
    )
    .into_iter()
    .next()
}

/// Whether a table exists in CHOM's schema.
pub fn table_exists(target: &Target, table: &str) -> bool {
    crate::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
        &[target.schema.clone().into(), table.into()],
    )
    .unwrap_or(false)
}

/// Refuses, with one error naming every problem, a schema that lacks a table or column chom needs or has one
/// with a type chom cannot work with. Runs before chom changes anything, so a refused install leaves nothing.
pub fn check_required(target: &Target) {
    let mut problems = Vec::new();
    let mut wrong_type = false;
    for (table, column, accepted) in REQUIRED_COLUMNS {
        match column_type(target, table, column) {
            None if !table_exists(target, table) => {
                let problem = format!("table {} is missing", target.table(table));
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
            None => problems.push(format!("column {}.{column} is missing", target.table(table))),
            Some(found) if !accepted.contains(&found.as_str()) => {
                wrong_type = true;
                problems.push(format!(
                    "column {}.{column} is {found}, chom needs {}",
                    target.table(table),
                    accepted.join(" or ")
                ));
            }
            Some(_) => {}
        }
    }
    for (column, _, accepted) in CACHED_COLUMNS {
        if let Some(found) = column_type(target, "tenants", column) {
            if !accepted.contains(&found.as_str()) {
                wrong_type = true;
                problems.push(format!(
                    "column {}.{column} already exists as {found}, chom needs {}",
                    target.table("tenants"),
                    accepted.join(" or ")
                ));
            }
        }
    }
    if problems.is_empty() {
        return;
    }
    let code = if wrong_type && problems.iter().all(|p| p.contains(" chom needs ")) {
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH
    } else if problems.iter().all(|p| p.starts_with("table ")) {
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE
    } else if !wrong_type {
        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN
    } else {
        PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION
    };
    raise(
        code,
        format!("chom cannot be installed on schema \"{}\": {}", target.schema, problems.join("; ")),
        Some("chom works on CHOM's schema as its Laravel migrations create it (uuid keys); nothing was changed."),
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn a_mistyped_schema_is_refused_and_nothing_is_left_behind() {
        load_schema();
        Spi::run("ALTER TABLE tenants ADD COLUMN cached_sites_count text").unwrap();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42804"));
        assert_eq!(count("SELECT count(*) FROM chom_installed"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
    }

    #[pg_test]
    fn a_schema_without_uuid_keys_is_refused() {
        define_sqlstate_of();
        Spi::run("CREATE TABLE tenants (id bigint PRIMARY KEY); CREATE TABLE vps_servers (id bigint PRIMARY KEY); CREATE TABLE sites (id bigint PRIMARY KEY, tenant_id bigint, vps_id bigint, storage_used_mb bigint, deleted_at timestamp)").unwrap();
        let state = sqlstate("SELECT * FROM chom_install()");
        assert!(matches!(state.as_deref(), Some("42804") | Some("42703") | Some("42P16")), "got {state:?}");
    }
}

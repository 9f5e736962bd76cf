//! Where CHOM's tables are and whether chom can work with them: the schema that holds `tenants`, the columns
//! chom reads and writes with the types it needs, and rendering of chom's SQL templates for that schema. Which
//! installation that is, is resolved by [`crate::schema::resolve`].

use crate::pg::errors::raise;
use crate::schema::layout::{Layout, Placement};
use pgrx::spi::quote_identifier;
use pgrx::{pg_sys, PgSqlErrorCode};

/// A column chom uses, by its role: its table and its name in CHOM's schema. chom follows the application's
/// renames of them ([`Target::column`] gives the current name), so code names a role, never a string: a typo
/// does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    TenantsId,
    SitesId,
    SitesTenantId,
    SitesVpsId,
    SitesStorageUsedMb,
    SitesDeletedAt,
    VpsId,
    VpsHostname,
    VpsStatus,
    VpsAllocationType,
    VpsHealthStatus,
    VpsSpecMemoryMb,
    VpsSpecDiskGb,
    VpsRegion,
    VpsProvider,
    CachedStorageMb,
    CachedSitesCount,
    CachedAt,
}

impl Col {
    /// Every role, the ones chom needs then the cached aggregates, in the order of chom's trigger arguments
    /// (a dump carries that order: never reorder, only append). `Col::ALL[c as usize] == c`.
    pub const ALL: [Col; 18] = [
        Col::TenantsId,
        Col::SitesId,
        Col::SitesTenantId,
        Col::SitesVpsId,
        Col::SitesStorageUsedMb,
        Col::SitesDeletedAt,
        Col::VpsId,
        Col::VpsHostname,
        Col::VpsStatus,
        Col::VpsAllocationType,
        Col::VpsHealthStatus,
        Col::VpsSpecMemoryMb,
        Col::VpsSpecDiskGb,
        Col::VpsRegion,
        Col::VpsProvider,
        Col::CachedStorageMb,
        Col::CachedSitesCount,
        Col::CachedAt,
    ];

    /// The table and the column's name in CHOM's schema, with the types chom accepts. Keys must be uuid: the
    /// triggers read them as 16-byte values, so a schema with other key types is refused at install rather
    /// than half-working.
    const fn role(self) -> (&'static str, &'static str, &'static [&'static str]) {
        const UUID: &[&str] = &["uuid"];
        const TEXT: &[&str] = &["character varying", "text"];
        const INTEGER: &[&str] = &["integer"];
        match self {
            Col::TenantsId => ("tenants", "id", UUID),
            Col::SitesId => ("sites", "id", UUID),
            Col::SitesTenantId => ("sites", "tenant_id", UUID),
            Col::SitesVpsId => ("sites", "vps_id", UUID),
            // read as a 64-bit integer: any integer type of Postgres widens to it
            Col::SitesStorageUsedMb => ("sites", "storage_used_mb", &["bigint", "integer", "smallint"]),
            Col::SitesDeletedAt => {
                ("sites", "deleted_at", &["timestamp without time zone", "timestamp with time zone"])
            }
            Col::VpsId => ("vps_servers", "id", UUID),
            Col::VpsHostname => ("vps_servers", "hostname", TEXT),
            Col::VpsStatus => ("vps_servers", "status", TEXT),
            Col::VpsAllocationType => ("vps_servers", "allocation_type", TEXT),
            Col::VpsHealthStatus => ("vps_servers", "health_status", TEXT),
            Col::VpsSpecMemoryMb => ("vps_servers", "spec_memory_mb", INTEGER),
            Col::VpsSpecDiskGb => ("vps_servers", "spec_disk_gb", INTEGER),
            Col::VpsRegion => ("vps_servers", "region", TEXT),
            Col::VpsProvider => ("vps_servers", "provider", TEXT),
            Col::CachedStorageMb => ("tenants", "cached_storage_mb", &["bigint"]),
            Col::CachedSitesCount => ("tenants", "cached_sites_count", &["integer", "bigint"]),
            Col::CachedAt => ("tenants", "cached_at", &["timestamp without time zone"]),
        }
    }

    /// The table the column belongs to.
    pub const fn table(self) -> &'static str {
        self.role().0
    }

    /// The column's name in CHOM's schema (its current name is [`Target::column`]'s).
    pub const fn name(self) -> &'static str {
        self.role().1
    }

    /// The types chom works with.
    pub const fn accepted_types(self) -> &'static [&'static str] {
        self.role().2
    }

    /// One of the cached aggregates chom adds to `tenants` (the others the application's migrations create).
    pub fn is_cached(self) -> bool {
        CACHED_COLUMNS.iter().any(|cached| cached.col == self)
    }
}

/// The cached aggregate columns chom adds to `tenants` (or adopts, when the application's migration added
/// them), with their definition.
#[derive(Debug, PartialEq)]
pub struct CachedColumn {
    pub col: Col,
    pub definition: &'static str,
}

impl CachedColumn {
    /// Its name in CHOM's schema.
    pub fn name(&self) -> &'static str {
        self.col.name()
    }
}

pub const CACHED_COLUMNS: &[CachedColumn] = &[
    CachedColumn { col: Col::CachedStorageMb, definition: "bigint NOT NULL DEFAULT 0" },
    CachedColumn { col: Col::CachedSitesCount, definition: "integer NOT NULL DEFAULT 0" },
    CachedColumn { col: Col::CachedAt, definition: "timestamp(0) without time zone NULL" },
];

/// The schema of chom's own tables (created by the extension): out of the application's schema, where
/// Laravel's migrate:fresh drops every table.
pub const CHOM_SCHEMA: &str = "chom";

/// The columns chom uses, as (table, name in CHOM's schema), in the order of [`Col::ALL`]. chom follows the
/// application's renames of them; [`Target::columns`] holds their current names in this order, and chom's
/// triggers carry them as their arguments, so that the schema itself (and a dump of it) says what they are
/// called.
pub fn column_roles() -> impl Iterator<Item = (&'static str, &'static str)> {
    Col::ALL.into_iter().map(|col| (col.table(), col.name()))
}

/// CHOM's schema, resolved, with chom's own schema for its tables and the current names of the columns chom
/// uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub schema: String,
    pub extension_schema: String,
    /// the current name of each of [`column_roles`], in that order
    pub columns: Vec<String>,
    /// How chom's statements address the tables: one node, distributed by Citus, or a worker's shard.
    pub layout: Layout,
}

impl Target {
    /// A target whose columns have CHOM's names.
    pub fn new(schema: String, extension_schema: String) -> Self {
        let columns = column_roles().map(|(_, column)| column.to_string()).collect();
        Target { schema, extension_schema, columns, layout: Layout::Local }
    }

    /// The same with the column names chom's triggers carry; CHOM's names when they carry none (triggers
    /// created by chom before 0.3.0).
    pub fn with_columns(mut self, names: Vec<String>) -> Self {
        if names.len() == self.columns.len() {
            self.columns = names;
        }
        self
    }

    /// The current name of a column chom uses.
    pub fn column(&self, col: Col) -> &str {
        &self.columns[col as usize]
    }

    /// `"schema"."table"` for one of CHOM's tables.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_identifier(&self.schema), quote_identifier(name))
    }

    /// Whether CHOM's three tables and chom.vps_load still exist (catalogue cache look-ups, no query): a
    /// transaction may drop them after writing sites, and its commit then has nothing to maintain. Once found,
    /// remembered until the next relcache invalidation ([`forget_tables_found`]): dropping or renaming one of
    /// them, in this transaction or another, sends one.
    pub fn tables_exist(&self) -> bool {
        if TABLES_FOUND.with(|found| found.borrow().as_deref() == Some(self.schema.as_str())) {
            return true;
        }
        let exist =
            [c"tenants", c"sites", c"vps_servers"].into_iter().all(|table| relation_exists(&self.schema, table))
                && relation_exists(CHOM_SCHEMA, c"vps_load");
        if exist {
            TABLES_FOUND.with(|found| *found.borrow_mut() = Some(self.schema.clone()));
        }
        exist
    }

    /// Whether CHOM's `tier_limits` table exists (a catalogue cache look-up).
    pub fn tier_limits_exist(&self) -> bool {
        relation_exists(&self.schema, c"tier_limits")
    }

    /// The same target on a Citus worker's shard of `sites` (unchanged for None).
    pub fn on_placement(mut self, placement: Option<Placement>) -> Self {
        if let Some(placement) = placement {
            self.layout = Layout::Shard(placement);
        }
        self
    }

    /// Substitutes `{tenants}`, `{sites}`, `{vps_servers}`, `{tier_limits}`, the columns chom uses
    /// (`{sites.tenant_id}` and the like), `{chom}` (chom's schema) and `{vps_delta}` (the outbox of per-VPS
    /// changes on Citus) in a SQL template. On a Citus worker, `{tenants}`, `{tier_limits}` and `{vps_delta}`
    /// are the shards colocated with the firing `sites` shard.
    pub fn render(&self, template: &str) -> String {
        let mut rendered = template.to_string();
        for ((table, column), name) in column_roles().zip(&self.columns) {
            rendered = rendered.replace(&format!("{{{table}.{column}}}"), &quote_identifier(name));
        }
        let (tenants, tier_limits, vps_delta) = match self.layout.placement() {
            Some(shard) => (
                self.table(&shard.tenants),
                self.table(&shard.tier_limits),
                format!("{CHOM_SCHEMA}.{}", quote_identifier(&shard.vps_delta)),
            ),
            None => (
                self.table("tenants"),
                self.table("tier_limits"),
                format!("{CHOM_SCHEMA}.{}", crate::schema::layout::OUTBOX),
            ),
        };
        rendered
            .replace("{tenants}", &tenants)
            .replace("{tier_limits}", &tier_limits)
            .replace("{sites}", &self.table("sites"))
            .replace("{vps_servers}", &self.table("vps_servers"))
            .replace("{vps_delta}", &vps_delta)
            .replace("{chom}", CHOM_SCHEMA)
    }
}

thread_local! {
    /// The schema whose CHOM tables [`Target::tables_exist`] last found, every one of them. Never dropped.
    static TABLES_FOUND: std::mem::ManuallyDrop<std::cell::RefCell<Option<String>>> =
        const { std::mem::ManuallyDrop::new(std::cell::RefCell::new(None)) };
}

/// Forgets which tables [`Target::tables_exist`] found; on any relcache invalidation.
pub fn forget_tables_found() {
    TABLES_FOUND.with(|found| found.borrow_mut().take());
}

/// Whether a relation exists (catalogue cache look-ups by name, no query).
fn relation_exists(schema: &str, name: &std::ffi::CStr) -> bool {
    relation_oid(schema, name).is_some()
}

/// The oid of `schema.name`, None when there is no such schema or relation (catalogue cache look-ups by name,
/// no query).
pub fn relation_oid(schema: &str, name: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    let schema = std::ffi::CString::new(schema).ok()?;
    // SAFETY: catalogue look-ups by name; a missing schema or relation gives InvalidOid.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        let relid = pg_sys::get_relname_relid(name.as_ptr(), namespace);
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// A trigger's arguments, as pg_trigger.tgargs stores them (each one NUL-terminated).
pub fn trigger_arguments(tgargs: &[u8]) -> Vec<String> {
    tgargs
        .split(|byte| *byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// CHOM's tables as chom acts on them: (name, owner, FORCE ROW LEVEL SECURITY, has rules), by name.
fn table_owners(target: &Target) -> Vec<(String, String, bool, bool)> {
    crate::pg::db::rows(
        "SELECT c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text, c.relforcerowsecurity, \
                c.relhasrules \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) $1 \
            AND c.relname OPERATOR(pg_catalog.=) ANY ('{tenants,sites,vps_servers,tier_limits}'::pg_catalog.name[]) \
          ORDER BY 1",
        &[target.schema.clone().into()],
        |row| (row.required(1), row.required(2), row.required(3), row.required(4)),
    )
}

/// Refuses (0A000) tables chom cannot act on as their one owner: CHOM's tables with different owners (chom
/// writes and recounts them as the owner of `tenants`), or one of them under FORCE ROW LEVEL SECURITY (see
/// [`check_row_security`]), or rules on `tenants`, which chom's set-based statements cannot be rewritten by.
/// Run by chom_install().
pub fn check_ownership(target: &Target) {
    let tables = table_owners(target);
    let owners: std::collections::BTreeSet<&str> = tables.iter().map(|(_, owner, _, _)| owner.as_str()).collect();
    if owners.len() > 1 {
        let each: Vec<String> = tables.iter().map(|(table, owner, _, _)| format!("{table}: {owner}")).collect();
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("chom cannot be installed: CHOM's tables have different owners ({})", each.join(", ")),
            Some("chom writes CHOM's tables as their owner: give them one owner (ALTER TABLE ... OWNER TO)."),
        )
    }
    refuse_forced_row_security(&tables);
    if tables.iter().any(|(table, _, _, rules)| table == "tenants" && *rules) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "chom cannot be installed: tenants has rules",
            Some("chom updates tenants with set-based statements that rules cannot rewrite: use a trigger instead (DROP RULE)."),
        )
    }
}

/// Refuses (0A000) FORCE ROW LEVEL SECURITY on one of CHOM's tables: the owner's own policies would then hide
/// rows from chom's recounts, which run as the owner, and the aggregates would not be exact. Run by
/// chom_install() and by the guard on ALTER TABLE.
pub fn check_row_security(target: &Target) {
    refuse_forced_row_security(&table_owners(target));
}

fn refuse_forced_row_security(tables: &[(String, String, bool, bool)]) {
    let forced: Vec<&str> =
        tables.iter().filter(|(_, _, forced, _)| *forced).map(|(table, _, _, _)| table.as_str()).collect();
    if !forced.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("chom cannot work with FORCE ROW LEVEL SECURITY on {}", forced.join(", ")),
            Some("chom recounts as the tables' owner and must see every row: ALTER TABLE ... NO FORCE ROW LEVEL SECURITY."),
        )
    }
}

/// Whether chom reads or writes this column of one of CHOM's tables.
pub fn needs_column(table: &str, column: &str) -> bool {
    Col::ALL.iter().any(|col| col.table() == table && col.name() == column)
}

/// Something that keeps chom from working on a schema.
#[derive(Debug, PartialEq)]
pub enum Problem {
    MissingTable(String),
    MissingColumn { table: String, column: String },
    WrongType { table: String, column: String, found: String, accepted: String },
}

impl Problem {
    pub fn describe(&self, target: &Target) -> String {
        match self {
            Problem::MissingTable(table) => format!("table {} is missing", target.table(table)),
            Problem::MissingColumn { table, column } => format!("column {}.{column} is missing", target.table(table)),
            Problem::WrongType { table, column, found, accepted } => {
                format!("column {}.{column} is {found}, chom needs {accepted}", target.table(table))
            }
        }
    }
}

/// The SQLSTATE of a refusal: the problems' own when they are all of one kind, otherwise
/// invalid_table_definition (missing columns beside missing tables count as missing columns).
fn refusal_code(problems: &[Problem]) -> PgSqlErrorCode {
    let wrong_type = problems.iter().filter(|p| matches!(p, Problem::WrongType { .. })).count();
    let missing_table = problems.iter().filter(|p| matches!(p, Problem::MissingTable(_))).count();
    if wrong_type == problems.len() {
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH
    } else if missing_table == problems.len() {
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE
    } else if wrong_type == 0 {
        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN
    } else {
        PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION
    }
}

/// Refuses, with one error naming every problem, a schema that lacks a table or column chom needs or has one
/// with a type chom cannot work with (the cached columns, when they exist, included). Runs before chom changes
/// anything, so a refused install leaves nothing.
pub fn check_required(target: &Target) {
    let problems = problems(target, false);
    if problems.is_empty() {
        return;
    }
    let described: Vec<String> = problems.iter().map(|p| p.describe(target)).collect();
    raise(
        refusal_code(&problems),
        format!("chom cannot be installed on schema \"{}\": {}", target.schema, described.join("; ")),
        Some("chom works on CHOM's schema as its Laravel migrations create it (uuid keys); nothing was changed."),
    )
}

/// Every table and column chom needs that is missing or of a type chom cannot work with, in one query. The
/// cached columns count when `installed` (before, chom_install() adds the missing ones).
pub fn problems(target: &Target, installed: bool) -> Vec<Problem> {
    let (tables, columns): (Vec<&str>, Vec<&str>) =
        Col::ALL.iter().map(|col| (col.table(), target.column(*col))).unzip();
    let found: Vec<(bool, Option<String>)> = crate::pg::db::rows(
        "SELECT c.oid IS NOT NULL, a.atttypid::pg_catalog.regtype::text \
           FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS w(table_name, column_name, position) \
           LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1 \
           LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name AND c.relkind IN ('r', 'p') \
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = w.column_name \
                                              AND a.attnum > 0 AND NOT a.attisdropped \
          ORDER BY w.position",
        &[target.schema.clone().into(), tables.into(), columns.into()],
        |row| (row.required(1), row.get(2)),
    );
    let mut problems: Vec<Problem> = Vec::new();
    for (col, (table_exists, found)) in Col::ALL.into_iter().zip(found) {
        let (table, column, accepted) = (col.table(), target.column(col), col.accepted_types());
        let problem = match found {
            None if !table_exists => Problem::MissingTable(table.into()),
            None if col.is_cached() && !installed => continue,
            None => Problem::MissingColumn { table: table.into(), column: column.into() },
            Some(found) if !accepted.contains(&found.as_str()) => Problem::WrongType {
                table: table.into(),
                column: column.into(),
                found,
                accepted: accepted.join(" or "),
            },
            Some(_) => continue,
        };
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

#[cfg(test)]
mod unit_tests {
    use super::{column_roles, Col};

    #[test]
    fn each_role_is_at_its_own_position_and_named_once() {
        for (position, col) in Col::ALL.into_iter().enumerate() {
            assert_eq!(col as usize, position, "{col:?}");
        }
        let roles: Vec<_> = column_roles().collect();
        for (i, role) in roles.iter().enumerate() {
            assert!(!roles[..i].contains(role), "{role:?} twice");
        }
        assert_eq!(Col::ALL.into_iter().filter(|col| col.is_cached()).count(), 3);
    }
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
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attname = 'cached_at'"), 0);
    }

    #[pg_test]
    fn a_schema_without_uuid_keys_is_refused() {
        define_sqlstate_of();
        // every table and column chom needs, with bigint keys
        Spi::run(
            "CREATE TABLE tenants (id bigint PRIMARY KEY); \
             CREATE TABLE vps_servers (id bigint PRIMARY KEY, hostname text, status text, allocation_type text, \
                 health_status text, spec_memory_mb integer, spec_disk_gb integer, region text, provider text); \
             CREATE TABLE sites (id bigint PRIMARY KEY, tenant_id bigint, vps_id bigint, storage_used_mb bigint, deleted_at timestamp)",
        )
        .unwrap();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42804"));
        // a column missing as well: the problems are of two kinds
        Spi::run("ALTER TABLE sites DROP COLUMN deleted_at").unwrap();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42P16"));
    }
}

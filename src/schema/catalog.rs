//! The objects chom manages on CHOM's tables, as data: the index catalogue (the `chom.managed_index` table,
//! filled by sql/managed_indexes.sql), the cached columns and the triggers below, the comments that mark what
//! chom added, and the DDL for each of them.

use crate::schema::target::Target;
use pgrx::spi::{quote_identifier, quote_literal};

/// The comment chom puts on the indexes it builds (and on those chom_index_ddl() builds), so that an index
/// with a managed name that somebody else made (CHOM's own migration, say) is never taken for chom's.
pub const INDEX_MARKER: &str = "managed by chom: see chom_status()";

/// The comment chom puts on the cached columns it adds to `tenants` (the application's own are left as they
/// are, and kept by chom_uninstall()).
pub const COLUMN_MARKER: &str = "managed by chom: added by chom_install(), dropped by chom_uninstall()";

/// The comments on chom's sites INSERT trigger: whether chom set `tenants`' fillfactor (and so resets it on
/// uninstall) or left the table's own setting alone. Kept in the schema, so a schema-only dump keeps it.
pub const TRIGGER_MARKER: &str = "managed by chom: see chom_status()";
pub const TRIGGER_MARKER_FILLFACTOR: &str = "managed by chom: see chom_status(); chom set tenants' fillfactor";

/// The trigger that carries [`TRIGGER_MARKER`] or [`TRIGGER_MARKER_FILLFACTOR`].
pub const MARKED_TRIGGER: &str = "chom_sites_insert";

/// One index of the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedIndex {
    pub name: String,
    pub table: String,
    pub key_columns: Vec<String>,
    pub descending: Vec<String>,
}

impl ManagedIndex {
    /// The CREATE INDEX statement, with `created_at DESC` style directions from the catalogue.
    pub fn create_sql(&self, target: &Target, concurrently: bool) -> String {
        let columns: Vec<String> = self
            .key_columns
            .iter()
            .map(|c| {
                let dir = if self.descending.contains(c) { " DESC" } else { "" };
                format!("{}{dir}", quote_identifier(c))
            })
            .collect();
        format!(
            "CREATE INDEX {}{} ON {} ({})",
            if concurrently { "CONCURRENTLY IF NOT EXISTS " } else { "" },
            quote_identifier(&self.name),
            target.table(&self.table),
            columns.join(", ")
        )
    }

    pub fn drop_sql(&self, target: &Target, concurrently: bool) -> String {
        format!("DROP INDEX {}{}", if concurrently { "CONCURRENTLY IF EXISTS " } else { "" }, self.qualified(target))
    }

    /// `"schema"."index"`.
    pub fn qualified(&self, target: &Target) -> String {
        format!("{}.{}", quote_identifier(&target.schema), quote_identifier(&self.name))
    }

    pub fn mark_sql(&self, target: &Target) -> String {
        format!("COMMENT ON INDEX {} IS {}", self.qualified(target), quote_literal(INDEX_MARKER))
    }
}

/// The whole index catalogue, in a stable order.
pub fn managed_indexes() -> Vec<ManagedIndex> {
    let sql = format!(
        "SELECT name, table_name, key_columns, descending FROM {}.managed_index ORDER BY table_name, name",
        crate::schema::target::CHOM_SCHEMA
    );
    crate::pg::db::rows(&sql, &[], |row| ManagedIndex {
        name: row.required(1),
        table: row.required(2),
        key_columns: row.required(3),
        descending: row.required(4),
    })
}

/// A statement-level trigger chom puts on one of CHOM's tables.
#[derive(Debug, PartialEq)]
pub struct ManagedTrigger {
    pub name: &'static str,
    pub table: &'static str,
    pub event: &'static str,
    pub referencing: &'static str,
    pub function: &'static str,
}

/// The triggers that keep the tenant aggregates, the per-VPS loads and the VPS attributes chom_pick_vps()
/// filters on exact. One per event: a trigger with transition tables fires for one kind of event only.
pub const TRIGGERS: &[ManagedTrigger] = &[
    ManagedTrigger {
        name: "chom_sites_insert",
        table: "sites",
        event: "INSERT",
        referencing: "REFERENCING NEW TABLE AS chom_new",
        function: "chom_sites_aggregates",
    },
    ManagedTrigger {
        name: "chom_sites_update",
        table: "sites",
        event: "UPDATE",
        referencing: "REFERENCING OLD TABLE AS chom_old NEW TABLE AS chom_new",
        function: "chom_sites_aggregates",
    },
    ManagedTrigger {
        name: "chom_sites_delete",
        table: "sites",
        event: "DELETE",
        referencing: "REFERENCING OLD TABLE AS chom_old",
        function: "chom_sites_aggregates",
    },
    ManagedTrigger {
        name: "chom_sites_truncate",
        table: "sites",
        event: "TRUNCATE",
        referencing: "",
        function: "chom_sites_aggregates",
    },
    ManagedTrigger {
        name: "chom_vps_insert",
        table: "vps_servers",
        event: "INSERT",
        referencing: "REFERENCING NEW TABLE AS chom_new",
        function: "chom_vps_registry",
    },
    ManagedTrigger {
        name: "chom_vps_update",
        table: "vps_servers",
        event: "UPDATE",
        referencing: "REFERENCING NEW TABLE AS chom_new",
        function: "chom_vps_registry",
    },
    ManagedTrigger {
        name: "chom_vps_delete",
        table: "vps_servers",
        event: "DELETE",
        referencing: "REFERENCING OLD TABLE AS chom_old",
        function: "chom_vps_registry",
    },
    ManagedTrigger {
        name: "chom_vps_truncate",
        table: "vps_servers",
        event: "TRUNCATE",
        referencing: "",
        function: "chom_vps_registry",
    },
];

impl ManagedTrigger {
    /// The CREATE TRIGGER statement; the trigger carries the current names of the columns chom uses as its
    /// arguments (see [`crate::schema::target::column_roles`]).
    pub fn create_sql(&self, target: &Target) -> String {
        let names: Vec<String> = target.columns.iter().map(quote_literal).collect();
        format!(
            "CREATE TRIGGER {} AFTER {} ON {} {} FOR EACH STATEMENT EXECUTE FUNCTION {}.{}({})",
            quote_identifier(self.name),
            self.event,
            target.table(self.table),
            self.referencing,
            quote_identifier(&target.extension_schema),
            self.function,
            names.join(", ")
        )
    }

    pub fn on(&self, target: &Target) -> String {
        format!("{} ON {}", quote_identifier(self.name), target.table(self.table))
    }

    pub fn by_name(name: &str) -> &'static ManagedTrigger {
        TRIGGERS.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no managed trigger {name}"))
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn the_catalogue_holds_the_seed_indexes_and_cached_at() {
        assert_eq!(count("SELECT count(*) FROM chom.managed_index"), 21);
        assert_eq!(count("SELECT count(*) FROM chom.managed_index WHERE name = 'idx_tenants_cached_at'"), 1);
        assert_eq!(
            count("SELECT count(*) FROM chom.managed_index WHERE descending = '{created_at}'"),
            4,
            "the chronological listings are newest first"
        );
    }

    #[pg_test]
    fn install_reuses_the_three_equivalents_and_creates_the_rest() {
        load_schema();
        let reused = count("SELECT count(*) FROM chom_install() WHERE kind = 'index' AND action LIKE 'reused %'");
        assert_eq!(reused, 3);
        let reused_names: Vec<String> = Spi::connect(|c| {
            c.select(
                "SELECT name || '=' || detail FROM chom_status() WHERE kind = 'index' AND state = 'reused' ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
        });
        assert_eq!(
            reused_names,
            vec![
                "idx_audit_org_created=audit_logs_organization_id_created_at_index",
                "idx_sites_tenant_status=sites_tenant_id_status_index",
                "idx_vps_alloc_vps_tenant=vps_allocations_vps_id_tenant_id_unique",
            ]
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE kind = 'index' AND state = 'installed'"), 18);
        // no two valid indexes of a table share their key columns
        assert_eq!(
            count(
                "SELECT count(*) FROM (SELECT indrelid, chom.index_key_columns(indexrelid) k FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
            0
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    }
}

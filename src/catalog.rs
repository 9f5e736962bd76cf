//! The objects chom manages on CHOM's tables, as data: the index catalogue (the `chom_managed_index` table,
//! filled by sql/managed_indexes.sql) and the trigger list below, and the catalogue look-ups that decide whether
//! an index is there, is equivalent to one chom wants, or is broken.

use crate::target::Target;
use pgrx::spi::quote_identifier;

/// The comment chom puts on the indexes it builds (and on those chom_index_ddl() builds), so that an index
/// with a managed name that somebody else made (CHOM's own migration, say) is never taken for chom's.
pub const INDEX_MARKER: &str = "managed by chom: see chom_status()";

/// One index of the catalogue.
#[derive(Clone, Debug)]
pub struct ManagedIndex {
    pub name: String,
    pub table: String,
    pub key_columns: Vec<String>,
    pub descending: Vec<String>,
}

/// What is found in the catalogue under a managed index's name.
#[derive(Clone, Debug, PartialEq)]
pub enum Named {
    Absent,
    /// an index on the managed table; `marked` when it carries [`INDEX_MARKER`]
    Index {
        valid: bool,
        marked: bool,
        same_keys: bool,
    },
    /// a relation of that name that is not an index on the managed table
    Other,
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

    /// `"schema"."index"`.
    pub fn qualified(&self, target: &Target) -> String {
        format!("{}.{}", quote_identifier(&target.schema), quote_identifier(&self.name))
    }

    pub fn mark_sql(&self, target: &Target) -> String {
        format!("COMMENT ON INDEX {} IS '{INDEX_MARKER}'", self.qualified(target))
    }

    /// The first column of the index that the table lacks, or the table itself when it is missing.
    pub fn missing_prerequisite(&self, target: &Target) -> Option<String> {
        if !crate::target::table_exists(target, &self.table) {
            return Some(format!("table {} does not exist", target.table(&self.table)));
        }
        self.key_columns
            .iter()
            .find(|c| crate::target::column_type(target, &self.table, c).is_none())
            .map(|c| format!("column {}.{} does not exist", target.table(&self.table), quote_identifier(c)))
    }

    /// What has this index's name in CHOM's schema.
    pub fn named(&self, target: &Target) -> Named {
        let sql = format!(
            "SELECT t.relname = $3 AND c.relkind = 'i', i.indisvalid AND i.indisready, \
                    coalesce(pg_catalog.obj_description(c.oid, 'pg_class') = $4, false), \
                    {chom}.chom_index_key_columns(c.oid) = $5::text[] AND i.indpred IS NULL \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid \
             LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
             WHERE n.nspname = $1 AND c.relname = $2",
            chom = quote_identifier(&target.extension_schema)
        );
        let args = [
            target.schema.clone().into(),
            self.name.clone().into(),
            self.table.clone().into(),
            INDEX_MARKER.into(),
            self.key_columns.clone().into(),
        ];
        let found = crate::db::rows(&sql, &args, |row| {
            if !row.get::<bool>(1).unwrap_or(false) {
                return Named::Other;
            }
            Named::Index {
                valid: row.get(2).unwrap_or(false),
                marked: row.get(3).unwrap_or(false),
                same_keys: row.get(4).unwrap_or(false),
            }
        });
        found.into_iter().next().unwrap_or(Named::Absent)
    }

    /// Another valid, non-partial b-tree index on the same table whose leading key columns are this one's
    /// (direction aside: a b-tree is scanned both ways), the shortest such first.
    pub fn equivalent(&self, target: &Target) -> Option<String> {
        let sql = format!(
            "SELECT ic.relname::text FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
             WHERE n.nspname = $1 AND t.relname = $2 AND ic.relname <> $3 \
               AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND am.amname = 'btree' \
               AND ({chom}.chom_index_key_columns(i.indexrelid))[1:pg_catalog.cardinality($4::text[])] = $4::text[] \
             ORDER BY i.indnkeyatts, ic.relname LIMIT 1",
            chom = quote_identifier(&target.extension_schema)
        );
        crate::db::one(
            &sql,
            &[
                target.schema.clone().into(),
                self.table.clone().into(),
                self.name.clone().into(),
                self.key_columns.clone().into(),
            ],
        )
    }
}

/// The whole index catalogue, in a stable order.
pub fn managed_indexes(extension_schema: &str) -> Vec<ManagedIndex> {
    let sql = format!(
        "SELECT name, table_name, key_columns, descending FROM {}.chom_managed_index ORDER BY table_name, name",
        quote_identifier(extension_schema)
    );
    crate::db::rows(&sql, &[], |row| ManagedIndex {
        name: row.get(1).unwrap_or_default(),
        table: row.get(2).unwrap_or_default(),
        key_columns: row.get(3).unwrap_or_default(),
        descending: row.get(4).unwrap_or_default(),
    })
}

/// A statement-level trigger chom puts on one of CHOM's tables.
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
    pub fn create_sql(&self, target: &Target) -> String {
        format!(
            "CREATE TRIGGER {} AFTER {} ON {} {} FOR EACH STATEMENT EXECUTE FUNCTION {}.{}()",
            self.name,
            self.event,
            target.table(self.table),
            self.referencing,
            quote_identifier(&target.extension_schema),
            self.function
        )
    }

    /// `Some(enabled)` when the trigger exists on its table.
    pub fn enabled(&self, target: &Target) -> Option<bool> {
        crate::db::one(
            "SELECT tg.tgenabled <> 'D' FROM pg_catalog.pg_trigger tg \
                 JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND tg.tgname = $3",
            &[target.schema.clone().into(), self.table.into(), self.name.into()],
        )
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn the_catalogue_holds_the_seed_indexes_and_cached_at() {
        assert_eq!(count("SELECT count(*) FROM chom_managed_index"), 21);
        assert_eq!(count("SELECT count(*) FROM chom_managed_index WHERE name = 'idx_tenants_cached_at'"), 1);
        assert_eq!(
            count("SELECT count(*) FROM chom_managed_index WHERE descending = '{created_at}'"),
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
            c.select("SELECT name || '=' || reused_index FROM chom_installed WHERE origin = 'reused' AND kind = 'index' ORDER BY 1", None, &[])
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
        assert_eq!(count("SELECT count(*) FROM chom_installed WHERE kind = 'index' AND origin = 'created'"), 18);
        // no two valid indexes of a table share their key columns
        assert_eq!(
            count(
                "SELECT count(*) FROM (SELECT indrelid, chom_index_key_columns(indexrelid) k FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
            0
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    }
}

//! One inspection of CHOM's schema (sql/inspect.sql, one statement): the facts about every object chom manages,
//! typed. [`crate::control::decide`] classifies them; install, status and index DDL all decide from the same facts.

use crate::schema::catalog::{self, ManagedIndex, ManagedTrigger, TRIGGERS};
use crate::schema::target::Target;
use crate::schema::target::CACHED_COLUMNS;

const INSPECT_SQL: &str = include_str!("../../sql/inspect.sql");

/// What is found under a catalogue index's name, and around it.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexFacts {
    pub index: ManagedIndex,
    /// a relation with the index's name exists in CHOM's schema
    pub present: bool,
    /// it is valid and ready (an index that is not: a failed concurrent build)
    pub valid: bool,
    /// it carries chom's comment
    pub marked: bool,
    /// it is an index on the catalogue's table with the catalogue's key columns, not partial
    pub matches: bool,
    /// another index that serves the same queries
    pub equivalent: Option<String>,
    /// what the index needs that does not exist
    pub missing: Option<Prerequisite>,
    /// it depends on the extension (an index chom_index_ddl() built is not, until chom_install() adopts it)
    pub tied: bool,
}

/// A table or column an index needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Prerequisite {
    Table,
    Column(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnFacts {
    /// its name in CHOM's schema
    pub name: &'static str,
    /// its name now (the application may have renamed it)
    pub current_name: String,
    pub type_name: Option<String>,
    /// carries chom's comment: chom added it
    pub marked: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TriggerFacts {
    pub trigger: &'static ManagedTrigger,
    pub present: bool,
    pub enabled: bool,
    /// it carries the column names chom uses now as its arguments (a trigger of an older chom does not)
    pub current: bool,
    /// it carries one of chom's comments (only [`catalog::MARKED_TRIGGER`] does)
    pub marked: bool,
    /// its comment says chom set tenants' fillfactor (only on [`catalog::MARKED_TRIGGER`])
    pub fillfactor_by_chom: bool,
    /// on Citus, the shards of its table where its copy is missing or disabled
    pub missing_on_shards: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageFacts {
    /// tenants is a plain table (a partitioned one takes no storage parameters)
    pub plain_table: bool,
    pub fillfactor: Option<i32>,
    pub updates: Option<i64>,
    pub hot_updates: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub indexes: Vec<IndexFacts>,
    pub columns: Vec<ColumnFacts>,
    pub triggers: Vec<TriggerFacts>,
    pub storage: StorageFacts,
    pub vps_rows: i64,
}

impl Facts {
    /// Whether chom set tenants' fillfactor, as its trigger's comment records.
    pub fn fillfactor_by_chom(&self) -> bool {
        self.triggers.iter().any(|t| t.trigger.name == catalog::MARKED_TRIGGER && t.fillfactor_by_chom)
    }
}

/// Reads every fact about the objects chom manages on `target`, in one statement.
pub fn inspect(target: &Target) -> Facts {
    let catalogue: Vec<ManagedIndex> = catalog::managed_indexes();
    let sql = target.render(INSPECT_SQL);
    let columns: Vec<&str> = CACHED_COLUMNS.iter().map(|c| target.column("tenants", c.name)).collect();
    let arguments: Vec<u8> = target.columns.iter().flat_map(|name| name.bytes().chain([0])).collect();
    let (trigger_names, trigger_tables): (Vec<&str>, Vec<&str>) = TRIGGERS.iter().map(|t| (t.name, t.table)).unzip();
    let args = [
        target.schema.clone().into(),
        columns.into(),
        trigger_names.into(),
        trigger_tables.into(),
        catalog::INDEX_MARKER.into(),
        catalog::COLUMN_MARKER.into(),
        catalog::TRIGGER_MARKER.into(),
        catalog::TRIGGER_MARKER_FILLFACTOR.into(),
        arguments.into(),
    ];
    let mut facts = Facts::default();
    let rows = crate::pg::db::rows(&sql, &args, |row| {
        let kind: String = row.required(1);
        let name: String = row.required(2);
        match kind.as_str() {
            "index" => {
                let index = catalogue.iter().find(|i| i.name == name).cloned().unwrap_or_else(|| unknown(&kind, &name));
                let missing =
                    row.get::<String>(9)
                        .map(|m| if m == "table" { Prerequisite::Table } else { Prerequisite::Column(m) });
                facts.indexes.push(IndexFacts {
                    index,
                    present: row.required(4),
                    valid: row.get(5).unwrap_or(false),
                    marked: row.get(6).unwrap_or(false),
                    matches: row.required(7),
                    equivalent: row.get(8),
                    missing,
                    tied: row.get(15).unwrap_or(false),
                });
            }
            "column" => {
                let position: usize = name.parse().unwrap_or_else(|_| unknown(&kind, &name));
                let column = CACHED_COLUMNS.get(position - 1).unwrap_or_else(|| unknown(&kind, &name));
                facts.columns.push(ColumnFacts {
                    name: column.name,
                    current_name: target.column("tenants", column.name).to_string(),
                    type_name: row.get(10),
                    marked: row.required(6),
                });
            }
            "trigger" => facts.triggers.push(TriggerFacts {
                trigger: ManagedTrigger::by_name(&name),
                present: row.required(4),
                enabled: row.get(5).unwrap_or(false),
                current: row.get(14).unwrap_or(false),
                marked: row.required(6),
                fillfactor_by_chom: row.required(7),
                missing_on_shards: Vec::new(),
            }),
            "storage" => {
                facts.storage = StorageFacts {
                    plain_table: row.get(4).unwrap_or(false),
                    fillfactor: row.get(11),
                    updates: row.get(12),
                    hot_updates: row.get(13),
                }
            }
            "load" => facts.vps_rows = row.required(12),
            _ => unknown(&kind, &name),
        }
    });
    drop(rows);
    if target.layout.distributed() {
        // Citus copies the triggers of a distributed table to its shards, except TRUNCATE triggers (a TRUNCATE
        // fires on the coordinator's table)
        let on_shards: Vec<&str> = facts
            .triggers
            .iter()
            .filter(|t| t.present && t.trigger.table == "sites" && t.trigger.event != "TRUNCATE")
            .map(|t| t.trigger.name)
            .collect();
        let mut missing = crate::control::citus::shards_missing_triggers(target, &on_shards);
        for trigger in &mut facts.triggers {
            trigger.missing_on_shards = missing.remove(trigger.trigger.name).unwrap_or_default();
        }
    }
    facts
}

fn unknown(kind: &str, name: &str) -> ! {
    crate::pg::errors::raise(
        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("chom: the inspection returned an unknown {kind} \"{name}\""),
        None,
    )
}

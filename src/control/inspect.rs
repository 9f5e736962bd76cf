//! One inspection of CHOM's schema (sql/inspect.sql, one statement): the facts about every object chom manages,
//! typed. [`crate::control::decide`] classifies them; install, status and index DDL all decide from the same facts.

use crate::schema::catalog::{self, ManagedIndex, ManagedTrigger, TRIGGERS};
use crate::schema::layout::OUTBOX;
use crate::schema::target::{relation_oid, Target, CACHED_COLUMNS, CHOM_SCHEMA};

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

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFacts {
    /// tenants is a plain table (a partitioned one takes no storage parameters)
    pub plain_table: bool,
    pub fillfactor: Option<i32>,
    pub updates: Option<i64>,
    pub hot_updates: Option<i64>,
}

/// chom's own tables that keep state between commits (always in chom's schema): `chom.vps_load`, and by layout
/// the busy tenant's deltas (one node) or the Citus outbox.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnTableFacts {
    /// rows of chom.vps_load
    pub vps_rows: i64,
    /// one node: the unfolded deltas of chom.tenant_deltas and the oldest one's time (None: no such table, an
    /// update to 0.4.0 not run yet); on Citus None
    pub unfolded_deltas: Option<(i64, Option<pgrx::datum::TimestampWithTimeZone>)>,
    /// Citus: whether the outbox exists; on one node None
    pub outbox: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub indexes: Vec<IndexFacts>,
    pub columns: Vec<ColumnFacts>,
    pub triggers: Vec<TriggerFacts>,
    pub storage: StorageFacts,
    pub own_tables: OwnTableFacts,
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
    let columns: Vec<&str> = CACHED_COLUMNS.iter().map(|c| target.column(c.col)).collect();
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
    let rows: Vec<(String, String, pgrx::JsonB)> =
        crate::pg::db::rows(&sql, &args, |row| (row.required(1), row.required(2), row.required(3)));
    for (kind, name, pgrx::JsonB(found)) in rows {
        match kind.as_str() {
            "index" => {
                let index = catalogue.iter().find(|i| i.name == name).cloned().unwrap_or_else(|| unknown(&kind, &name));
                let row: IndexRow = decode(&kind, &name, found);
                let missing =
                    row.missing.map(|m| if m == "table" { Prerequisite::Table } else { Prerequisite::Column(m) });
                facts.indexes.push(IndexFacts {
                    index,
                    present: row.present,
                    valid: row.valid,
                    marked: row.marked,
                    matches: row.matches,
                    equivalent: row.equivalent,
                    missing,
                    tied: row.tied,
                });
            }
            "column" => {
                let position: usize = name.parse().unwrap_or_else(|_| unknown(&kind, &name));
                let column = CACHED_COLUMNS.get(position.wrapping_sub(1)).unwrap_or_else(|| unknown(&kind, &name));
                let row: ColumnRow = decode(&kind, &name, found);
                facts.columns.push(ColumnFacts {
                    name: column.name(),
                    current_name: target.column(column.col).to_string(),
                    type_name: row.type_name,
                    marked: row.marked,
                });
            }
            "trigger" => {
                let row: TriggerRow = decode(&kind, &name, found);
                facts.triggers.push(TriggerFacts {
                    trigger: ManagedTrigger::by_name(&name),
                    present: row.present,
                    enabled: row.enabled,
                    current: row.current,
                    marked: row.marked,
                    fillfactor_by_chom: row.fillfactor_by_chom,
                    missing_on_shards: Vec::new(),
                })
            }
            "storage" => facts.storage = decode(&kind, &name, found),
            "load" => facts.own_tables.vps_rows = decode::<LoadRow>(&kind, &name, found).vps_rows,
            _ => unknown(&kind, &name),
        }
    }
    if target.layout.distributed() {
        let outbox = std::ffi::CString::new(OUTBOX).unwrap_or_default();
        facts.own_tables.outbox = Some(relation_oid(CHOM_SCHEMA, &outbox).is_some());
    } else {
        facts.own_tables.unfolded_deltas = crate::maintain::deltas::depth(target);
    }
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

/// What sql/inspect.sql says of an index, by key.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRow {
    present: bool,
    valid: bool,
    marked: bool,
    matches: bool,
    equivalent: Option<String>,
    missing: Option<String>,
    tied: bool,
}

/// What sql/inspect.sql says of a cached column.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnRow {
    type_name: Option<String>,
    marked: bool,
}

/// What sql/inspect.sql says of a trigger.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRow {
    present: bool,
    enabled: bool,
    marked: bool,
    fillfactor_by_chom: bool,
    current: bool,
}

/// What sql/inspect.sql says of chom.vps_load.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadRow {
    vps_rows: i64,
}

/// One row's facts, decoded by name: a key missing, unknown or of another type is an internal error naming
/// the object (sql/inspect.sql and this file disagree), never a default.
fn decode<T: serde::de::DeserializeOwned>(kind: &str, name: &str, found: serde_json::Value) -> T {
    serde_json::from_value(found).unwrap_or_else(|e| {
        crate::pg::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("chom: the inspection's facts of {kind} \"{name}\" do not decode: {e}"),
            None,
        )
    })
}

fn unknown(kind: &str, name: &str) -> ! {
    crate::pg::errors::raise(
        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("chom: the inspection returned an unknown {kind} \"{name}\""),
        None,
    )
}

#[cfg(test)]
mod unit_tests {
    use super::{LoadRow, StorageFacts, TriggerRow};
    use serde_json::json;

    #[test]
    fn facts_decode_by_name_and_refuse_what_they_do_not_know() {
        let trigger =
            json!({"present": true, "enabled": true, "marked": false, "fillfactor_by_chom": false, "current": true});
        let row: TriggerRow = serde_json::from_value(trigger).unwrap();
        assert!(row.present && row.enabled && row.current && !row.marked);
        let storage: StorageFacts =
            serde_json::from_value(json!({"plain_table": true, "fillfactor": null, "updates": 3, "hot_updates": 2}))
                .unwrap();
        assert_eq!(storage.fillfactor, None);
        assert!(serde_json::from_value::<TriggerRow>(json!({"present": true})).is_err(), "a missing key");
        assert!(serde_json::from_value::<LoadRow>(json!({"vps_rows": 1, "rows": 2})).is_err(), "an unknown key");
        assert!(serde_json::from_value::<LoadRow>(json!({"vps_rows": "1"})).is_err(), "another type");
    }
}

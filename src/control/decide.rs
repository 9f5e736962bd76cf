//! The control plane's one decision: the facts of [`crate::control::inspect`] classified into typed states, and the
//! states turned into install steps, uninstall steps, index DDL and status rows. Pure functions: chom_install(),
//! chom_uninstall(), chom_index_ddl() and chom_status() render the same decision, so they cannot disagree.

use crate::control::inspect::{
    ColumnFacts, Facts, IndexFacts, OwnTableFacts, Prerequisite, StorageFacts, TriggerFacts,
};
use crate::schema::catalog::{ManagedIndex, ManagedTrigger};
use crate::schema::layout::OUTBOX;
use crate::schema::target::{CachedColumn, CACHED_COLUMNS, CHOM_SCHEMA};
use std::fmt;

/// The state of one catalogue index.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexState {
    /// chom's own: its name, table and key columns, valid, with chom's comment, tied to the extension
    Installed,
    /// the same, built by chom_index_ddl() and not tied to the extension yet: chom_install() adopts it
    Untied,
    /// another index serves the same queries (under another name, or under chom's name without chom's comment:
    /// the application's own); chom never drops it
    Reused(String),
    /// nothing serves it: chom creates it
    Missing,
    /// chom's name, table and key columns but not valid (a failed concurrent build, whatever its comment), or
    /// chom's comment on an older definition: chom drops and builds it again
    Rebuild,
    /// the name is taken by something that is not this index and nothing else serves it
    Conflict,
    /// it needs a table or column that does not exist
    Blocked(Prerequisite),
}

pub fn classify_index(facts: &IndexFacts) -> IndexState {
    if let Some(missing) = &facts.missing {
        // chom's index, valid, on a column the application renamed since: the index followed the rename
        if facts.present && facts.marked && facts.valid {
            return IndexState::Installed;
        }
        return IndexState::Blocked(missing.clone());
    }
    match (facts.present, facts.matches, facts.marked, facts.valid) {
        (false, ..) => facts.equivalent.clone().map_or(IndexState::Missing, IndexState::Reused),
        (true, true, true, true) if facts.tied => IndexState::Installed,
        (true, true, true, true) => IndexState::Untied,
        (true, true, false, true) => IndexState::Reused(facts.index.name.clone()),
        (true, true, _, false) | (true, false, true, _) => IndexState::Rebuild,
        (true, false, false, _) => facts.equivalent.clone().map_or(IndexState::Conflict, IndexState::Reused),
    }
}

/// The state of one cached column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnState {
    Missing,
    /// added by chom (its comment says so): dropped by chom_uninstall()
    Installed,
    /// the application's own (its migration added it): maintained by chom, kept by chom_uninstall()
    Adopted,
}

pub fn classify_column(facts: &ColumnFacts) -> ColumnState {
    match (&facts.type_name, facts.marked) {
        (None, _) => ColumnState::Missing,
        (Some(_), true) => ColumnState::Installed,
        (Some(_), false) => ColumnState::Adopted,
    }
}

/// Who set tenants' fillfactor.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageState {
    /// chom set it (its trigger's comment says so): reset by chom_uninstall()
    SetByChom(i32),
    /// chom had set it and it was reset since
    ResetSinceChom,
    /// the table's own setting: kept
    Own(i32),
    /// the default (100)
    Default,
    /// tenants is partitioned (or missing): no storage parameters
    NotApplicable,
}

pub fn classify_storage(storage: &StorageFacts, set_by_chom: bool) -> StorageState {
    match (storage.plain_table, storage.fillfactor, set_by_chom) {
        (false, ..) => StorageState::NotApplicable,
        (true, Some(ff), true) => StorageState::SetByChom(ff),
        (true, None, true) => StorageState::ResetSinceChom,
        (true, Some(ff), false) => StorageState::Own(ff),
        (true, None, false) => StorageState::Default,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TriggerState {
    Installed,
    Disabled,
    /// created by an older chom: it works, but does not carry the column names chom uses as its arguments
    Outdated,
    Missing,
    /// on Citus: on the distributed table, but missing or disabled on these shards of it
    MissingOnShards(Vec<i64>),
}

pub fn classify_trigger(facts: &TriggerFacts) -> TriggerState {
    match (facts.present, facts.enabled, facts.current) {
        (false, ..) => TriggerState::Missing,
        (true, false, _) => TriggerState::Disabled,
        _ if !facts.missing_on_shards.is_empty() => TriggerState::MissingOnShards(facts.missing_on_shards.clone()),
        (true, true, false) => TriggerState::Outdated,
        (true, true, true) => TriggerState::Installed,
    }
}

/// Every managed object with its state.
pub struct States {
    pub indexes: Vec<(ManagedIndex, IndexState)>,
    pub columns: Vec<(&'static CachedColumn, ColumnState)>,
    pub storage: StorageState,
    pub triggers: Vec<(&'static ManagedTrigger, TriggerState)>,
    /// chom is installed on these tables: its sites triggers are there
    pub installed: bool,
    /// what the comment on chom's marked trigger says now: whether chom set tenants' fillfactor (None: no comment)
    pub marker: Option<bool>,
    /// chom's own tables: they have no states beyond their facts
    pub own_tables: OwnTableFacts,
}

pub fn classify(facts: &Facts) -> States {
    let column = |name: &str| CACHED_COLUMNS.iter().find(|c| c.name() == name).expect("a cached column");
    let triggers: Vec<(&'static ManagedTrigger, TriggerState)> =
        facts.triggers.iter().map(|t| (t.trigger, classify_trigger(t))).collect();
    States {
        indexes: facts.indexes.iter().map(|i| (i.index.clone(), classify_index(i))).collect(),
        columns: facts.columns.iter().map(|c| (column(c.name), classify_column(c))).collect(),
        storage: classify_storage(&facts.storage, facts.fillfactor_by_chom()),
        installed: triggers.iter().any(|(t, state)| t.table == "sites" && *state != TriggerState::Missing),
        marker: facts
            .triggers
            .iter()
            .find(|t| t.trigger.name == crate::schema::catalog::MARKED_TRIGGER && t.marked)
            .map(|t| t.fillfactor_by_chom),
        triggers,
        own_tables: facts.own_tables.clone(),
    }
}

/// One change chom_install() makes, in the order of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// add the columns (one ALTER TABLE), each with chom's comment
    AddColumns(Vec<&'static CachedColumn>),
    SetFillfactor(i32),
    /// recount every tenant and VPS: writes may have gone by without chom's triggers
    Fill,
    CreateIndex(ManagedIndex),
    /// drop it, then create it
    RebuildIndex(ManagedIndex),
    /// tie an index chom built (chom_index_ddl()) to the extension
    AdoptIndex(ManagedIndex),
    CreateTrigger(&'static ManagedTrigger),
    /// drop it and create it again, with the current arguments
    ReplaceTrigger(&'static ManagedTrigger),
    EnableTrigger(&'static ManagedTrigger),
    /// comment chom's sites INSERT trigger with whether chom set tenants' fillfactor
    MarkTrigger {
        fillfactor_by_chom: bool,
    },
}

/// What chom_install() reports for an object.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Created,
    Exists,
    Reused(String),
    Adopted,
    Rebuilt,
    Enabled,
    Updated,
    FillfactorSet(i32),
    FillfactorSetAgain(i32),
    FillfactorKept(i32),
    FillfactorDefault,
    Filled,
    Skipped(SkipReason),
    /// chom_uninstall(): the object is gone
    Dropped,
    /// chom_uninstall(): tenants' fillfactor is the default again
    Reset,
    /// chom_uninstall(): chom's rows of it are gone, the table stays (it belongs to the extension)
    Emptied,
    /// chom_uninstall(): the busy tenants' unfolded deltas are in the cached columns
    Folded,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SkipReason {
    Missing(Prerequisite),
    NameTaken,
    Partitioned,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => write!(f, "created"),
            Action::Exists => write!(f, "exists"),
            Action::Reused(index) => write!(f, "reused {index}"),
            Action::Adopted => write!(f, "reused (the application's column: kept by chom_uninstall())"),
            Action::Rebuilt => write!(f, "created (replaced an INVALID index of chom's name and definition)"),
            Action::Enabled => write!(f, "enabled (it was disabled; aggregates recounted)"),
            Action::Updated => write!(f, "updated (it now carries the column names chom uses)"),
            Action::FillfactorSet(ff) => write!(f, "set to {ff} (room for HOT updates of the cached aggregates)"),
            Action::FillfactorSetAgain(ff) => write!(f, "set to {ff} again (it had been reset)"),
            Action::FillfactorKept(ff) => write!(f, "kept ({ff}, the table's own setting)"),
            Action::FillfactorDefault => write!(f, "kept (100: chom.tenants_fillfactor = 100)"),
            Action::Filled => write!(f, "filled"),
            Action::Skipped(SkipReason::Missing(Prerequisite::Table)) => {
                write!(f, "skipped (its table does not exist)")
            }
            Action::Skipped(SkipReason::Missing(Prerequisite::Column(c))) => {
                write!(f, "skipped (column {c} does not exist)")
            }
            Action::Skipped(SkipReason::NameTaken) => {
                write!(f, "skipped (another relation has its name: see chom_status())")
            }
            Action::Skipped(SkipReason::Partitioned) => {
                write!(f, "skipped (partitioned table: set fillfactor on its partitions)")
            }
            Action::Dropped => write!(f, "dropped"),
            Action::Reset => write!(f, "reset"),
            Action::Emptied => write!(f, "emptied"),
            Action::Folded => write!(f, "folded"),
        }
    }
}

/// A line of chom_install()'s report.
pub type Reported = (&'static str, String, Action);

pub struct InstallPlan {
    pub steps: Vec<Step>,
    pub report: Vec<Reported>,
}

/// What chom_install() does, given the states and the fillfactor it wants for tenants (100: none).
pub fn plan_install(states: &States, wanted_fillfactor: i32) -> InstallPlan {
    let mut steps = Vec::new();
    let mut report: Vec<Reported> = Vec::new();
    let added: Vec<&'static CachedColumn> =
        states.columns.iter().filter(|(_, s)| *s == ColumnState::Missing).map(|(c, _)| *c).collect();
    for (column, state) in &states.columns {
        let action = match state {
            ColumnState::Missing => Action::Created,
            ColumnState::Installed => Action::Exists,
            ColumnState::Adopted => Action::Adopted,
        };
        report.push(("column", format!("tenants.{}", column.name()), action));
    }
    let adds_columns = !added.is_empty();
    if adds_columns {
        steps.push(Step::AddColumns(added));
    }
    let (fillfactor_step, fillfactor_action, fillfactor_by_chom) = match states.storage {
        StorageState::NotApplicable => (None, Action::Skipped(SkipReason::Partitioned), false),
        StorageState::SetByChom(ff) => (None, Action::Exists, ff > 0),
        StorageState::ResetSinceChom if wanted_fillfactor < 100 => {
            (Some(Step::SetFillfactor(wanted_fillfactor)), Action::FillfactorSetAgain(wanted_fillfactor), true)
        }
        StorageState::ResetSinceChom | StorageState::Default if wanted_fillfactor >= 100 => {
            (None, Action::FillfactorDefault, false)
        }
        StorageState::ResetSinceChom | StorageState::Default => {
            (Some(Step::SetFillfactor(wanted_fillfactor)), Action::FillfactorSet(wanted_fillfactor), true)
        }
        StorageState::Own(ff) => (None, Action::FillfactorKept(ff), false),
    };
    steps.extend(fillfactor_step);
    report.push(("storage", "tenants.fillfactor".into(), fillfactor_action));
    // writes may have gone by unseen while a trigger was missing or disabled: recount everything
    let unseen = |s: &TriggerState| {
        matches!(s, TriggerState::Missing | TriggerState::Disabled | TriggerState::MissingOnShards(_))
    };
    if adds_columns || states.triggers.iter().any(|(_, s)| unseen(s)) {
        steps.push(Step::Fill);
        report.push(("table", "chom.vps_load".into(), Action::Filled));
    }
    for (index, state) in &states.indexes {
        let (step, action) = match state {
            IndexState::Installed => (None, Action::Exists),
            IndexState::Untied => (Some(Step::AdoptIndex(index.clone())), Action::Exists),
            IndexState::Reused(other) => (None, Action::Reused(other.clone())),
            IndexState::Missing => (Some(Step::CreateIndex(index.clone())), Action::Created),
            IndexState::Rebuild => (Some(Step::RebuildIndex(index.clone())), Action::Rebuilt),
            IndexState::Conflict => (None, Action::Skipped(SkipReason::NameTaken)),
            // a cached column chom adds in this very install is no missing prerequisite
            IndexState::Blocked(Prerequisite::Column(c))
                if states.columns.iter().any(|(col, s)| col.name() == c && *s == ColumnState::Missing) =>
            {
                (Some(Step::CreateIndex(index.clone())), Action::Created)
            }
            IndexState::Blocked(missing) => (None, Action::Skipped(SkipReason::Missing(missing.clone()))),
        };
        steps.extend(step);
        report.push(("index", index.name.clone(), action));
    }
    for (trigger, state) in &states.triggers {
        let (step, action) = match state {
            TriggerState::Installed => (None, Action::Exists),
            TriggerState::Disabled => (Some(Step::EnableTrigger(trigger)), Action::Enabled),
            // Citus propagates the replacement to every shard, creating it where it is missing
            TriggerState::Outdated | TriggerState::MissingOnShards(_) => {
                (Some(Step::ReplaceTrigger(trigger)), Action::Updated)
            }
            TriggerState::Missing => (Some(Step::CreateTrigger(trigger)), Action::Created),
        };
        steps.extend(step);
        report.push(("trigger", trigger.name.into(), action));
    }
    let marked_trigger_created =
        steps.iter().any(|s| matches!(s, Step::CreateTrigger(t) if t.name == crate::schema::catalog::MARKED_TRIGGER));
    if marked_trigger_created || states.marker != Some(fillfactor_by_chom) {
        steps.push(Step::MarkTrigger { fillfactor_by_chom });
    }
    InstallPlan { steps, report }
}

/// One change chom_uninstall() makes, in the order of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum UninstallStep {
    /// one node: the busy tenants' unfolded deltas go into the cached columns first, so that the application's
    /// own columns stay exact without chom
    FoldDeltas,
    DropTrigger(&'static ManagedTrigger),
    DropIndex(ManagedIndex),
    DropColumns(Vec<&'static CachedColumn>),
    ResetFillfactor,
    /// the per-VPS loads mean nothing without the triggers (chom_pick_vps() refuses without an install)
    EmptyVpsLoad,
    /// Citus: chom's outbox, a distributed table chom_install() created
    DropOutbox,
}

impl UninstallStep {
    /// The rows of chom_uninstall()'s report for this step.
    pub fn reported(&self) -> Vec<Reported> {
        match self {
            UninstallStep::FoldDeltas => vec![("table", "chom.tenant_deltas".into(), Action::Folded)],
            UninstallStep::DropTrigger(trigger) => vec![("trigger", trigger.name.into(), Action::Dropped)],
            UninstallStep::DropIndex(index) => vec![("index", index.name.clone(), Action::Dropped)],
            UninstallStep::DropColumns(columns) => {
                columns.iter().map(|c| ("column", format!("tenants.{}", c.name()), Action::Dropped)).collect()
            }
            UninstallStep::ResetFillfactor => vec![("storage", "tenants.fillfactor".into(), Action::Reset)],
            UninstallStep::EmptyVpsLoad => vec![("table", "chom.vps_load".into(), Action::Emptied)],
            UninstallStep::DropOutbox => {
                vec![("table", format!("{CHOM_SCHEMA}.{OUTBOX}"), Action::Dropped)]
            }
        }
    }
}

/// What chom_uninstall() removes: exactly what chom added, never what it reused or adopted, after folding what
/// the busy tenants left unfolded.
pub fn plan_uninstall(states: &States) -> Vec<UninstallStep> {
    let mut steps: Vec<UninstallStep> = Vec::new();
    if states.own_tables.unfolded_deltas.is_some_and(|(unfolded, _)| unfolded > 0) {
        steps.push(UninstallStep::FoldDeltas);
    }
    steps.extend(
        states.triggers.iter().filter(|(_, s)| *s != TriggerState::Missing).map(|(t, _)| UninstallStep::DropTrigger(t)),
    );
    steps.extend(
        states
            .indexes
            .iter()
            .filter(|(_, s)| matches!(s, IndexState::Installed | IndexState::Untied | IndexState::Rebuild))
            .map(|(i, _)| UninstallStep::DropIndex(i.clone())),
    );
    let columns: Vec<&'static CachedColumn> =
        states.columns.iter().filter(|(_, s)| *s == ColumnState::Installed).map(|(c, _)| *c).collect();
    if !columns.is_empty() {
        steps.push(UninstallStep::DropColumns(columns));
    }
    if matches!(states.storage, StorageState::SetByChom(_)) {
        steps.push(UninstallStep::ResetFillfactor);
    }
    steps.push(UninstallStep::EmptyVpsLoad);
    if states.own_tables.outbox == Some(true) {
        steps.push(UninstallStep::DropOutbox);
    }
    steps
}

/// The index statements chom_index_ddl() prints: what chom_install() would build, without blocking writes.
pub enum IndexDdl {
    Create(ManagedIndex),
    Rebuild(ManagedIndex),
}

pub fn plan_index_ddl(states: &States) -> Vec<IndexDdl> {
    states
        .indexes
        .iter()
        .filter_map(|(index, state)| match state {
            IndexState::Missing => Some(IndexDdl::Create(index.clone())),
            IndexState::Rebuild => Some(IndexDdl::Rebuild(index.clone())),
            _ => None,
        })
        .collect()
}

/// chom_status()'s state column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Health {
    Installed,
    Reused,
    Missing,
    Invalid,
    Disabled,
    Conflict,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Health::Installed => "installed",
            Health::Reused => "reused",
            Health::Missing => "missing",
            Health::Invalid => "invalid",
            Health::Disabled => "disabled",
            Health::Conflict => "conflict",
        };
        f.write_str(name)
    }
}

/// What chom_status() says of chom's own tables, as (name, CHOM's table it serves, state, detail):
/// `chom.vps_load` always, then by layout the busy tenant's `chom.tenant_deltas` (one node) or the Citus outbox.
/// Like every row, `installed` only when chom is installed on CHOM's tables (the tables then are kept up).
pub fn own_table_health(facts: &OwnTableFacts, installed: bool) -> Vec<(&'static str, &'static str, Health, String)> {
    let kept = if installed { Health::Installed } else { Health::Missing };
    let mut rows = vec![("chom.vps_load", "vps_servers", kept, format!("{} VPS rows", facts.vps_rows))];
    match (facts.unfolded_deltas, facts.outbox) {
        (_, Some(true)) => rows.push((
            "chom.vps_delta",
            "sites",
            kept,
            "the per-VPS changes the workers queue; chom_drain_vps_deltas() or the drain worker applies them".into(),
        )),
        (_, Some(false)) => rows.push((
            "chom.vps_delta",
            "sites",
            Health::Missing,
            "SELECT * FROM chom_install() on the coordinator creates the outbox".into(),
        )),
        (Some((0, _)), None) => rows.push(("chom.tenant_deltas", "tenants", kept, "no unfolded deltas".into())),
        (Some((unfolded, _)), None) => rows.push((
            "chom.tenant_deltas",
            "tenants",
            kept,
            format!(
                "{unfolded} unfolded deltas (the fold worker adds them to tenants; chom_fold_deltas() folds them now)"
            ),
        )),
        (None, None) => rows.push((
            "chom.tenant_deltas",
            "tenants",
            Health::Missing,
            "ALTER EXTENSION chom UPDATE creates it (chom 0.4.0)".into(),
        )),
    }
    rows
}

/// What chom_status() says of an index, with advice that works when followed.
pub fn index_health(index: &ManagedIndex, state: &IndexState, installed: bool) -> (Health, Option<String>) {
    let install = if installed { "SELECT * FROM chom_install()" } else { "run chom_install()" };
    match state {
        IndexState::Installed | IndexState::Untied => (Health::Installed, None),
        IndexState::Reused(other) => (Health::Reused, Some(other.clone())),
        IndexState::Missing => (
            Health::Missing,
            Some(format!("{install} (blocking), or build it online with chom_index_ddl() and \\gexec first")),
        ),
        IndexState::Rebuild => (
            Health::Invalid,
            Some(format!(
                "INVALID or outdated index of chom's (a failed concurrent build): chom_index_ddl() drops and builds it \
                 again online, or {install} does it blocking"
            )),
        ),
        IndexState::Conflict => (
            Health::Conflict,
            Some(format!(
                "another relation is named {}: rename or drop it (ALTER INDEX {} RENAME TO ...), then {install}",
                index.name, index.name
            )),
        ),
        IndexState::Blocked(Prerequisite::Table) => {
            (Health::Missing, Some(format!("table {} does not exist", index.table)))
        }
        IndexState::Blocked(Prerequisite::Column(c))
            if installed || !CACHED_COLUMNS.iter().any(|col| col.name() == c) =>
        {
            (Health::Missing, Some(format!("column {}.{c} does not exist", index.table)))
        }
        IndexState::Blocked(Prerequisite::Column(c)) => {
            (Health::Missing, Some(format!("needs column {}.{c}, which chom_install() adds", index.table)))
        }
    }
}

pub fn column_health(state: &ColumnState, installed: bool) -> (Health, Option<String>) {
    match (state, installed) {
        (ColumnState::Missing, _) => (Health::Missing, Some("run chom_install()".into())),
        (ColumnState::Installed, true) => (Health::Installed, None),
        (ColumnState::Adopted, true) => {
            (Health::Reused, Some("the application's column: chom maintains it, chom_uninstall() keeps it".into()))
        }
        (_, false) => {
            (Health::Missing, Some("the column exists but chom does not maintain it: run chom_install()".into()))
        }
    }
}

pub fn trigger_health(trigger: &ManagedTrigger, state: &TriggerState) -> (Health, Option<String>) {
    match state {
        TriggerState::Installed => (Health::Installed, None),
        TriggerState::Disabled => (
            Health::Disabled,
            Some(format!(
                "aggregates drift while it is disabled: SELECT * FROM chom_install() enables it and recounts \
                 (or ALTER TABLE {} ENABLE TRIGGER {}, then SELECT chom_repair_drift())",
                trigger.table, trigger.name
            )),
        ),
        TriggerState::Outdated => (
            Health::Installed,
            Some("created by an older chom: SELECT * FROM chom_install() gives it the current arguments".into()),
        ),
        TriggerState::Missing => (Health::Missing, Some("run chom_install()".into())),
        TriggerState::MissingOnShards(shards) => (
            Health::Missing,
            Some(format!(
                "missing or disabled on shards {} of {}: SELECT * FROM chom_install() re-creates it there and recounts",
                shards.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                trigger.table
            )),
        ),
    }
}

pub fn storage_health(state: &StorageState, installed: bool) -> (Health, String) {
    match (state, installed) {
        (StorageState::SetByChom(ff), true) => (Health::Installed, format!("fillfactor {ff}")),
        (StorageState::Own(ff), _) => (Health::Reused, format!("fillfactor {ff}, the table's own setting")),
        (StorageState::ResetSinceChom, true) => {
            (Health::Missing, "fillfactor 100; reset since chom_install(): chom_install() sets it again".into())
        }
        (StorageState::NotApplicable, _) => {
            (Health::Reused, "partitioned table: storage is set on its partitions".into())
        }
        (StorageState::Default, true) => (Health::Reused, "fillfactor 100 (chom.tenants_fillfactor = 100)".into()),
        (_, false) => (Health::Missing, "fillfactor 100; run chom_install()".into()),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use crate::schema::catalog::TRIGGERS;

    #[test]
    fn uninstall_folds_first_and_clears_chom_own_tables_last() {
        let mut states = states_with_index(IndexState::Installed);
        states.own_tables = OwnTableFacts { vps_rows: 1, unfolded_deltas: Some((3, None)), outbox: None };
        let steps = plan_uninstall(&states);
        assert_eq!(steps.first(), Some(&UninstallStep::FoldDeltas));
        assert_eq!(steps.last(), Some(&UninstallStep::EmptyVpsLoad));
        states.own_tables = OwnTableFacts { vps_rows: 1, unfolded_deltas: None, outbox: Some(true) };
        let steps = plan_uninstall(&states);
        assert!(!steps.contains(&UninstallStep::FoldDeltas));
        assert_eq!(steps.last(), Some(&UninstallStep::DropOutbox));
        assert_eq!(UninstallStep::DropOutbox.reported(), [("table", "chom.vps_delta".to_string(), Action::Dropped)]);
        let report: Vec<String> = UninstallStep::EmptyVpsLoad.reported().iter().map(|r| r.2.to_string()).collect();
        assert_eq!(report, ["emptied"]);
    }

    #[test]
    fn chom_own_tables_are_reported_by_layout() {
        let states = |facts: OwnTableFacts, installed: bool| -> Vec<(&str, Health)> {
            own_table_health(&facts, installed).into_iter().map(|(name, _, health, _)| (name, health)).collect()
        };
        let one_node = OwnTableFacts { vps_rows: 3, unfolded_deltas: Some((2, None)), outbox: None };
        assert_eq!(
            states(one_node.clone(), true),
            [("chom.vps_load", Health::Installed), ("chom.tenant_deltas", Health::Installed)]
        );
        assert_eq!(
            states(one_node, false),
            [("chom.vps_load", Health::Missing), ("chom.tenant_deltas", Health::Missing)]
        );
        let citus = |outbox| OwnTableFacts { vps_rows: 3, unfolded_deltas: None, outbox: Some(outbox) };
        assert_eq!(states(citus(true), true)[1], ("chom.vps_delta", Health::Installed));
        assert_eq!(states(citus(false), true)[1], ("chom.vps_delta", Health::Missing));
        let not_updated = OwnTableFacts { vps_rows: 3, unfolded_deltas: None, outbox: None };
        assert_eq!(states(not_updated, true)[1], ("chom.tenant_deltas", Health::Missing));
    }

    fn index() -> ManagedIndex {
        ManagedIndex {
            name: "idx_audit_resource_lookup".into(),
            table: "audit_logs".into(),
            key_columns: vec!["resource_type".into(), "resource_id".into()],
            descending: vec![],
        }
    }

    fn facts(present: bool, valid: bool, marked: bool, matches: bool, equivalent: Option<&str>) -> IndexFacts {
        IndexFacts {
            index: index(),
            present,
            valid,
            marked,
            matches,
            equivalent: equivalent.map(String::from),
            missing: None,
            tied: true,
        }
    }

    fn states_with_index(state: IndexState) -> States {
        States {
            indexes: vec![(index(), state)],
            columns: CACHED_COLUMNS.iter().map(|c| (c, ColumnState::Installed)).collect(),
            storage: StorageState::SetByChom(70),
            triggers: TRIGGERS.iter().map(|t| (t, TriggerState::Installed)).collect(),
            installed: true,
            marker: Some(true),
            own_tables: OwnTableFacts::default(),
        }
    }

    #[test]
    fn an_index_of_chom_is_installed() {
        assert_eq!(classify_index(&facts(true, true, true, true, None)), IndexState::Installed);
    }

    #[test]
    fn an_absent_index_is_missing_or_served_by_an_equivalent() {
        assert_eq!(classify_index(&facts(false, false, false, false, None)), IndexState::Missing);
        assert_eq!(
            classify_index(&facts(false, false, false, false, Some("other_index"))),
            IndexState::Reused("other_index".into())
        );
    }

    #[test]
    fn the_application_own_index_under_chom_name_is_reused_not_owned() {
        assert_eq!(classify_index(&facts(true, true, false, true, None)), IndexState::Reused(index().name));
    }

    #[test]
    fn an_interrupted_concurrent_build_without_comment_is_rebuilt_by_index_ddl_and_install() {
        let state = classify_index(&facts(true, false, false, true, None));
        assert_eq!(state, IndexState::Rebuild);
        let states = states_with_index(state.clone());
        assert!(matches!(plan_index_ddl(&states).as_slice(), [IndexDdl::Rebuild(i)] if i.name == index().name));
        assert!(plan_install(&states, 70).steps.contains(&Step::RebuildIndex(index())));
        assert_eq!(index_health(&index(), &state, true).0, Health::Invalid);
        assert!(plan_uninstall(&states).contains(&UninstallStep::DropIndex(index())));
    }

    #[test]
    fn a_squatting_index_with_other_columns_is_a_conflict_everywhere() {
        let state = classify_index(&facts(true, true, false, false, None));
        assert_eq!(state, IndexState::Conflict);
        let states = states_with_index(state.clone());
        assert!(plan_index_ddl(&states).is_empty());
        let plan = plan_install(&states, 70);
        assert!(!plan.steps.iter().any(|s| matches!(s, Step::CreateIndex(_) | Step::RebuildIndex(_))));
        assert!(plan.report.contains(&("index", index().name, Action::Skipped(SkipReason::NameTaken))));
        assert_eq!(index_health(&index(), &state, true).0, Health::Conflict);
        assert!(!plan_uninstall(&states).contains(&UninstallStep::DropIndex(index())), "never chom's to drop");
    }

    #[test]
    fn a_squatter_beside_an_equivalent_index_leaves_the_equivalent_serving() {
        assert_eq!(classify_index(&facts(true, true, false, false, Some("other"))), IndexState::Reused("other".into()));
    }

    #[test]
    fn chom_comment_on_an_older_definition_is_rebuilt() {
        assert_eq!(classify_index(&facts(true, true, true, false, None)), IndexState::Rebuild);
    }

    #[test]
    fn a_missing_table_blocks_the_index() {
        let mut f = facts(false, false, false, false, None);
        f.missing = Some(Prerequisite::Table);
        assert_eq!(classify_index(&f), IndexState::Blocked(Prerequisite::Table));
    }

    #[test]
    fn columns_chom_added_are_dropped_and_the_application_own_are_kept() {
        let marked = ColumnFacts {
            name: "cached_at",
            current_name: "cached_at".into(),
            type_name: Some("timestamp".into()),
            marked: true,
        };
        let adopted = ColumnFacts { marked: false, ..marked.clone() };
        assert_eq!(classify_column(&marked), ColumnState::Installed);
        assert_eq!(classify_column(&adopted), ColumnState::Adopted);
        assert_eq!(classify_column(&ColumnFacts { type_name: None, ..marked }), ColumnState::Missing);
    }

    #[test]
    fn the_fillfactor_is_reset_only_when_chom_set_it() {
        let plain = |ff: Option<i32>| StorageFacts { plain_table: true, fillfactor: ff, ..Default::default() };
        assert_eq!(classify_storage(&plain(Some(70)), true), StorageState::SetByChom(70));
        assert_eq!(classify_storage(&plain(Some(90)), false), StorageState::Own(90));
        assert_eq!(classify_storage(&plain(None), true), StorageState::ResetSinceChom);
        let mut states = states_with_index(IndexState::Installed);
        assert!(plan_uninstall(&states).contains(&UninstallStep::ResetFillfactor));
        states.storage = StorageState::Own(90);
        assert!(!plan_uninstall(&states).contains(&UninstallStep::ResetFillfactor));
        let plan = plan_install(&states, 70);
        assert!(plan.steps.contains(&Step::MarkTrigger { fillfactor_by_chom: false }));
    }

    #[test]
    fn a_first_install_adds_columns_sets_fillfactor_fills_and_creates_triggers() {
        let states = States {
            indexes: vec![(index(), IndexState::Missing)],
            columns: CACHED_COLUMNS.iter().map(|c| (c, ColumnState::Missing)).collect(),
            storage: StorageState::Default,
            triggers: TRIGGERS.iter().map(|t| (t, TriggerState::Missing)).collect(),
            installed: false,
            marker: None,
            own_tables: OwnTableFacts::default(),
        };
        let steps = plan_install(&states, 70).steps;
        assert!(matches!(steps.first(), Some(Step::AddColumns(c)) if c.len() == 3));
        assert!(steps.contains(&Step::SetFillfactor(70)) && steps.contains(&Step::Fill));
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::CreateTrigger(_))).count(), TRIGGERS.len());
        assert_eq!(steps.last(), Some(&Step::MarkTrigger { fillfactor_by_chom: true }));
        // idempotent: once all is there, nothing is created
        let again = plan_install(&states_with_index(IndexState::Installed), 70);
        assert!(again.steps.is_empty(), "{:?}", again.steps);
        // an index chom_index_ddl() built is adopted (tied to the extension), nothing else is touched
        let adopt = plan_install(&states_with_index(IndexState::Untied), 70);
        assert_eq!(adopt.steps, vec![Step::AdoptIndex(index())]);
    }

    #[test]
    fn a_disabled_trigger_is_enabled_and_the_aggregates_recounted() {
        let mut states = states_with_index(IndexState::Installed);
        states.triggers[1].1 = TriggerState::Disabled;
        let steps = plan_install(&states, 70).steps;
        assert!(steps.contains(&Step::EnableTrigger(&TRIGGERS[1])) && steps.contains(&Step::Fill));
        assert_eq!(trigger_health(&TRIGGERS[1], &TriggerState::Disabled).0, Health::Disabled);
    }
}

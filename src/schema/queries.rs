//! The statements of sql/queries.sql, by name, rendered for CHOM's schema.

use crate::schema::target::Target;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

const QUERIES_SQL: &str = include_str!("../../sql/queries.sql");

/// Declares [`Query`], one variant per `-- name:` block of sql/queries.sql, with the block's name.
macro_rules! queries {
    ($($variant:ident = $name:literal,)*) => {
        /// A statement of sql/queries.sql. A variant without a block (or a block without a variant) fails the
        /// unit test below, not a trigger at run time.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Query { $($variant,)* }

        impl Query {
            #[cfg(any(test, feature = "pg_test"))]
            pub const ALL: &'static [Query] = &[$(Query::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Query::$variant => $name,)* }
            }
        }
    };
}

queries! {
    LiveSites = "live_sites",
    RecountTenants = "recount_tenants",
    TenantDrift = "tenant_drift",
    LockTenants = "lock_tenants",
    LockAllTenants = "lock_all_tenants",
    RecountAllTenants = "recount_all_tenants",
    TenantIds = "tenant_ids",
    ApplyLockedTenantDeltas = "apply_locked_tenant_deltas",
    ApplyTenantDelta = "apply_tenant_delta",
    Unfolded = "unfolded",
    TryApplyTenantDelta = "try_apply_tenant_delta",
    TryLockTenants = "try_lock_tenants",
    ExistingTenants = "existing_tenants",
    TenantHeadroom = "tenant_headroom",
    SpillTenantDelta = "spill_tenant_delta",
    SpillTenantDeltas = "spill_tenant_deltas",
    DeltaTenants = "delta_tenants",
    TakeTenantDeltas = "take_tenant_deltas",
    UnfoldedDepth = "unfolded_depth",
    ApplyVpsDeltas = "apply_vps_deltas",
    ApplyVpsDelta = "apply_vps_delta",
    ZeroTenants = "zero_tenants",
    ZeroVps = "zero_vps",
    VpsRows = "vps_rows",
    RegisterVps = "register_vps",
    ForgetAllVps = "forget_all_vps",
    EnsureVpsRows = "ensure_vps_rows",
    RecountVps = "recount_vps",
    ForgetGoneVps = "forget_gone_vps",
    VpsDrift = "vps_drift",
    QuotaViolation = "quota_violation",
    TenantQuota = "tenant_quota",
    TenantBatch = "tenant_batch",
    LockVps = "lock_vps",
    TenantStats = "tenant_stats",
    TenantLiveStats = "tenant_live_stats",
    PickVpsOverlay = "pick_vps_overlay",
    VpsLoad = "vps_load",
    IndexUsage = "index_usage",
    CountTenants = "count_tenants",
    SampleEstimate = "sample_estimate",
    TenantSample = "tenant_sample",
    VpsSample = "vps_sample",
    RecordRun = "record_run",
    PruneRuns = "prune_runs",
    MetricsRuns = "metrics_runs",
    SettledVps = "settled_vps",
    RecountTenant = "recount_tenant",
    ColocatedShards = "colocated_shards",
    CitusLayoutProblems = "citus_layout_problems",
    CreateOutbox = "create_outbox",
    OutboxIdentity = "outbox_identity",
    DistributeOutbox = "distribute_outbox",
    DropOutbox = "drop_outbox",
    AppendVpsDeltas = "append_vps_deltas",
    DrainVpsDeltas = "drain_vps_deltas",
    HoldOffDrains = "hold_off_drains",
    OutboxQueued = "outbox_queued",
    ClearVpsDeltas = "clear_vps_deltas",
    ShardsMissingTriggers = "shards_missing_triggers",
    DropShardTriggerCopies = "drop_shard_trigger_copies",
}

/// The suffix of a block that replaces the block of the same name when CHOM's tables are distributed by Citus.
const CITUS_VARIANT: &str = ".citus";

/// The line that starts a statement's block in sql/queries.sql, and a shared rule's.
const NAME: &str = "-- name: ";
const FRAGMENT: &str = "-- fragment: ";

/// The blocks of sql/queries.sql: (statements by name, fragments by name), comments removed.
fn parsed() -> &'static (HashMap<&'static str, String>, HashMap<&'static str, String>) {
    static PARSED: OnceLock<(HashMap<&'static str, String>, HashMap<&'static str, String>)> = OnceLock::new();
    PARSED.get_or_init(|| {
        let (mut statements, mut fragments) = (HashMap::new(), HashMap::new());
        let mut current: Option<(bool, &'static str, Vec<&'static str>)> = None;
        let mut finish = |block: Option<(bool, &'static str, Vec<&'static str>)>| {
            if let Some((fragment, name, lines)) = block {
                let into = if fragment { &mut fragments } else { &mut statements };
                into.insert(name, lines.join("\n").trim().to_string());
            }
        };
        for line in QUERIES_SQL.lines() {
            if let Some(name) = line.strip_prefix(NAME) {
                finish(current.replace((false, name.trim(), Vec::new())));
            } else if let Some(name) = line.strip_prefix(FRAGMENT) {
                finish(current.replace((true, name.trim(), Vec::new())));
            } else if let Some((_, _, lines)) = current.as_mut().filter(|_| !line.trim_start().starts_with("--")) {
                lines.push(line);
            }
        }
        finish(current);
        (statements, fragments)
    })
}

/// The statements of sql/queries.sql by name.
fn blocks() -> &'static HashMap<&'static str, String> {
    &parsed().0
}

/// The shared rules of sql/queries.sql by name ("-- fragment:"), inlined wherever `{name}` stands.
fn fragments() -> &'static HashMap<&'static str, String> {
    &parsed().1
}

thread_local! {
    /// Per target (one in practice), its rendered statements. Looked up by comparing targets, so that the commit
    /// path allocates nothing to find a statement.
    static RENDERED: std::mem::ManuallyDrop<RefCell<Vec<(Target, HashMap<Query, Rc<str>>)>>> =
        const { std::mem::ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// The block of `query` for `target`: its Citus variant when the target is distributed and there is one.
fn block(target: &Target, query: Query) -> &'static str {
    let citus = target
        .layout
        .distributed()
        .then(|| blocks().get(format!("{}{CITUS_VARIANT}", query.name()).as_str()))
        .flatten();
    citus.unwrap_or(&blocks()[query.name()])
}

/// The statement `query` for `target`. Rendered once per backend: the commit path calls this for every
/// transaction that wrote sites.
pub fn sql(target: &Target, query: Query) -> Rc<str> {
    let cached = RENDERED.with(|cache| {
        cache.borrow().iter().find(|(t, _)| t == target).and_then(|(_, statements)| statements.get(&query).cloned())
    });
    if let Some(rendered) = cached {
        return rendered;
    }
    let inlined = [Query::RecountTenants, Query::LiveSites, Query::VpsRows, Query::SettledVps, Query::Unfolded]
        .iter()
        .fold(block(target, query).to_string(), |sql, inlined| {
            sql.replace(&format!("{{{}}}", inlined.name()), block(target, *inlined))
        });
    let inlined =
        fragments().iter().fold(inlined, |sql, (name, fragment)| sql.replace(&format!("{{{name}}}"), fragment));
    let rendered: Rc<str> = target.render(&inlined).into();
    if let Some(placeholder) = leftover_placeholder(&rendered) {
        crate::pg::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("chom: statement {} kept the placeholder {placeholder} after rendering", query.name()),
            None,
        )
    }
    RENDERED.with(|cache| {
        let mut cache = cache.borrow_mut();
        let position = cache.iter().position(|(t, _)| t == target).unwrap_or_else(|| {
            cache.push((target.clone(), HashMap::new()));
            cache.len() - 1
        });
        cache[position].1.insert(query, rendered.clone());
    });
    rendered
}

/// The first `{name}` or `{table.column}` left in a rendered statement: a fragment or a name that
/// [`Target::render`] does not know, which would otherwise reach Postgres as a syntax error far from its cause.
/// Array literals (`'{}'`, `'{a,b}'`) are not placeholders.
fn leftover_placeholder(sql: &str) -> Option<&str> {
    sql.match_indices('{').find_map(|(start, _)| {
        let rest = &sql[start + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        let is_name = !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        is_name.then(|| &sql[start..start + end + 2])
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{sql, Query};
    use crate::schema::layout::Placement;
    use crate::schema::target::Target;
    use pgrx::prelude::*;

    #[pg_test]
    fn every_statement_renders_completely_on_every_layout() {
        let local = Target::new("public".into(), "public".into());
        let mut coordinator = local.clone();
        coordinator.layout = crate::schema::layout::Layout::Distributed;
        let shard = local.clone().on_placement(Some(Placement {
            shard: 102023,
            tenants: "tenants_102015".into(),
            tier_limits: "tier_limits_102001".into(),
            vps_delta: "vps_delta_102063".into(),
        }));
        for target in [&local, &coordinator, &shard] {
            for query in Query::ALL {
                assert_eq!(super::leftover_placeholder(&sql(target, *query)), None, "{}", query.name());
            }
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::{blocks, leftover_placeholder, Query};

    #[test]
    fn every_fragment_is_used_and_names_no_statement() {
        for (name, fragment) in super::fragments() {
            assert!(!fragment.is_empty(), "fragment {name} is empty");
            assert!(!blocks().contains_key(name), "fragment {name} has a statement's name");
            let placeholder = format!("{{{name}}}");
            assert!(blocks().values().any(|b| b.contains(&placeholder)), "fragment {name} is used by no statement");
        }
        assert!(super::fragments().contains_key("eligible"));
    }

    #[test]
    fn a_placeholder_left_after_rendering_is_found_and_array_literals_are_not() {
        assert_eq!(leftover_placeholder("SELECT 1 FROM {eligible} WHERE x"), Some("{eligible}"));
        assert_eq!(leftover_placeholder("SELECT {sites.tenant_id}"), Some("{sites.tenant_id}"));
        assert_eq!(leftover_placeholder("SELECT '{}'::uuid[], '{1,2}'::int[], '{A}'"), None);
        assert_eq!(leftover_placeholder("SELECT 1"), None);
    }

    #[test]
    fn every_query_has_exactly_one_block_and_every_block_a_query() {
        let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
        let mut declared: Vec<&str> = super::QUERIES_SQL
            .lines()
            .filter_map(|line| line.strip_prefix(super::NAME))
            .map(str::trim)
            .filter(|name| !name.ends_with(super::CITUS_VARIANT))
            .collect();
        declared.sort_unstable();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, declared, "Query variants and sql/queries.sql blocks differ");
        for variant in blocks().keys().filter_map(|name| name.strip_suffix(super::CITUS_VARIANT)) {
            assert!(names.contains(&variant), "{variant}.citus replaces no block");
        }
        for name in names {
            let statement = &blocks()[name];
            assert!(!statement.is_empty(), "query {name} has no statement");
            assert!(
                statement.split_whitespace().next().is_some_and(|w| [
                    "SELECT", "WITH", "UPDATE", "INSERT", "DELETE", "CREATE", "ALTER", "DROP", "LOCK"
                ]
                .contains(&w)),
                "query {name} does not start with a statement: {statement}"
            );
        }
    }
}

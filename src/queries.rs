//! The statements of sql/queries.sql, by name, rendered for CHOM's schema.

use crate::target::Target;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

const QUERIES_SQL: &str = include_str!("../sql/queries.sql");

/// Declares [`Query`], one variant per `-- name:` block of sql/queries.sql, with the block's name.
macro_rules! queries {
    ($($variant:ident = $name:literal,)*) => {
        /// A statement of sql/queries.sql. A variant without a block (or a block without a variant) fails the
        /// unit test below, not a trigger at run time.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Query { $($variant,)* }

        impl Query {
            #[cfg(test)]
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

/// The blocks of sql/queries.sql by name, comments removed.
fn blocks() -> &'static HashMap<&'static str, String> {
    static BLOCKS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    BLOCKS.get_or_init(|| {
        let mut blocks = HashMap::new();
        for block in QUERIES_SQL.split("-- name: ").skip(1) {
            let (name, body) = block.split_once('\n').unwrap_or((block, ""));
            let statement: Vec<&str> = body.lines().filter(|line| !line.trim_start().starts_with("--")).collect();
            blocks.insert(name.trim(), statement.join("\n").trim().to_string());
        }
        blocks
    })
}

thread_local! {
    /// Per target (one in practice), its rendered statements. Looked up by comparing targets, so that the commit
    /// path allocates nothing to find a statement.
    static RENDERED: std::mem::ManuallyDrop<RefCell<Vec<(Target, HashMap<Query, Rc<str>>)>>> =
        const { std::mem::ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// The block of `query` for `target`: its Citus variant when the target is distributed and there is one.
fn block(target: &Target, query: Query) -> &'static str {
    let citus = target.distributed.then(|| blocks().get(format!("{}{CITUS_VARIANT}", query.name()).as_str())).flatten();
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
    let rendered: Rc<str> = target.render(&inlined).into();
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

#[cfg(test)]
mod tests {
    use super::{blocks, Query};

    #[test]
    fn every_query_has_exactly_one_block_and_every_block_a_query() {
        let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
        let mut declared: Vec<&str> = super::QUERIES_SQL
            .lines()
            .filter_map(|line| line.strip_prefix("-- name: "))
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

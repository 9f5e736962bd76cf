//! Where chom runs on a Citus cluster (docs/scaling.md): which kind of node this backend is, the names of the
//! shards colocated with one shard of `sites`, and the refusals that follow from the node kind. The shards
//! themselves are found by [`crate::maintain::shards`], the outbox is kept by [`crate::maintain::outbox`].

use crate::pg::errors::raise;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::Cell;

/// chom's outbox of per-VPS changes on Citus: a table of chom's schema, distributed by tenant and colocated
/// with `tenants`, created by chom_install() (it is not part of the extension: Citus distributes no table an
/// extension owns).
pub const OUTBOX: &str = "vps_delta";

/// How chom's statements address CHOM's tables: the one decision every Citus branch matches on.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// One node: plain tables.
    Local,
    /// Distributed by Citus and addressed as such (from the coordinator): the queries of sql/queries.sql with
    /// a `.citus` variant run in that form, and chom's writes of them go through Citus.
    Distributed,
    /// A Citus worker's shard of `sites` that a trigger fired on: the commit step addresses the shards colocated
    /// with it, never the distributed tables.
    Shard(Placement),
}

impl Layout {
    /// Whether Citus distributes CHOM's tables (a shard's layout included).
    pub fn distributed(&self) -> bool {
        !matches!(self, Layout::Local)
    }

    /// The colocated shards, on a worker's shard of `sites`.
    pub fn placement(&self) -> Option<&Placement> {
        match self {
            Layout::Shard(placement) => Some(placement),
            Layout::Local | Layout::Distributed => None,
        }
    }
}

/// What kind of node this backend runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    /// No Citus in this database.
    Plain,
    /// The Citus coordinator (group 0): chom's control plane and `chom.vps_load` live here.
    Coordinator,
    /// A Citus worker: it holds shards; chom's triggers fire here, its functions run on the coordinator.
    Worker,
}

/// The shards colocated with one shard of `sites` on a worker, by relation name (in CHOM's schema, and
/// chom's for the outbox).
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub shard: i64,
    pub tenants: String,
    pub tier_limits: String,
    pub vps_delta: String,
}

thread_local! {
    static NODE: Cell<Option<Node>> = const { Cell::new(None) };
}

/// Drops the node kind this backend remembers (any relcache invalidation: Citus added or removed, a node
/// moved to another group).
pub fn forget_node() {
    NODE.with(|node| node.set(None));
}

/// The kind of node this backend runs on (looked up once per backend).
pub fn node() -> Node {
    if let Some(node) = NODE.with(Cell::get) {
        return node;
    }
    // chom's triggers ask on their first firing, outside any function of chom's
    let node = crate::pg::settings::with_catalog_search_path(look_up_node);
    NODE.with(|cached| cached.set(Some(node)));
    node
}

fn look_up_node() -> Node {
    let citus: bool = crate::pg::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') \
            AND pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL",
        &[],
    )
    .unwrap_or_else(|| crate::pg::db::missing("looking for Citus"));
    if !citus {
        Node::Plain
    } else {
        classify_group(crate::pg::db::one::<i32>("SELECT groupid FROM pg_catalog.pg_dist_local_group", &[]))
    }
}

/// The node kind of a Citus node from its group: 0 is the coordinator, any other group a worker. A node
/// without a group is not set up (Citus writes the row when the node joins): an error (55000), never a guess,
/// since a worker refuses chom's functions and a coordinator runs them.
fn classify_group(group: Option<i32>) -> Node {
    match group {
        Some(0) => Node::Coordinator,
        Some(_) => Node::Worker,
        None => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "chom: Citus is installed but this node has no group (pg_dist_local_group is empty)",
            Some("Finish setting up the Citus node (citus_set_coordinator_host() or citus_add_node()), then retry."),
        ),
    }
}

/// Refuses to run `what` anywhere but on the coordinator of a Citus cluster (on one node it always runs).
pub fn require_coordinator(what: &str) {
    if node() == Node::Worker {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{what} runs on the Citus coordinator, not on a worker"),
            Some("Connect to the coordinator: chom's aggregates, placement and control plane are answered there."),
        )
    }
}

/// Refuses to install on Citus from inside `CREATE EXTENSION chom` (finalize.sql's install on create): Citus
/// repeats the command on the workers only after the coordinator's script has run, and chom's outbox, a
/// distributed table in chom's schema, cannot be created before the workers have that schema.
pub fn refuse_inside_create_extension() {
    // SAFETY: reads a backend-local flag of Postgres.
    if unsafe { pg_sys::creating_extension } {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "on Citus, chom is installed on CHOM's tables after CREATE EXTENSION chom",
            Some("Run SELECT * FROM chom_install(); on the coordinator once CREATE EXTENSION chom has committed."),
        )
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{classify_group, Node};
    use pgrx::prelude::*;

    #[pg_test]
    fn a_citus_node_is_classified_by_its_group() {
        assert_eq!(classify_group(Some(0)), Node::Coordinator);
        assert_eq!(classify_group(Some(2)), Node::Worker);
    }

    /// Before 0.4.0 a node without a group was taken for a worker, which refuses chom's functions.
    #[pg_test(error = "chom: Citus is installed but this node has no group (pg_dist_local_group is empty)")]
    fn a_citus_node_without_a_group_is_an_error_not_a_worker() {
        classify_group(None);
    }
}

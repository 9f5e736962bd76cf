//! The shards chom's triggers fire on under Citus: for a relation named like a shard of CHOM's `sites` or
//! `vps_servers`, whether it is one, and for `sites` the shards colocated with it (the placement the commit
//! step addresses). Looked up once per relation and backend, forgotten on any relcache invalidation.

use crate::pg::errors::raise;
use crate::pg::plans::types::{INT8, TEXT};
use crate::schema::layout::{node, Node, Placement, OUTBOX};
use crate::schema::queries::{self, Query};
use crate::schema::target::{Target, CHOM_SCHEMA};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::RefCell;
use std::collections::HashMap;

/// What a relation a trigger of chom's fired on is, when it is not one of CHOM's tables by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Shard {
    /// a shard of CHOM's distributed `sites`, with its colocated shards
    Sites(Placement),
    /// the copy of CHOM's reference table `vps_servers` on this node
    VpsServers,
}

thread_local! {
    /// What each relation chom's triggers fired on in this backend is (None: no shard of CHOM's tables).
    static SHARDS: std::mem::ManuallyDrop<RefCell<HashMap<pg_sys::Oid, Option<Shard>>>> =
        std::mem::ManuallyDrop::new(RefCell::new(HashMap::new()));
}

/// Registers the forgetting of every relation's shard with the relcache invalidations (a shard move, a split or
/// DDL may have changed what any relation is); called once from _PG_init.
pub fn register_invalidation() {
    crate::pg::invalidation::forget_on_invalidation(|| SHARDS.with(|shards| shards.borrow_mut().clear()), &[]);
}

/// For a trigger that fired on relation `relid` named `relname` in CHOM's schema, on a Citus node: which shard
/// of CHOM's `table` it is; None when it is none.
pub fn shard_of(target: &Target, table: &str, relid: pg_sys::Oid, relname: &str) -> Option<Shard> {
    if let Some(known) = SHARDS.with(|shards| shards.borrow().get(&relid).cloned()) {
        return known;
    }
    let shard: Option<i64> =
        relname.strip_prefix(table).and_then(|rest| rest.strip_prefix('_')).and_then(|id| id.parse().ok());
    let found = match (shard, node()) {
        // a trigger's first firing on the relation, outside any function of chom's
        (Some(shard), Node::Worker | Node::Coordinator) => {
            crate::pg::settings::with_catalog_search_path(|| lookup(target, table, shard))
        }
        _ => None,
    };
    SHARDS.with(|shards| shards.borrow_mut().insert(relid, found.clone()));
    found
}

/// Whether shard `shard` belongs to CHOM's `table`, and for `sites` its colocated shards.
fn lookup(target: &Target, table: &str, shard: i64) -> Option<Shard> {
    let belongs: bool = crate::pg::db::one(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_shard WHERE shardid = $1 AND logicalrelid = pg_catalog.to_regclass($2))",
        &[shard.into(), target.table(table).into()],
    )
    .unwrap_or(false);
    match (belongs, table) {
        (false, _) => None,
        (true, "sites") => Some(Shard::Sites(colocated(target, shard))),
        (true, _) => Some(Shard::VpsServers),
    }
}

/// The shards colocated with shard `shard` of CHOM's `sites`.
fn colocated(target: &Target, shard: i64) -> Placement {
    let row = Spi::connect(|client| {
        let rows = crate::pg::plans::read(
            client,
            &queries::sql(target, Query::ColocatedShards),
            &[INT8, TEXT, TEXT, TEXT],
            &[
                shard.into(),
                target.table("tenants").into(),
                format!("{CHOM_SCHEMA}.{OUTBOX}").into(),
                target.table("tier_limits").into(),
            ],
        );
        rows.into_iter().next().map(|row| {
            (
                crate::pg::db::nullable::<i64>(&row, 1),
                crate::pg::db::nullable::<i64>(&row, 2),
                crate::pg::db::nullable::<i64>(&row, 3),
            )
        })
    });
    let Some((Some(tenants), Some(vps_delta), tier_limits)) = row else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("chom: shard {shard} of sites has no colocated shard of tenants or of {CHOM_SCHEMA}.{OUTBOX} on this node"),
            Some("chom_install() on the coordinator creates the outbox colocated with tenants; run chom_status() there."),
        )
    };
    Placement {
        shard,
        tenants: format!("tenants_{tenants}"),
        tier_limits: tier_limits.map_or_else(|| "tier_limits".to_string(), |id| format!("tier_limits_{id}")),
        vps_delta: format!("{OUTBOX}_{vps_delta}"),
    }
}

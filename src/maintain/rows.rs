//! The row statements the commit step, the fold and the recounts share: running one of chom's statements
//! for the target's layout, the lock pass over tenant rows and the update by ctid, the VPS recount.

use crate::maintain::changes::UuidBytes;
use crate::pg::plans::execute;
use crate::pg::plans::types::{INT4_ARRAY, INT8_ARRAY, TID_ARRAY, UUID_ARRAY};
use crate::schema::layout::Layout;
use crate::schema::queries::{self, Query};
use crate::schema::target::Target;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{PgOid, Uuid};
use std::collections::{BTreeMap, BTreeSet};

/// Runs one of chom's statements: through the per-backend prepared plan, except on the Citus coordinator, where
/// each is planned with its values (Citus cannot plan the generic form of a statement that reads a reference or
/// distributed table beside chom's local tables: "could not create distributed plan"). That path is taken by
/// the rare coordinator-side changes only (VPS registry, TRUNCATE, recounts).
pub fn run<'conn>(
    client: &mut SpiClient<'conn>,
    target: &Target,
    query: Query,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> pgrx::spi::SpiTupleTable<'conn> {
    let sql = queries::sql(target, query);
    if target.layout == Layout::Distributed {
        crate::pg::errors::spi(client.update(&*sql, None, args), "a statement of chom's")
    } else {
        execute(client, &sql, types, args)
    }
}

pub fn uuid_array(ids: impl Iterator<Item = UuidBytes>) -> DatumWithOid<'static> {
    ids.map(Uuid::from_bytes).collect::<Vec<Uuid>>().into()
}

/// Locks the tenant rows of `ids` in id order with `lock` (`LockTenants`, waiting, or `TryLockTenants`, skipping
/// the rows others hold); returns the ctid of each row locked. Shared by the commit step and the fold.
pub(crate) fn lock_tenants(
    client: &mut SpiClient<'_>,
    target: &Target,
    lock: Query,
    ids: impl Iterator<Item = UuidBytes>,
) -> BTreeMap<UuidBytes, pg_sys::ItemPointerData> {
    let ids: Vec<Uuid> = ids.map(Uuid::from_bytes).collect();
    execute(client, &queries::sql(target, lock), &[UUID_ARRAY], &[ids.into()])
        .map(|row| {
            (
                *crate::pg::db::required::<Uuid>(&row, 1).as_bytes(),
                crate::pg::db::required::<pg_sys::ItemPointerData>(&row, 2),
            )
        })
        .collect()
}

/// The tenants of `ids` that have a row, as the statement's snapshot sees them: a change of a tenant without one
/// is dropped, never spilled, and a fold drops its deltas.
pub(crate) fn existing_tenants(
    client: &mut SpiClient<'_>,
    target: &Target,
    ids: impl Iterator<Item = UuidBytes>,
) -> BTreeSet<UuidBytes> {
    run(client, target, Query::ExistingTenants, &[UUID_ARRAY], &[uuid_array(ids)])
        .map(|row| *crate::pg::db::required::<Uuid>(&row, 1).as_bytes())
        .collect()
}

/// Adds each tenant's change to its row locked by [`lock_tenants`], reached by ctid; tenants without a locked
/// row are left out. Shared by the commit step and the fold.
pub(crate) fn apply_locked(
    client: &mut SpiClient<'_>,
    target: &Target,
    changed: &BTreeMap<UuidBytes, (i32, i64)>,
    locked: &BTreeMap<UuidBytes, pg_sys::ItemPointerData>,
) {
    let (ctids, changes): (Vec<pg_sys::ItemPointerData>, Vec<(i32, i64)>) =
        changed.iter().filter_map(|(id, change)| Some((*locked.get(id)?, *change))).unzip();
    if !ctids.is_empty() {
        let (sites, storage): (Vec<i32>, Vec<i64>) = changes.into_iter().unzip();
        execute(
            client,
            &queries::sql(target, Query::ApplyLockedTenantDeltas),
            &[TID_ARRAY, INT4_ARRAY, INT8_ARRAY],
            &[ctids.into(), sites.into(), storage.into()],
        );
    }
}

/// Recounts the VPSes' live sites into chom.vps_load. A VPS without a row gets one first (with no count), and
/// the rows are locked before the count, in a statement of its own: a concurrent commit that changed the
/// VPS has then either finished (and its sites are counted) or not started its change (and adds it on top).
/// Counting first and inserting the row on conflict would let two such recounts overwrite each other. Runs as
/// whoever calls it: chom's commit step and repair call it as chom.
pub fn recount_vps(client: &mut SpiClient<'_>, target: &Target, ids: &[Uuid]) {
    if target.layout.distributed() {
        // on Citus the count is settled against the outbox, which a committing drain must not change meanwhile
        run(client, target, Query::HoldOffDrains, &[], &[]);
    }
    for query in [Query::EnsureVpsRows, Query::LockVps, Query::RecountVps, Query::ForgetGoneVps] {
        run(client, target, query, &[UUID_ARRAY], &[ids.to_vec().into()]);
    }
}

//! chom's commit step: a committing transaction's [`Changes`] applied once, with one prepared, set-based
//! statement per table, in one lock order (tenants by id, then VPS rows by id). A tenant row held by another
//! committing writer is not waited for: the change spills ([`crate::maintain::deltas`]). `cached_at` is not
//! written here: it is indexed (idx_tenants_cached_at), and leaving it alone keeps these updates HOT. It
//! records the last full recompute instead.

use crate::maintain::changes::{checked_tenant_change, checked_vps_change, Changes, UuidBytes};
use crate::maintain::deltas::{self, QuotaSpill};
use crate::maintain::rows::{self, run, uuid_array};
use crate::pg::db;
use crate::pg::plans::execute;
use crate::pg::plans::types::{INT4, INT4_ARRAY, INT8, UUID, UUID_ARRAY};
use crate::schema::identity::{run_as, Principal};
use crate::schema::layout::Layout;
use crate::schema::queries::{self, Query};
use crate::schema::target::Target;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{PgSqlErrorCode, Uuid};
use std::collections::{BTreeMap, BTreeSet};

/// Applies a committing transaction's changes: first every tenant, locked in id order, as the owner of CHOM's
/// tables, then every VPS row, locked in id order, as chom ([`crate::schema::identity`]). Every commit takes chom's row
/// locks in this one order, and no lock of chom's is taken before commit, so committing transactions can wait for
/// each other but never in a cycle. A single tenant (the common single-row write) is updated by a plain keyed
/// UPDATE; several are locked first and then reached by the ctid the lock pass returns, without a second index
/// look-up.
pub fn apply(target: &Target, changes: &Changes) {
    if !target.tables_exist() {
        // CHOM's tables were dropped in this very transaction: nothing is left to keep exact
        return;
    }
    // one SPI connection for both identities: each switch is a security-restricted operation of its own, with
    // its own pinned settings, so nothing an owner's trigger sets reaches the statements chom runs as itself
    Spi::connect_mut(|client| {
        let mut spills = Vec::new();
        run_as(target, Principal::TablesOwner, || apply_tenants(client, target, changes, &mut spills));
        // chom's own rows, in one switch to chom: the spilled changes, then the VPS rows
        let shard = matches!(target.layout, Layout::Shard(_));
        if spills.is_empty() && !shard && !changes.touches_vps() {
            return;
        }
        run_as(target, Principal::Chom, || {
            deltas::spill(client, target, &spills);
            if shard {
                queue_vps(client, target, changes);
            } else if changes.touches_vps() {
                apply_vps(client, target, changes);
            }
        });
    });
}

/// The changes of tenants whose rows other commits held, to be spilled as chom ([`deltas::spill`]).
type Spills = Vec<(UuidBytes, (i32, i64))>;

/// On a Citus worker: the per-VPS changes go to the outbox shard colocated with the sites shard, in this
/// transaction; the coordinator's `chom.vps_load` takes them when it drains the outbox ([`crate::maintain::outbox::drain`]).
fn queue_vps(client: &mut SpiClient<'_>, target: &Target, changes: &Changes) {
    let (Some(tenant), false) = (changes.some_tenant, changes.vps.is_empty()) else { return };
    let (ids, sites): (Vec<Uuid>, Vec<i32>) =
        changes.vps.iter().map(|(id, change)| (Uuid::from_bytes(*id), checked_vps_change(*change))).unzip();
    run(
        client,
        target,
        Query::AppendVpsDeltas,
        &[UUID, UUID_ARRAY, INT4_ARRAY],
        &[Uuid::from_bytes(tenant).into(), ids.into(), sites.into()],
    );
}

fn apply_tenants(client: &mut SpiClient<'_>, target: &Target, changes: &Changes, spills: &mut Spills) {
    let quota = crate::pg::settings::site_quota_enforced() && target.tier_limits_exist();
    let checked = update_tenants(client, target, changes, quota, spills);
    if quota {
        enforce_site_quota(client, target, checked);
    }
}

/// Updates the tenants' aggregates, or adds to `spills` the changes of tenants whose rows other commits hold
/// ([`deltas`]); returns the tenants whose quota must be checked on their locked rows: those whose live sites
/// this transaction raised, when `quota` applies, and that did not pass [`deltas::may_spill_under_quota`].
fn update_tenants(
    client: &mut SpiClient<'_>,
    target: &Target,
    changes: &Changes,
    quota: bool,
    spills: &mut Spills,
) -> Vec<UuidBytes> {
    if changes.sites_truncated {
        run(client, target, Query::ZeroTenants, &[], &[]);
        deltas::forget(client, target, None);
    }
    if target.layout == Layout::Distributed {
        // the Citus coordinator: the sites triggers fire on the shards, so only recounts (a stale stats read)
        // are left here, one tenant at a time (Citus refuses row locks across shards), in id order
        let ids: Vec<Uuid> = if changes.all_tenants_recounted {
            run(client, target, Query::TenantIds, &[], &[]).map(|row| db::required::<Uuid>(&row, 1)).collect()
        } else {
            changes.tenant_recounts.iter().map(|id| Uuid::from_bytes(*id)).collect()
        };
        for id in ids {
            run(client, target, Query::RecountTenant, &[UUID], &[id.into()]);
        }
        return Vec::new();
    }
    let local = !target.layout.distributed();
    if changes.all_tenants_recounted {
        // more tenants than a fold keeps (pending::TENANTS_FOLDED_AT_MOST): every tenant, locked in id order
        if local {
            deltas::close_all_gates();
        }
        run(client, target, Query::LockAllTenants, &[], &[]);
        let raised = run(client, target, Query::RecountAllTenants, &[UUID_ARRAY], &[Option::<Vec<Uuid>>::None.into()])
            .map(|row| *db::required::<Uuid>(&row, 1).as_bytes())
            .collect();
        deltas::forget(client, target, None);
        return raised;
    }
    let raised: Vec<UuidBytes> =
        changes.tenants.iter().filter(|(_, (sites, _))| *sites > 0).map(|(id, _)| *id).collect();
    let recounts = &changes.tenant_recounts;
    let changed: BTreeMap<UuidBytes, (i32, i64)> = changes
        .tenants
        .iter()
        .filter(|(id, _)| !recounts.contains(*id))
        .map(|(id, change)| (*id, checked_tenant_change(*change)))
        .collect();
    if deltas::spills(target) && recounts.is_empty() {
        if let (1, Some((id, change))) = (changed.len(), changed.first_key_value()) {
            return apply_or_spill_one(client, target, id, *change, quota, spills);
        }
        if (!quota || raised.is_empty()) && apply_or_spill_many(client, target, &changed, spills) {
            return Vec::new();
        }
    }
    // the locked path: the recounted tenants' gates are closed (and, where the quota is checked, the raised
    // ones'), so that no spill of theirs is in flight while they are read
    let checked: Vec<UuidBytes> = if quota { raised } else { Vec::new() };
    if local {
        deltas::close_gates(recounts.iter().chain(&checked));
    }
    if let (true, Some((id, (sites, storage)))) = (recounts.is_empty() && changed.len() == 1, changed.first_key_value())
    {
        run(
            client,
            target,
            Query::ApplyTenantDelta,
            &[UUID, INT4, INT8],
            &[Uuid::from_bytes(*id).into(), (*sites).into(), (*storage).into()],
        );
        return checked;
    }
    let ids: BTreeSet<UuidBytes> = changed.keys().chain(recounts.iter()).copied().collect();
    if ids.is_empty() {
        return checked;
    }
    let locked = rows::lock_tenants(client, target, Query::LockTenants, ids.into_iter());
    rows::apply_locked(client, target, &changed, &locked);
    if !recounts.is_empty() {
        let recounts: Vec<Uuid> = recounts.iter().map(|id| Uuid::from_bytes(*id)).collect();
        deltas::recount_locked(client, target, &recounts);
    }
    checked
}

/// One tenant's change (most single-row writes): applied to its row when no other commit holds it, spilled
/// when one does and the tenant's gate is open, applied after waiting otherwise. A tenant whose row this
/// backend found held a moment ago spills without trying the row ([`deltas::held_recently`]). Where the quota
/// applies to a raise, the spill rule of [`deltas::may_spill_under_quota`] decides first; a tenant near its
/// limit has its gate closed and is returned, to be checked on its locked row.
fn apply_or_spill_one(
    client: &mut SpiClient<'_>,
    target: &Target,
    id: &UuidBytes,
    (sites, storage): (i32, i64),
    quota: bool,
    spills: &mut Spills,
) -> Vec<UuidBytes> {
    let args = [Uuid::from_bytes(*id).into(), sites.into(), storage.into()];
    // whether the tenant has a row, when the quota's read already told
    let mut exists = None;
    if quota && sites > 0 {
        let opened = deltas::try_open_gate(id);
        let verdict = if opened {
            deltas::may_spill_under_quota(client, target, id, i64::from(sites))
        } else {
            QuotaSpill::Refused
        };
        let QuotaSpill::Allowed { tenant_exists } = verdict else {
            if opened {
                deltas::release_gate(id);
            }
            deltas::close_gates([id]);
            run(client, target, Query::ApplyTenantDelta, &[UUID, INT4, INT8], &args);
            return vec![*id];
        };
        exists = Some(tenant_exists);
    }
    if !deltas::held_recently(id) {
        if run(client, target, Query::TryApplyTenantDelta, &[UUID, INT4, INT8], &args).len() == 1 {
            return Vec::new();
        }
        deltas::remember_held(id);
    }
    if !deltas::try_open_gate(id) {
        run(client, target, Query::ApplyTenantDelta, &[UUID, INT4, INT8], &args);
        return Vec::new();
    }
    // A change that only adds (inserts, restores) spills unchecked: should its tenant have no row, the fold drops
    // it, as the locked path would. A change that removes is checked first: its tenant may be the one this very
    // transaction deleted with its sites, and a delta left for it would join a row re-created under that id.
    let adds_only = sites >= 0 && storage >= 0;
    if exists.unwrap_or_else(|| adds_only || !rows::existing_tenants(client, target, std::iter::once(*id)).is_empty()) {
        spills.push((*id, (sites, storage)));
    }
    Vec::new()
}

/// Several tenants' changes, none checked by the quota: the rows no other commit holds are updated, the others
/// spilled. Needs every tenant's gate open (taken without waiting, before any row lock); false, with nothing
/// done, when one is closed: the caller takes the locked path.
fn apply_or_spill_many(
    client: &mut SpiClient<'_>,
    target: &Target,
    changed: &BTreeMap<UuidBytes, (i32, i64)>,
    spills: &mut Spills,
) -> bool {
    let mut opened = Vec::with_capacity(changed.len());
    for id in changed.keys() {
        if !deltas::try_open_gate(id) {
            opened.iter().for_each(deltas::release_gate);
            return false;
        }
        opened.push(*id);
    }
    let locked = rows::lock_tenants(client, target, Query::TryLockTenants, changed.keys().copied());
    rows::apply_locked(client, target, changed, &locked);
    let held = changed.keys().filter(|id| !locked.contains_key(*id)).copied();
    spills.extend(
        rows::existing_tenants(client, target, held).into_iter().filter_map(|id| Some((id, *changed.get(&id)?))),
    );
    true
}

/// With the site quota on, refuses the commit when it takes a tenant above its tier's `max_sites`. Only
/// tenants whose live sites this transaction raises are checked (a tenant over its limit after a downgrade can
/// still delete, soft delete and move sites out), and they are checked after their update, on the rows this
/// commit holds locked, with their gates closed (their spilled changes counted, none in flight): exact under
/// any concurrency. A raise that spilled passed [`deltas::may_spill_under_quota`] instead.
fn enforce_site_quota(client: &mut SpiClient<'_>, target: &Target, raised: Vec<UuidBytes>) {
    if raised.is_empty() {
        return;
    }
    let violation = run(client, target, Query::QuotaViolation, &[UUID_ARRAY], &[uuid_array(raised.into_iter())])
        .map(|row| (db::required::<Uuid>(&row, 1), db::required::<i32>(&row, 2), db::required::<i32>(&row, 3)))
        .next();
    if let Some((tenant, sites, limit)) = violation {
        crate::pg::errors::raise_with_detail(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            format!("chom: tenant {tenant} would have {sites} live sites, over its tier's limit of {limit}"),
            format!("This transaction adds live sites to tenant {tenant}; its tier allows {limit}."),
            "Upgrade the tenant's tier or remove sites first; chom.enforce_site_quota refuses only increases.",
        );
    }
}

fn apply_vps(client: &mut SpiClient<'_>, target: &Target, changes: &Changes) {
    if changes.vps_truncated {
        run(client, target, Query::ForgetAllVps, &[], &[]);
    } else if changes.sites_truncated {
        run(client, target, Query::ZeroVps, &[], &[]);
    }
    if changes.sites_truncated && target.layout.distributed() {
        run(client, target, Query::ClearVpsDeltas, &[], &[]);
    }
    let recounts = &changes.vps_recounts;
    let ids: BTreeSet<UuidBytes> =
        changes.vps.keys().chain(changes.vps_touched.iter()).chain(recounts.iter()).copied().collect();
    if ids.len() > 1 {
        run(client, target, Query::LockVps, &[UUID_ARRAY], &[uuid_array(ids.iter().copied())]);
    }
    if !changes.vps_touched.is_empty() {
        let touched = uuid_array(changes.vps_touched.iter().copied());
        run(client, target, Query::RegisterVps, &[UUID_ARRAY], &[touched]);
        let touched = uuid_array(changes.vps_touched.iter().copied());
        run(client, target, Query::ForgetGoneVps, &[UUID_ARRAY], &[touched]);
    }
    let deltas: BTreeMap<UuidBytes, i32> = changes
        .vps
        .iter()
        .filter(|(id, _)| !recounts.contains(*id))
        .map(|(id, sites)| (*id, checked_vps_change(*sites)))
        .collect();
    let updated: BTreeSet<UuidBytes> = match deltas.len() {
        0 => BTreeSet::new(),
        1 => {
            let (id, sites) = deltas.first_key_value().expect("one delta");
            run(client, target, Query::ApplyVpsDelta, &[UUID, INT4], &[Uuid::from_bytes(*id).into(), (*sites).into()])
                .map(|row| *db::required::<Uuid>(&row, 1).as_bytes())
                .collect()
        }
        _ => {
            let sql = queries::sql(target, Query::ApplyVpsDeltas);
            let sites: Vec<i32> = deltas.values().copied().collect();
            execute(client, &sql, &[UUID_ARRAY, INT4_ARRAY], &[uuid_array(deltas.keys().copied()), sites.into()])
                .map(|row| *db::required::<Uuid>(&row, 1).as_bytes())
                .collect()
        }
    };
    // a VPS without a row (its registry trigger was bypassed) and the VPSes marked for it are recounted
    let recount: Vec<Uuid> = deltas
        .keys()
        .filter(|id| !updated.contains(*id))
        .chain(recounts.iter())
        .copied()
        .collect::<BTreeSet<UuidBytes>>()
        .into_iter()
        .map(Uuid::from_bytes)
        .collect();
    if !recount.is_empty() {
        rows::recount_vps(client, target, &recount);
    }
}

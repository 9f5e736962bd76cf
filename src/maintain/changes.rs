//! A transaction's net change to the aggregates ([`Changes`]): per tenant, per VPS, and the wholesale events
//! that restart counts from zero, with the overlays chom's reads lay over the stored values, and the checked
//! conversions to the columns' types.

use crate::pg::errors::raise;
use pgrx::{PgSqlErrorCode, Uuid};
use std::collections::{BTreeMap, BTreeSet};

/// A uuid as Postgres stores it; BTreeMaps keyed by it iterate in Postgres' uuid order (bytewise), the lock
/// order.
pub type UuidBytes = [u8; 16];

/// The most tenants one part of the changes (a statement's fold, a (sub)transaction's frame) keeps a change
/// for. Past it, the part stops counting per tenant and every tenant is recounted at commit instead (a
/// transaction that touches this many tenants is a bulk operation, which a recount of every tenant does not
/// slow by much), so a fold takes at most about 12 MB, whatever the number of tenants a transaction touches.
/// High enough for the bulk inserts an application runs (100,000 sites over 200,000 tenants touch about
/// 80,000 of them). VPSes are not bounded this way: there are as many entries as VPSes, a few thousand.
pub const TENANTS_FOLDED_AT_MOST: usize = 1 << 18;

/// A net change to the aggregates: per tenant (live sites, storage MB), per VPS (live sites), and the
/// wholesale events that restart counts from zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// `TRUNCATE sites` ran: every tenant's and VPS's count restarts from zero (deltas before it are void).
    pub sites_truncated: bool,
    /// `TRUNCATE vps_servers` ran: chom.vps_load restarts empty; the VPSes inserted since are in `vps_touched`.
    pub vps_truncated: bool,
    /// More tenants changed than [`TENANTS_FOLDED_AT_MOST`]: every tenant is recounted at commit, and
    /// `tenants` and `tenant_recounts` stay empty.
    pub all_tenants_recounted: bool,
    pub tenants: BTreeMap<UuidBytes, (i64, i128)>,
    pub vps: BTreeMap<UuidBytes, i64>,
    /// VPSes inserted, updated or deleted: their copy of the pick's attributes is refreshed at commit.
    pub vps_touched: BTreeSet<UuidBytes>,
    /// Tenants recounted from scratch at commit (a stale chom_tenant_stats() read, a recount beside pending
    /// deltas); a recount supersedes their deltas.
    pub tenant_recounts: BTreeSet<UuidBytes>,
    /// VPSes recounted from scratch at commit, likewise.
    pub vps_recounts: BTreeSet<UuidBytes>,
    /// One of the tenants whose sites changed (even when their changes cancel out): on a Citus worker, the
    /// distribution value of the outbox row that carries the per-VPS changes (any tenant of the shard will do).
    pub some_tenant: Option<UuidBytes>,
}

impl Changes {
    /// Counts a live site row in (`sign` 1) or out (`sign` -1).
    pub fn add_site(&mut self, tenant: UuidBytes, vps: Option<UuidBytes>, storage_mb: i64, sign: i64) {
        self.some_tenant.get_or_insert(tenant);
        if !self.all_tenants_recounted {
            let entry = self.tenants.entry(tenant).or_default();
            entry.0 += sign;
            entry.1 += i128::from(sign) * i128::from(storage_mb);
            self.bound();
        }
        if let Some(vps) = vps {
            *self.vps.entry(vps).or_default() += sign;
        }
    }

    /// Marks every tenant for a recount at commit, which supersedes every per-tenant change.
    pub fn recount_all_tenants(&mut self) {
        self.all_tenants_recounted = true;
        self.tenants = BTreeMap::new();
        self.tenant_recounts = BTreeSet::new();
    }

    /// Keeps the per-tenant part within [`TENANTS_FOLDED_AT_MOST`].
    pub fn bound(&mut self) {
        if self.tenants.len() + self.tenant_recounts.len() > TENANTS_FOLDED_AT_MOST {
            self.recount_all_tenants();
        }
    }

    pub fn truncate_sites(&mut self) {
        self.tenants.clear();
        self.vps.clear();
        self.sites_truncated = true;
    }

    pub fn truncate_vps(&mut self) {
        self.vps.clear();
        self.vps_touched.clear();
        self.vps_recounts.clear();
        self.vps_truncated = true;
    }

    /// Appends the changes of a later (or inner, committed) part of the transaction.
    pub fn merge(&mut self, later: Changes) {
        if later.sites_truncated {
            self.truncate_sites();
        }
        if later.vps_truncated {
            self.truncate_vps();
        }
        if later.all_tenants_recounted {
            self.recount_all_tenants();
        }
        if !self.all_tenants_recounted {
            for (id, (sites, storage)) in later.tenants {
                let entry = self.tenants.entry(id).or_default();
                entry.0 += sites;
                entry.1 += storage;
            }
            self.tenant_recounts.extend(later.tenant_recounts);
            self.bound();
        }
        for (id, sites) in later.vps {
            *self.vps.entry(id).or_default() += sites;
        }
        self.vps_touched.extend(later.vps_touched);
        self.vps_recounts.extend(later.vps_recounts);
        self.some_tenant = self.some_tenant.or(later.some_tenant);
    }

    /// Drops the ids whose changes cancelled out (an update of an unrelated column, a move and back).
    pub fn retain_changes(&mut self) {
        self.tenants.retain(|_, (sites, storage)| *sites != 0 || *storage != 0);
        self.vps.retain(|_, sites| *sites != 0);
    }

    pub fn is_empty(&self) -> bool {
        *self == Changes { some_tenant: self.some_tenant, ..Changes::default() }
    }

    /// Whether anything here changes what chom_vps_load will hold at commit.
    pub fn touches_vps(&self) -> bool {
        self.sites_truncated
            || self.vps_truncated
            || !self.vps.is_empty()
            || !self.vps_touched.is_empty()
            || !self.vps_recounts.is_empty()
    }

    /// A tenant's stored (sites, storage) with this transaction's changes laid over them, as the commit will
    /// leave them; None when the tenant is recounted at commit (the stored values say nothing then).
    pub fn tenant_after(&self, tenant: &UuidBytes, stored: (i32, i64)) -> Option<(i32, i64)> {
        let (sites_change, storage_change) = self.tenant_delta(tenant)?;
        let (sites, storage) = if self.sites_truncated { (0, 0) } else { stored };
        Some((
            i32::try_from(i64::from(sites) + sites_change)
                .unwrap_or_else(|_| out_of_range("a tenant's site count with this transaction's changes")),
            i64::try_from(i128::from(storage) + storage_change)
                .unwrap_or_else(|_| out_of_range("a tenant's storage with this transaction's changes")),
        ))
    }

    /// The tenant's (sites, storage) change, or None when it is recounted at commit (its stored value will be
    /// replaced by a recount, which already sees this transaction's rows).
    pub fn tenant_delta(&self, tenant: &UuidBytes) -> Option<(i64, i128)> {
        (!self.all_tenants_recounted && !self.tenant_recounts.contains(tenant))
            .then(|| self.tenants.get(tenant).copied().unwrap_or_default())
    }
}

/// What the read queries lay over the stored values of tenants (see sql/queries.sql): pending ids with their
/// changes, whether the stored values restart from zero, the ids recounted at commit.
pub struct TenantOverlay {
    pub ids: Vec<Uuid>,
    pub sites: Vec<i64>,
    pub storage: Vec<i64>,
    pub zero: bool,
    pub recounted: Vec<Uuid>,
    /// Every tenant is recounted at commit (the ids above are then empty).
    pub all_recounted: bool,
}

/// The same for chom.vps_load, with the VPSes whose row is refreshed from vps_servers at commit.
pub struct VpsOverlay {
    pub ids: Vec<Uuid>,
    pub sites: Vec<i64>,
    pub zero: bool,
    pub refreshed: Vec<Uuid>,
    pub all_refreshed: bool,
    pub recounted: Vec<Uuid>,
}

fn uuids<'a>(ids: impl Iterator<Item = &'a UuidBytes>) -> Vec<Uuid> {
    ids.map(|id| Uuid::from_bytes(*id)).collect()
}

impl Changes {
    pub fn tenant_overlay(&self) -> TenantOverlay {
        let deltas = self.tenants.iter().filter(|(id, _)| !self.tenant_recounts.contains(*id));
        let (ids, (sites, storage)): (Vec<Uuid>, (Vec<i64>, Vec<i64>)) = deltas
            .map(|(id, (sites, storage))| {
                let storage = i64::try_from(*storage)
                    .unwrap_or_else(|_| out_of_range("this transaction's change to a tenant's storage"));
                (Uuid::from_bytes(*id), (*sites, storage))
            })
            .unzip();
        TenantOverlay {
            ids,
            sites,
            storage,
            zero: self.sites_truncated,
            recounted: uuids(self.tenant_recounts.iter()),
            all_recounted: self.all_tenants_recounted,
        }
    }

    pub fn vps_overlay(&self) -> VpsOverlay {
        let deltas = self.vps.iter().filter(|(id, _)| !self.vps_recounts.contains(*id));
        let (ids, sites): (Vec<Uuid>, Vec<i64>) = deltas.map(|(id, sites)| (Uuid::from_bytes(*id), *sites)).unzip();
        VpsOverlay {
            ids,
            sites,
            zero: self.sites_truncated || self.vps_truncated,
            refreshed: uuids(self.vps_touched.iter()),
            all_refreshed: self.vps_truncated,
            recounted: uuids(self.vps_recounts.iter()),
        }
    }
}

/// Refuses (22003) a value chom would store that its column cannot hold: the transaction, or the fold, fails
/// whole rather than storing a wrapped count.
pub fn out_of_range(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        format!("chom: {what} is more than its column can hold"),
        Some("A tenant's site count is an integer and its storage a bigint; nothing of the change was stored."),
    )
}

pub fn checked_tenant_change((sites, mb): (i64, i128)) -> (i32, i64) {
    (
        i32::try_from(sites).unwrap_or_else(|_| out_of_range("this transaction's change to a tenant's site count")),
        i64::try_from(mb).unwrap_or_else(|_| out_of_range("this transaction's change to a tenant's storage")),
    )
}

pub fn checked_vps_change(sites: i64) -> i32 {
    i32::try_from(sites).unwrap_or_else(|_| out_of_range("this transaction's change to a VPS's site count"))
}

#[cfg(test)]
mod unit_tests {
    use super::Changes;

    fn id(first: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = first;
        id
    }

    #[test]
    fn a_move_between_tenants_nets_out_per_tenant() {
        let mut changes = Changes::default();
        changes.add_site(id(1), Some(id(9)), 100, -1);
        changes.add_site(id(2), Some(id(9)), 100, 1);
        changes.retain_changes();
        assert_eq!(changes.tenants[&id(1)], (-1, -100));
        assert_eq!(changes.tenants[&id(2)], (1, 100));
        assert!(changes.vps.is_empty(), "same VPS before and after: no VPS change");
    }

    #[test]
    fn ids_come_out_in_uuid_order() {
        let mut changes = Changes::default();
        for first in [7u8, 1, 200, 3] {
            changes.add_site(id(first), None, 1, 1);
        }
        let firsts: Vec<u8> = changes.tenants.keys().map(|k| k[0]).collect();
        assert_eq!(firsts, vec![1, 3, 7, 200]);
    }

    #[test]
    fn a_truncate_voids_what_came_before_it_but_not_after() {
        let mut before = Changes::default();
        before.add_site(id(1), Some(id(9)), 10, 1);
        let mut truncate = Changes::default();
        truncate.truncate_sites();
        truncate.add_site(id(2), Some(id(8)), 5, 1);
        before.merge(truncate);
        assert!(before.sites_truncated);
        assert_eq!(before.tenants.keys().copied().collect::<Vec<_>>(), vec![id(2)]);
        assert_eq!(before.vps.keys().copied().collect::<Vec<_>>(), vec![id(8)]);
    }

    fn tenant_id(n: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn past_the_bound_every_tenant_is_recounted_and_nothing_is_kept_per_tenant() {
        let mut changes = Changes::default();
        let limit = super::TENANTS_FOLDED_AT_MOST as u32;
        for n in 0..limit {
            changes.add_site(tenant_id(n), Some(id(9)), 1, 1);
        }
        assert!(!changes.all_tenants_recounted, "at the bound, still per tenant");
        assert_eq!(changes.tenant_delta(&tenant_id(0)), Some((1, 1)));
        changes.add_site(tenant_id(limit), Some(id(9)), 1, 1);
        assert!(changes.all_tenants_recounted);
        assert!(changes.tenants.is_empty() && changes.tenant_recounts.is_empty());
        assert_eq!(changes.tenant_delta(&tenant_id(0)), None, "every tenant's value is a recount now");
        assert_eq!(changes.vps[&id(9)], i64::from(limit) + 1, "VPS changes are still counted");
        changes.add_site(tenant_id(limit + 1), None, 1, 1);
        assert!(changes.tenants.is_empty(), "nothing more is kept per tenant");
    }

    #[test]
    fn a_bounded_part_merged_into_another_makes_it_recount_every_tenant() {
        let mut earlier = Changes::default();
        earlier.add_site(id(1), None, 10, 1);
        let mut later = Changes::default();
        later.recount_all_tenants();
        earlier.merge(later);
        assert!(earlier.all_tenants_recounted && earlier.tenants.is_empty());
        let mut small = Changes::default();
        small.add_site(id(2), None, 10, 1);
        small.tenant_recounts.insert(id(3));
        earlier.merge(small);
        assert!(earlier.tenants.is_empty() && earlier.tenant_recounts.is_empty());
        assert!(!earlier.is_empty());
    }

    #[test]
    fn a_recount_supersedes_the_tenant_delta() {
        let mut changes = Changes::default();
        changes.add_site(id(1), None, 10, 1);
        assert_eq!(changes.tenant_delta(&id(1)), Some((1, 10)));
        changes.tenant_recounts.insert(id(1));
        assert_eq!(changes.tenant_delta(&id(1)), None);
        assert_eq!(changes.tenant_delta(&id(2)), Some((0, 0)));
    }
}

//! Cache accuracy: chom_cache_drift(), chom_vps_drift() and chom_repair_drift(). The triggers keep the cached
//! values exact, so drift only comes from writes that bypassed them (session_replication_role = replica,
//! disabled triggers, partial restores); these functions find it and mend it.

use crate::maintain::pending;
use crate::monitoring::runs::{record, Run, RunKind};
use crate::pg::plans::types::UUID_ARRAY;
use crate::schema::identity::{run_as, Principal};
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use crate::schema::target::Target;
use pgrx::prelude::*;
use pgrx::Uuid;

pub(crate) fn tenant_drift(target: &Target, ids: Option<Vec<Uuid>>) -> Vec<(Uuid, i32, i64, i64, i64)> {
    let overlay = pending::folded().tenant_overlay();
    if overlay.all_recounted {
        // this transaction recounts every tenant at commit: none can drift by then
        return Vec::new();
    }
    let args = [
        ids.into(),
        overlay.ids.into(),
        overlay.sites.into(),
        overlay.storage.into(),
        overlay.zero.into(),
        overlay.recounted.into(),
    ];
    crate::pg::db::rows(&queries::sql(target, Query::TenantDrift), &args, |row| {
        (row.required(1), row.required(2), row.required(3), row.required(4), row.required(5))
    })
}

pub(crate) fn vps_drift(target: &Target, ids: Option<Vec<Uuid>>) -> Vec<(Uuid, Option<i64>, i64)> {
    let overlay = pending::folded().vps_overlay();
    let args = [
        ids.into(),
        overlay.ids.into(),
        overlay.sites.into(),
        overlay.zero.into(),
        overlay.refreshed.into(),
        overlay.all_refreshed.into(),
        overlay.recounted.into(),
    ];
    crate::pg::db::rows(&queries::sql(target, Query::VpsDrift), &args, |row| {
        (row.required(1), row.get(2), row.required(3))
    })
}

/// Every tenant whose cached site count or storage differs from a recount of its live sites (CHOM's accuracy
/// spot-check, over all tenants). Empty when every cached value is exact. Inside a transaction that wrote
/// sites, its own pending changes count as applied (they are, at commit).
#[pg_extern(stable, parallel_restricted)]
pub fn chom_cache_drift() -> TableIterator<
    'static,
    (
        name!(tenant_id, Uuid),
        name!(cached_sites_count, i32),
        name!(actual_sites_count, i64),
        name!(cached_storage_mb, i64),
        name!(actual_storage_mb, i64),
    ),
> {
    let target = resolve::require_installed();
    TableIterator::new(tenant_drift(&target, None))
}

/// Every VPS whose maintained live-site count (chom.vps_load) differs from a recount; `cached_live_sites` is
/// NULL when the VPS has no row at all. Empty when every count is exact.
#[pg_extern(stable, parallel_restricted)]
pub fn chom_vps_drift(
) -> TableIterator<'static, (name!(vps_id, Uuid), name!(cached_live_sites, Option<i64>), name!(actual_live_sites, i64))>
{
    let target = resolve::require_installed();
    TableIterator::new(vps_drift(&target, None))
}

/// Fixes every drifted tenant and VPS count and returns how many it fixed. Correct while writers run: the
/// drifted rows are locked in id order, checked again, and only then recounted. Recorded in chom.runs as a
/// 'repair' (tenants examined, drifted and fixed; VPSes drifted and fixed), except in a read-only transaction.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_repair_drift() -> i64 {
    let target = resolve::require_installed();
    crate::maintain::outbox::with_citus_settings(&target, || repair(&target))
}

fn repair(target: &Target) -> i64 {
    let mut run = Run::start(RunKind::Repair);
    let drifted: Vec<Uuid> = tenant_drift(target, None).into_iter().map(|row| row.0).collect();
    run.tenants_drifted = Some(drifted.len() as i64);
    let mut fixed = 0;
    if !drifted.is_empty() {
        // checked again once locked: a writer that committed meanwhile may have settled some of them
        fixed += crate::maintain::recount::recount_where(target, &drifted, |locked| {
            tenant_drift(target, Some(locked)).into_iter().map(|row| row.0).collect()
        });
    }
    run.tenants_fixed = Some(fixed);
    if target.layout.distributed() {
        crate::maintain::outbox::hold_off_drains(target);
    }
    let drifted: Vec<Uuid> = vps_drift(target, None).into_iter().map(|row| row.0).collect();
    run.vps_drifted = Some(drifted.len() as i64);
    run.vps_fixed = Some(0);
    if !drifted.is_empty() {
        run_as(target, Principal::Chom, || {
            Spi::connect_mut(|client| {
                let lock = queries::sql(target, Query::LockVps);
                crate::pg::plans::execute(client, &lock, &[UUID_ARRAY], &[drifted.clone().into()]);
            })
        });
        let still: Vec<Uuid> = vps_drift(target, Some(drifted)).into_iter().map(|row| row.0).collect();
        if !still.is_empty() {
            run_as(target, Principal::Chom, || {
                Spi::connect_mut(|client| crate::maintain::rows::recount_vps(client, target, &still))
            });
            pending::recounted(target, &[], &still);
            fixed += still.len() as i64;
            run.vps_fixed = Some(still.len() as i64);
        }
    }
    run.tenants_examined = Some(crate::maintain::recount::count_tenants(target));
    run.vps_examined = crate::pg::db::one(&format!("SELECT count(*) FROM {}", target.table("vps_servers")), &[]);
    record(run);
    fixed
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn drift_from_bypassed_triggers_is_found_and_repaired() {
        install_with_data();
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("UPDATE sites SET deleted_at = now() WHERE tenant_id = 'a0000000-0000-0000-0000-000000000001' AND deleted_at IS NULL").unwrap();
        Spi::run("UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE tenant_id = 'a0000000-0000-0000-0000-000000000002'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        let found: Vec<String> = Spi::connect(|c| {
            c.select("SELECT tenant_id::text FROM chom_cache_drift() ORDER BY 1", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        assert_eq!(found, vec!["a0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000002"]);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), drifted_vps());
        let fixed = count("SELECT chom_repair_drift()");
        assert!(fixed >= 2);
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT chom_repair_drift()"), 0);
    }
}

//! Placement: chom_pick_vps() answers "least-loaded eligible VPS" from the maintained per-VPS counts and VPS
//! attributes in chom_vps_load (one walk along its partial (live_sites, vps_id) index, no join), and
//! chom_vps_load() lists the loads.

use crate::errors::invalid_argument;
use crate::plans::types::{INT4, TEXT, TEXT_ARRAY};
use crate::queries;
use crate::settings;
use crate::stats::read_only;
use crate::target;
use pgrx::prelude::*;
use pgrx::{pg_sys, Uuid};

/// Upper bounds past which a requirement is a bug in the caller, not a real VPS size: 16 TiB of memory,
/// 1 PiB of disk, and the declared width of vps_servers.region / provider.
const MAX_MEMORY_MB: i32 = 16 * 1024 * 1024;
const MAX_DISK_GB: i32 = 1024 * 1024;
const MAX_NAME_CHARS: usize = 50;

fn check_bound(name: &str, value: Option<i32>, max: i32, unit: &str) {
    if let Some(value) = value {
        if !(0..=max).contains(&value) {
            invalid_argument(
                format!("{name} must be between 0 and {max} {unit}, not {value}"),
                &format!("Pass NULL for no {name} requirement."),
            );
        }
    }
}

fn check_name(name: &str, value: Option<&str>) {
    if let Some(value) = value {
        if value.is_empty() || value.chars().count() > MAX_NAME_CHARS {
            invalid_argument(
                format!("{name} must be 1 to {MAX_NAME_CHARS} characters, not {}", value.chars().count()),
                &format!("Pass NULL for any {name}."),
            );
        }
    }
}

/// The id of the eligible VPS with the fewest live sites, or NULL when none is eligible. Eligible: status
/// 'active', allocation_type 'shared', health_status in `chom.eligible_health` (default healthy,unknown — CHOM's
/// active()->shared()->healthy() scopes), and at least `min_memory_mb` / `min_disk_gb`, in `region` / from
/// `provider` when given. Ties go to the smallest id.
///
/// Concurrent callers: inside a transaction the chosen VPS's load row stays locked until commit, and other
/// callers skip locked rows, so N transactions that each pick and then insert a site land on N different VPSes
/// while N eligible ones exist (when all are taken, the least loaded is returned without a reservation).
/// An autocommit call (outside a transaction block) reserves nothing: it returns the least-loaded VPS as of its
/// snapshot, as a plain read. In a read-only transaction or on a standby nothing is locked. Bad arguments: 22023.
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_pick_vps(
    min_memory_mb: default!(Option<i32>, "NULL"),
    min_disk_gb: default!(Option<i32>, "NULL"),
    region: default!(Option<&str>, "NULL"),
    provider: default!(Option<&str>, "NULL"),
) -> Option<Uuid> {
    check_bound("min_memory_mb", min_memory_mb, MAX_MEMORY_MB, "MB");
    check_bound("min_disk_gb", min_disk_gb, MAX_DISK_GB, "GB");
    check_name("region", region);
    check_name("provider", provider);
    let health = settings::eligible_health();
    let target = target::require_installed();
    let pick = |lock: &'static str| -> Option<Uuid> {
        let sql = queries::sql(&target, "pick_vps", lock);
        let types = [TEXT_ARRAY, INT4, INT4, TEXT, TEXT];
        let args = [health.clone().into(), min_memory_mb.into(), min_disk_gb.into(), region.into(), provider.into()];
        Spi::connect_mut(|client| {
            let rows = if lock.is_empty() {
                crate::plans::read(client, &sql, &types, &args)
            } else {
                crate::plans::execute(client, &sql, &types, &args)
            };
            rows.into_iter().next().and_then(|row| row.get::<Uuid>(1).ok().flatten())
        })
    };
    // A reservation only means something until the caller's transaction ends: in autocommit it would end with
    // this statement, having cost a transaction id and a WAL flush for nothing. Without it the pick is a plain
    // read (no transaction id), which also works on a hot standby.
    // SAFETY: reads backend-local transaction state.
    if read_only() || !unsafe { pg_sys::IsTransactionBlock() } {
        return pick("");
    }
    pick("FOR NO KEY UPDATE OF l SKIP LOCKED").or_else(|| pick(""))
}

/// Every VPS with its live (not soft-deleted) site count and whether chom_pick_vps() may choose it (ignoring
/// size, region and provider filters), least loaded first: the admin screen's withCount('sites') without
/// counting.
#[pg_extern(stable, parallel_safe)]
pub fn chom_vps_load() -> TableIterator<'static, (name!(vps_id, Uuid), name!(hostname, String), name!(live_sites, i64), name!(eligible, bool))> {
    let health = settings::eligible_health();
    let target = target::require_installed();
    let rows = crate::db::rows(&queries::sql(&target, "vps_load", ""), &[health.into()], |row| {
        (
            row.get(1).unwrap_or(Uuid::from_bytes([0; 16])),
            row.get(2).unwrap_or_default(),
            row.get(3).unwrap_or(0),
            row.get(4).unwrap_or(false),
        )
    });
    TableIterator::new(rows)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn pick_vps_takes_the_least_loaded_eligible_one() {
        install_with_data();
        let expected: Option<String> = Spi::get_one(
            "SELECT v.id::text FROM vps_servers v WHERE v.status = 'active' AND v.allocation_type = 'shared' \
             AND v.health_status IN ('healthy', 'unknown') \
             ORDER BY (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL), v.id LIMIT 1",
        )
        .unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap(), expected);
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps(region => 'nowhere')::text").unwrap(), None);
        Spi::run("UPDATE vps_servers SET health_status = 'unhealthy'").unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap(), None);
        Spi::run("SET LOCAL chom.eligible_health = 'unhealthy'").unwrap();
        assert!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap().is_some());
    }

    #[pg_test]
    fn pick_vps_rejects_bad_arguments_with_22023() {
        install_with_data();
        for call in [
            "SELECT chom_pick_vps(-1)",
            "SELECT chom_pick_vps(NULL, -5)",
            "SELECT chom_pick_vps(2147483647)",
            "SELECT chom_pick_vps(region => repeat('x', 51))",
            "SELECT chom_pick_vps(provider => '')",
        ] {
            assert_eq!(sqlstate(call).as_deref(), Some("22023"), "{call}");
        }
        assert_eq!(sqlstate("SELECT chom_pick_vps(region => 'it''s; DROP TABLE sites')"), None);
        Spi::run("SET LOCAL chom.eligible_health = 'healthy,bogus'").unwrap();
        assert_eq!(sqlstate("SELECT chom_pick_vps()").as_deref(), Some("22023"));
    }
}

//! Placement: chom_pick_vps() answers "least-loaded eligible VPS" from the maintained per-VPS counts and VPS
//! attributes in chom.vps_load (one walk along its partial (live_sites, vps_id) index, no join), reserving its
//! answer without a row lock, and chom_vps_load() lists the loads.

use crate::db;
use crate::errors::invalid_argument;
use crate::pending;
use crate::plans::types::{INT4, TEXT, TEXT_ARRAY, UUID};
use crate::queries::{self, Query};
use crate::settings;
use crate::stats::read_only;
use crate::target::{self, Target};
use pgrx::datum::DatumWithOid;
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
/// `provider` when given. Ties go to the smallest id. The calling transaction's own uncommitted site and VPS
/// writes are counted.
///
/// Concurrent callers: inside a transaction block the chosen VPS is reserved until the transaction ends (a
/// transaction-level advisory lock in a key space of chom's own, taken without waiting) and other callers pass
/// over reserved VPSes, so N transactions that each pick and then insert a site land on N different VPSes while
/// N eligible ones exist (when all are reserved, the least loaded is returned without a reservation). A
/// reservation is not a row lock: it never makes anybody wait, so it cannot add to a deadlock. An autocommit
/// call (outside a transaction block) reserves nothing: it returns the least-loaded VPS as of its snapshot, as
/// a plain read. In a read-only transaction or on a standby nothing is reserved. Bad arguments: 22023.
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
    let target = target::require_installed();
    let filters = Filters { health: settings::eligible_health(), min_memory_mb, min_disk_gb, region, provider };
    // A reservation only means something until the caller's transaction ends: in autocommit it would end with
    // this statement. Without it the pick is a plain read, which also works on a hot standby.
    // SAFETY: reads backend-local transaction state.
    let reserve = !read_only() && unsafe { pg_sys::IsTransactionBlock() };
    let changes = pending::folded();
    if changes.touches_vps() {
        // this transaction changed VPS loads or attributes: rank every eligible VPS with its own changes in
        let ranked = ranked_with_overlay(&target, &filters, &changes);
        return if reserve {
            ranked.iter().find(|id| try_reserve(id)).or(ranked.first()).copied()
        } else {
            ranked.first().copied()
        };
    }
    if !reserve {
        return eligible_page(&target, &filters, None, 1).first().map(|(id, _)| *id);
    }
    let mut after = None;
    let mut least_loaded = None;
    loop {
        let page = eligible_page(&target, &filters, after, RESERVATION_PAGE);
        least_loaded = least_loaded.or(page.first().map(|(id, _)| *id));
        if let Some((id, _)) = page.iter().find(|(id, _)| try_reserve(id)) {
            return Some(*id);
        }
        if page.len() < RESERVATION_PAGE as usize {
            return least_loaded;
        }
        after = page.last().copied();
    }
}

/// What chom_pick_vps() filters on.
struct Filters<'a> {
    health: Vec<String>,
    min_memory_mb: Option<i32>,
    min_disk_gb: Option<i32>,
    region: Option<&'a str>,
    provider: Option<&'a str>,
}

impl Filters<'_> {
    fn args(&self) -> Vec<DatumWithOid<'_>> {
        vec![
            self.health.clone().into(),
            self.min_memory_mb.into(),
            self.min_disk_gb.into(),
            self.region.into(),
            self.provider.into(),
        ]
    }
}

/// How many eligible VPSes a reserving pick reads at a time while passing over reserved ones.
const RESERVATION_PAGE: i32 = 16;

/// Eligible VPSes from chom.vps_load, least loaded first, after the (vps, live sites) position `after`.
fn eligible_page(target: &Target, filters: &Filters, after: Option<(Uuid, i32)>, limit: i32) -> Vec<(Uuid, i32)> {
    let (after_id, after_sites) = after.unwrap_or((Uuid::from_bytes([0; 16]), i32::MIN));
    let mut args = filters.args();
    args.extend([after_sites.into(), after_id.into(), limit.into()]);
    let sql = queries::sql(target, Query::PickVps);
    Spi::connect(|client| {
        crate::plans::read(client, &sql, &[TEXT_ARRAY, INT4, INT4, TEXT, TEXT, INT4, UUID, INT4], &args)
            .map(|row| (db::required::<Uuid>(&row, 1), db::required::<i32>(&row, 2)))
            .collect()
    })
}

/// Every eligible VPS, least loaded first, counting this transaction's pending changes.
fn ranked_with_overlay(target: &Target, filters: &Filters, changes: &pending::Changes) -> Vec<Uuid> {
    let overlay = changes.vps_overlay();
    let mut args = filters.args();
    args.extend([overlay.ids.into(), overlay.sites.into(), overlay.zero.into(), overlay.recounted.into()]);
    crate::db::rows(&queries::sql(target, Query::PickVpsOverlay), &args, |row| row.required(1))
}

/// Reserves a VPS for the rest of the transaction if no other transaction has: an advisory lock, taken without
/// waiting, whose tag no SQL function can produce (advisory locks from SQL use 1 or 2 in its last field), so
/// it never collides with the application's own advisory locks. pg_locks shows it as an advisory lock with
/// objsubid 25448 and the VPS id folded into classid/objid.
fn try_reserve(vps: &Uuid) -> bool {
    let bytes = vps.as_bytes();
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    // SAFETY: a lock tag of plain values; the lock is released by Postgres when the transaction ends.
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.into(),
            locktag_field2: word(0) ^ word(8),
            locktag_field3: word(4) ^ word(12),
            locktag_field4: RESERVATION_TAG,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, true)
            != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }
}

/// The last field of chom's reservation lock tags ("ch").
const RESERVATION_TAG: u16 = 0x6368;

/// Every VPS with its live (not soft-deleted) site count and whether chom_pick_vps() may choose it (ignoring
/// size, region and provider filters), least loaded first: the admin screen's withCount('sites') without
/// counting. The calling transaction's own uncommitted writes are counted.
#[pg_extern(stable, parallel_restricted)]
pub fn chom_vps_load(
) -> TableIterator<'static, (name!(vps_id, Uuid), name!(hostname, String), name!(live_sites, i64), name!(eligible, bool))>
{
    let health = settings::eligible_health();
    let target = target::require_installed();
    let overlay = pending::folded().vps_overlay();
    let args = [health.into(), overlay.ids.into(), overlay.sites.into(), overlay.zero.into(), overlay.recounted.into()];
    let rows = crate::db::rows(&queries::sql(&target, Query::VpsLoad), &args, |row| {
        (row.required(1), row.required(2), row.required(3), row.required(4))
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

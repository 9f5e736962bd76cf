//! Placement: chom_pick_vps() answers "least-loaded eligible VPS" from the maintained per-VPS counts and VPS
//! attributes in chom.vps_load (one walk along its partial (live_sites, vps_id) index, no join), reserving its
//! answer without a row lock, and chom_vps_load() lists the loads.

use crate::maintain::changes::Changes;
use crate::maintain::pending;
use crate::pg::errors::invalid_argument;
use crate::pg::settings;
use crate::pg::xact::read_only;
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use crate::schema::target::{self, Target};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgTupleDesc, Uuid};

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
    let target = resolve::require_installed();
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
    let mut least_loaded = None;
    let reserved = walk_eligible(&filters, |id| {
        least_loaded = least_loaded.or(Some(id));
        !reserve || try_reserve(&id)
    });
    reserved.or(least_loaded)
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

impl Filters<'_> {
    /// Whether a row of chom.vps_load passes the filters, as the SQL comparisons would decide (a NULL
    /// attribute passes no requirement).
    fn pass(&self, row: &VpsRow<'_>) -> bool {
        let at_least = |value: Option<i32>, min: Option<i32>| min.is_none_or(|min| value.is_some_and(|v| v >= min));
        let equal = |value: Option<&str>, wanted: Option<&str>| wanted.is_none_or(|w| value == Some(w));
        row.status == Some("active")
            && row.allocation_type == Some("shared")
            && row.health_status.is_some_and(|health| self.health.iter().any(|h| h == health))
            && at_least(row.spec_memory_mb, self.min_memory_mb)
            && at_least(row.spec_disk_gb, self.min_disk_gb)
            && equal(row.region, self.region)
            && equal(row.provider, self.provider)
    }
}

/// The attributes of a row of chom.vps_load that the pick reads, borrowed from the scan's slot.
struct VpsRow<'a> {
    id: Uuid,
    status: Option<&'a str>,
    allocation_type: Option<&'a str>,
    health_status: Option<&'a str>,
    spec_memory_mb: Option<i32>,
    spec_disk_gb: Option<i32>,
    region: Option<&'a str>,
    provider: Option<&'a str>,
}

/// The columns of chom.vps_load the pick reads, in [`VpsRow`] order after vps_id.
const PICK_COLUMNS: [&str; 8] =
    ["vps_id", "status", "allocation_type", "health_status", "spec_memory_mb", "spec_disk_gb", "region", "provider"];

/// Walks chom.vps_load along its partial index vps_load_pick ((live_sites, vps_id) of the active, shared
/// VPSes), least loaded first, calling `take` with each VPS that passes the filters until it returns true;
/// returns that VPS. This is the plan the query would have (an index walk that stops at the first row it
/// wants) without the query: no SPI, no plan, no executor, which is most of what a pick cost. It reads with
/// the statement's snapshot, and checks SELECT on chom.vps_load as the query would.
fn walk_eligible(filters: &Filters, mut take: impl FnMut(Uuid) -> bool) -> Option<Uuid> {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: the relation and index are opened and locked for the scan and closed after it; the slot belongs
    // to the relation; every datum read is of the type chom.vps_load declares for that column, read before
    // the next tuple replaces the slot's contents. An error in between releases all of it at abort.
    unsafe {
        let (table, index) = vps_load_relations();
        if pg_sys::pg_class_aclcheck(table, pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NO_PRIV,
                pg_sys::ObjectType::OBJECT_TABLE,
                c"vps_load".as_ptr(),
            );
        }
        let heap = pg_sys::table_open(table, lock);
        let index = pg_sys::index_open(index, lock);
        let positions = PICK_COLUMNS.map(|name| {
            let tupdesc = PgTupleDesc::from_pg_unchecked((*heap).rd_att);
            tupdesc.iter().position(|att| !att.is_dropped() && att.name() == name).unwrap_or_else(|| {
                crate::pg::errors::raise(
                    pgrx::PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                    format!("chom: chom.vps_load has no column {name}"),
                    Some("Run ALTER EXTENSION chom UPDATE, or reinstall chom."),
                )
            })
        });
        let deform_up_to = positions.iter().max().copied().unwrap_or(0) as i32 + 1;
        let snapshot = pg_sys::GetActiveSnapshot();
        #[cfg(feature = "pg18")]
        let scan = pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), 0, 0);
        #[cfg(not(feature = "pg18"))]
        let scan = pg_sys::index_beginscan(heap, index, snapshot, 0, 0);
        pg_sys::index_rescan(scan, std::ptr::null_mut(), 0, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let mut taken = None;
        while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
            pg_sys::slot_getsomeattrs_int(slot, deform_up_to);
            let values = std::slice::from_raw_parts((*slot).tts_values, deform_up_to as usize);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, deform_up_to as usize);
            let text = |i: usize| <&str>::from_datum(values[positions[i]], nulls[positions[i]]);
            let integer = |i: usize| i32::from_datum(values[positions[i]], nulls[positions[i]]);
            let Some(id) = Uuid::from_datum(values[positions[0]], nulls[positions[0]]) else { continue };
            let row = VpsRow {
                id,
                status: text(1),
                allocation_type: text(2),
                health_status: text(3),
                spec_memory_mb: integer(4),
                spec_disk_gb: integer(5),
                region: text(6),
                provider: text(7),
            };
            if filters.pass(&row) && take(row.id) {
                taken = Some(row.id);
                break;
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::index_close(index, lock);
        pg_sys::table_close(heap, lock);
        taken
    }
}

/// The oids of chom.vps_load and of its index vps_load_pick.
fn vps_load_relations() -> (pg_sys::Oid, pg_sys::Oid) {
    let schema = std::ffi::CString::new(target::CHOM_SCHEMA).expect("a schema name without NUL");
    // SAFETY: catalogue look-ups by name; a missing schema or relation gives InvalidOid.
    let (table, index) = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        (
            pg_sys::get_relname_relid(c"vps_load".as_ptr(), namespace),
            pg_sys::get_relname_relid(c"vps_load_pick".as_ptr(), namespace),
        )
    };
    if table == pg_sys::InvalidOid || index == pg_sys::InvalidOid {
        crate::pg::errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "chom: chom.vps_load or its index vps_load_pick is missing",
            Some("Run ALTER EXTENSION chom UPDATE, or reinstall chom."),
        )
    }
    (table, index)
}

/// Every eligible VPS, least loaded first, counting this transaction's pending changes.
fn ranked_with_overlay(target: &Target, filters: &Filters, changes: &Changes) -> Vec<Uuid> {
    let overlay = changes.vps_overlay();
    let mut args = filters.args();
    args.extend([overlay.ids.into(), overlay.sites.into(), overlay.zero.into(), overlay.recounted.into()]);
    crate::pg::db::rows(&queries::sql(target, Query::PickVpsOverlay), &args, |row| row.required(1))
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
    let target = resolve::require_installed();
    let overlay = pending::folded().vps_overlay();
    let args = [health.into(), overlay.ids.into(), overlay.sites.into(), overlay.zero.into(), overlay.recounted.into()];
    let rows = crate::pg::db::rows(&queries::sql(&target, Query::VpsLoad), &args, |row| {
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

    /// The pick's rule in SQL, as the application's query would say it: least loaded (live sites counted from
    /// sites) among the eligible VPSes, ties to the smallest id.
    const REFERENCE_PICK: &str = "SELECT (SELECT v.id::text FROM vps_servers v \
         WHERE v.status = 'active' AND v.allocation_type = 'shared' AND v.health_status IN ('healthy', 'unknown') \
           AND ($1::int IS NULL OR v.spec_memory_mb >= $1) AND ($2::int IS NULL OR v.spec_disk_gb >= $2) \
           AND ($3::text IS NULL OR v.region = $3) AND ($4::text IS NULL OR v.provider = $4) \
         ORDER BY (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL), v.id LIMIT 1)";

    #[pg_test]
    fn pick_vps_answers_what_its_rule_in_sql_answers_for_every_filter() {
        install_with_data();
        // NULL (no filter), then every value the column has
        let filters = |column: &str| -> Vec<Option<String>> {
            let sql = format!("SELECT DISTINCT {column}::text FROM vps_servers ORDER BY 1");
            std::iter::once(None)
                .chain(Spi::connect(|c| {
                    c.select(&sql, None, &[]).unwrap().map(|row| row.get::<String>(1).unwrap()).collect::<Vec<_>>()
                }))
                .collect()
        };
        let (regions, providers) = (filters("region"), filters("provider"));
        assert!(regions.len() > 2 && providers.len() > 2, "the data has several regions and providers");
        let mut compared = 0;
        for memory in [None, Some(2048), Some(16384), Some(1_000_000)] {
            for disk in [None, Some(100), Some(400)] {
                for region in &regions {
                    for provider in &providers {
                        let args = || -> Vec<pgrx::datum::DatumWithOid<'_>> {
                            vec![memory.into(), disk.into(), region.clone().into(), provider.clone().into()]
                        };
                        let picked =
                            Spi::get_one_with_args::<String>("SELECT chom_pick_vps($1, $2, $3, $4)::text", &args())
                                .unwrap();
                        let expected = Spi::get_one_with_args::<String>(REFERENCE_PICK, &args()).unwrap();
                        assert_eq!(picked, expected, "memory {memory:?}, disk {disk:?}, {region:?}, {provider:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared >= 100);
    }

    /// The pick is one walk along chom.vps_load_pick: one index scan per call, no sequential scan, and no
    /// statement of its own (the transaction's own statistics counters say which scans ran).
    #[pg_test]
    fn pick_vps_walks_the_pick_index_and_nothing_else() {
        install_with_data();
        let scans = || {
            Spi::get_two::<i64, i64>(
                "SELECT pg_stat_get_xact_numscans('chom.vps_load_pick'::regclass), \
                        pg_stat_get_xact_numscans('chom.vps_load'::regclass)",
            )
            .unwrap()
        };
        let (index_before, table_before) = scans();
        for _ in 0..5 {
            assert!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap().is_some());
        }
        let (index_after, table_after) = scans();
        assert_eq!(index_after.unwrap() - index_before.unwrap(), 5, "one scan of vps_load_pick per pick");
        assert_eq!(table_after, table_before, "no sequential scan of chom.vps_load");
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

//! Aggregate maintenance: the statement-level AFTER triggers on `sites` and `vps_servers` that keep
//! `tenants.cached_sites_count`, `tenants.cached_storage_mb` and `chom.vps_load` exact for every kind of write,
//! feeding the transaction's pending changes, applied by the commit step ([`crate::maintain::commit`]).
//!
//! Each statement's transition tables are read straight from their tuplestores (no SPI query, no plan) and
//! folded into one net change per tenant and per VPS, which joins the transaction's pending changes
//! ([`crate::maintain::pending`]). At commit they are applied once, with one prepared, set-based statement per table,
//! in one lock order. `cached_at` is not written here: it is indexed (idx_tenants_cached_at), and leaving it
//! alone keeps these updates HOT. It records the last full recompute instead.

use crate::maintain::changes::{Changes, UuidBytes};
use crate::maintain::pending;
use crate::maintain::shards::{shard_of, Shard};
use crate::pg::errors::raise;
use crate::schema::layout::Layout;
use crate::schema::layout::{node, Node};
use crate::schema::target::{Col, Target};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, PgTupleDesc};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::rc::Rc;

/// Positions (0-based) of the columns the triggers read, looked up by name in the table's row type.
struct SiteColumns {
    tenant_id: usize,
    vps_id: usize,
    storage_used_mb: usize,
    storage_width: IntegerWidth,
    deleted_at: usize,
    deform_up_to: i32,
}

/// The integer type of `storage_used_mb` (chom's guard lets the application change it among these).
#[derive(Clone, Copy)]
enum IntegerWidth {
    Small,
    Regular,
    Big,
}

impl IntegerWidth {
    fn of(type_oid: pg_sys::Oid) -> Option<Self> {
        match type_oid {
            pg_sys::INT2OID => Some(IntegerWidth::Small),
            pg_sys::INT4OID => Some(IntegerWidth::Regular),
            pg_sys::INT8OID => Some(IntegerWidth::Big),
            _ => None,
        }
    }

    fn read(self, datum: pg_sys::Datum) -> i64 {
        match self {
            IntegerWidth::Small => i64::from(datum.value() as i16),
            IntegerWidth::Regular => i64::from(datum.value() as i32),
            IntegerWidth::Big => datum.value() as i64,
        }
    }
}

fn column_position(tupdesc: &PgTupleDesc, name: &str, accepts: impl Fn(pg_sys::Oid) -> bool) -> usize {
    let found = tupdesc.iter().enumerate().find(|(_, att)| !att.is_dropped() && att.name() == name);
    match found {
        Some((i, att)) if accepts(att.type_oid().value()) => i,
        _ => raise(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!("chom: column {name} is missing or has an unexpected type"),
            Some("The table no longer matches what chom_install() checked; run chom_status()."),
        ),
    }
}

impl SiteColumns {
    fn locate(tupdesc: &PgTupleDesc, target: &Target) -> Self {
        let uuid = |oid| oid == pg_sys::UUIDOID;
        let name = |col| target.column(col);
        let tenant_id = column_position(tupdesc, name(Col::SitesTenantId), uuid);
        let vps_id = column_position(tupdesc, name(Col::SitesVpsId), uuid);
        let storage_used_mb =
            column_position(tupdesc, name(Col::SitesStorageUsedMb), |oid| IntegerWidth::of(oid).is_some());
        let storage_type = tupdesc.get(storage_used_mb).map(|a| a.type_oid().value()).unwrap_or_default();
        let storage_width = IntegerWidth::of(storage_type).unwrap_or(IntegerWidth::Big);
        let deleted_at = column_position(tupdesc, name(Col::SitesDeletedAt), |_| true);
        let deform_up_to = [tenant_id, vps_id, storage_used_mb, deleted_at].into_iter().max().unwrap_or(0) as i32 + 1;
        SiteColumns { tenant_id, vps_id, storage_used_mb, storage_width, deleted_at, deform_up_to }
    }
}

/// Calls `each` with the values and null flags of every row of a transition table. A private read pointer is
/// used, as NamedTuplestoreScan does, so other readers of the same tuplestore are not disturbed.
///
/// # Safety
/// `store` must be a transition tuplestore of the firing trigger and `tupdesc` its row type.
unsafe fn scan_transition_table(
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
    deform_up_to: i32,
    mut each: impl FnMut(&[pg_sys::Datum], &[bool]),
) {
    if store.is_null() {
        return;
    }
    // SAFETY: the caller's contract: a live transition tuplestore and its row type. The slot is made for that
    // row type and dropped at the end; each row's values and null flags are read, up to the deformed column,
    // before the next row replaces them.
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &raw const pg_sys::TTSOpsMinimalTuple);
        let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, reader);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            pg_sys::slot_getsomeattrs_int(slot, deform_up_to);
            let values = std::slice::from_raw_parts((*slot).tts_values, deform_up_to as usize);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, deform_up_to as usize);
            each(values, nulls);
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
}

/// # Safety
/// `datum` must be a non-null uuid datum.
unsafe fn uuid_bytes(datum: pg_sys::Datum) -> UuidBytes {
    // SAFETY: the caller's contract: a uuid datum points at its 16 bytes.
    unsafe { *(datum.cast_mut_ptr::<UuidBytes>()) }
}

/// What a firing of one of chom's triggers acts on: the target, and where the columns it reads are. Worked out
/// on a trigger's first firing in a backend ([`fired_on`]) and kept for the next ones.
struct FiredOn {
    target: Target,
    columns: Columns,
}

/// Positions of the columns a trigger reads.
enum Columns {
    Sites(SiteColumns),
    VpsId(usize),
}

thread_local! {
    /// Per trigger and relation, what [`resolve_firing`] found (None: nothing to do on this node). Each
    /// firing otherwise pays for two schema names, the trigger's arguments as strings and a search of the row
    /// type: on a single-row statement that is as dear as reading its transition table. Cleared by
    /// [`forget_firings`] on any relcache invalidation (DDL on the table, its triggers, a shard move) and on a
    /// change of any schema or function (a rename of CHOM's or chom's schema). Never dropped, like the plan
    /// cache.
    static FIRINGS: ManuallyDrop<RefCell<Vec<((pg_sys::Oid, pg_sys::Oid), Option<Rc<FiredOn>>)>>> =
        const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

fn forget_firings() {
    FIRINGS.with(|firings| firings.borrow_mut().clear());
}

/// Registers [`forget_firings`] with the invalidations (see [`FIRINGS`]); called once from _PG_init.
pub fn register_invalidation() {
    use pg_sys::SysCacheIdentifier::{NAMESPACEOID, PROCOID};
    crate::pg::invalidation::forget_on_invalidation(forget_firings, &[NAMESPACEOID, PROCOID]);
}

/// What this firing acts on ([`resolve_firing`]), from the backend's cache when the trigger fired here before.
fn fired_on(data: &pg_sys::TriggerData, expected: &str) -> Option<Rc<FiredOn>> {
    // SAFETY: Postgres hands a trigger function a valid relation and trigger.
    let key = unsafe { ((*data.tg_trigger).tgoid, (*data.tg_relation).rd_id) };
    let known = FIRINGS.with(|firings| firings.borrow().iter().find(|(k, _)| *k == key).map(|(_, on)| on.clone()));
    if let Some(on) = known {
        return on;
    }
    let on = resolve_firing(data, expected).map(|target| {
        // SAFETY: the firing relation's row type, which the transition tables share.
        let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked((*data.tg_relation).rd_att) };
        let columns = if expected == "sites" {
            Columns::Sites(SiteColumns::locate(&tupdesc, &target))
        } else {
            Columns::VpsId(column_position(&tupdesc, target.column(Col::VpsId), |oid| oid == pg_sys::UUIDOID))
        };
        Rc::new(FiredOn { target, columns })
    });
    FIRINGS.with(|firings| firings.borrow_mut().push((key, on.clone())));
    on
}

/// CHOM's schema for a trigger firing on one of its tables: the table's own schema, and chom's schema from the
/// trigger function (no catalogue query on the hot path). Refuses tables other than `expected`, so the
/// SECURITY DEFINER trigger function cannot be pointed at somebody else's table. On Citus the triggers fire on
/// shards (`sites_<shardid>`): a shard of CHOM's `sites` gives the target on that shard's placement; a
/// placement of the reference table `vps_servers` counts on the coordinator only (None elsewhere: nothing to
/// do on that node).
fn resolve_firing(data: &pg_sys::TriggerData, expected: &str) -> Option<Target> {
    // SAFETY: Postgres hands a trigger function a valid relation and trigger.
    let (relid, relname, target) = unsafe {
        let relation = &*data.tg_relation;
        let class = &*relation.rd_rel;
        let relname = CStr::from_ptr(class.relname.data.as_ptr());
        let schema_name = |oid: pg_sys::Oid| {
            let name = pg_sys::get_namespace_name(oid);
            if name.is_null() {
                raise(PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME, "chom: schema vanished", None)
            }
            CStr::from_ptr(name).to_string_lossy().into_owned()
        };
        let trigger = &*data.tg_trigger;
        let function_schema = pg_sys::get_func_namespace(trigger.tgfoid);
        let names: Vec<String> = (0..usize::try_from(trigger.tgnargs).unwrap_or(0))
            .map(|i| CStr::from_ptr(*trigger.tgargs.add(i)).to_string_lossy().into_owned())
            .collect();
        let target = Target::new(schema_name(class.relnamespace), schema_name(function_schema)).with_columns(names);
        (relation.rd_id, relname, target)
    };
    if relname.to_bytes() == expected.as_bytes() {
        return Some(target);
    }
    let relname = relname.to_string_lossy();
    match shard_of(&target, expected, relid, &relname) {
        Some(Shard::Sites(placement)) => Some(target.on_placement(Some(placement))),
        Some(Shard::VpsServers) => (node() == Node::Coordinator).then_some(target),
        None => raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("chom's {expected} trigger function fired on table \"{relname}\""),
            Some("chom's trigger functions are attached by chom_install() only."),
        ),
    }
}

fn fired_by_truncate(data: &pg_sys::TriggerData) -> bool {
    data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_TRUNCATE
}

/// Trigger function of chom's INSERT, UPDATE, DELETE and TRUNCATE statement triggers on `sites`: folds the
/// statement's transition tables into one net change per tenant and per VPS and adds it to the transaction's
/// pending changes, applied at commit (on a Citus worker's shard, when the statement ends: see
/// [`pending::apply_now`]).
// SQL written out: pgrx 0.18.1 declares trigger functions AS 'MODULE_PATHNAME', which Postgres leaves as it is
// without module_pathname in chom.control (each release's own library, see the README's Upgrading);
// @MODULE_PATHNAME@ is the versioned library name, as for every other function.
#[pg_trigger(
    sql = "CREATE FUNCTION chom_sites_aggregates() RETURNS trigger LANGUAGE c AS '@MODULE_PATHNAME@', 'chom_sites_aggregates_wrapper';"
)]
fn chom_sites_aggregates<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let data = trigger.trigger_data();
    let Some(fired) = fired_on(data, "sites") else { return Ok(None) };
    let (target, Columns::Sites(columns)) = (&fired.target, &fired.columns) else {
        unreachable!("a sites trigger's firing has the sites columns")
    };
    if fired_by_truncate(data) {
        // on Citus a TRUNCATE is counted where it is issued, on the coordinator's table; a shard that a move
        // re-created with every trigger of that table fires it too, and must not count it again
        if matches!(target.layout, Layout::Shard(_)) {
            return Ok(None);
        }
        if node() == Node::Worker {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "chom: TRUNCATE sites through a Citus worker would leave the coordinator's VPS counts behind",
                Some("Run TRUNCATE sites on the coordinator."),
            )
        }
        pending::record(target, Changes::truncate_sites);
        return Ok(None);
    }
    let mut statement = Changes::default();
    // SAFETY: the relation and its transition tables come from Postgres for this firing.
    unsafe {
        let tupdesc_ptr = (*data.tg_relation).rd_att;
        for (store, sign) in [(data.tg_oldtable, -1), (data.tg_newtable, 1)] {
            scan_transition_table(store, tupdesc_ptr, columns.deform_up_to, |values, nulls| {
                // soft-deleted sites are not counted; tenant_id is NOT NULL in CHOM, a NULL counts for nobody
                if !nulls[columns.deleted_at] || nulls[columns.tenant_id] {
                    return;
                }
                let vps = (!nulls[columns.vps_id]).then(|| uuid_bytes(values[columns.vps_id]));
                let storage = if nulls[columns.storage_used_mb] {
                    0
                } else {
                    columns.storage_width.read(values[columns.storage_used_mb])
                };
                statement.add_site(uuid_bytes(values[columns.tenant_id]), vps, storage, sign);
            });
        }
    }
    statement.retain_changes();
    if !statement.is_empty() {
        let on_shard = matches!(target.layout, Layout::Shard(_));
        pending::record(target, |changes| changes.merge(statement));
        if on_shard {
            pending::apply_now();
        }
    }
    Ok(None)
}

/// Trigger function of chom's INSERT, UPDATE, DELETE and TRUNCATE statement triggers on `vps_servers`: every
/// VPS has a row in chom.vps_load, with the attributes chom_pick_vps() filters on, so the pick finds VPSes that
/// have no sites yet and sees status, health and size changes. The VPSes a statement touched are recorded
/// and their rows refreshed at commit, in the same lock order as the counts.
// SQL written out: see chom_sites_aggregates.
#[pg_trigger(
    sql = "CREATE FUNCTION chom_vps_registry() RETURNS trigger LANGUAGE c AS '@MODULE_PATHNAME@', 'chom_vps_registry_wrapper';"
)]
fn chom_vps_registry<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let data = trigger.trigger_data();
    let Some(fired) = fired_on(data, "vps_servers") else { return Ok(None) };
    let (target, Columns::VpsId(id)) = (&fired.target, &fired.columns) else {
        unreachable!("a vps_servers trigger's firing has the VPS id's column")
    };
    if fired_by_truncate(data) {
        pending::record(target, Changes::truncate_vps);
        return Ok(None);
    }
    let store = if data.tg_newtable.is_null() { data.tg_oldtable } else { data.tg_newtable };
    let mut ids = BTreeSet::new();
    // SAFETY: as in chom_sites_aggregates.
    unsafe {
        let id = *id;
        scan_transition_table(store, (*data.tg_relation).rd_att, id as i32 + 1, |values, nulls| {
            if !nulls[id] {
                ids.insert(uuid_bytes(values[id]));
            }
        });
    }
    if !ids.is_empty() {
        pending::record(target, |changes| changes.vps_touched.extend(ids));
    }
    Ok(None)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn single_row_writes_keep_aggregates_exact() {
        install_with_data();
        let statements = [
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000002', 'x1.test', 42)",
            "UPDATE sites SET storage_used_mb = storage_used_mb + 7 WHERE domain = 'x1.test'",
            "UPDATE sites SET deleted_at = now() WHERE domain = 'x1.test'",
            "UPDATE sites SET deleted_at = NULL WHERE domain = 'x1.test'",
            "UPDATE sites SET tenant_id = 'a0000000-0000-0000-0000-000000000002', vps_id = NULL WHERE domain = 'x1.test'",
            "DELETE FROM sites WHERE domain = 'x1.test'",
        ];
        for statement in statements {
            Spi::run(statement).unwrap();
            assert_eq!(drifted_tenants(), 0, "after {statement}");
            assert_eq!(drifted_vps(), 0, "after {statement}");
        }
    }

    #[pg_test]
    fn bulk_and_cascading_writes_keep_aggregates_exact() {
        install_with_data();
        let statements = [
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT gen_random_uuid(), t.id, v.id, 'bulk' || i || '.' || t.slug, i FROM tenants t CROSS JOIN generate_series(1, 20) i CROSS JOIN LATERAL (SELECT id FROM vps_servers ORDER BY id OFFSET (i % 3) LIMIT 1) v",
            "UPDATE sites SET tenant_id = CASE WHEN tenant_id = 'a0000000-0000-0000-0000-000000000001' THEN 'a0000000-0000-0000-0000-000000000002'::uuid ELSE 'a0000000-0000-0000-0000-000000000001'::uuid END, storage_used_mb = storage_used_mb * 2 WHERE domain LIKE 'bulk1%' AND tenant_id IN ('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002')",
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT id, tenant_id, vps_id, domain, 1 FROM sites WHERE domain LIKE 'bulk2%' ON CONFLICT (id) DO UPDATE SET storage_used_mb = excluded.storage_used_mb, deleted_at = now()",
            "WITH moved AS (UPDATE sites SET deleted_at = now() WHERE domain LIKE 'bulk3%' RETURNING id) DELETE FROM sites WHERE domain LIKE 'bulk4%'",
            "DELETE FROM vps_servers WHERE id = 'b0000000-0000-0000-0000-000000000003'",
            "DELETE FROM tenants WHERE id = 'a0000000-0000-0000-0000-000000000003'",
            "MERGE INTO sites s USING (SELECT id FROM sites WHERE domain LIKE 'bulk5%') m ON s.id = m.id WHEN MATCHED THEN UPDATE SET storage_used_mb = 0",
            "TRUNCATE sites CASCADE",
        ];
        for statement in statements {
            Spi::run(statement).unwrap();
            assert_eq!(drifted_tenants(), 0, "after {statement}");
            assert_eq!(drifted_vps(), 0, "after {statement}");
        }
    }

    #[pg_test]
    fn savepoint_rollback_leaves_aggregates_exact() {
        install_with_data();
        assert_eq!(
            sqlstate("INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', NULL, 'dup.test' FROM generate_series(1, 2)").as_deref(),
            Some("23505"),
            "the second row violates (tenant_id, domain): the statement and its trigger work roll back together"
        );
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn a_transaction_sees_its_own_pending_changes_through_savepoints() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000001'";
        let stats = || count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})"));
        let before = stats();
        let insert = |domain: &str| {
            Spi::run(&format!(
                "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
                 VALUES (gen_random_uuid(), {tenant}, 'b0000000-0000-0000-0000-000000000001', '{domain}', 5)"
            ))
            .unwrap()
        };
        insert("kept.test");
        // an inner block that fails drops exactly its part, RELEASE-like success merges it
        Spi::run(&format!(
            "DO $$ BEGIN \
               INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {tenant}, 'dropped.test'); \
               RAISE EXCEPTION 'undo'; \
             EXCEPTION WHEN raise_exception THEN NULL; END $$"
        ))
        .unwrap();
        Spi::run(&format!(
            "DO $$ BEGIN \
               BEGIN INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {tenant}, 'merged.test'); END; \
             EXCEPTION WHEN OTHERS THEN NULL; END $$"
        ))
        .unwrap();
        assert_eq!(stats(), before + 2);
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
        // the raw columns change at commit, for everybody at once
        assert_eq!(count(&format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = {tenant}")), before);
        // a TRUNCATE voids what came before it; what follows counts from zero
        Spi::run("TRUNCATE sites CASCADE").unwrap();
        insert("after-truncate.test");
        assert_eq!(stats(), 1);
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
    }

    #[pg_test]
    fn vps_changes_are_seen_by_the_pick_before_commit() {
        install_with_data();
        Spi::run(
            "INSERT INTO vps_servers (id, hostname, ip_address, provider, region, spec_cpu, spec_memory_mb, spec_disk_gb, status, allocation_type, health_status) \
             VALUES ('b0000000-0000-0000-0000-000000000009', 'vps9', '10.0.0.9', 'hetzner', 'eu', 4, 8192, 160, 'active', 'shared', 'healthy')",
        )
        .unwrap();
        let pick = || Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap();
        assert_eq!(pick().as_deref(), Some("b0000000-0000-0000-0000-000000000009"), "the new, empty VPS");
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
        // fill it past the others: the pick moves on, counting this transaction's own sites
        Spi::run("INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000009', 'fill' || i || '.test' FROM generate_series(1, 40) i").unwrap();
        assert_ne!(pick().as_deref(), Some("b0000000-0000-0000-0000-000000000009"));
        assert_eq!(
            count("SELECT live_sites FROM chom_vps_load() WHERE vps_id = 'b0000000-0000-0000-0000-000000000009'"),
            40
        );
        Spi::run("UPDATE vps_servers SET status = 'maintenance' WHERE id <> 'b0000000-0000-0000-0000-000000000009'")
            .unwrap();
        assert_eq!(pick().as_deref(), Some("b0000000-0000-0000-0000-000000000009"), "the only active one left");
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
        Spi::run("DELETE FROM vps_servers WHERE id = 'b0000000-0000-0000-0000-000000000009'").unwrap();
        assert_eq!(pick(), None);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), 0);
    }

    #[pg_test]
    fn only_chom_applies_pending_changes() {
        install_with_data();
        Spi::run("GRANT EXECUTE ON FUNCTION chom_apply_pending() TO PUBLIC").unwrap();
        assert_eq!(sqlstate("SELECT chom_apply_pending()").as_deref(), Some("42501"));
    }
}

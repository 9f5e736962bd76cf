//! Aggregate maintenance: the statement-level AFTER triggers on `sites` that keep `tenants.cached_sites_count`,
//! `tenants.cached_storage_mb` and `chom_vps_load.live_sites` exact for every kind of write.
//!
//! Each statement's transition tables are read straight from their tuplestores (no SPI query, no plan), folded
//! into one net delta per tenant and per VPS, and applied with one prepared, set-based statement per table.
//! Tenant rows are locked in id order first, so two statements touching the same tenants in different orders
//! cannot deadlock; the update then reaches the locked rows by ctid. `cached_at` is not written here: it is
//! indexed (idx_tenants_cached_at), and leaving it alone keeps these updates HOT. It records the last full
//! recompute instead.

use crate::errors::raise;
use crate::plans::types::{INT4, INT4_ARRAY, INT8, INT8_ARRAY, TID_ARRAY, UUID, UUID_ARRAY};
use crate::queries;
use crate::target::Target;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, PgTupleDesc, Uuid};
use std::collections::BTreeMap;
use std::ffi::CStr;

type UuidBytes = [u8; 16];

/// One statement's net effect. BTreeMap keeps the ids sorted the way Postgres sorts uuids (bytewise), which is
/// the lock order.
#[derive(Default)]
struct Deltas {
    tenants: BTreeMap<UuidBytes, (i64, i128)>,
    vps: BTreeMap<UuidBytes, i64>,
}

impl Deltas {
    /// Counts a live site row in (`sign` 1) or out (`sign` -1).
    fn add(&mut self, tenant: UuidBytes, vps: Option<UuidBytes>, storage_mb: i64, sign: i64) {
        let tenant = self.tenants.entry(tenant).or_default();
        tenant.0 += sign;
        tenant.1 += i128::from(sign) * i128::from(storage_mb);
        if let Some(vps) = vps {
            *self.vps.entry(vps).or_default() += sign;
        }
    }

    /// Drops the ids whose changes cancelled out (an update of an unrelated column, a move and back).
    fn retain_changes(&mut self) {
        self.tenants.retain(|_, (sites, storage)| *sites != 0 || *storage != 0);
        self.vps.retain(|_, sites| *sites != 0);
    }
}

/// Positions (0-based) of the columns the triggers read, looked up by name in the table's row type.
struct SiteColumns {
    tenant_id: usize,
    vps_id: usize,
    storage_used_mb: usize,
    deleted_at: usize,
    deform_up_to: i32,
}

fn column_position(tupdesc: &PgTupleDesc, name: &str, type_oid: Option<pg_sys::Oid>) -> usize {
    let found = tupdesc.iter().enumerate().find(|(_, att)| !att.is_dropped() && att.name() == name);
    match found {
        Some((i, att)) if type_oid.is_none_or(|oid| att.type_oid().value() == oid) => i,
        _ => raise(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!("chom: column {name} is missing or has an unexpected type"),
            Some("The table no longer matches what chom_install() checked; run chom_status()."),
        ),
    }
}

impl SiteColumns {
    fn locate(tupdesc: &PgTupleDesc) -> Self {
        let tenant_id = column_position(tupdesc, "tenant_id", Some(pg_sys::UUIDOID));
        let vps_id = column_position(tupdesc, "vps_id", Some(pg_sys::UUIDOID));
        let storage_used_mb = column_position(tupdesc, "storage_used_mb", Some(pg_sys::INT8OID));
        let deleted_at = column_position(tupdesc, "deleted_at", None);
        let deform_up_to = [tenant_id, vps_id, storage_used_mb, deleted_at].into_iter().max().unwrap_or(0) as i32 + 1;
        SiteColumns { tenant_id, vps_id, storage_used_mb, deleted_at, deform_up_to }
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

/// # Safety
/// `datum` must be a non-null uuid datum.
unsafe fn uuid_bytes(datum: pg_sys::Datum) -> UuidBytes {
    *(datum.cast_mut_ptr::<UuidBytes>())
}

/// CHOM's schema for a trigger firing on one of its tables: the table's own schema, and chom's schema from the
/// trigger function (no catalogue query on the hot path). Refuses tables other than `expected`, so the
/// SECURITY DEFINER trigger function cannot be pointed at somebody else's table.
fn trigger_target(data: &pg_sys::TriggerData, expected: &str) -> Target {
    // SAFETY: Postgres hands a trigger function a valid relation and trigger.
    unsafe {
        let relation = &*data.tg_relation;
        let class = &*relation.rd_rel;
        let relname = CStr::from_ptr(class.relname.data.as_ptr()).to_string_lossy();
        if relname != expected {
            raise(
                PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                format!("chom's {expected} trigger function fired on table \"{relname}\""),
                Some("chom's trigger functions are attached by chom_install() only."),
            );
        }
        let schema_name = |oid: pg_sys::Oid| {
            let name = pg_sys::get_namespace_name(oid);
            if name.is_null() {
                raise(PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME, "chom: schema vanished", None)
            }
            CStr::from_ptr(name).to_string_lossy().into_owned()
        };
        let function_schema = pg_sys::get_func_namespace((*data.tg_trigger).tgfoid);
        Target { schema: schema_name(class.relnamespace), extension_schema: schema_name(function_schema) }
    }
}

fn fired_by_truncate(data: &pg_sys::TriggerData) -> bool {
    data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_TRUNCATE
}

fn uuid_array(ids: impl Iterator<Item = UuidBytes>) -> DatumWithOid<'static> {
    ids.map(Uuid::from_bytes).collect::<Vec<Uuid>>().into()
}

fn out_of_range(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        format!("chom: one statement changes {what} by more than its column can hold"),
        None,
    )
}

fn checked_tenant_change((sites, mb): (i64, i128)) -> (i32, i64) {
    (
        i32::try_from(sites).unwrap_or_else(|_| out_of_range("a tenant's site count")),
        i64::try_from(mb).unwrap_or_else(|_| out_of_range("a tenant's storage")),
    )
}

fn checked_vps_change(sites: i64) -> i32 {
    i32::try_from(sites).unwrap_or_else(|_| out_of_range("a VPS's site count"))
}

/// Applies a statement's deltas: tenants, then VPS loads. A single row (the common single-row write) is
/// updated by a plain keyed UPDATE. Several tenants are locked first in id order (no deadlock between
/// statements), and the lock pass hands back each row's ctid, so the update goes straight to the locked row
/// versions instead of looking every id up in the index again.
fn apply(target: &Target, deltas: Deltas) {
    Spi::connect_mut(|client| {
        if let (1, Some((id, change))) = (deltas.tenants.len(), deltas.tenants.first_key_value()) {
            let (sites, storage) = checked_tenant_change(*change);
            crate::plans::execute(
                client,
                &queries::sql(target, "apply_tenant_delta", ""),
                &[UUID, INT4, INT8],
                &[Uuid::from_bytes(*id).into(), sites.into(), storage.into()],
            );
        } else if !deltas.tenants.is_empty() {
            let lock = queries::sql(target, "lock_tenants", "");
            let (ctids, changes): (Vec<pg_sys::ItemPointerData>, Vec<(i32, i64)>) =
                crate::plans::execute(client, &lock, &[UUID_ARRAY], &[uuid_array(deltas.tenants.keys().copied())])
                    .filter_map(|row| {
                        let id = row.get::<Uuid>(1).ok().flatten()?;
                        let ctid = row.get::<pg_sys::ItemPointerData>(2).ok().flatten()?;
                        Some((ctid, checked_tenant_change(*deltas.tenants.get(id.as_bytes())?)))
                    })
                    .unzip();
            let (sites, storage): (Vec<i32>, Vec<i64>) = changes.into_iter().unzip();
            crate::plans::execute(
                client,
                &queries::sql(target, "apply_locked_tenant_deltas", ""),
                &[TID_ARRAY, INT4_ARRAY, INT8_ARRAY],
                &[ctids.into(), sites.into(), storage.into()],
            );
        }
        if deltas.vps.is_empty() {
            return;
        }
        let sites: Vec<i32> = deltas.vps.values().map(|n| checked_vps_change(*n)).collect();
        let single = (deltas.vps.len() == 1).then(|| deltas.vps.keys().next()).flatten();
        let updated: std::collections::BTreeSet<UuidBytes> = if let Some(id) = single {
            crate::plans::execute(
                client,
                &queries::sql(target, "apply_vps_delta", ""),
                &[UUID, INT4],
                &[Uuid::from_bytes(*id).into(), sites[0].into()],
            )
        } else {
            crate::plans::execute(
                client,
                &queries::sql(target, "apply_vps_deltas", ""),
                &[UUID_ARRAY, INT4_ARRAY],
                &[uuid_array(deltas.vps.keys().copied()), sites.clone().into()],
            )
        }
        .filter_map(|row| row.get::<Uuid>(1).ok().flatten().map(|id| *id.as_bytes()))
        .collect();
        if updated.len() < deltas.vps.len() {
            // a VPS with no row yet (its registry trigger was bypassed): insert its count
            let (ids, sites): (Vec<UuidBytes>, Vec<i32>) =
                deltas.vps.keys().copied().zip(sites).filter(|(id, _)| !updated.contains(id)).unzip();
            let upsert = queries::sql(target, "upsert_vps_deltas", "");
            crate::plans::execute(client, &upsert, &[UUID_ARRAY, INT4_ARRAY], &[uuid_array(ids.into_iter()), sites.into()]);
        }
    });
}

/// Trigger function of chom's INSERT, UPDATE, DELETE and TRUNCATE statement triggers on `sites`.
#[pg_trigger]
fn chom_sites_aggregates<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let data = trigger.trigger_data();
    let target = trigger_target(data, "sites");
    if fired_by_truncate(data) {
        Spi::connect_mut(|client| {
            crate::plans::execute(client, &queries::sql(&target, "zero_tenants", ""), &[], &[]);
            crate::plans::execute(client, &queries::sql(&target, "zero_vps", ""), &[], &[]);
        });
        return Ok(None);
    }
    // SAFETY: the relation and its transition tables come from Postgres for this firing.
    let deltas = unsafe {
        let tupdesc_ptr = (*data.tg_relation).rd_att;
        let columns = SiteColumns::locate(&PgTupleDesc::from_pg_unchecked(tupdesc_ptr));
        let mut deltas = Deltas::default();
        for (store, sign) in [(data.tg_oldtable, -1), (data.tg_newtable, 1)] {
            scan_transition_table(store, tupdesc_ptr, columns.deform_up_to, |values, nulls| {
                // soft-deleted sites are not counted; tenant_id is NOT NULL in CHOM, a NULL counts for nobody
                if !nulls[columns.deleted_at] || nulls[columns.tenant_id] {
                    return;
                }
                let vps = (!nulls[columns.vps_id]).then(|| uuid_bytes(values[columns.vps_id]));
                let storage = if nulls[columns.storage_used_mb] { 0 } else { values[columns.storage_used_mb].value() as i64 };
                deltas.add(uuid_bytes(values[columns.tenant_id]), vps, storage, sign);
            });
        }
        deltas.retain_changes();
        deltas
    };
    if !deltas.tenants.is_empty() || !deltas.vps.is_empty() {
        apply(&target, deltas);
    }
    Ok(None)
}

/// Trigger function of chom's INSERT, UPDATE, DELETE and TRUNCATE statement triggers on `vps_servers`: every
/// VPS has a row in chom_vps_load, with the attributes chom_pick_vps() filters on, so the pick finds VPSes that
/// have no sites yet and sees status, health and size changes.
#[pg_trigger]
fn chom_vps_registry<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let data = trigger.trigger_data();
    let target = trigger_target(data, "vps_servers");
    let (query, store) = if fired_by_truncate(data) {
        ("forget_all_vps", std::ptr::null_mut())
    } else if !data.tg_newtable.is_null() {
        ("register_vps", data.tg_newtable)
    } else {
        ("forget_vps", data.tg_oldtable)
    };
    let mut ids = Vec::new();
    // SAFETY: as in chom_sites_aggregates.
    unsafe {
        let tupdesc_ptr = (*data.tg_relation).rd_att;
        let id = column_position(&PgTupleDesc::from_pg_unchecked(tupdesc_ptr), "id", Some(pg_sys::UUIDOID));
        scan_transition_table(store, tupdesc_ptr, id as i32 + 1, |values, nulls| {
            if !nulls[id] {
                ids.push(uuid_bytes(values[id]));
            }
        });
    }
    ids.sort_unstable();
    Spi::connect_mut(|client| {
        let sql = queries::sql(&target, query, "");
        if query == "forget_all_vps" {
            crate::plans::execute(client, &sql, &[], &[]);
        } else if !ids.is_empty() {
            crate::plans::execute(client, &sql, &[UUID_ARRAY], &[uuid_array(ids.into_iter())]);
        }
    });
    Ok(None)
}

#[cfg(test)]
mod unit_tests {
    use super::Deltas;

    #[test]
    fn a_move_between_tenants_nets_out_per_tenant() {
        let mut deltas = Deltas::default();
        deltas.add([1; 16], Some([9; 16]), 100, -1);
        deltas.add([2; 16], Some([9; 16]), 100, 1);
        deltas.retain_changes();
        assert_eq!(deltas.tenants[&[1; 16]], (-1, -100));
        assert_eq!(deltas.tenants[&[2; 16]], (1, 100));
        assert!(deltas.vps.is_empty(), "same VPS before and after: no VPS change");
    }

    #[test]
    fn ids_come_out_in_uuid_order() {
        let mut deltas = Deltas::default();
        for first in [7u8, 1, 200, 3] {
            let mut id = [0u8; 16];
            id[0] = first;
            deltas.add(id, None, 1, 1);
        }
        let firsts: Vec<u8> = deltas.tenants.keys().map(|k| k[0]).collect();
        assert_eq!(firsts, vec![1, 3, 7, 200]);
    }
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
}

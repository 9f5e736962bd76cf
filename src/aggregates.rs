//! Aggregate maintenance: the statement-level AFTER triggers on `sites` and `vps_servers` that keep
//! `tenants.cached_sites_count`, `tenants.cached_storage_mb` and `chom.vps_load` exact for every kind of write,
//! and the commit-time application of a transaction's changes.
//!
//! Each statement's transition tables are read straight from their tuplestores (no SPI query, no plan) and
//! folded into one net change per tenant and per VPS, which joins the transaction's pending changes
//! ([`crate::pending`]). At commit they are applied once, with one prepared, set-based statement per table,
//! in one lock order. `cached_at` is not written here: it is indexed (idx_tenants_cached_at), and leaving it
//! alone keeps these updates HOT. It records the last full recompute instead.

use crate::citus;
use crate::db;
use crate::deltas;
use crate::errors::raise;
use crate::identity::{run_as, Principal};
use crate::pending::{self, Changes, UuidBytes};
use crate::plans::execute;
use crate::plans::types::{INT4, INT4_ARRAY, INT8, UUID, UUID_ARRAY};
use crate::queries::{self, Query};
use crate::target::Target;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{pg_sys, PgOid, PgSqlErrorCode, PgTupleDesc, Uuid};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;

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
        let name = |column| target.column("sites", column);
        let tenant_id = column_position(tupdesc, name("tenant_id"), uuid);
        let vps_id = column_position(tupdesc, name("vps_id"), uuid);
        let storage_used_mb = column_position(tupdesc, name("storage_used_mb"), |oid| IntegerWidth::of(oid).is_some());
        let storage_type = tupdesc.get(storage_used_mb).map(|a| a.type_oid().value()).unwrap_or_default();
        let storage_width = IntegerWidth::of(storage_type).unwrap_or(IntegerWidth::Big);
        let deleted_at = column_position(tupdesc, name("deleted_at"), |_| true);
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

/// CHOM's schema for a trigger firing on one of its tables: the table's own schema, and chom's schema from the
/// trigger function (no catalogue query on the hot path). Refuses tables other than `expected`, so the
/// SECURITY DEFINER trigger function cannot be pointed at somebody else's table. On Citus the triggers fire on
/// shards (`sites_<shardid>`): a shard of CHOM's `sites` gives the target on that shard's placement; a
/// placement of the reference table `vps_servers` counts on the coordinator only (None elsewhere: nothing to
/// do on that node).
fn trigger_target(data: &pg_sys::TriggerData, expected: &str) -> Option<Target> {
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
    match citus::shard_of(&target, expected, relid, &relname) {
        Some(citus::Shard::Sites(placement)) => Some(target.on_placement(Some(placement))),
        Some(citus::Shard::VpsServers) => (citus::node() == citus::Node::Coordinator).then_some(target),
        None => raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("chom's {expected} trigger function fired on table \"{relname}\""),
            Some("chom's trigger functions are attached by chom_install() only."),
        ),
    }
}

/// Runs one of chom's statements: through the per-backend prepared plan, except on the Citus coordinator, where
/// each is planned with its values (Citus cannot plan the generic form of a statement that reads a reference or
/// distributed table beside chom's local tables: "could not create distributed plan"). That path is taken by
/// the rare coordinator-side changes only (VPS registry, TRUNCATE, recounts).
fn run<'conn>(
    client: &mut SpiClient<'conn>,
    target: &Target,
    query: Query,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> pgrx::spi::SpiTupleTable<'conn> {
    let sql = queries::sql(target, query);
    if target.distributed && target.placement.is_none() {
        crate::errors::spi(client.update(&*sql, None, args), "a statement of chom's")
    } else {
        execute(client, &sql, types, args)
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
        format!("chom: this transaction changes {what} by more than its column can hold"),
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

/// Applies a committing transaction's changes: first every tenant, locked in id order, as the owner of CHOM's
/// tables, then every VPS row, locked in id order, as chom ([`crate::identity`]). Every commit takes chom's row
/// locks in this one order, and no lock of chom's is taken before commit, so committing transactions can wait for
/// each other but never in a cycle. A single tenant (the common single-row write) is updated by a plain keyed
/// UPDATE; several are locked first and then reached by the ctid the lock pass returns, without a second index
/// look-up.
pub fn apply(target: &Target, changes: &Changes) {
    if !target.tables_exist() {
        // CHOM's tables were dropped in this very transaction: nothing is left to keep exact
        return;
    }
    run_as(target, Principal::TablesOwner, || Spi::connect_mut(|client| apply_tenants(client, target, changes)));
    if target.placement.is_some() {
        run_as(target, Principal::Chom, || Spi::connect_mut(|client| queue_vps(client, target, changes)));
    } else if changes.touches_vps() {
        run_as(target, Principal::Chom, || Spi::connect_mut(|client| apply_vps(client, target, changes)));
    }
}

/// On a Citus worker: the per-VPS changes go to the outbox shard colocated with the sites shard, in this
/// transaction; the coordinator's `chom.vps_load` takes them when it drains the outbox ([`citus::drain`]).
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

fn apply_tenants(client: &mut SpiClient<'_>, target: &Target, changes: &Changes) {
    let quota = crate::settings::site_quota_enforced() && target.tier_limits_exist();
    let checked = update_tenants(client, target, changes, quota);
    if quota {
        enforce_site_quota(client, target, checked);
    }
}

/// Updates the tenants' aggregates, or spills the changes of tenants whose rows other commits hold
/// ([`deltas`]); returns the tenants whose quota must be checked on their locked rows: those whose live sites
/// this transaction raised, when `quota` applies, and that did not pass [`deltas::may_spill_under_quota`].
fn update_tenants(client: &mut SpiClient<'_>, target: &Target, changes: &Changes, quota: bool) -> Vec<UuidBytes> {
    if changes.sites_truncated {
        run(client, target, Query::ZeroTenants, &[], &[]);
        deltas::forget(client, target, None);
    }
    if target.distributed && target.placement.is_none() {
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
    let local = !target.distributed;
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
            return apply_or_spill_one(client, target, id, *change, quota);
        }
        if (!quota || raised.is_empty()) && apply_or_spill_many(client, target, &changed) {
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
    let locked = deltas::lock_tenants(client, target, Query::LockTenants, ids.into_iter());
    deltas::apply_locked(client, target, &changed, &locked);
    if !recounts.is_empty() {
        run(client, target, Query::RecountTenants, &[UUID_ARRAY], &[uuid_array(recounts.iter().copied())]);
        deltas::forget(client, target, Some(recounts.iter().map(|id| Uuid::from_bytes(*id)).collect()));
    }
    checked
}

/// The tenants of `ids` that have a row (a change of a tenant without one is dropped, never spilled).
fn existing(client: &mut SpiClient<'_>, target: &Target, ids: impl Iterator<Item = UuidBytes>) -> BTreeSet<UuidBytes> {
    run(client, target, Query::ExistingTenants, &[UUID_ARRAY], &[uuid_array(ids)])
        .map(|row| *db::required::<Uuid>(&row, 1).as_bytes())
        .collect()
}

/// One tenant's change (most single-row writes): applied to its row when no other commit holds it, spilled
/// when one does and the tenant's gate is open, applied after waiting otherwise. Where the quota applies to a
/// raise, the spill rule of [`deltas::may_spill_under_quota`] decides first; a tenant near its limit has its
/// gate closed and is returned, to be checked on its locked row.
fn apply_or_spill_one(
    client: &mut SpiClient<'_>,
    target: &Target,
    id: &UuidBytes,
    (sites, storage): (i32, i64),
    quota: bool,
) -> Vec<UuidBytes> {
    let args = [Uuid::from_bytes(*id).into(), sites.into(), storage.into()];
    if quota && sites > 0 {
        let opened = deltas::try_open_gate(id);
        if !opened || !deltas::may_spill_under_quota(client, target, id, i64::from(sites)) {
            if opened {
                deltas::release_gate(id);
            }
            deltas::close_gates([id]);
            run(client, target, Query::ApplyTenantDelta, &[UUID, INT4, INT8], &args);
            return vec![*id];
        }
    }
    if run(client, target, Query::TryApplyTenantDelta, &[UUID, INT4, INT8], &args).len() == 1 {
        return Vec::new();
    }
    if !deltas::try_open_gate(id) {
        run(client, target, Query::ApplyTenantDelta, &[UUID, INT4, INT8], &args);
        return Vec::new();
    }
    if !existing(client, target, std::iter::once(*id)).is_empty() {
        deltas::spill(client, target, &[(*id, (sites, storage))]);
    }
    Vec::new()
}

/// Several tenants' changes, none checked by the quota: the rows no other commit holds are updated, the others
/// spilled. Needs every tenant's gate open (taken without waiting, before any row lock); false, with nothing
/// done, when one is closed: the caller takes the locked path.
fn apply_or_spill_many(client: &mut SpiClient<'_>, target: &Target, changed: &BTreeMap<UuidBytes, (i32, i64)>) -> bool {
    let mut opened = Vec::with_capacity(changed.len());
    for id in changed.keys() {
        if !deltas::try_open_gate(id) {
            opened.iter().for_each(deltas::release_gate);
            return false;
        }
        opened.push(*id);
    }
    let locked = deltas::lock_tenants(client, target, Query::TryLockTenants, changed.keys().copied());
    deltas::apply_locked(client, target, changed, &locked);
    let held = changed.keys().filter(|id| !locked.contains_key(*id)).copied();
    let spilled: Vec<(UuidBytes, (i32, i64))> =
        existing(client, target, held).into_iter().filter_map(|id| Some((id, *changed.get(&id)?))).collect();
    deltas::spill(client, target, &spilled);
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
        crate::errors::raise_with_detail(
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
    if changes.sites_truncated && target.distributed {
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
        recount_vps(client, target, &recount);
    }
}

/// Recounts the VPSes' live sites into chom.vps_load. A VPS without a row gets one first (with no count), and
/// the rows are locked before the count, in a statement of its own: a concurrent commit that changed the
/// VPS has then either finished (and its sites are counted) or not started its change (and adds it on top).
/// Counting first and inserting the row on conflict would let two such recounts overwrite each other. Runs as
/// whoever calls it: chom's commit step and repair call it as chom.
pub fn recount_vps(client: &mut SpiClient<'_>, target: &Target, ids: &[Uuid]) {
    if target.distributed {
        // on Citus the count is settled against the outbox, which a committing drain must not change meanwhile
        run(client, target, Query::HoldOffDrains, &[], &[]);
    }
    for query in [Query::EnsureVpsRows, Query::LockVps, Query::RecountVps, Query::ForgetGoneVps] {
        run(client, target, query, &[UUID_ARRAY], &[ids.to_vec().into()]);
    }
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
    let Some(target) = trigger_target(data, "sites") else { return Ok(None) };
    if fired_by_truncate(data) {
        // on Citus a TRUNCATE is counted where it is issued, on the coordinator's table; a shard that a move
        // re-created with every trigger of that table fires it too, and must not count it again
        if target.placement.is_some() {
            return Ok(None);
        }
        if citus::node() == citus::Node::Worker {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "chom: TRUNCATE sites through a Citus worker would leave the coordinator's VPS counts behind",
                Some("Run TRUNCATE sites on the coordinator."),
            )
        }
        pending::record(&target, Changes::truncate_sites);
        return Ok(None);
    }
    let mut statement = Changes::default();
    // SAFETY: the relation and its transition tables come from Postgres for this firing.
    unsafe {
        let tupdesc_ptr = (*data.tg_relation).rd_att;
        let columns = SiteColumns::locate(&PgTupleDesc::from_pg_unchecked(tupdesc_ptr), &target);
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
        let on_shard = target.placement.is_some();
        pending::record(&target, |changes| changes.merge(statement));
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
    let Some(target) = trigger_target(data, "vps_servers") else { return Ok(None) };
    if fired_by_truncate(data) {
        pending::record(&target, Changes::truncate_vps);
        return Ok(None);
    }
    let store = if data.tg_newtable.is_null() { data.tg_oldtable } else { data.tg_newtable };
    let mut ids = BTreeSet::new();
    // SAFETY: as in chom_sites_aggregates.
    unsafe {
        let tupdesc_ptr = (*data.tg_relation).rd_att;
        let tupdesc = PgTupleDesc::from_pg_unchecked(tupdesc_ptr);
        let id = column_position(&tupdesc, target.column("vps_servers", "id"), |oid| oid == pg_sys::UUIDOID);
        scan_transition_table(store, tupdesc_ptr, id as i32 + 1, |values, nulls| {
            if !nulls[id] {
                ids.insert(uuid_bytes(values[id]));
            }
        });
    }
    if !ids.is_empty() {
        pending::record(&target, |changes| changes.vps_touched.extend(ids));
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

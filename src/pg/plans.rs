//! Per-backend cache of prepared SPI plans, keyed by their final SQL text (schema names already substituted).
//! The hot paths (triggers, chom_tenant_stats(), chom_pick_vps()) run in microseconds only because they skip
//! parsing and planning; Postgres' plan cache still revalidates these plans after DDL.

use crate::pg::errors::spi;
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::rc::Rc;

thread_local! {
    /// Plans prepared for reading (index 0: run read-only) and for writing (index 1: run read-write). Never
    /// dropped: a thread-local with a destructor is dropped inside the backend's exit(), after Postgres has shut
    /// down, where freeing a plan calls SPI_freeplan (an error there is FATAL within exit; docs/crash-hunt.md).
    /// The plans live as long as the backend, which is what this cache is for.
    static PLANS: ManuallyDrop<RefCell<[HashMap<String, Rc<OwnedPreparedStatement>>; 2]>> =
        ManuallyDrop::new(RefCell::new([HashMap::new(), HashMap::new()]));
}

/// The alternatives by which chom's statements read a NULL first argument as "every row" (sql/queries.sql).
const EVERY_ROW_WHEN_NULL: [&str; 2] = ["$1::uuid[] IS NULL OR ", "$1::uuid IS NULL OR "];

/// The statement to prepare for these arguments: with a first argument, without the alternative that a NULL one
/// means every row. A generic plan cannot use an index under that OR, so one prepared text for both would
/// recount a single tenant by scanning every site; each form is prepared, and planned, on its own.
fn for_arguments<'a>(sql: &'a str, args: &[DatumWithOid<'_>]) -> Cow<'a, str> {
    let given = args.first().is_some_and(|first| first.datum().is_some());
    if given && EVERY_ROW_WHEN_NULL.iter().any(|alternative| sql.contains(alternative)) {
        Cow::Owned(EVERY_ROW_WHEN_NULL.iter().fold(sql.to_owned(), |sql, alternative| sql.replace(alternative, "")))
    } else {
        Cow::Borrowed(sql)
    }
}

fn prepared(client: &SpiClient<'_>, sql: &str, types: &[PgOid], writes: bool) -> Rc<OwnedPreparedStatement> {
    let kind = usize::from(writes);
    if let Some(plan) = PLANS.with(|plans| plans.borrow()[kind].get(sql).cloned()) {
        return plan;
    }
    let statement = if writes { client.prepare_mut(sql, types) } else { client.prepare(sql, types) };
    let plan = Rc::new(spi(statement, "preparing a statement").keep());
    PLANS.with(|plans| plans.borrow_mut()[kind].insert(sql.to_owned(), plan.clone()));
    plan
}

/// Runs a statement that writes or locks rows through a plan prepared once per backend.
pub fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> SpiTupleTable<'conn> {
    let plan = prepared(client, &for_arguments(sql, args), types, true);
    spi(client.update(&*plan, None, args), "a prepared statement")
}

/// Runs a plain SELECT through a plan prepared once per backend, read-only: unlike [`execute`] it does not
/// make the transaction take a transaction id, so the read paths cost no xid and no commit flush, and work
/// on a hot standby.
pub fn read<'conn>(
    client: &SpiClient<'conn>,
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> SpiTupleTable<'conn> {
    let plan = prepared(client, &for_arguments(sql, args), types, false);
    spi(client.select(&*plan, None, args), "a prepared statement")
}

/// Parameter types of chom's prepared statements.
pub mod types {
    use pgrx::{pg_sys::BuiltinOid, PgOid};

    pub const UUID: PgOid = PgOid::BuiltIn(BuiltinOid::UUIDOID);
    pub const INT4: PgOid = PgOid::BuiltIn(BuiltinOid::INT4OID);
    pub const INT8: PgOid = PgOid::BuiltIn(BuiltinOid::INT8OID);
    pub const TEXT: PgOid = PgOid::BuiltIn(BuiltinOid::TEXTOID);
    pub const UUID_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::UUIDARRAYOID);
    pub const INT4_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::INT4ARRAYOID);
    pub const INT8_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::INT8ARRAYOID);
    pub const TID_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::TIDARRAYOID);
}

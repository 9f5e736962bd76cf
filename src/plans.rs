//! Per-backend cache of prepared SPI plans, keyed by their final SQL text (schema names already substituted).
//! The hot paths (triggers, chom_tenant_stats(), chom_pick_vps()) run in microseconds only because they skip
//! parsing and planning; Postgres' plan cache still revalidates these plans after DDL.

use crate::errors::spi;
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// Keyed by (writes, SQL): a plan prepared for writing is run read-write, one for reading read-only.
    static PLANS: RefCell<HashMap<(bool, String), Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

fn prepared(client: &SpiClient<'_>, sql: &str, types: &[PgOid], writes: bool) -> Rc<OwnedPreparedStatement> {
    let key = (writes, sql.to_owned());
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return plan;
    }
    let statement = if writes { client.prepare_mut(sql, types) } else { client.prepare(sql, types) };
    let plan = Rc::new(spi(statement, "preparing a statement").keep());
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
    plan
}

/// Runs a statement that writes or locks rows through a plan prepared once per backend.
pub fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> SpiTupleTable<'conn> {
    let plan = prepared(client, sql, types, true);
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
    let plan = prepared(client, sql, types, false);
    spi(client.select(&*plan, None, args), "a prepared statement")
}

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
    static PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// Runs `sql` through a plan prepared once per backend.
pub fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid<'_>],
) -> SpiTupleTable<'conn> {
    let cached = PLANS.with(|plans| plans.borrow().get(sql).cloned());
    let plan = match cached {
        Some(plan) => plan,
        None => {
            let plan = Rc::new(spi(client.prepare_mut(sql, types), "preparing a statement").keep());
            PLANS.with(|plans| plans.borrow_mut().insert(sql.to_owned(), plan.clone()));
            plan
        }
    };
    spi(client.update(&*plan, None, args), "a prepared statement")
}

//! The pieces of `CALL chom_refresh_all_batched()` (sql/monitoring.sql), which commits after each batch.

use crate::maintain::recount;
use crate::monitoring::runs::{now, record, Run, RunKind};
use crate::pg::errors::raise;
use crate::schema::resolve;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, Uuid};

/// chom's internal functions for the batched refresh.
#[pg_schema]
pub mod chom {
    use super::*;
    /// Raises 25001 (active_sql_transaction) inside a transaction block: `procedure` commits as it goes.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn refuse_transaction_block(procedure: &str) {
        // SAFETY: reads backend-local transaction state.
        let in_block = unsafe { pg_sys::IsTransactionBlock() || pg_sys::IsSubTransaction() };
        if in_block {
            raise(
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                format!("{procedure} cannot run inside a transaction block"),
                Some(
                    "It commits after each batch: CALL it on its own (autocommit). Inside a transaction, SELECT \
                     chom_refresh_all() does the same work, holding every batch's locks until the transaction ends.",
                ),
            );
        }
    }

    /// One batch of `CALL chom_refresh_all_batched()`: the next `batch_size` tenants after `after` (from the
    /// first when NULL), locked and recounted; returns the last of them (NULL when none was left), how many
    /// were refreshed, and, on the first batch, how many tenants there are. When none is left the run is
    /// recorded ('refresh', from `started_at`, `refreshed_before` tenants).
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn refresh_batch(
        after: Option<Uuid>,
        batch_size: Option<i32>,
        started_at: Option<TimestampWithTimeZone>,
        refreshed_before: Option<i64>,
    ) -> TableIterator<'static, (name!(last_id, Option<Uuid>), name!(refreshed, i64), name!(total, Option<i64>))> {
        let batch_size = crate::maintain::recount::valid_batch_size(batch_size);
        let target = resolve::require_installed();
        let total = after.is_none().then(|| recount::count_tenants(&target));
        let ids = crate::maintain::recount::next_batch(&target, after, batch_size);
        let Some(last) = ids.last().copied() else {
            let mut run = Run::started(RunKind::Refresh, started_at.unwrap_or_else(now));
            run.tenants_examined = Some(refreshed_before.unwrap_or(0));
            record(run);
            return TableIterator::once((None, 0, total));
        };
        let refreshed = crate::maintain::recount::recount(&target, &ids);
        TableIterator::once((Some(last), refreshed, total))
    }
}

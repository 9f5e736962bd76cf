//! Recounts from scratch: tenants locked in id order and recomputed from their live sites, as the owner of
//! CHOM's tables, their unfolded deltas replaced; and the batches of chom_refresh_all().

use crate::maintain::pending;
use crate::pg::db;
use crate::pg::errors::{invalid_argument, raise};
use crate::pg::plans::types::{INT4, UUID, UUID_ARRAY};
use crate::schema::identity::{run_as, Principal};
use crate::schema::queries::{self, Query};
use crate::schema::target::Target;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

/// Locks the tenants (in id order) and recomputes their aggregates from their live sites; returns how many
/// tenant rows were rewritten. Locking first means a concurrent writer's changes land either before the
/// recount (its commit held the lock, we waited for it) or after it (on top of it): none is lost. This
/// transaction's own pending changes are seen by the recount and are not added again at commit. The rows are
/// written as the owner of CHOM's tables ([`crate::schema::identity`]), whoever asked for the recount.
pub fn recount(target: &Target, ids: &[Uuid]) -> i64 {
    recount_where(target, ids, |locked| locked)
}

/// [`recount`] of the tenants that `keep` keeps of `ids` once they are locked (the repair checks them again
/// then). On Citus, where each tenant's row is locked by its own recount, every one of `ids` is recounted.
pub fn recount_where(target: &Target, ids: &[Uuid], keep: impl FnOnce(Vec<Uuid>) -> Vec<Uuid>) -> i64 {
    let (rewritten, recounted) = run_as(target, Principal::TablesOwner, || recount_as_owner(target, ids, keep));
    pending::recounted(target, &recounted, &[]);
    rewritten
}

fn recount_as_owner(target: &Target, ids: &[Uuid], keep: impl FnOnce(Vec<Uuid>) -> Vec<Uuid>) -> (i64, Vec<Uuid>) {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable_by_key(|id| *id.as_bytes());
    if target.layout.distributed() {
        // Citus refuses row locks across shards: each tenant is recounted by a router UPDATE, which locks its
        // row itself, in id order
        let rewritten = Spi::connect_mut(|client| {
            let sql = queries::sql(target, Query::RecountTenant);
            sorted.iter().map(|id| crate::pg::plans::execute(client, &sql, &[UUID], &[(*id).into()]).len() as i64).sum()
        });
        return (rewritten, sorted);
    }
    // the gates first: no spill of these tenants is in flight while their deltas are replaced by the recount
    crate::maintain::deltas::close_gates(sorted.iter().map(Uuid::as_bytes));
    Spi::connect_mut(|client| {
        let lock = queries::sql(target, Query::LockTenants);
        crate::pg::plans::execute(client, &lock, &[UUID_ARRAY], &[sorted.clone().into()]);
    });
    let kept = keep(sorted);
    if kept.is_empty() {
        return (0, kept);
    }
    let rewritten = Spi::connect_mut(|client| crate::maintain::deltas::recount_locked(client, target, &kept));
    (rewritten, kept)
}

/// A batch size of chom_refresh_all() and its procedure form: 1..1000000 (22023; NULL: 22004).
pub fn valid_batch_size(batch_size: Option<i32>) -> i32 {
    match batch_size {
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "batch_size must not be NULL",
            Some("Omit it for the default of 1000."),
        ),
        Some(n) if (1..=1_000_000).contains(&n) => n,
        Some(n) => invalid_argument(
            format!("batch_size must be between 1 and 1000000, not {n}"),
            "1000 (the default) keeps each batch's locks short.",
        ),
    }
}

/// The next `batch_size` tenant ids after `after` (from the first when None), in id order.
pub fn next_batch(target: &Target, after: Option<Uuid>, batch_size: i32) -> Vec<Uuid> {
    Spi::connect(|client| {
        crate::pg::plans::read(
            client,
            &queries::sql(target, Query::TenantBatch),
            &[UUID, INT4],
            &[after.into(), batch_size.into()],
        )
        .map(|row| db::required::<Vec<Uuid>>(&row, 1))
        .next()
        .unwrap_or_else(|| db::missing("tenant_batch"))
    })
}

/// How many tenants there are.
pub fn count_tenants(target: &Target) -> i64 {
    db::one(&queries::sql(target, Query::CountTenants), &[]).unwrap_or_else(|| db::missing("count_tenants"))
}

//! Tier quotas: chom_tenant_quota() answers CHOM's canCreateSite() and usage page from the cached aggregates and
//! `tier_limits`; `chom.enforce_site_quota` makes the limit hold at commit (see
//! [`crate::maintain::triggers`]'s quota check).

use crate::maintain::pending;
use crate::pg::db;
use crate::pg::plans::types::UUID;
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

/// A tenant's live sites and storage beside its tier's limits (`tier_limits.max_sites`, and
/// `max_storage_gb` in MB; −1 means unlimited, as in `tier_limits`), from the cached row and two primary-key
/// reads, no count: `sites_left` is how many sites it may still add (NULL when unlimited or its tier has no
/// limits row), `over_storage` whether it uses more storage than its tier allows (reported, never enforced).
/// The calling transaction's own writes are counted. Unknown tenant or NULL: no row. Without a `tier_limits`
/// table: 42P01.
#[pg_extern(stable, strict, parallel_restricted)]
pub fn chom_tenant_quota(
    tenant: Uuid,
) -> TableIterator<
    'static,
    (
        name!(sites_count, i32),
        name!(max_sites, Option<i32>),
        name!(storage_mb, i64),
        name!(max_storage_mb, Option<i64>),
        name!(sites_left, Option<i32>),
        name!(over_storage, bool),
    ),
> {
    let target = resolve::require_installed();
    if !target.tier_limits_exist() {
        crate::pg::errors::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("table {} does not exist: there are no tier limits", target.table("tier_limits")),
            Some("chom_tenant_quota() reads CHOM's tier_limits table (tier, max_sites, max_storage_gb)."),
        );
    }
    let row = Spi::connect(|client| {
        let rows =
            crate::pg::plans::read(client, &queries::sql(&target, Query::TenantQuota), &[UUID], &[tenant.into()]);
        rows.into_iter().next().map(|row| {
            (
                db::required::<i32>(&row, 1),
                db::nullable::<i32>(&row, 2),
                db::required::<i64>(&row, 3),
                db::nullable::<i64>(&row, 4),
            )
        })
    });
    let Some((sites, max_sites, storage, max_storage_mb)) = row else {
        return TableIterator::new(Vec::new());
    };
    let changes = pending::folded();
    // a tenant recounted at commit (a stale stats read in this transaction) will hold a recount: count it too
    let (sites, storage) = changes.tenant_after(tenant.as_bytes(), (sites, storage)).unwrap_or_else(|| {
        let (sites, storage, _) = crate::api::stats::live_stats(&target, tenant);
        (sites, storage)
    });
    let sites_left = max_sites.filter(|max| *max >= 0).map(|max| (max - sites).max(0));
    let over_storage = max_storage_mb.is_some_and(|max| max >= 0 && storage > max);
    TableIterator::once((sites, max_sites, storage, max_storage_mb, sites_left, over_storage))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn tenant_quota_reads_the_cache_and_the_tier() {
        install_with_data();
        // the small dataset's tenants are starters (5 sites, 10 GB)
        let tenant = "'a0000000-0000-0000-0000-000000000001'";
        let live = count(&format!("SELECT count(*) FROM sites WHERE tenant_id = {tenant} AND deleted_at IS NULL"));
        let quota = |column: &str| count(&format!("SELECT ({column})::bigint FROM chom_tenant_quota({tenant})"));
        assert_eq!(quota("sites_count"), live);
        assert_eq!(quota("max_sites"), 5);
        assert_eq!(quota("max_storage_mb"), 10 * 1024);
        assert_eq!(quota("sites_left"), (5 - live).max(0));
        Spi::run(&format!("UPDATE tenants SET tier = 'enterprise' WHERE id = {tenant}")).unwrap();
        assert_eq!(count(&format!("SELECT count(*) FROM chom_tenant_quota({tenant}) WHERE sites_left IS NULL AND max_sites = -1 AND NOT over_storage")), 1);
        // own writes count
        Spi::run(&format!("INSERT INTO sites (id, tenant_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {tenant}, 'q.test', 20000000)")).unwrap();
        assert_eq!(quota("sites_count"), live + 1);
        Spi::run(&format!("UPDATE tenants SET tier = 'pro' WHERE id = {tenant}")).unwrap();
        assert_eq!(count(&format!("SELECT count(*) FROM chom_tenant_quota({tenant}) WHERE over_storage")), 1);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_quota('00000000-0000-0000-0000-00000000dead')"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_quota(NULL)"), 0);
    }
}

//! Tenant statistics for the application, and recomputes from scratch: chom_tenant_stats(),
//! chom_refresh_tenant(), chom_refresh_all().

use crate::maintain::pending;
use crate::maintain::recount::{next_batch, recount, valid_batch_size};
use crate::pg::db;
use crate::pg::errors::raise;
use crate::pg::plans::types::{INT4, UUID, UUID_ARRAY};
use crate::pg::xact::read_only;
use crate::schema::queries::{self, Query};
use crate::schema::resolve;
use crate::schema::target::Target;
use pgrx::datum::Timestamp;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

/// A tenant's live site count, storage (MB) and the time its aggregates were last recomputed from scratch —
/// CHOM's getSiteCount() and getStorageUsedMb() in one indexed read. The triggers keep the values exact, and
/// the calling transaction's own uncommitted writes are included. When `cached_at` is older than
/// `chom.max_staleness` (default 5min) the tenant is recounted: the recount is returned at once and stored when
/// the transaction commits (in chom's commit lock order, so a stale read never adds a lock wait mid-way). In a
/// read-only transaction or on a hot standby the recount is returned without being stored (`cached_at` then
/// still says when values were last stored), never an error. An unknown tenant, or NULL, gives no row.
#[pg_extern(volatile, strict, parallel_unsafe)]
pub fn chom_tenant_stats(
    tenant: Uuid,
) -> TableIterator<'static, (name!(sites_count, i32), name!(storage_mb, i64), name!(cached_at, Option<Timestamp>))> {
    let target = resolve::require_installed();
    let stale_after = crate::pg::settings::MAX_STALENESS_SECONDS.get();
    let cached = Spi::connect(|client| {
        let rows = crate::pg::plans::read(
            client,
            &queries::sql(&target, Query::TenantStats),
            &[UUID, INT4],
            &[tenant.into(), stale_after.into()],
        );
        rows.into_iter().next().map(|row| {
            (
                db::required::<i32>(&row, 1),
                db::required::<i64>(&row, 2),
                db::nullable::<Timestamp>(&row, 3),
                db::required::<bool>(&row, 4),
            )
        })
    });
    let Some((sites, storage, cached_at, stale)) = cached else {
        return TableIterator::new(Vec::new());
    };
    let changes = pending::folded();
    match changes.tenant_after(tenant.as_bytes(), (sites, storage)) {
        Some((sites, storage)) if !stale => TableIterator::once((sites, storage, cached_at)),
        // stale, or recounted at commit already: what a recount gives now
        _ => {
            let (sites, storage, recounted_at) = live_stats(&target, tenant);
            if read_only() {
                return TableIterator::once((sites, storage, cached_at));
            }
            pending::record(&target, |changes| {
                changes.tenant_recounts.insert(*tenant.as_bytes());
            });
            TableIterator::once((sites, storage, Some(recounted_at)))
        }
    }
}

/// A tenant's live sites and storage counted now (this transaction's rows included), and the time a recount
/// stored in this transaction is stamped with.
pub fn live_stats(target: &Target, tenant: Uuid) -> (i32, i64, Timestamp) {
    Spi::connect(|client| {
        let sql = queries::sql(target, Query::TenantLiveStats);
        let rows = crate::pg::plans::read(client, &sql, &[UUID_ARRAY], &[vec![tenant].into()]);
        let row = rows.into_iter().next().unwrap_or_else(|| db::missing("tenant_live_stats"));
        (db::required::<i32>(&row, 1), db::required::<i64>(&row, 2), db::required::<Timestamp>(&row, 3))
    })
}

/// Recomputes one tenant's cached aggregates from its live sites and stamps `cached_at` (CHOM's
/// updateCachedStats()). Safe while writers run: the tenant row is locked before the recount.
/// Errors: NULL (22004), unknown tenant (P0002).
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_refresh_tenant(tenant: Option<Uuid>) {
    let Some(tenant) = tenant else {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "tenant must not be NULL", Some("Pass a tenants.id."))
    };
    let target = resolve::require_installed();
    if recount(&target, &[tenant]) == 0 {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("tenant {tenant} does not exist"),
            Some("Pass an id from tenants.id."),
        );
    }
}

/// Recomputes every tenant's cached aggregates, `batch_size` tenants at a time in id order (each batch locked,
/// recounted and stored in one statement), with a NOTICE per batch. Returns the number of tenants refreshed.
/// Runs in the caller's transaction; row locks are held until it ends (`CALL chom_refresh_all_batched()`
/// commits after each batch instead). Recorded in chom.runs as a 'refresh'. batch_size must be 1..1000000
/// (22023; NULL: 22004).
#[pg_extern(volatile, parallel_unsafe)]
pub fn chom_refresh_all(batch_size: default!(Option<i32>, 1000)) -> i64 {
    let batch_size = valid_batch_size(batch_size);
    let target = resolve::require_installed();
    let mut run = crate::monitoring::runs::Run::start(crate::monitoring::runs::RunKind::Refresh);
    let total: i64 = crate::pg::db::one(&queries::sql(&target, Query::CountTenants), &[])
        .unwrap_or_else(|| db::missing("counting tenants"));
    let mut after: Option<Uuid> = None;
    let mut done = 0i64;
    loop {
        let ids = next_batch(&target, after, batch_size);
        let Some(last) = ids.last().copied() else { break };
        done += recount(&target, &ids);
        pgrx::notice!("chom_refresh_all: {done} of {total} tenants refreshed");
        after = Some(last);
    }
    run.tenants_examined = Some(done);
    crate::monitoring::runs::record(run);
    done
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    /// The recount statement recounts every tenant when given NULL, and a generic plan cannot use an index under
    /// that alternative: a one-tenant recount (chom_refresh_tenant(), a stale chom_tenant_stats() at commit)
    /// would scan every site (300-600 ms at 1M sites).
    #[pg_test]
    fn a_one_tenant_recount_reads_its_sites_through_an_index() {
        install_with_data();
        Spi::run(
            "INSERT INTO tenants (id, organization_id, name, slug) \
             SELECT md5('many' || i)::uuid, '00000000-0000-0000-0000-0000000000a1', 'Many ' || i, 'many' || i \
               FROM generate_series(1, 2000) i; \
             INSERT INTO sites (id, tenant_id, domain, storage_used_mb) \
             SELECT gen_random_uuid(), md5('many' || (1 + i % 2000))::uuid, 'many' || i || '.test', 1 \
               FROM generate_series(1, 20000) i; \
             ANALYZE sites, tenants",
        )
        .unwrap();
        let index_scans = || {
            count(
                "SELECT sum(pg_stat_get_xact_numscans(indexrelid))::bigint FROM pg_index \
                  WHERE indrelid = 'sites'::regclass",
            )
        };
        let before = index_scans();
        Spi::run("SELECT chom_refresh_tenant(md5('many7')::uuid)").unwrap();
        assert!(index_scans() > before, "the recount of one tenant scans no index of sites");
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn tenant_stats_reads_the_cache_and_recomputes_when_stale() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000001'::uuid";
        let live = count(&format!("SELECT count(*) FROM sites WHERE tenant_id = {tenant} AND deleted_at IS NULL"));
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})")), live);
        // corrupt the cache behind chom's back and make it stale: the stats recompute and store
        Spi::run(&format!("SET LOCAL session_replication_role = replica; UPDATE tenants SET cached_sites_count = 999, cached_at = now() - interval '1 hour' WHERE id = {tenant}; SET LOCAL session_replication_role = origin")).unwrap();
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})")), live);
        assert_eq!(
            count(&format!("SELECT count(*) FROM chom_tenant_stats({tenant}) WHERE cached_at = localtimestamp(0)")),
            1,
            "the recount is stamped with this transaction's time"
        );
        // stored when the transaction commits (tests/integration.rs), meanwhile seen as exact by chom's reads
        assert_eq!(count(&format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = {tenant}")), 999);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
        // the transaction's own writes count, on top of the recount
        Spi::run(&format!(
            "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {tenant}, 'own.test')"
        ))
        .unwrap();
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})")), live + 1);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_stats('00000000-0000-0000-0000-00000000dead')"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_stats(NULL)"), 0);
    }

    #[pg_test]
    fn refresh_functions_recount_and_reject_bad_input() {
        install_with_data();
        assert_eq!(count("SELECT chom_refresh_all(2)"), count("SELECT count(*) FROM tenants"));
        assert_eq!(sqlstate("SELECT chom_refresh_all(0)").as_deref(), Some("22023"));
        assert_eq!(sqlstate("SELECT chom_refresh_all(NULL)").as_deref(), Some("22004"));
        assert_eq!(sqlstate("SELECT chom_refresh_tenant(NULL)").as_deref(), Some("22004"));
        assert_eq!(
            sqlstate("SELECT chom_refresh_tenant('00000000-0000-0000-0000-00000000dead')").as_deref(),
            Some("P0002")
        );
        assert_eq!(sqlstate("SELECT chom_refresh_tenant('a0000000-0000-0000-0000-000000000001')"), None);
    }
}

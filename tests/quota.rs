//! Tier quotas over real connections: with `chom.site_quota` on for the database (or a session's
//! `chom.enforce_site_quota`), no interleaving of creators takes a tenant past its tier's `max_sites`, whatever
//! the write path; only increases are refused.
//! Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install` into it.

mod common;

use common::{drifted_tenants, scalar_i64, Server};
use postgres::Client;
use std::sync::{Arc, Barrier};

const TENANT: &str = "'00000000-0000-4000-8000-0000000000f1'::uuid";

/// An application database with chom, the quota on for the whole database, and a starter tenant (limit 5)
/// with `sites` live sites and one soft-deleted one.
fn database_with_tenant(server: &Server, quota: bool, sites: i64) -> Client {
    let mut db = server.chom_database("app");
    db.batch_execute("CREATE EXTENSION chom").unwrap();
    if quota {
        db.batch_execute("ALTER DATABASE app SET chom.site_quota = on").unwrap();
    }
    db.batch_execute(&format!(
        "INSERT INTO tenants (id, organization_id, name, slug, tier) VALUES ({TENANT}, md5('org1')::uuid, 'Quota', 'quota', 'starter'); \
         INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), {TENANT}, md5('vps1')::uuid, 'q' || g || '.test' FROM generate_series(1, {sites}) g; \
         INSERT INTO sites (id, tenant_id, domain, deleted_at) VALUES (gen_random_uuid(), {TENANT}, 'q-deleted.test', now())"
    ))
    .unwrap_or_else(|e| panic!("setting up {sites} sites: {e}"));
    server.connect("app")
}

fn live_sites(db: &mut Client) -> i64 {
    scalar_i64(db, &format!("SELECT count(*) FROM sites WHERE tenant_id = {TENANT} AND deleted_at IS NULL"))
}

fn sqlstate(result: Result<(), postgres::Error>) -> Option<String> {
    result.err().map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}")))
}

/// 8 clients, each checking the quota the way the application does and then creating a site in its own
/// transaction, all at once.
fn concurrent_creators(server: &Server) -> (usize, usize) {
    let clients = 8;
    let barrier = Arc::new(Barrier::new(clients));
    let workers: Vec<_> = (0..clients)
        .map(|n| {
            let mut session = server.connect("app");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                session.batch_execute("BEGIN").unwrap();
                let left: Option<i32> = session
                    .query_one(&format!("SELECT sites_left FROM chom_tenant_quota({TENANT})"), &[])
                    .unwrap()
                    .get(0);
                barrier.wait();
                // every client saw room (the race the application's own check loses), and inserts
                assert!(left.is_none_or(|left| left > 0), "client {n} saw no room: {left:?}");
                session
                    .batch_execute(&format!(
                        "INSERT INTO sites (id, tenant_id, vps_id, domain) VALUES (gen_random_uuid(), {TENANT}, chom_pick_vps(), 'c{n}.test')"
                    ))
                    .unwrap();
                sqlstate(session.batch_execute("COMMIT"))
            })
        })
        .collect();
    let outcomes: Vec<Option<String>> = workers.into_iter().map(|w| w.join().expect("client")).collect();
    let refused = outcomes.iter().filter(|o| o.as_deref() == Some("23514")).count();
    let committed = outcomes.iter().filter(|o| o.is_none()).count();
    assert_eq!(refused + committed, clients, "other outcomes: {outcomes:?}");
    (committed, refused)
}

#[test]
fn concurrent_creators_end_at_exactly_the_limit_with_the_quota_on() {
    let server = Server::start();
    let mut db = database_with_tenant(&server, true, 2);
    let (committed, refused) = concurrent_creators(&server);
    assert_eq!((committed, refused), (3, 5));
    assert_eq!(live_sites(&mut db), 5);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn concurrent_creators_race_past_the_limit_with_the_quota_off() {
    let server = Server::start();
    let mut db = database_with_tenant(&server, false, 2);
    let (committed, refused) = concurrent_creators(&server);
    assert_eq!((committed, refused), (8, 0));
    assert_eq!(live_sites(&mut db), 10);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn every_write_path_that_adds_sites_is_refused_past_the_limit() {
    use std::io::Write;
    let server = Server::start();
    let mut db = database_with_tenant(&server, true, 4);
    let refused = |db: &mut Client, statement: &str| {
        assert_eq!(sqlstate(db.batch_execute(statement)).as_deref(), Some("23514"), "{statement}");
        assert_eq!(live_sites(db), 4, "after {statement}");
    };
    refused(&mut db, &format!("INSERT INTO sites (id, tenant_id, domain) SELECT gen_random_uuid(), {TENANT}, 'bulk' || g FROM generate_series(1, 2) g"));
    refused(&mut db, &format!("UPDATE sites SET deleted_at = NULL WHERE tenant_id = {TENANT} AND deleted_at IS NOT NULL; INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'one-more.test')"));
    refused(&mut db, &format!("UPDATE sites SET tenant_id = {TENANT} WHERE id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant1')::uuid AND deleted_at IS NULL LIMIT 2)"));
    let tenant_id: String = db.query_one(&format!("SELECT {TENANT}::text"), &[]).unwrap().get(0);
    // COPY in a transaction of its own (the client library reports an autocommit COPY's result before its commit)
    let copy = (|| -> Result<(), postgres::Error> {
        db.batch_execute("BEGIN")?;
        let mut writer = db.copy_in("COPY sites (id, tenant_id, domain) FROM STDIN")?;
        for n in 0..2 {
            writeln!(writer, "00000000-0000-4000-8000-0000000a000{n}\t{tenant_id}\tcopy{n}.test").unwrap();
        }
        writer.finish()?;
        db.batch_execute("COMMIT")
    })();
    assert_eq!(sqlstate(copy).as_deref(), Some("23514"), "COPY");
    assert_eq!(live_sites(&mut db), 4);
    // one more fits; the error names the tenant, the count it would reach and the limit
    db.batch_execute(&format!(
        "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'fifth.test')"
    ))
    .unwrap();
    let error = db
        .batch_execute(&format!(
            "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'sixth.test')"
        ))
        .expect_err("the sixth site");
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(
        message.contains("00000000-0000-4000-8000-0000000000f1")
            && message.contains("6 live sites")
            && message.contains("limit of 5"),
        "{message}"
    );
    // savepoints: a part rolled back does not count, a part released does
    db.batch_execute(&format!(
        "BEGIN; DELETE FROM sites WHERE domain = 'fifth.test' AND tenant_id = {TENANT}; SAVEPOINT a; \
         INSERT INTO sites (id, tenant_id, domain) SELECT gen_random_uuid(), {TENANT}, 'sp' || g FROM generate_series(1, 3) g; \
         ROLLBACK TO SAVEPOINT a; SAVEPOINT b; INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'kept.test'); \
         RELEASE SAVEPOINT b; COMMIT"
    ))
    .unwrap();
    assert_eq!(live_sites(&mut db), 5);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn a_tenant_over_its_limit_after_a_downgrade_can_shrink_but_not_grow() {
    let server = Server::start();
    let mut db = database_with_tenant(&server, false, 0);
    db.batch_execute(&format!(
        "UPDATE tenants SET tier = 'pro' WHERE id = {TENANT}; \
         INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), {TENANT}, md5('vps1')::uuid, 'pro' || g || '.test' FROM generate_series(1, 20) g; \
         UPDATE tenants SET tier = 'starter' WHERE id = {TENANT}"
    ))
    .unwrap();
    db.batch_execute("SET chom.enforce_site_quota = on").unwrap();
    assert_eq!(live_sites(&mut db), 20);
    for statement in [
        format!("DELETE FROM sites WHERE domain = 'pro1.test' AND tenant_id = {TENANT}"),
        format!("UPDATE sites SET deleted_at = now() WHERE domain = 'pro2.test' AND tenant_id = {TENANT}"),
        format!("UPDATE sites SET storage_used_mb = 50 WHERE tenant_id = {TENANT}"),
        // moved to an enterprise tenant (unlimited)
        format!("UPDATE sites SET tenant_id = md5('tenant2')::uuid WHERE domain = 'pro3.test' AND tenant_id = {TENANT}"),
        // a swap that keeps the count: no increase, allowed
        format!("BEGIN; DELETE FROM sites WHERE domain = 'pro4.test' AND tenant_id = {TENANT}; INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'swap.test'); COMMIT"),
    ] {
        db.batch_execute(&statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    assert_eq!(live_sites(&mut db), 17);
    let grow = db.batch_execute(&format!(
        "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {TENANT}, 'grow.test')"
    ));
    assert_eq!(sqlstate(grow).as_deref(), Some("23514"));
    let restore = db.batch_execute(&format!(
        "UPDATE sites SET deleted_at = NULL WHERE domain = 'pro2.test' AND tenant_id = {TENANT}"
    ));
    assert_eq!(sqlstate(restore).as_deref(), Some("23514"));
    assert_eq!(live_sites(&mut db), 17);
    assert_eq!(
        scalar_i64(&mut db, &format!("SELECT count(*) FROM chom_tenant_quota({TENANT}) WHERE sites_count = 17 AND max_sites = 5 AND sites_left = 0")),
        1
    );
    assert_eq!(drifted_tenants(&mut db), 0);
}

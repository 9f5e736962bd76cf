//! Integration tests over real connections, on CHOM's real schema and a generated dataset: what a DBA does
//! (install, uninstall, dump/restore, the online index path) and what many application sessions do at once.
//! Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install` into it.

mod common;

use common::{drifted_tenants, drifted_vps, scalar_i64, Server};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn install(client: &mut Client) {
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS chom").unwrap();
}

#[test]
fn create_extension_on_a_populated_database_installs_exact_aggregates_without_duplicate_indexes() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    let big: i32 =
        db.query_one("SELECT cached_sites_count FROM tenants WHERE id = md5('tenant1')::uuid", &[]).unwrap().get(0);
    let live =
        scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE tenant_id = md5('tenant1')::uuid AND deleted_at IS NULL");
    assert_eq!(i64::from(big), live);
    assert!(live > 500, "tenant 1 is the big tenant");
    let duplicate_pairs = scalar_i64(
        &mut db,
        "SELECT count(*) FROM (SELECT i.indrelid, chom.index_key_columns(i.indexrelid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace \
         GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(duplicate_pairs, 0);
}

#[test]
fn uninstall_then_drop_extension_gives_back_the_schema_dump_taken_before() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    let before = server.schema_dump("app");
    install(&mut db);
    assert_ne!(server.schema_dump("app"), before, "chom changed the schema");
    db.batch_execute("SELECT * FROM chom_uninstall(); DROP EXTENSION chom;").unwrap();
    let after = server.schema_dump("app");
    let differing: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).take(5).collect();
    assert!(
        before == after,
        "schema dump differs ({} vs {} lines), first differences: {differing:?}",
        before.lines().count(),
        after.lines().count()
    );
}

#[test]
fn on_an_empty_database_only_functions_are_installed_until_chom_install_runs() {
    let server = Server::start();
    let mut db = server.create_database("app");
    install(&mut db);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
    db.batch_execute(common::CHOM_SCHEMA).unwrap();
    db.batch_execute(common::DATASET).unwrap();
    assert!(scalar_i64(&mut db, "SELECT count(*) FROM chom_install() WHERE action = 'created'") >= 25);
    assert_eq!(drifted_tenants(&mut db), 0);
    db.batch_execute("INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant7')::uuid, md5('vps3')::uuid, 'late.test', 5)").unwrap();
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
}

#[test]
fn pg_dump_and_pg_restore_keep_aggregates_exact_and_triggers_working() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let dump = server.path("app.dump");
    server.tool("pg_dump", &["-Fc", "-d", "app", "-f", dump.to_str().unwrap()]);
    server.create_database("restored");
    server.tool("pg_restore", &["--exit-on-error", "-d", "restored", dump.to_str().unwrap()]);
    let mut restored = server.connect("restored");
    assert_eq!(drifted_tenants(&mut restored), 0);
    assert_eq!(drifted_vps(&mut restored), 0);
    assert_eq!(
        scalar_i64(&mut restored, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"),
        0
    );
    restored
        .batch_execute(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant1')::uuid, md5('vps2')::uuid, 'after-restore.test', 77); \
             UPDATE sites SET deleted_at = now() WHERE domain = 'site3.example.test';",
        )
        .unwrap();
    assert_eq!(drifted_tenants(&mut restored), 0);
    assert_eq!(drifted_vps(&mut restored), 0);
    // and chom still owns what it owned: uninstall removes its indexes in the restored database too
    restored.batch_execute("SELECT * FROM chom_uninstall(); DROP EXTENSION chom;").unwrap();
    assert_eq!(scalar_i64(&mut restored, "SELECT count(*) FROM pg_class WHERE relname LIKE 'idx\\_%'"), 0);
}

#[test]
fn online_install_builds_indexes_concurrently_and_chom_adopts_them() {
    let server = Server::start();
    let mut db = server.create_database("app");
    db.batch_execute(common::CHOM_SCHEMA).unwrap();
    db.batch_execute(common::DATASET).unwrap();
    db.batch_execute(
        "CREATE SCHEMA chom_ext; SET chom.install_on_create = off; CREATE EXTENSION chom SCHEMA chom_ext;",
    )
    .unwrap();
    assert_eq!(
        scalar_i64(&mut db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"),
        0,
        "install was deferred"
    );
    let ddl: Vec<String> =
        db.query("SELECT s FROM chom_ext.chom_index_ddl(true) s", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ddl.iter().filter(|s| s.starts_with("CREATE INDEX CONCURRENTLY")).count(), 17);
    for statement in &ddl {
        db.simple_query(statement).unwrap(); // outside a transaction block, as \gexec runs them
    }
    let exists =
        scalar_i64(&mut db, "SELECT count(*) FROM chom_ext.chom_install() WHERE kind = 'index' AND action = 'exists'");
    assert_eq!(exists, 17);
    db.batch_execute("SELECT * FROM chom_ext.chom_uninstall()").unwrap();
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'idx\\_%'"), 0);
}

/// A random write of one of the kinds the triggers must cover.
fn random_statement(rng: &mut StdRng) -> String {
    let tenant = |rng: &mut StdRng| format!("md5('tenant{}')::uuid", 1 + rng.gen_range(0..12));
    let vps = |rng: &mut StdRng| {
        if rng.gen_bool(0.1) {
            "NULL".to_string()
        } else {
            format!("md5('vps{}')::uuid", 1 + rng.gen_range(0..30))
        }
    };
    let site = |rng: &mut StdRng| format!("md5('site{}')::uuid", 1 + rng.gen_range(0..6000));
    match rng.gen_range(0..14) {
        0 => format!(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {}, {}, 'r' || gen_random_uuid() || '.test', {})",
            tenant(rng), vps(rng), rng.gen_range(0..10_000)
        ),
        1 => format!(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at) SELECT gen_random_uuid(), {}, {}, 'm' || gen_random_uuid() || '.test', g, CASE WHEN g % 3 = 0 THEN now() END FROM generate_series(1, {}) g",
            tenant(rng), vps(rng), rng.gen_range(1..40)
        ),
        2 => format!("UPDATE sites SET storage_used_mb = storage_used_mb + {} WHERE tenant_id = {}", rng.gen_range(-50..500), tenant(rng)),
        3 => format!("UPDATE sites SET deleted_at = now() WHERE id = {}", site(rng)),
        4 => format!("UPDATE sites SET deleted_at = NULL WHERE id IN (SELECT id FROM sites WHERE deleted_at IS NOT NULL AND tenant_id = {} LIMIT 3)", tenant(rng)),
        5 => format!("UPDATE sites SET tenant_id = {}, vps_id = {} WHERE id = {}", tenant(rng), vps(rng), site(rng)),
        6 => format!(
            "UPDATE sites s SET tenant_id = {}, storage_used_mb = s.storage_used_mb + 1, deleted_at = CASE WHEN s.deleted_at IS NULL THEN now() END FROM (SELECT id FROM sites WHERE tenant_id = {} LIMIT 5) m WHERE s.id = m.id",
            tenant(rng), tenant(rng)
        ),
        7 => format!("DELETE FROM sites WHERE id = {}", site(rng)),
        8 => format!("DELETE FROM sites WHERE id IN (SELECT id FROM sites WHERE tenant_id = {} AND deleted_at IS NOT NULL LIMIT 2)", tenant(rng)),
        9 => format!(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT id, tenant_id, vps_id, domain, 1 FROM sites WHERE tenant_id = {} LIMIT 3 \
             ON CONFLICT (id) DO UPDATE SET storage_used_mb = sites.storage_used_mb + 11, deleted_at = NULL",
            tenant(rng)
        ),
        10 => format!(
            "MERGE INTO sites s USING (SELECT id FROM sites WHERE tenant_id = {} LIMIT 4) m ON s.id = m.id \
             WHEN MATCHED AND s.deleted_at IS NULL THEN UPDATE SET storage_used_mb = 3 WHEN MATCHED THEN DELETE",
            tenant(rng)
        ),
        11 => format!(
            "WITH gone AS (DELETE FROM sites WHERE id = {} RETURNING tenant_id) UPDATE sites SET storage_used_mb = storage_used_mb + 2 WHERE tenant_id IN (SELECT tenant_id FROM gone)",
            site(rng)
        ),
        12 => format!("UPDATE sites SET vps_id = {} WHERE tenant_id = {} AND vps_id IS NOT NULL", vps(rng), tenant(rng)),
        _ => format!(
            "BEGIN; INSERT INTO sites (id, tenant_id, vps_id, domain) VALUES (gen_random_uuid(), {}, {}, 'sp' || gen_random_uuid()); SAVEPOINT a; \
             UPDATE sites SET deleted_at = now() WHERE tenant_id = {}; ROLLBACK TO SAVEPOINT a; COMMIT",
            tenant(rng), vps(rng), tenant(rng)
        ),
    }
}

#[test]
fn randomized_writes_never_let_a_tenant_or_vps_drift() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let mut rng = StdRng::seed_from_u64(0xC401);
    let statements: usize = std::env::var("CHOM_MODEL_STATEMENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    for n in 0..statements {
        let statement = random_statement(&mut rng);
        if let Err(e) = db.batch_execute(&statement) {
            // a unique violation of a random move is the application's problem, not chom's; roll it back
            let _ = db.batch_execute("ROLLBACK");
            assert!(e.code().is_some(), "statement {n} failed without SQLSTATE: {e}");
        }
        assert_eq!(drifted_tenants(&mut db), 0, "tenant drift after statement {n}: {statement}");
        assert_eq!(drifted_vps(&mut db), 0, "VPS drift after statement {n}: {statement}");
    }
    // cascades and TRUNCATE, last
    for statement in [
        "DELETE FROM vps_servers WHERE id = md5('vps5')::uuid",
        "DELETE FROM site_backups; DELETE FROM operations WHERE tenant_id = md5('tenant9')::uuid; DELETE FROM vps_allocations WHERE tenant_id = md5('tenant9')::uuid; DELETE FROM usage_records WHERE tenant_id = md5('tenant9')::uuid; DELETE FROM tenants WHERE id = md5('tenant9')::uuid",
        "TRUNCATE sites CASCADE",
    ] {
        db.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        assert_eq!(drifted_tenants(&mut db), 0, "after {statement}");
        assert_eq!(drifted_vps(&mut db), 0, "after {statement}");
    }
}

#[test]
fn concurrent_writers_on_hot_tenants_neither_drift_nor_deadlock() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let clients = 8;
    let rounds = 150;
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let mut client = server.connect("app");
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(w as u64);
                let mut deadlocks = 0;
                for _ in 0..rounds {
                    let a = 1 + rng.gen_range(0..3);
                    let b = 1 + rng.gen_range(0..3);
                    let statement = match rng.gen_range(0..5) {
                        0 => format!("INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT gen_random_uuid(), md5('tenant{a}')::uuid, md5('vps{b}')::uuid, 'c' || gen_random_uuid(), g FROM generate_series(1, 3) g"),
                        1 => format!("UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant{a}')::uuid ORDER BY random() LIMIT 3)"),
                        2 => format!("UPDATE sites SET deleted_at = CASE WHEN deleted_at IS NULL THEN now() END WHERE id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant{a}')::uuid ORDER BY random() LIMIT 2)"),
                        // moves in both directions between hot tenants, in one statement
                        3 => format!("UPDATE sites SET tenant_id = CASE WHEN tenant_id = md5('tenant{a}')::uuid THEN md5('tenant{b}')::uuid ELSE md5('tenant{a}')::uuid END WHERE id IN (SELECT id FROM sites WHERE tenant_id IN (md5('tenant{a}')::uuid, md5('tenant{b}')::uuid) ORDER BY random() LIMIT 4)"),
                        _ => format!("DELETE FROM sites WHERE id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant{a}')::uuid AND deleted_at IS NOT NULL LIMIT 1)"),
                    };
                    if let Err(e) = client.batch_execute(&statement) {
                        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                        if code == "40P01" {
                            deadlocks += 1;
                        }
                        // 23505 (a random move hit (tenant_id, domain) uniqueness) and row-lock retries are fine
                        assert!(matches!(code.as_str(), "40P01" | "23505" | "40001"), "unexpected error: {e}");
                    }
                }
                deadlocks
            })
        })
        .collect();
    let deadlocks: i32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    // Site-row locks taken in random order by the application's own statements can deadlock among themselves;
    // chom's tenant locks, taken in id order, must not add any. With 3 hot tenants and random site order, we
    // allow only what site rows alone explain: none here, since each statement's site set is locked by its scan.
    assert_eq!(deadlocks, 0, "deadlocks between writers");
}

#[test]
fn ten_transactions_that_pick_then_place_land_on_ten_different_vps() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let eligible = scalar_i64(&mut db, "SELECT count(*) FROM chom_vps_load() WHERE eligible");
    assert!(eligible >= 10, "dataset has {eligible} eligible VPS");
    let mut sessions: Vec<Client> = (0..10).map(|_| server.connect("app")).collect();
    let mut picked = Vec::new();
    for (n, session) in sessions.iter_mut().enumerate() {
        session.batch_execute("BEGIN").unwrap();
        let vps: uuid_text::Text = session.query_one("SELECT chom_pick_vps()::text", &[]).unwrap().get(0);
        session
            .execute(
                &format!("INSERT INTO sites (id, tenant_id, vps_id, domain) VALUES (gen_random_uuid(), md5('tenant{}')::uuid, '{}'::uuid, 'placed{n}.test')", n + 1, vps.0),
                &[],
            )
            .unwrap();
        picked.push(vps.0);
    }
    for session in sessions.iter_mut() {
        session.batch_execute("COMMIT").unwrap();
    }
    let mut distinct = picked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "picked {picked:?}");
    assert_eq!(drifted_vps(&mut db), 0);
}

mod uuid_text {
    /// A text column read as String (the tests compare uuids as text).
    pub struct Text(pub String);
    impl<'a> postgres::types::FromSql<'a> for Text {
        fn from_sql(
            ty: &postgres::types::Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Text(String::from_sql(ty, raw)?))
        }
        fn accepts(ty: &postgres::types::Type) -> bool {
            <String as postgres::types::FromSql>::accepts(ty)
        }
    }
}

#[test]
fn copy_and_a_bulk_insert_of_100k_sites_keep_aggregates_exact() {
    use std::io::Write;
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let ids =
        |db: &mut Client, sql: &str| -> Vec<String> { db.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect() };
    let tenants = ids(&mut db, "SELECT id::text FROM tenants ORDER BY id LIMIT 40");
    let vps = ids(&mut db, "SELECT id::text FROM vps_servers ORDER BY id");
    let mut writer =
        db.copy_in("COPY sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at) FROM STDIN").unwrap();
    for i in 0..2000usize {
        let deleted = if i % 10 == 0 { "2025-01-01 00:00:00" } else { "\\N" };
        let vps_id = if i % 7 == 0 { "\\N" } else { vps[i % vps.len()].as_str() };
        writeln!(
            writer,
            "00000000-0000-4000-8000-{i:012}\t{}\t{vps_id}\tcopy{i}.test\t{}\t{deleted}",
            tenants[i % tenants.len()],
            i % 900
        )
        .unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(drifted_tenants(&mut db), 0, "after COPY");
    assert_eq!(drifted_vps(&mut db), 0, "after COPY");
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at) \
         SELECT gen_random_uuid(), md5('tenant' || (1 + g % 200))::uuid, md5('vps' || (1 + g % 30))::uuid, 'bulk' || g || '.test', g % 1000, \
                CASE WHEN g % 20 = 0 THEN now() END FROM generate_series(1, 100000) g",
    )
    .unwrap();
    assert_eq!(drifted_tenants(&mut db), 0, "after INSERT ... SELECT of 100k rows");
    assert_eq!(drifted_vps(&mut db), 0, "after INSERT ... SELECT of 100k rows");
}

#[test]
fn tenant_stats_in_a_read_only_transaction_or_on_a_hot_standby_recount_without_writing() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    db.batch_execute(
        "SET session_replication_role = replica; \
         UPDATE tenants SET cached_sites_count = 12345, cached_at = now() - interval '1 day' WHERE id = md5('tenant1')::uuid; \
         SET session_replication_role = origin;",
    )
    .unwrap();
    let live =
        scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE tenant_id = md5('tenant1')::uuid AND deleted_at IS NULL");
    db.batch_execute("BEGIN READ ONLY").unwrap();
    let fresh: i32 =
        db.query_one("SELECT sites_count FROM chom_tenant_stats(md5('tenant1')::uuid)", &[]).unwrap().get(0);
    db.batch_execute("COMMIT").unwrap();
    assert_eq!(i64::from(fresh), live, "read-only: a fresh recount");
    assert_eq!(
        scalar_i64(&mut db, "SELECT cached_sites_count::bigint FROM tenants WHERE id = md5('tenant1')::uuid"),
        12345,
        "nothing written"
    );

    // a hot standby cannot write at all: the same fresh recount, and the read-only functions work there
    let standby = server.start_standby();
    let mut replica = standby.connect("app");
    assert!(replica.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    let on_standby: i32 =
        replica.query_one("SELECT sites_count FROM chom_tenant_stats(md5('tenant1')::uuid)", &[]).unwrap().get(0);
    assert_eq!(i64::from(on_standby), live, "standby: a fresh recount");
    assert_eq!(
        scalar_i64(&mut replica, "SELECT count(*) FROM chom_cache_drift()"),
        1,
        "the standby sees the drifted tenant"
    );
    let picked: Option<String> = replica.query_one("SELECT chom_pick_vps()::text", &[]).unwrap().get(0);
    assert!(picked.is_some(), "the pick answers on a standby (no reservation: nothing can be locked there)");
    drop(replica);
    drop(standby);

    let stored: i32 =
        db.query_one("SELECT sites_count FROM chom_tenant_stats(md5('tenant1')::uuid)", &[]).unwrap().get(0);
    assert_eq!(i64::from(stored), live);
    assert_eq!(
        scalar_i64(&mut db, "SELECT cached_sites_count::bigint FROM tenants WHERE id = md5('tenant1')::uuid"),
        live,
        "read-write: stored"
    );

    // the application's reads (a fresh cache, an unreserved pick) take no transaction id: no commit record,
    // no WAL flush, no push towards wraparound
    db.batch_execute("BEGIN").unwrap();
    db.query_one("SELECT chom_tenant_stats(md5('tenant1')::uuid), (SELECT count(*) FROM chom_vps_load())", &[])
        .unwrap();
    let xid: Option<i64> = db.query_one("SELECT txid_current_if_assigned()", &[]).unwrap().get(0);
    db.batch_execute("COMMIT").unwrap();
    assert_eq!(xid, None, "reads assigned a transaction id");
    let xid: Option<i64> =
        db.query_one("SELECT txid_current_if_assigned() FROM (SELECT chom_pick_vps()) p", &[]).unwrap().get(0);
    assert_eq!(xid, None, "an autocommit pick (no reservation) assigned a transaction id");
}

#[test]
fn the_application_role_writes_through_the_triggers_whatever_its_search_path() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    db.batch_execute(
        "CREATE ROLE chom_app LOGIN; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO chom_app; \
         CREATE SCHEMA decoy AUTHORIZATION chom_app;",
    )
    .unwrap();
    let mut app = postgres::Client::configure()
        .host_path(&server.dir)
        .port(server.port)
        .user("chom_app")
        .dbname("app")
        .connect(postgres::NoTls)
        .unwrap();
    app.batch_execute(
        "CREATE TABLE decoy.tenants (id uuid, cached_sites_count integer DEFAULT 0, cached_storage_mb bigint DEFAULT 0); \
         CREATE TABLE decoy.vps_load (vps_id uuid, live_sites integer); \
         SET search_path = decoy, public; \
         INSERT INTO decoy.tenants SELECT id FROM public.tenants; \
         INSERT INTO public.sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant2')::uuid, md5('vps1')::uuid, 'app-role.test', 10); \
         UPDATE public.sites SET deleted_at = now() WHERE domain = 'site5.example.test'; \
         DELETE FROM public.sites WHERE domain = 'site6.example.test';",
    )
    .unwrap();
    assert_eq!(
        scalar_i64(
            &mut app,
            "SELECT count(*) FROM decoy.tenants WHERE cached_sites_count <> 0 OR cached_storage_mb <> 0"
        ),
        0
    );
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    // what the application may call, and what it may not
    app.batch_execute("SELECT public.chom_pick_vps(); SELECT * FROM public.chom_tenant_stats(md5('tenant2')::uuid); SELECT * FROM public.chom_status(); SELECT * FROM public.chom_cache_drift(); SELECT * FROM public.chom_vps_load();").unwrap();
    for dba_only in [
        "SELECT * FROM public.chom_install()",
        "SELECT * FROM public.chom_uninstall()",
        "SELECT public.chom_repair_drift()",
        "SELECT public.chom_refresh_all()",
    ] {
        let err = app.batch_execute(dba_only).unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{dba_only}: {err}");
    }
}

#[test]
fn a_backend_killed_mid_bulk_insert_leaves_no_drift_after_crash_recovery() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let mut victim = server.connect("app");
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let bulk = std::thread::spawn(move || {
        victim.batch_execute(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
             SELECT gen_random_uuid(), md5('tenant' || (1 + g % 200))::uuid, md5('vps' || (1 + g % 30))::uuid, 'k' || g, 1 FROM generate_series(1, 3000000) g",
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(bulk.join().unwrap().is_err(), "the killed statement fails");
    drop(db);
    let mut db = (0..60)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            postgres::Client::configure()
                .host_path(&server.dir)
                .port(server.port)
                .user("postgres")
                .dbname("app")
                .connect(postgres::NoTls)
                .ok()
        })
        .expect("server back after crash recovery");
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
}

/// Two-phase commit across a server crash: chom applies a transaction's changes at PREPARE TRANSACTION, so the
/// prepared transaction holds its row locks on the tenants it changed (a writer of one of them waits for it,
/// here until lock_timeout) and carries the changes through crash recovery: COMMIT PREPARED after the restart
/// keeps them, ROLLBACK PREPARED drops them, exact either way.
#[test]
fn prepared_transactions_survive_a_crash_and_commit_or_roll_back_exact() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    // each touches tenants and VPSes of its own: the second PREPARE would otherwise wait on the first one's row
    // locks, held until it is resolved
    let write = |gid: &str, tenant: u32, moved_to: u32, first_vps: u32| {
        format!(
            "BEGIN; \
             INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
             SELECT gen_random_uuid(), md5('tenant{tenant}')::uuid, md5('vps' || ({first_vps} + g % 5))::uuid, '{gid}' || g || '.test', g \
               FROM generate_series(1, 40) g; \
             UPDATE sites SET deleted_at = now() WHERE domain = '{gid}1.test'; \
             UPDATE sites SET tenant_id = md5('tenant{moved_to}')::uuid WHERE domain = '{gid}2.test'; \
             PREPARE TRANSACTION '{gid}'"
        )
    };
    db.batch_execute(&write("kept", 3, 9, 1)).unwrap();
    db.batch_execute(&write("dropped", 4, 10, 6)).unwrap();
    server.crash_and_restart();
    let mut db = server.connect("app");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM pg_prepared_xacts"), 2, "both survive the crash");
    // the prepared transaction holds tenant3's row: another writer of tenant3 waits for it at its commit when the
    // busy-tenant spill is off, and spills its change without waiting when it is on (the default)
    let refused = db.batch_execute(
        "SET chom.busy_tenant_spill = off; SET lock_timeout = '300ms'; \
         INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), md5('tenant3')::uuid, 'waits.test')",
    );
    let code = refused.err().and_then(|e| e.code().cloned());
    assert_eq!(code, Some(postgres::error::SqlState::LOCK_NOT_AVAILABLE), "a writer of a prepared tenant waits");
    db.batch_execute(
        "RESET chom.busy_tenant_spill; \
         INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), md5('tenant3')::uuid, 'spills.test')",
    )
    .expect("with the spill on, a writer of a prepared tenant commits without waiting");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE domain = 'spills.test'"), 1);
    for statement in ["RESET lock_timeout", "COMMIT PREPARED 'kept'", "ROLLBACK PREPARED 'dropped'"] {
        db.batch_execute(statement).unwrap();
    }
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    let kept = scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE domain LIKE 'kept%'");
    let dropped = scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE domain LIKE 'dropped%'");
    assert_eq!((kept, dropped), (40, 0), "the committed transaction's sites are there, the rolled back one's are not");
}

#[test]
fn install_and_uninstall_cycles_with_writers_running_lose_nothing() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    install(&mut db);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut client = server.connect("app");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let statement = format!(
                        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant{}')::uuid, md5('vps{}')::uuid, 'w{w}-{n}.test', {n}); \
                         UPDATE sites SET deleted_at = now() WHERE domain = 'w{w}-{}.test'",
                        1 + n % 5, 1 + n % 30, n / 2
                    );
                    if let Err(e) = client.batch_execute(&statement) {
                        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                        assert!(code == "40P01", "writer error: {e}");
                    }
                }
                n
            })
        })
        .collect();
    let mut dba = server.connect("app");
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        dba.batch_execute("SELECT * FROM chom_uninstall()").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        dba.batch_execute("SELECT * FROM chom_install()").unwrap();
        assert_eq!(drifted_tenants(&mut dba), 0, "right after install");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 10, "writers ran ({written} rounds)");
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
}

/// (all, HOT) row updates of tenants so far (the statistics of committed transactions).
fn tenant_updates(db: &mut Client) -> (i64, i64) {
    db.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    let row = db
        .query_one("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tenants'", &[])
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn counter_updates_of_many_tenants_on_one_page_are_hot() {
    let server = Server::start();
    let mut db = server.create_database("hot");
    db.batch_execute(common::CHOM_SCHEMA).unwrap();
    db.batch_execute(common::SMALL_DATA).unwrap();
    db.batch_execute("INSERT INTO tenants (id, organization_id, name, slug) SELECT gen_random_uuid(), '00000000-0000-0000-0000-0000000000a1', 'Tenant ' || i, 'bulk' || i FROM generate_series(1, 2000) i").unwrap();
    install(&mut db);
    assert_eq!(
        scalar_i64(
            &mut db,
            "SELECT count(*) FROM pg_class WHERE relname = 'tenants' AND reloptions = '{fillfactor=70}'"
        ),
        1
    );
    // the statistics of a committed transaction reach pg_stat_user_tables when the backend reports them
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (all_before, hot_before) = tenant_updates(&mut db);
    // one new site for every fourth tenant row: a quarter of the rows of every page change in one commit
    db.batch_execute("INSERT INTO sites (id, tenant_id, domain) SELECT gen_random_uuid(), id, 'hot-' || slug || '.test' FROM (SELECT id, slug, row_number() OVER (ORDER BY ctid) AS n FROM tenants) t WHERE n % 4 = 0").unwrap();
    let mut changed = (0, 0);
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (all, hot) = tenant_updates(&mut db);
        changed = (all - all_before, hot - hot_before);
        if changed.0 >= 501 {
            break;
        }
    }
    let (all, hot) = changed;
    assert_eq!(all, 501, "one counter update per tenant that got a site");
    assert!(hot * 10 >= all * 9, "{hot} of {all} tenant updates were HOT");
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_status() WHERE kind = 'storage' AND state = 'installed' AND detail LIKE 'fillfactor 70%'"), 1);
}

#[test]
fn a_database_made_from_a_schema_only_dump_knows_what_chom_added() {
    // what Laravel's schema:dump / schema:load do: pg_dump --schema-only of an installed database, loaded into an
    // empty one
    let server = Server::start();
    let mut db = server.chom_database("app");
    // the same round trip without chom is the baseline (a reload re-renders some CHECK constraints)
    let plain = server.path("plain.sql");
    server.tool("pg_dump", &["--schema-only", "-d", "app", "-f", plain.to_str().unwrap()]);
    server.create_database("baseline");
    server.tool("psql", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "baseline", "-f", plain.to_str().unwrap()]);
    let before_chom = server.schema_dump("baseline");
    install(&mut db);
    let dump = server.path("schema.sql");
    server.tool("pg_dump", &["--schema-only", "-d", "app", "-f", dump.to_str().unwrap()]);
    let mut loaded = server.create_database("loaded");
    server.tool("psql", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "loaded", "-f", dump.to_str().unwrap()]);
    assert_eq!(
        scalar_i64(&mut loaded, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"),
        0,
        "status in the loaded database"
    );
    assert_eq!(
        scalar_i64(&mut loaded, "SELECT count(*) FROM chom_status() WHERE kind = 'column' AND state = 'installed'"),
        3,
        "chom's own columns are known as chom's"
    );
    assert_eq!(scalar_i64(&mut loaded, "SELECT count(*) FROM chom_install() WHERE action = 'created'"), 0);
    loaded
        .batch_execute(
            "INSERT INTO tier_limits (tier, name, max_sites, max_storage_gb, max_bandwidth_gb, backup_retention_days, \
                                      support_level, api_rate_limit_per_hour, price_monthly_cents) \
             VALUES ('starter', 'Starter', 5, 10, 100, 7, 'community', 1000, 2900); \
             INSERT INTO organizations (id, name, slug, billing_email) VALUES (gen_random_uuid(), 'o', 'o', 'o@x.test')",
        )
        .unwrap();
    loaded
        .batch_execute(
            "INSERT INTO tenants (id, organization_id, name, slug) SELECT gen_random_uuid(), id, 't', 't' FROM organizations; \
             INSERT INTO sites (id, tenant_id, domain, storage_used_mb) SELECT gen_random_uuid(), id, 'a.test', 5 FROM tenants",
        )
        .unwrap();
    assert_eq!(drifted_tenants(&mut loaded), 0);
    // uninstall there gives back the schema as it was before chom: columns dropped, fillfactor reset
    loaded
        .batch_execute("TRUNCATE sites, tenants, organizations, tier_limits CASCADE; SELECT * FROM chom_uninstall(); DROP EXTENSION chom;")
        .unwrap();
    let after = server.schema_dump("loaded");
    let differing: Vec<(&str, &str)> = before_chom.lines().zip(after.lines()).filter(|(a, b)| a != b).take(5).collect();
    assert!(before_chom == after, "schema dump differs, first differences: {differing:?}");
}

#[test]
fn an_interrupted_concurrent_build_is_rebuilt_by_following_chom_advice() {
    let server = Server::start();
    let mut db = server.chom_database("app");
    db.batch_execute("SET chom.install_on_create = off; CREATE EXTENSION chom;").unwrap();
    let statements: Vec<String> = db
        .query("SELECT s FROM chom_index_ddl() s WHERE s LIKE '%idx_audit_resource_lookup%'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // an old snapshot held elsewhere makes CREATE INDEX CONCURRENTLY wait; statement_timeout interrupts it
    let mut old_snapshot = server.connect("app");
    old_snapshot.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM audit_logs").unwrap();
    db.batch_execute("SET statement_timeout = '1s'").unwrap();
    let interrupted = db.simple_query(&statements[0]).expect_err("the build waits for the old snapshot");
    assert_eq!(interrupted.code().map(|c| c.code()), Some("57014"), "{interrupted}");
    db.batch_execute("RESET statement_timeout").unwrap();
    old_snapshot.batch_execute("COMMIT").unwrap();
    let state = |db: &mut Client| -> String {
        db.query_one("SELECT state FROM chom_status() WHERE name = 'idx_audit_resource_lookup'", &[]).unwrap().get(0)
    };
    assert_eq!(state(&mut db), "invalid");
    // the advice: run chom_index_ddl() again (with \gexec)
    let again: Vec<String> = db
        .query("SELECT s FROM chom_index_ddl() s WHERE s LIKE '%idx_audit_resource_lookup%'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(again[0].starts_with("DROP INDEX CONCURRENTLY"), "{again:?}");
    for statement in &again {
        db.simple_query(statement).unwrap();
    }
    db.batch_execute("SELECT * FROM chom_install()").unwrap();
    assert_eq!(state(&mut db), "installed");
}

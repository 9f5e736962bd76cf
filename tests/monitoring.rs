//! Monitoring and long work over real connections: `CALL chom_refresh_all_batched()` commits after each batch
//! (another session sees the committed batches while it runs, and a writer of a tenant of an early batch
//! commits at once while the procedure is held on a later one; chom_refresh_all() holds that writer until it
//! ends), reports progress with a NOTICE per batch, refuses a transaction block with 25001 and a HINT, and is
//! recorded in chom.runs; on a hot standby chom_metrics() and chom_drift_probe() answer and record nothing.
//! Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install` into it.

mod common;

use common::{drifted_tenants, scalar_i64, Server};
use postgres::{Client, NoTls};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn installed_app(server: &Server) -> Client {
    let mut db = server.chom_database("app");
    db.batch_execute("CREATE EXTENSION chom").unwrap();
    db
}

/// A connection whose NOTICEs are collected.
fn connect_with_notices(server: &Server, notices: Arc<Mutex<Vec<String>>>) -> Client {
    Client::configure()
        .host_path(&server.dir)
        .port(server.port)
        .user("postgres")
        .dbname("app")
        .notice_callback(move |notice| notices.lock().unwrap().push(notice.message().to_string()))
        .connect(NoTls)
        .unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn waits_on_a_lock(observer: &mut Client, pid: i32) -> bool {
    scalar_i64(
        observer,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND wait_event_type = 'Lock'"),
    ) == 1
}

/// The first `n` tenant ids in id order (the batches' order).
fn first_tenants(db: &mut Client, n: i64) -> Vec<String> {
    db.query("SELECT id::text FROM tenants ORDER BY id LIMIT $1", &[&n]).unwrap().iter().map(|r| r.get(0)).collect()
}

fn sqlstate(error: &postgres::Error) -> String {
    error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// A site insert for `tenant`, committed by itself, with lock_timeout: Ok when its commit got the tenant row in
/// time.
fn write_site(writer: &mut Client, tenant: &str, tag: &str) -> Result<(), postgres::Error> {
    writer.execute(
        "INSERT INTO sites (id, tenant_id, domain, storage_used_mb) VALUES (gen_random_uuid(), $1::text::uuid, $2, 7)",
        &[&tenant, &format!("{tag}.test")],
    )?;
    Ok(())
}

#[test]
fn the_batched_refresh_commits_each_batch_and_a_writer_of_an_early_batch_does_not_wait_for_the_run() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let tenants = scalar_i64(&mut db, "SELECT count(*) FROM tenants");
    let first = first_tenants(&mut db, 3);
    // a recount stamps cached_at: mark every tenant as never recounted
    db.batch_execute("UPDATE tenants SET cached_at = '2000-01-01'").unwrap();
    let refreshed = "SELECT count(*) FROM tenants WHERE cached_at > '2000-01-01'";

    // the third tenant's row is held by another transaction: with batches of one tenant, the procedure's
    // third batch waits there, after committing the first two
    let mut blocker = server.connect("app");
    blocker.batch_execute(&format!("BEGIN; SELECT FROM tenants WHERE id = '{}' FOR UPDATE", first[2])).unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let mut procedure = connect_with_notices(&server, notices.clone());
    let pid: i32 = procedure.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let run = std::thread::spawn(move || procedure.batch_execute("CALL chom_refresh_all_batched(1)"));
    let mut observer = server.connect("app");
    wait_until("the procedure waits on the third tenant", || waits_on_a_lock(&mut observer, pid));
    assert_eq!(scalar_i64(&mut observer, refreshed), 2, "the first two batches are committed, seen by others");
    wait_until("two progress NOTICEs arrived", || notices.lock().unwrap().len() >= 2);
    {
        let notices = notices.lock().unwrap();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(notices[1].contains(&format!("2 of {tenants} tenants refreshed")), "{notices:?}");
    }

    // a writer of the first tenant (batch 1, committed) commits at once while the run goes on
    let mut writer = server.connect("app");
    writer.batch_execute("SET lock_timeout = '5s'").unwrap();
    let started = Instant::now();
    write_site(&mut writer, &first[0], "during-batched").expect("the first batch's locks are released");
    assert!(started.elapsed() < Duration::from_secs(2), "the writer waited {:?}", started.elapsed());
    assert!(waits_on_a_lock(&mut observer, pid), "the procedure is still held on its third batch");

    blocker.batch_execute("ROLLBACK").unwrap();
    run.join().unwrap().expect("the procedure completes");
    assert_eq!(scalar_i64(&mut db, refreshed), tenants, "every tenant refreshed");
    assert_eq!(drifted_tenants(&mut db), 0);
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len() as i64, tenants, "a NOTICE per batch");
    assert!(notices.last().unwrap().contains(&format!("{tenants} of {tenants} tenants refreshed")), "{notices:?}");
    assert_eq!(
        scalar_i64(&mut db, "SELECT count(*) FROM chom.runs WHERE kind = 'refresh'"),
        1,
        "the run is recorded once"
    );
    assert_eq!(scalar_i64(&mut db, "SELECT last_refresh_tenants FROM chom_metrics()"), tenants);

    // chom_refresh_all() in one transaction: the same writer waits for the whole run (here: gives up)
    db.batch_execute("UPDATE tenants SET cached_at = '2000-01-01'").unwrap();
    blocker.batch_execute(&format!("BEGIN; SELECT FROM tenants WHERE id = '{}' FOR UPDATE", first[2])).unwrap();
    let mut function = server.connect("app");
    let pid: i32 = function.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let run = std::thread::spawn(move || function.batch_execute("SELECT chom_refresh_all(1)"));
    wait_until("chom_refresh_all() waits on the third tenant", || waits_on_a_lock(&mut observer, pid));
    assert_eq!(scalar_i64(&mut observer, refreshed), 0, "nothing is committed before it ends");
    writer.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let refused = write_site(&mut writer, &first[0], "during-one-transaction").expect_err("the first tenant is locked");
    assert_eq!(sqlstate(&refused), "55P03", "{refused:?}");
    blocker.batch_execute("ROLLBACK").unwrap();
    run.join().unwrap().expect("chom_refresh_all() completes");
    assert_eq!(scalar_i64(&mut db, refreshed), tenants);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn the_batched_refresh_refuses_a_transaction_block_and_bad_batch_sizes() {
    let server = Server::start();
    let mut db = installed_app(&server);
    db.batch_execute("BEGIN").unwrap();
    let refused = db.batch_execute("CALL chom_refresh_all_batched()").expect_err("inside a transaction block");
    assert_eq!(sqlstate(&refused), "25001", "{refused:?}");
    let hint = refused.as_db_error().and_then(|e| e.hint()).unwrap_or_default().to_string();
    assert!(hint.contains("CALL it on its own") && hint.contains("chom_refresh_all()"), "{hint}");
    db.batch_execute("ROLLBACK").unwrap();
    for (call, expected) in
        [("CALL chom_refresh_all_batched(0)", "22023"), ("CALL chom_refresh_all_batched(NULL)", "22004")]
    {
        let error = db.batch_execute(call).expect_err(call);
        assert_eq!(sqlstate(&error), expected, "{call}: {error:?}");
    }
    // autocommit, default batch size: one batch for the dataset's tenants
    db.batch_execute("CALL chom_refresh_all_batched()").unwrap();
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom.runs WHERE kind = 'refresh'"), 1);
    assert_eq!(drifted_tenants(&mut db), 0);
    // an application role may not run it; a DBA grants it with its batches
    // (the probe reads CHOM's tables as its caller, as chom_cache_drift() does: the application's role can)
    db.batch_execute("CREATE ROLE app_role LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_role").unwrap();
    let mut app = Client::configure()
        .host_path(&server.dir)
        .port(server.port)
        .user("app_role")
        .dbname("app")
        .connect(NoTls)
        .unwrap();
    let denied = app.batch_execute("CALL chom_refresh_all_batched()").expect_err("not for PUBLIC");
    assert_eq!(sqlstate(&denied), "42501");
    // the monitoring functions are for everyone; the probe records its run as chom's owner
    assert_eq!(scalar_i64(&mut app, "SELECT drifted FROM chom_drift_probe()"), 0);
    assert!(scalar_i64(&mut app, "SELECT tenants_tracked FROM chom_metrics()") > 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), 1);
}

#[test]
fn on_a_hot_standby_metrics_and_the_probe_answer_and_record_nothing() {
    let server = Server::start();
    let mut db = installed_app(&server);
    db.batch_execute("SELECT chom_repair_drift()").unwrap();
    let standby = server.start_standby();
    let mut replica = standby.connect("app");
    assert!(replica.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    let row = replica
        .query_one("SELECT sampled, drifted, complete FROM chom_drift_probe(50, 5000)", &[])
        .expect("the probe answers on a standby");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, bool>(2)), (50, 0, true));
    let row = replica
        .query_one("SELECT installed, triggers_enabled, last_check_kind, tenants_tracked FROM chom_metrics()", &[])
        .expect("metrics on a standby");
    assert!(row.get::<_, bool>(0));
    assert!(row.get::<_, i32>(1) > 0);
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("repair"), "the primary's repair, replayed");
    assert_eq!(row.get::<_, i64>(3), scalar_i64(&mut db, "SELECT count(*) FROM tenants"));
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), 0);
}

//! The busy tenant over real connections (src/deltas.rs, docs/busy-tenant.md): a commit that finds its tenant's
//! row held by another commit spills its change and does not wait; every read through chom stays exact
//! meanwhile; the fold brings `tenants` up to date, stopped and resumed, across a crash, a dump and restore, and
//! an uninstall; the quota holds at its limit with writers spilling.
//! Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install` into it.

mod common;

use common::{drifted_tenants, scalar_i64, Server};
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANT: &str = "'00000000-0000-4000-8000-0000000000b1'::uuid";

/// An application database with chom and one 'pro' tenant with `sites` live sites.
fn database_with_busy_tenant(server: &Server, sites: i64) -> Client {
    let mut db = server.chom_database("app");
    db.batch_execute("CREATE EXTENSION chom").unwrap();
    db.batch_execute(&format!(
        "INSERT INTO tenants (id, organization_id, name, slug, tier) VALUES ({TENANT}, md5('org1')::uuid, 'Busy', 'busy', 'pro'); \
         INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
              SELECT gen_random_uuid(), {TENANT}, md5('vps1')::uuid, 'b' || g || '.test', 10 FROM generate_series(1, {sites}) g; \
         SELECT chom_refresh_tenant({TENANT})"
    ))
    .unwrap();
    // stamped just now: chom_tenant_stats() answers from the row and the deltas, without the recount of a stale
    // tenant (which would replace the deltas at its commit)
    db
}

fn insert_site(session: &mut Client, domain: &str) -> Result<(), postgres::Error> {
    session.batch_execute(&format!(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {TENANT}, md5('vps2')::uuid, '{domain}', 5)"
    ))
}

/// Commits one site insert while another session holds the tenant's row (as a committing writer does until its
/// flush): the insert must commit without waiting for it, which a statement timeout turns into a failure
/// rather than a hang.
fn spill_one(server: &Server, domain: &str) {
    spill_from(server, &mut server.connect("app"), domain);
}

/// [`spill_one`] from the session `writer`, which later commits of a test reuse.
fn spill_from(server: &Server, writer: &mut Client, domain: &str) {
    let mut holder = server.connect("app");
    holder.batch_execute(&format!("BEGIN; SELECT FROM tenants WHERE id = {TENANT} FOR NO KEY UPDATE")).unwrap();
    writer.batch_execute("SET statement_timeout = '20s'").unwrap();
    let started = Instant::now();
    insert_site(writer, domain).unwrap_or_else(|e| panic!("the insert waited for the held row: {e}"));
    assert!(started.elapsed() < Duration::from_secs(10), "the insert waited {:?}", started.elapsed());
    holder.batch_execute("COMMIT").unwrap();
}

fn unfolded(db: &mut Client) -> i64 {
    scalar_i64(db, "SELECT count(*) FROM chom.tenant_deltas")
}

/// chom's reads of the tenant and a recount of its live sites, in one snapshot: (stats, quota, recount).
fn read_through_chom(db: &mut Client) -> (i64, i64, i64) {
    let mut tx = db.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).start().unwrap();
    let stats: i32 = tx.query_one(&format!("SELECT sites_count FROM chom_tenant_stats({TENANT})"), &[]).unwrap().get(0);
    let quota: i32 = tx.query_one(&format!("SELECT sites_count FROM chom_tenant_quota({TENANT})"), &[]).unwrap().get(0);
    let live: i64 = tx
        .query_one(&format!("SELECT count(*) FROM sites WHERE tenant_id = {TENANT} AND deleted_at IS NULL"), &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    (i64::from(stats), i64::from(quota), live)
}

fn assert_reads_exact(db: &mut Client, when: &str) {
    let (stats, quota, live) = read_through_chom(db);
    assert_eq!((stats, quota), (live, live), "chom_tenant_stats / chom_tenant_quota vs live sites {when}");
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM chom_cache_drift()"), 0, "chom_cache_drift() {when}");
}

/// How far `tenants.cached_sites_count`, read directly, is behind the live sites.
fn raw_lag(db: &mut Client) -> i64 {
    scalar_i64(
        db,
        &format!(
            "SELECT (SELECT count(*) FROM sites WHERE tenant_id = {TENANT} AND deleted_at IS NULL) - cached_sites_count \
               FROM tenants WHERE id = {TENANT}"
        ),
    )
}

fn wait_until_folded(db: &mut Client) {
    let started = Instant::now();
    while unfolded(db) > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the fold worker left {} deltas for 30s", unfolded(db));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_the_fold(server: &Server) {
    server.connect("app").batch_execute("ALTER DATABASE app SET chom.fold_in_background = off").unwrap();
}

#[test]
fn a_commit_that_finds_its_tenant_row_held_spills_and_the_worker_folds_it() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 20);
    spill_one(&server, "held.test");
    // the worker may fold at once: either the delta is still there or the row has it, never both, never neither
    assert_reads_exact(&mut db, "right after the spill");
    let lag_and_deltas = scalar_i64(
        &mut db,
        &format!(
            "SELECT (SELECT count(*) FROM sites WHERE tenant_id = {TENANT} AND deleted_at IS NULL) \
                    - (SELECT cached_sites_count FROM tenants WHERE id = {TENANT}) \
                    - (SELECT coalesce(sum(sites), 0) FROM chom.tenant_deltas)"
        ),
    );
    assert_eq!(lag_and_deltas, 0, "in one snapshot, the row's lag is the unfolded deltas");
    wait_until_folded(&mut db);
    assert_eq!(raw_lag(&mut db), 0);
    assert_eq!(drifted_tenants(&mut db), 0);
}

/// A session whose commit found its tenant's row held spills its next commits of that tenant without trying the
/// row (src/maintain/deltas.rs, HELD_RECENTLY: 500 ms), while a session that never found it held updates it.
#[test]
fn a_session_that_found_its_tenant_row_held_spills_its_next_commit_without_trying_the_row() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 5);
    stop_the_fold(&server);
    let mut writer = server.connect("app");
    spill_from(&server, &mut writer, "first.test");
    let spilled = Instant::now();
    assert_eq!(unfolded(&mut db), 1, "the first commit found the row held and spilled");
    insert_site(&mut writer, "second.test").unwrap();
    if spilled.elapsed() < Duration::from_millis(400) {
        assert_eq!(unfolded(&mut db), 2, "the row was free, yet the session that found it held a moment ago spills");
    } else {
        eprintln!("second commit {:?} after the first: past the window, not judged", spilled.elapsed());
    }
    let before = unfolded(&mut db);
    insert_site(&mut server.connect("app"), "third.test").unwrap();
    assert_eq!(unfolded(&mut db), before, "a session that never found the row held updates it in place");
    assert_reads_exact(&mut db, "with the deltas of both spills unfolded");
}

/// A transaction that deletes a tenant with its sites, while its session spills that tenant's commits, leaves no
/// delta behind: a change that removes sites is spilled only for a tenant that still has a row.
#[test]
fn deleting_a_tenant_with_its_sites_leaves_no_delta_for_it() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 5);
    stop_the_fold(&server);
    let mut writer = server.connect("app");
    spill_from(&server, &mut writer, "spilled.test");
    assert_eq!(unfolded(&mut db), 1, "the insert found the row held and spilled");
    writer
        .batch_execute(&format!(
            "BEGIN; DELETE FROM sites WHERE tenant_id = {TENANT}; DELETE FROM tenants WHERE id = {TENANT}; COMMIT"
        ))
        .unwrap();
    assert_eq!(unfolded(&mut db), 1, "no delta for the deleted tenant's removed sites");
    assert_eq!(scalar_i64(&mut db, "SELECT chom_fold_deltas()"), 1);
    assert_eq!(unfolded(&mut db), 0, "the fold drops the delta of a tenant without a row");
    assert_eq!(drifted_tenants(&mut db), 0);
}

/// chom.tenant_deltas is mostly empty, and the planner sizes a table by its pages on disk: once vacuumed empty,
/// the reads of one tenant's deltas would be planned as sequential scans, a plan each backend's prepared
/// statements keep while a burst of spills fills pages (the bench found every commit of a busy tenant with the
/// quota on scanning them).
#[test]
fn the_reads_of_a_tenants_deltas_scan_their_index_even_after_vacuum_emptied_the_table() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 5);
    db.batch_execute("VACUUM chom.tenant_deltas").unwrap();
    let mut tx = db.transaction().unwrap();
    for _ in 0..6 {
        tx.batch_execute(&format!("SELECT chom_tenant_stats({TENANT}), chom_tenant_quota({TENANT})")).unwrap();
    }
    // a bitmap scan counts as a scan of the index too (and, before Postgres 16, of the table)
    let index: i64 =
        tx.query_one("SELECT pg_stat_get_xact_numscans('chom.tenant_deltas_tenant'::regclass)", &[]).unwrap().get(0);
    assert!(index >= 12, "each read scans tenant_deltas_tenant ({index} scans)");
}

/// The fold worker waits for a held tenant row only briefly (its lock_timeout, far below deadlock_timeout) and
/// for chom's tables not at all. A DBA's transaction that folds (holding the busy tenant's row), then uninstalls
/// and drops the extension (locking the tables), would otherwise be in a cycle with a worker waiting for that
/// row, and the deadlock detector aborts whichever transaction waits last: the DBA's. Meanwhile the worker folds
/// the tenants whose rows are free.
#[test]
fn the_fold_worker_waits_briefly_for_a_row_so_a_fold_then_an_uninstall_in_one_transaction_cannot_deadlock_with_it() {
    const OTHER: &str = "'00000000-0000-4000-8000-0000000000b2'::uuid";
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 5);
    db.batch_execute(&format!(
        "INSERT INTO tenants (id, organization_id, name, slug, tier) VALUES ({OTHER}, md5('org1')::uuid, 'Other', 'other', 'pro')"
    ))
    .unwrap();
    stop_the_fold(&server);
    spill_one(&server, "before.test");
    let mut dba = server.connect("app");
    dba.batch_execute("BEGIN; SELECT chom_fold_deltas()").unwrap();
    db.batch_execute("ALTER DATABASE app RESET chom.fold_in_background").unwrap();
    // the other tenant's commit spills and starts the worker; the busy tenant's row is the DBA's now
    let mut holder = server.connect("app");
    holder.batch_execute(&format!("BEGIN; SELECT FROM tenants WHERE id = {OTHER} FOR NO KEY UPDATE")).unwrap();
    server
        .connect("app")
        .batch_execute(&format!(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {OTHER}, md5('vps2')::uuid, 'other.test', 5)"
        ))
        .unwrap();
    holder.batch_execute("COMMIT").unwrap();
    insert_site(&mut server.connect("app"), "during.test").unwrap();
    let started = Instant::now();
    let other_unfolded = format!("SELECT count(*) FROM chom.tenant_deltas WHERE tenant_id = {OTHER}");
    while scalar_i64(&mut db, &other_unfolded) > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the worker stopped at the busy tenant's held row");
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'chom fold' AND wait_event_type = 'Lock'";
    let mut stops_waiting = |when: &str| {
        let samples: Vec<i64> = (0..40)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(25));
                scalar_i64(&mut db, waiting)
            })
            .collect();
        assert!(samples.contains(&0), "the worker stays in a lock wait {when}");
    };
    stops_waiting("for the row the DBA holds");
    dba.batch_execute("SELECT * FROM chom_uninstall()").unwrap_or_else(|e| panic!("the uninstall: {e:?}"));
    // the worker's rounds meet the uninstall's table locks meanwhile
    stops_waiting("for the uninstall's locks");
    dba.batch_execute("DROP EXTENSION chom; COMMIT").unwrap_or_else(|e| panic!("DROP EXTENSION: {e:?}"));
    db.batch_execute("CREATE EXTENSION chom").unwrap();
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn concurrent_durable_writers_of_one_tenant_keep_every_read_through_chom_exact() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 100);
    let writers = 8;
    let per_writer = 150;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut session = server.connect("app");
        let done = done.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) {
                assert_reads_exact(&mut session, &format!("during the writes (read {reads})"));
                reads += 1;
            }
            reads
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let mut session = server.connect("app");
            std::thread::spawn(move || {
                session.batch_execute("SET synchronous_commit = on").unwrap();
                let mut deleted = 0;
                for i in 0..per_writer {
                    insert_site(&mut session, &format!("w{w}-{i}.test")).unwrap();
                    if i % 5 == 4 {
                        // a soft delete and a storage change of one of its own sites: both spill too
                        session
                            .batch_execute(&format!(
                                "UPDATE sites SET deleted_at = now() WHERE domain = 'w{w}-{}.test'; \
                                 UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE domain = 'w{w}-{i}.test'",
                                i - 2
                            ))
                            .unwrap();
                        deleted += 1;
                    }
                }
                deleted
            })
        })
        .collect();
    let deleted: i64 = handles.into_iter().map(|h| h.join().expect("writer")).sum();
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("reader");
    let (stats, _, live) = read_through_chom(&mut db);
    assert_eq!(live, 100 + writers * per_writer - deleted);
    assert_eq!(stats, live);
    wait_until_folded(&mut db);
    assert_eq!(drifted_tenants(&mut db), 0, "tenants read directly, once folded");
    let spilled =
        scalar_i64(&mut db, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'chom.tenant_deltas'::regclass");
    println!("{reads} exact reads during the writes; {spilled} commits spilled (as far as the statistics know)");
}

#[test]
fn the_quota_holds_at_its_limit_with_writers_spilling() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 10);
    // far from the limit at first (spills allowed), then near it (the locked, exact path)
    db.batch_execute(
        "UPDATE tier_limits SET max_sites = 400 WHERE tier = 'pro'; ALTER DATABASE app SET chom.site_quota = on",
    )
    .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let mut session = server.connect("app");
            std::thread::spawn(move || {
                let mut committed = 0;
                for i in 0.. {
                    match insert_site(&mut session, &format!("q{w}-{i}.test")) {
                        Ok(()) => committed += 1,
                        Err(e) if e.code().map(|c| c.code()) == Some("23514") => return committed,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                committed
            })
        })
        .collect();
    let committed: i64 = handles.into_iter().map(|h| h.join().expect("writer")).sum();
    let (stats, _, live) = read_through_chom(&mut db);
    assert_eq!(live, 400, "the tenant ends exactly at its limit");
    assert_eq!((committed, stats), (390, 400));
    assert_eq!(scalar_i64(&mut db, &format!("SELECT sites_left::bigint FROM chom_tenant_quota({TENANT})")), 0);
    assert!(insert_site(&mut server.connect("app"), "one-more.test").is_err());
    wait_until_folded(&mut db);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn with_the_fold_stopped_reads_stay_exact_and_it_resumes() {
    let server = Server::start();
    let mut db = database_with_busy_tenant(&server, 5);
    stop_the_fold(&server);
    for n in 0..3 {
        spill_one(&server, &format!("stopped{n}.test"));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(unfolded(&mut db), 3, "no worker folds while chom.fold_in_background is off");
    assert_eq!(raw_lag(&mut db), 3, "tenants read directly is behind by the unfolded deltas");
    assert_reads_exact(&mut db, "with the fold stopped");
    assert_eq!(scalar_i64(&mut db, "SELECT unfolded_deltas FROM chom_metrics()"), 3);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_metrics() WHERE oldest_unfolded_delta_at <= now()"), 1);
    // resumed: the next spill starts the worker, which folds all of them
    db.batch_execute("ALTER DATABASE app RESET chom.fold_in_background").unwrap();
    spill_one(&server, "resumed.test");
    wait_until_folded(&mut server.connect("app"));
    assert_eq!(raw_lag(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT unfolded_deltas FROM chom_metrics()"), 0);
    assert_eq!(drifted_tenants(&mut db), 0);
}

#[test]
fn unfolded_deltas_survive_a_crash_a_dump_and_restore_and_an_uninstall() {
    let server = Server::start();
    let db = database_with_busy_tenant(&server, 5);
    stop_the_fold(&server);
    for n in 0..2 {
        spill_one(&server, &format!("kept{n}.test"));
    }
    server.crash_and_restart();
    let mut db2 = server.connect("app");
    assert_eq!(unfolded(&mut db2), 2, "the deltas are WAL-logged rows");
    assert_reads_exact(&mut db2, "after crash recovery");
    drop(db);
    // a dump taken with deltas unfolded restores exact
    let dump = server.path("app.dump");
    server.tool("pg_dump", &["-Fc", "-d", "app", "-f", dump.to_str().unwrap()]);
    server.create_database("restored");
    server.tool("pg_restore", &["--exit-on-error", "-d", "restored", dump.to_str().unwrap()]);
    let mut restored = server.connect("restored");
    assert_eq!(unfolded(&mut restored), 2);
    assert_reads_exact(&mut restored, "in the restored database");
    assert_eq!(scalar_i64(&mut restored, "SELECT chom_fold_deltas()"), 1);
    assert_eq!(drifted_tenants(&mut restored), 0);
    // uninstall folds them before it removes anything
    let folded = scalar_i64(
        &mut db2,
        "SELECT count(*) FROM chom_uninstall() WHERE name = 'chom.tenant_deltas' AND action = 'folded'",
    );
    assert_eq!(folded, 1);
    assert_eq!(unfolded(&mut db2), 0);
    db2.batch_execute("SELECT * FROM chom_install()").unwrap();
    assert_eq!(drifted_tenants(&mut db2), 0);
}

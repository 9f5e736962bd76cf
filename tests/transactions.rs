//! Multi-statement transactions over real connections: chom applies each transaction's net change once, at
//! commit, in one lock order, so it never adds a deadlock; its reads see the transaction's own writes; a
//! failure at commit rolls the whole transaction back; two-phase commit is exact.
//! Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install` into it.

mod common;

use common::{drifted_tenants, drifted_vps, pg_config_path, scalar_i64, Server};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn installed_app(server: &Server) -> Client {
    let mut db = server.chom_database("app");
    db.batch_execute("CREATE EXTENSION chom").unwrap();
    db
}

fn sqlstate(error: &postgres::Error) -> String {
    error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

fn cached_sites(db: &mut Client, tenant: u32) -> i64 {
    scalar_i64(db, &format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = md5('tenant{tenant}')::uuid"))
}

fn assert_exact(db: &mut Client, when: &str) {
    assert_eq!(drifted_tenants(db), 0, "tenant drift {when}");
    assert_eq!(drifted_vps(db), 0, "VPS drift {when}");
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM chom_cache_drift()"), 0, "chom_cache_drift() {when}");
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM chom_vps_drift()"), 0, "chom_vps_drift() {when}");
}

/// The master seed: CHOM_SEED replays a run; otherwise a fresh one, printed.
fn seed() -> u64 {
    let seed = std::env::var("CHOM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("seed = {seed} (replay with CHOM_SEED={seed})");
    seed
}

/// One client's random transaction. Each client updates and deletes only the sites it created (domains
/// `w<client>-...`) and the attributes of its own VPS, so the application's own row locks never conflict
/// between clients: any deadlock would be chom's. Tenants and VPSes are shared, in random order.
fn random_transaction(rng: &mut StdRng, client: usize) -> Vec<String> {
    let tenant = |rng: &mut StdRng| format!("md5('tenant{}')::uuid", 1 + rng.gen_range(0..12));
    let vps = |rng: &mut StdRng| {
        if rng.gen_bool(0.1) {
            "NULL".to_string()
        } else {
            format!("md5('vps{}')::uuid", 1 + rng.gen_range(0..30))
        }
    };
    let mine = format!("domain LIKE 'w{client}-%'");
    let mut statements = vec!["BEGIN".to_string()];
    let mut savepoints = 0;
    for _ in 0..rng.gen_range(1..7) {
        let statement = match rng.gen_range(0..12) {
            0 | 1 => format!(
                "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), {}, {}, 'w{client}-' || gen_random_uuid(), {})",
                tenant(rng), vps(rng), rng.gen_range(0..10_000)
            ),
            2 => format!(
                "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at) SELECT gen_random_uuid(), {}, {}, 'w{client}-' || gen_random_uuid(), g, CASE WHEN g % 3 = 0 THEN now() END FROM generate_series(1, {}) g",
                tenant(rng), vps(rng), rng.gen_range(1..20)
            ),
            3 => format!("UPDATE sites SET storage_used_mb = storage_used_mb + {} WHERE tenant_id = {} AND {mine}", rng.gen_range(-50..500), tenant(rng)),
            4 => format!("UPDATE sites SET deleted_at = now() WHERE id IN (SELECT id FROM sites WHERE tenant_id = {} AND {mine} AND deleted_at IS NULL LIMIT 2)", tenant(rng)),
            5 => format!("UPDATE sites SET deleted_at = NULL WHERE id IN (SELECT id FROM sites WHERE tenant_id = {} AND {mine} AND deleted_at IS NOT NULL LIMIT 2)", tenant(rng)),
            6 => format!("UPDATE sites SET tenant_id = {}, vps_id = {} WHERE id IN (SELECT id FROM sites WHERE tenant_id = {} AND {mine} LIMIT 3)", tenant(rng), vps(rng), tenant(rng)),
            7 => format!("DELETE FROM sites WHERE id IN (SELECT id FROM sites WHERE tenant_id = {} AND {mine} LIMIT 2)", tenant(rng)),
            8 => format!(
                "INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), {}, chom_pick_vps(), 'w{client}-' || gen_random_uuid()",
                tenant(rng)
            ),
            9 => format!(
                "UPDATE vps_servers SET health_status = (ARRAY['healthy', 'unknown', 'degraded'])[1 + {}] WHERE id = md5('vps{}')::uuid",
                rng.gen_range(0..3),
                client + 1
            ),
            10 if savepoints < 3 => {
                savepoints += 1;
                format!("SAVEPOINT s{savepoints}")
            }
            _ if savepoints > 0 => {
                let statement = if rng.gen_bool(0.5) { format!("ROLLBACK TO SAVEPOINT s{savepoints}") } else { format!("RELEASE SAVEPOINT s{savepoints}") };
                savepoints -= 1;
                statement
            }
            _ => format!("SELECT * FROM chom_tenant_stats({})", tenant(rng)),
        };
        statements.push(statement);
    }
    statements.push(if rng.gen_bool(0.1) { "ROLLBACK" } else { "COMMIT" }.to_string());
    statements
}

#[test]
fn random_multi_statement_transactions_from_several_clients_never_deadlock_or_drift() {
    let seed = seed();
    let server = Server::start();
    let mut db = installed_app(&server);
    let clients = 4;
    let transactions: usize = std::env::var("CHOM_TRANSACTIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(250);
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let mut session = server.connect("app");
            std::thread::spawn(move || {
                session.batch_execute("SET deadlock_timeout = '50ms'").unwrap();
                let mut rng = StdRng::seed_from_u64(seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let (mut deadlocks, mut committed) = (0, 0);
                for n in 0..transactions {
                    let statements = random_transaction(&mut rng, client);
                    for statement in &statements {
                        if let Err(e) = session.batch_execute(statement) {
                            let code = sqlstate(&e);
                            if code == "40P01" {
                                deadlocks += 1;
                            }
                            // a random move into a tenant that has the domain already is the application's problem
                            assert!(
                                matches!(code.as_str(), "40P01" | "23505"),
                                "client {client}, transaction {n}, {statement}: {e}"
                            );
                            session.batch_execute("ROLLBACK").unwrap();
                            break;
                        }
                        if statement == "COMMIT" {
                            committed += 1;
                        }
                    }
                }
                (deadlocks, committed)
            })
        })
        .collect();
    let results: Vec<(i32, i32)> = workers.into_iter().map(|w| w.join().expect("client thread")).collect();
    let deadlocks: i32 = results.iter().map(|r| r.0).sum();
    let committed: i32 = results.iter().map(|r| r.1).sum();
    println!("{committed} transactions committed, {deadlocks} deadlocks");
    assert_eq!(deadlocks, 0, "deadlocks (seed {seed})");
    assert!(committed > clients as i32 * transactions as i32 / 2, "only {committed} committed (seed {seed})");
    assert_exact(&mut db, &format!("after the clients (seed {seed})"));
}

#[test]
fn writes_of_two_tenants_in_opposite_orders_both_commit() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let (mut s1, mut s2) = (server.connect("app"), server.connect("app"));
    let insert = |client: &mut Client, tenant: u32, name: &str| {
        client
            .batch_execute(&format!("INSERT INTO sites (id, tenant_id, vps_id, domain) VALUES (gen_random_uuid(), md5('tenant{tenant}')::uuid, md5('vps1')::uuid, '{name}')"))
            .unwrap();
    };
    let (a_before, b_before) = (cached_sites(&mut db, 1), cached_sites(&mut db, 2));
    s1.batch_execute("BEGIN").unwrap();
    s2.batch_execute("BEGIN").unwrap();
    insert(&mut s1, 1, "s1-a.test");
    insert(&mut s2, 2, "s2-b.test");
    insert(&mut s1, 2, "s1-b.test");
    insert(&mut s2, 1, "s2-a.test");
    // each sees its own writes through chom, nobody else's; the columns have not changed yet
    assert_eq!(
        scalar_i64(&mut s1, "SELECT sites_count::bigint FROM chom_tenant_stats(md5('tenant1')::uuid)"),
        a_before + 1
    );
    assert_eq!(
        scalar_i64(&mut s2, "SELECT sites_count::bigint FROM chom_tenant_stats(md5('tenant1')::uuid)"),
        a_before + 1
    );
    assert_eq!(scalar_i64(&mut s1, "SELECT count(*) FROM chom_cache_drift()"), 0);
    assert_eq!(cached_sites(&mut db, 1), a_before);
    s1.batch_execute("COMMIT").unwrap();
    s2.batch_execute("COMMIT").unwrap();
    assert_eq!(cached_sites(&mut db, 1), a_before + 2);
    assert_eq!(cached_sites(&mut db, 2), b_before + 2);
    assert_exact(&mut db, "after both commits");
}

#[test]
fn two_phase_commit_applies_at_prepare_and_shows_at_commit_prepared() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let start = cached_sites(&mut db, 3);
    let mut writer = server.connect("app");
    for (gid, outcome) in [("chom_a", "COMMIT PREPARED"), ("chom_b", "ROLLBACK PREPARED")] {
        let before = cached_sites(&mut db, 3);
        writer
            .batch_execute(&format!(
                "BEGIN; INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, '{gid}' || g FROM generate_series(1, 5) g; \
                 PREPARE TRANSACTION '{gid}'"
            ))
            .unwrap();
        assert_eq!(cached_sites(&mut db, 3), before, "{gid}: nothing visible while prepared");
        db.batch_execute(&format!("{outcome} '{gid}'")).unwrap();
        assert_exact(&mut db, &format!("after {outcome}"));
    }
    assert_eq!(cached_sites(&mut db, 3), start + 5);
}

#[test]
fn a_failure_at_commit_rolls_the_whole_transaction_back() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let sites_before = scalar_i64(&mut db, "SELECT count(*) FROM sites");
    // another session updates tenant 4's row and keeps it: with the busy-tenant spill off (on, the commit would
    // spill its change instead of waiting: tests/busy_tenant.rs), the commit cannot get its lock within lock_timeout
    let mut holder = server.connect("app");
    holder
        .batch_execute("BEGIN; UPDATE tenants SET name = name || ' (renamed)' WHERE id = md5('tenant4')::uuid")
        .unwrap();
    let mut writer = server.connect("app");
    writer.batch_execute("SET chom.busy_tenant_spill = off; SET lock_timeout = '200ms'; BEGIN").unwrap();
    writer
        .batch_execute("INSERT INTO sites (id, tenant_id, vps_id, domain) VALUES (gen_random_uuid(), md5('tenant4')::uuid, md5('vps1')::uuid, 'late.test')")
        .expect("no tenant lock is taken before commit");
    let error = writer.batch_execute("COMMIT").expect_err("the commit cannot lock tenant 4");
    assert_eq!(sqlstate(&error), "55P03", "{error}");
    let detail = error.as_db_error().and_then(|e| e.detail()).unwrap_or_default().to_string();
    assert!(detail.contains("the whole transaction was rolled back"), "detail: {detail}");
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM sites"), sites_before, "the insert rolled back with it");
    assert_exact(&mut db, "after the failed commit");
    // a change a column cannot hold fails the commit as well, with the SQLSTATE of the overflow
    db.batch_execute(
        "SET session_replication_role = replica; UPDATE tenants SET cached_sites_count = 2147483647 WHERE id = md5('tenant5')::uuid; RESET session_replication_role",
    )
    .unwrap();
    let error = writer
        .batch_execute("INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), md5('tenant5')::uuid, 'overflow.test')")
        .expect_err("the count cannot pass 2147483647");
    assert_eq!(sqlstate(&error), "22003", "{error}");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM sites"), sites_before);
}

#[test]
fn a_transaction_whose_net_change_is_zero_writes_no_tenant_row() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let version = |db: &mut Client| -> String {
        db.query_one("SELECT xmin::text || ctid::text FROM tenants WHERE id = md5('tenant6')::uuid", &[])
            .unwrap()
            .get(0)
    };
    let before = version(&mut db);
    db.batch_execute(
        "BEGIN; INSERT INTO sites (id, tenant_id, domain) VALUES ('00000000-0000-4000-8000-00000000abcd', md5('tenant6')::uuid, 'gone.test'); \
         DELETE FROM sites WHERE id = '00000000-0000-4000-8000-00000000abcd'; COMMIT",
    )
    .unwrap();
    assert_eq!(version(&mut db), before, "the tenant row was not rewritten");
    // twenty single-row updates of one tenant's sites in one transaction: one tenant update, at commit
    let updates =
        |db: &mut Client| scalar_i64(db, "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'tenants'");
    db.batch_execute("BEGIN").unwrap();
    let updates_at_begin = updates(&mut db);
    for _ in 0..20 {
        db.batch_execute("UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE id = (SELECT id FROM sites WHERE tenant_id = md5('tenant6')::uuid AND deleted_at IS NULL ORDER BY id LIMIT 1)").unwrap();
    }
    let updates_before_commit = updates(&mut db) - updates_at_begin;
    db.batch_execute("COMMIT").unwrap();
    assert_eq!(updates_before_commit, 0, "no tenant row was written before commit");
    assert_exact(&mut db, "after the loop");
}

/// A session's triggers keep what they found on their first firing (chom's schema, CHOM's schema, the columns'
/// positions and types) until an invalidation says it changed: after another session renames the schema of
/// CHOM's tables, or a column chom reads, the same session's next writes count under the new definition.
#[test]
fn a_session_counts_right_after_another_renames_the_schema_or_a_column() {
    let server = Server::start();
    let mut db = installed_app(&server);
    let mut other = server.connect("app");
    let insert = |db: &mut Client, domain: &str, storage: i64| {
        db.batch_execute(&format!(
            "INSERT INTO sites (id, tenant_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant7')::uuid, '{domain}', {storage})"
        ))
        .unwrap()
    };
    insert(&mut db, "first.test", 1);
    other.batch_execute("ALTER SCHEMA public RENAME TO app_renamed").unwrap();
    db.batch_execute("SET search_path = app_renamed").unwrap();
    insert(&mut db, "renamed.test", 2);
    other.batch_execute("ALTER SCHEMA app_renamed RENAME TO public").unwrap();
    db.batch_execute("SET search_path = public").unwrap();
    assert_exact(&mut db, "after a write under the renamed schema");
    insert(&mut db, "before-rename.test", 3);
    other.batch_execute("ALTER TABLE sites RENAME COLUMN storage_used_mb TO storage_mb").unwrap();
    db.batch_execute("UPDATE sites SET storage_mb = storage_mb + 40 WHERE domain = 'before-rename.test'").unwrap();
    other.batch_execute("ALTER TABLE sites RENAME COLUMN storage_mb TO storage_used_mb").unwrap();
    assert_exact(&mut db, "after a write of a renamed column");
}

#[test]
fn a_stale_stats_read_stores_its_recount_at_commit() {
    let server = Server::start();
    let mut db = installed_app(&server);
    db.batch_execute(
        "SET session_replication_role = replica; \
         UPDATE tenants SET cached_sites_count = 999, cached_at = localtimestamp(0) - interval '1 hour' WHERE id = md5('tenant7')::uuid; \
         RESET session_replication_role",
    )
    .unwrap();
    let live =
        scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE tenant_id = md5('tenant7')::uuid AND deleted_at IS NULL");
    assert_eq!(scalar_i64(&mut db, "SELECT sites_count::bigint FROM chom_tenant_stats(md5('tenant7')::uuid)"), live);
    assert_eq!(cached_sites(&mut db, 7), live, "the autocommit read stored its recount");
    assert_eq!(
        scalar_i64(&mut db, "SELECT count(*) FROM tenants WHERE id = md5('tenant7')::uuid AND cached_at > localtimestamp(0) - interval '1 minute'"),
        1
    );
    assert_exact(&mut db, "after the stale read");
}

/// The next release, made for a test: this version's library copied under the next version's name (a library
/// of its own, with its own memory and transaction callbacks, as a real next release's would be) and an update
/// script that re-points every function of chom's at it. Removed again when dropped.
struct NextRelease {
    version: String,
    files: Vec<PathBuf>,
}

impl NextRelease {
    fn install() -> NextRelease {
        let current = env!("CARGO_PKG_VERSION");
        let version = format!("{current}-next{}", std::process::id());
        let library = pg_config_path("--pkglibdir").join(format!("chom-{version}.so"));
        let script = pg_config_path("--sharedir").join(format!("extension/chom--{current}--{version}.sql"));
        let next = NextRelease { version: version.clone(), files: vec![library.clone(), script.clone()] };
        std::fs::copy(pg_config_path("--pkglibdir").join(format!("chom-{current}.so")), &library)
            .expect("this version's library is installed (scripts/test.sh: cargo pgrx install)");
        std::fs::write(
            &script,
            format!(
                "DO $next$\n\
                 DECLARE f pg_catalog.oid;\n\
                 BEGIN\n\
                     FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.probin = 'chom-{current}' LOOP\n\
                         EXECUTE pg_catalog.replace(pg_catalog.pg_get_functiondef(f), \n\
                                                    $$'chom-{current}'$$, $$'chom-{version}'$$);\n\
                     END LOOP;\n\
                 END\n\
                 $next$;\n"
            ),
        )
        .expect("writing the next release's update script");
        next
    }
}

impl Drop for NextRelease {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A transaction open while another session runs ALTER EXTENSION chom UPDATE to the next release: what it wrote
/// before the update (through this version's library) and after it (through the next one's) is applied exactly
/// once at its COMMIT, each part by the library that recorded it: no hand-over by name can lose it.
#[test]
fn a_transaction_open_across_an_update_to_the_next_release_is_applied_once() {
    let next = NextRelease::install();
    let server = Server::start();
    let mut db = installed_app(&server);
    let before = cached_sites(&mut db, 3);
    let mut open = server.connect("app");
    open.batch_execute(
        "BEGIN; \
         INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
              VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, 'across-before.test', 5); \
         UPDATE sites SET tenant_id = md5('tenant4')::uuid WHERE domain = (SELECT min(domain) FROM sites \
                WHERE tenant_id = md5('tenant3')::uuid AND deleted_at IS NULL AND domain <> 'across-before.test')",
    )
    .unwrap();
    db.batch_execute(&format!("ALTER EXTENSION chom UPDATE TO '{}'", next.version)).unwrap();
    open.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
              VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps3')::uuid, 'across-after.test', 6); \
         COMMIT",
    )
    .expect("a transaction open across the update commits");
    let pid = scalar_i64(&mut open, "SELECT pg_backend_pid()::bigint");
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        for library in [format!("chom-{}.so", env!("CARGO_PKG_VERSION")), format!("chom-{}.so", next.version)] {
            assert!(maps.contains(&library), "the session open across the update has loaded {library}");
        }
    }
    let libraries = scalar_i64(
        &mut open,
        "SELECT count(DISTINCT probin) FROM pg_proc WHERE probin LIKE 'chom-%' AND pronamespace = \
             (SELECT extnamespace FROM pg_extension WHERE extname = 'chom')",
    );
    assert_eq!(libraries, 1, "every function of chom's names the next release's library");
    assert_eq!(cached_sites(&mut db, 3), before + 1, "tenant 3: two sites in, one moved out, once each");
    assert_exact(&mut db, "after a transaction open across an update to the next release");
    // and the next release's library applies a new session's writes alone
    let mut after = server.connect("app");
    after
        .batch_execute(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
                  VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps3')::uuid, 'next-release.test', 7)",
        )
        .unwrap();
    assert_eq!(cached_sites(&mut db, 3), before + 2);
    assert_exact(&mut db, "after a write through the next release");
}

/// A transaction that changes more tenants than a fold keeps per tenant (262,144, src/pending.rs) stops
/// counting per tenant and recounts every tenant at commit: exact after it, its own reads exact before it, and
/// the site quota still refuses a tenant that the transaction took over its limit.
#[test]
fn a_transaction_changing_more_tenants_than_a_fold_keeps_recounts_every_tenant_at_commit() {
    const BULK: u32 = 270_000;
    let server = Server::start();
    let mut db = installed_app(&server);
    db.batch_execute(&format!(
        "INSERT INTO tenants (id, organization_id, name, slug, tier, status) \
         SELECT md5('bulk' || i)::uuid, md5('org1')::uuid, 'Bulk ' || i, 'bulk-' || i, 'enterprise', 'active' \
           FROM generate_series(1, {BULK}) i"
    ))
    .unwrap();
    let insert_one_site_each = format!(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
         SELECT gen_random_uuid(), md5('bulk' || i)::uuid, md5('vps' || (1 + i % 30))::uuid, 'bulk' || i || '.test', i % 7 \
           FROM generate_series(1, {BULK}) i"
    );
    let tenant3_before = cached_sites(&mut db, 3);
    // a tenant no transaction below touches: only a recount of every tenant stamps its cached_at
    db.batch_execute("UPDATE tenants SET cached_at = '2000-01-01' WHERE id = md5('tenant100')::uuid").unwrap();
    let untouched_recounted = |db: &mut Client| {
        scalar_i64(db, "SELECT count(*) FROM tenants WHERE id = md5('tenant100')::uuid AND cached_at > '2000-01-01'")
    };

    // the quota on: the recount at commit finds tenant 3 (starter, over its limit of 5) raised, and refuses
    db.batch_execute("SET chom.enforce_site_quota = on").unwrap();
    // the bulk, and one more site for tenant 3, in one transaction left open
    let begin_bulk_and_one_for_tenant3 = |db: &mut Client, domain: &str| {
        db.batch_execute(&format!(
            "BEGIN; {insert_one_site_each}; \
             INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
             VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, '{domain}', 1)"
        ))
        .unwrap()
    };
    begin_bulk_and_one_for_tenant3(&mut db, "bulk-quota.test");
    let refused = db.batch_execute("COMMIT").expect_err("tenant 3 is over its starter limit");
    assert_eq!(sqlstate(&refused), "23514", "{refused}");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM sites WHERE domain LIKE 'bulk%'"), 0);
    assert_eq!(untouched_recounted(&mut db), 0, "the refused commit recounted nothing that stayed");
    db.batch_execute("RESET chom.enforce_site_quota").unwrap();

    begin_bulk_and_one_for_tenant3(&mut db, "bulk-3.test");
    // the transaction's own reads: each tenant's value is a recount now
    let stats = scalar_i64(&mut db, "SELECT sites_count::bigint FROM chom_tenant_stats(md5('bulk17')::uuid)");
    assert_eq!(stats, 1, "chom_tenant_stats() of a tenant the transaction gave its first site");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_cache_drift()"), 0, "no drift seen inside it");
    db.batch_execute("COMMIT").unwrap();
    assert_eq!(untouched_recounted(&mut db), 1, "the commit recounted every tenant, untouched ones too");
    assert_eq!(cached_sites(&mut db, 3), tenant3_before + 1);
    assert_eq!(
        scalar_i64(&mut db, "SELECT count(*) FROM tenants WHERE slug LIKE 'bulk-%' AND cached_sites_count <> 1"),
        0,
        "every bulk tenant counts its one site"
    );
    assert_exact(&mut db, "after a transaction that changed more tenants than a fold keeps");
}

//! The upgrade test, from a previous release (CHOM_UPGRADE_FROM, built from its commit and installed by
//! scripts/install-release.sh) to this version, as an operator lives it on a running server:
//!
//! 1. **before**: a database is created with the previous release and used; an "old" session uses it too and
//!    stays open (a pooled connection of the application);
//! 2. **install**: this version is installed over it (CHOM_UPGRADE_INSTALL, the command scripts/test.sh gives:
//!    `cargo pgrx install ...`, what a package upgrade does), while the server runs;
//! 3. **window**: before anyone runs ALTER EXTENSION chom UPDATE, new sessions and the old one write sites
//!    (insert, update, move, soft and hard delete, a transaction with a savepoint), the aggregates stay exact
//!    (the raw cached columns against a recount), chom_tenant_stats() and chom_pick_vps() answer correctly:
//!    the old objects keep their library (`$libdir/chom`), which installing this version leaves in place;
//!    with a writer's transaction open and lock_timeout set, the update does not queue behind it;
//! 4. **update**: ALTER EXTENSION chom UPDATE in the old session, which then has both libraries loaded (the
//!    previous release's and chom-<version>), and goes on writing and reading correctly, as does another
//!    pooled session that used the old library and only sees the update; the database's owner by then is an
//!    untrusted role whose objects in public (tests/fixtures/hostile_public.sql) outmatch the built-ins chom
//!    calls, and neither the update scripts nor chom's functions run any of them;
//! 5. **after**: new sessions work, and every extension object is exactly that of a fresh install.

mod common;

use common::{drifted_tenants, scalar_i64, Server, HOSTILE_PUBLIC};
use postgres::Client;
use std::collections::BTreeSet;

/// Every member of the extension, with the definition, privileges and settings of its functions, the columns,
/// indexes and constraints of its tables, and what chom put on CHOM's tables (triggers, tenants' storage).
fn extension_objects(db: &mut Client) -> Vec<String> {
    db.query(
        "WITH members AS (SELECT d.classid, d.objid, d.objsubid FROM pg_depend d \
              WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'chom') AND d.deptype = 'e') \
         SELECT pg_describe_object(m.classid, m.objid, m.objsubid) || coalesce(' ' || ( \
             SELECT pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, 'default') \
             FROM pg_proc p WHERE m.classid = 'pg_proc'::regclass AND p.oid = m.objid AND p.prokind <> 'a'), '') \
           FROM members m \
         UNION ALL \
         SELECT a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnum \
           FROM members m JOIN pg_attribute a ON a.attrelid = m.objid \
          WHERE m.classid = 'pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         UNION ALL \
         SELECT pg_get_indexdef(i.indexrelid) FROM members m JOIN pg_index i ON i.indrelid = m.objid \
          WHERE m.classid = 'pg_class'::regclass \
         UNION ALL \
         SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid) \
           FROM members m JOIN pg_constraint c ON c.conrelid = m.objid WHERE m.classid = 'pg_class'::regclass \
         UNION ALL \
         SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgname LIKE 'chom\\_%' \
         UNION ALL \
         SELECT 'tenants storage ' || coalesce(c.reloptions::text, 'default') FROM pg_class c WHERE c.relname = 'tenants' \
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// VPSes whose maintained live-site count differs from an independent recount, in chom's per-VPS table of
/// whichever version the database is at (chom.vps_load since 0.3.0, chom_vps_load before).
fn drifted_vps(db: &mut Client) -> i64 {
    let table: String = db
        .query_one("SELECT coalesce(to_regclass('chom.vps_load'), to_regclass('chom_vps_load'))::text", &[])
        .unwrap()
        .get(0);
    scalar_i64(
        db,
        &format!(
            "SELECT count(*) FROM vps_servers v LEFT JOIN {table} l ON l.vps_id = v.id \
             WHERE l.live_sites IS DISTINCT FROM \
                   (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL)"
        ),
    )
}

fn extension_version(db: &mut Client) -> String {
    db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'chom'", &[]).unwrap().get(0)
}

/// The chom libraries the session's backend has loaded (file names from /proc/<pid>/maps), None when that
/// file cannot be read (the test runs as neither root nor the server's user).
fn loaded_libraries(db: &mut Client) -> Option<BTreeSet<String>> {
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    Some(
        maps.lines()
            .filter_map(|line| line.rsplit('/').next())
            .filter(|file| file.starts_with("chom") && file.ends_with(".so"))
            .map(str::to_string)
            .collect(),
    )
}

fn assert_libraries(db: &mut Client, expected: &[&str], when: &str) {
    if let Some(loaded) = loaded_libraries(db) {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(loaded, expected, "chom libraries loaded by the session {when}");
    }
}

/// Writes through every path the triggers see, each statement in its own transaction (as the application's
/// autocommit writes), then a transaction of several statements with a savepoint rolled back; `tag` keeps the
/// domains of each call apart.
fn write_sites(db: &mut Client, tag: &str) {
    let statements = [
        format!(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES \
             (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, '{tag}-a.test', 11), \
             (gen_random_uuid(), md5('tenant5')::uuid, md5('vps3')::uuid, '{tag}-b.test', 12), \
             (gen_random_uuid(), md5('tenant5')::uuid, NULL, '{tag}-c.test', 13), \
             (gen_random_uuid(), md5('tenant6')::uuid, md5('vps2')::uuid, '{tag}-d.test', 14)"
        ),
        format!("UPDATE sites SET storage_used_mb = storage_used_mb + 100 WHERE domain = '{tag}-a.test'"),
        format!("UPDATE sites SET tenant_id = md5('tenant4')::uuid, vps_id = md5('vps5')::uuid WHERE domain = '{tag}-b.test'"),
        format!("UPDATE sites SET deleted_at = now() WHERE domain = '{tag}-c.test'"),
        format!("DELETE FROM sites WHERE domain = '{tag}-d.test'"),
    ];
    for statement in &statements {
        db.execute(statement.as_str(), &[]).unwrap_or_else(|e| panic!("{tag}: {statement}: {e:?}"));
    }
    db.batch_execute(&format!(
        "BEGIN; \
         INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
              VALUES (gen_random_uuid(), md5('tenant7')::uuid, md5('vps3')::uuid, '{tag}-e.test', 15); \
         SAVEPOINT s; \
         INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
              VALUES (gen_random_uuid(), md5('tenant7')::uuid, md5('vps2')::uuid, '{tag}-f.test', 16); \
         ROLLBACK TO SAVEPOINT s; \
         UPDATE sites SET storage_used_mb = 150, vps_id = md5('vps2')::uuid WHERE domain = '{tag}-e.test'; \
         COMMIT;"
    ))
    .unwrap_or_else(|e| panic!("{tag}: transaction with a savepoint: {e:?}"));
}

/// The aggregates are exact (raw cached columns and per-VPS counts against an independent recount), and
/// chom_tenant_stats() and chom_pick_vps() answer what a recount answers.
fn assert_exact_and_answering(db: &mut Client, eligible_health: &str, when: &str) {
    assert_eq!(drifted_tenants(db), 0, "tenants' cached aggregates exact {when}");
    assert_eq!(drifted_vps(db), 0, "per-VPS live sites exact {when}");
    for tenant in ["tenant3", "tenant4", "tenant5", "tenant7"] {
        let row = db
            .query_one(
                "SELECT s.sites_count::bigint, s.storage_mb::bigint, \
                        (SELECT count(*) FROM sites WHERE tenant_id = md5($1)::uuid AND deleted_at IS NULL), \
                        (SELECT coalesce(sum(storage_used_mb), 0)::bigint FROM sites \
                          WHERE tenant_id = md5($1)::uuid AND deleted_at IS NULL) \
                   FROM chom_tenant_stats(md5($1)::uuid) s",
                &[&tenant],
            )
            .unwrap_or_else(|e| panic!("chom_tenant_stats() {when}: {e:?}"));
        let (stats, recount): ((i64, i64), (i64, i64)) = ((row.get(0), row.get(1)), (row.get(2), row.get(3)));
        assert_eq!(stats, recount, "chom_tenant_stats('{tenant}') {when}");
    }
    let row = db
        .query_one(
            "SELECT chom_pick_vps()::text, \
                    (SELECT v.id::text FROM vps_servers v \
                      WHERE v.status = 'active' AND v.allocation_type = 'shared' \
                        AND v.health_status = ANY (string_to_array($1, ',')) \
                      ORDER BY (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL), v.id \
                      LIMIT 1)",
            &[&eligible_health],
        )
        .unwrap_or_else(|e| panic!("chom_pick_vps() {when}: {e:?}"));
    let (picked, least_loaded): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    assert!(picked.is_some(), "chom_pick_vps() finds a VPS {when}");
    assert_eq!(picked, least_loaded, "chom_pick_vps() answers the least-loaded eligible VPS {when}");
}

/// The database owner app_owner, whose objects in public (tests/fixtures/hostile_public.sql) make it a
/// superuser when a superuser runs them, is not one: nothing of theirs ran as a superuser.
fn assert_owner_not_superuser(db: &mut Client, when: &str) {
    let superuser: bool = db
        .query_one("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'app_owner'", &[])
        .unwrap()
        .get(0);
    // what ran, while the fixture's record of it is there
    let recorded: bool =
        db.query_one("SELECT pg_catalog.to_regclass('public.hostile_calls') IS NOT NULL", &[]).unwrap().get(0);
    let captured: Vec<String> = if recorded {
        db.query(
            "SELECT object || ' (as ' || called_by::text || ') in: ' || coalesce(query, '?') || E'\\n' \
                    || coalesce(context, '') FROM public.hostile_calls",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
    } else {
        vec![]
    };
    assert!(
        !superuser,
        "the database owner app_owner became a superuser {when}: a superuser ran its objects from public \
         (search_path hijacking, CVE-2018-1058 / CVE-2022-2625); captured by:\n{}",
        captured.join("\n")
    );
}

/// An INSERT of one site `{tag}.test` of tenant `tenant` on VPS `vps` (md5 keys of the fixture), after `prefix`.
fn insert_one_site(tag: &str, tenant: &str, vps: &str, prefix: &str) -> String {
    format!(
        "{prefix}INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
         VALUES (md5('{tag}')::uuid, md5('{tenant}')::uuid, md5('{vps}')::uuid, '{tag}.test', 7)"
    )
}

/// After a transaction open across an update committed: its sites are there, and the tenants' and VPSes'
/// aggregates count each of them exactly once (neither lost nor applied by two libraries).
fn assert_straddle_applied_once(db: &mut Client) {
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM sites WHERE domain LIKE 'straddle-%'"), 2);
    assert_eq!(drifted_tenants(db), 0, "tenants' aggregates after a transaction open across the update");
    assert_eq!(drifted_vps(db), 0, "VPS loads after a transaction open across the update");
}

/// Runs the command that installs this version (scripts/test.sh: cargo pgrx install into the server's build).
fn install_this_version() {
    let command = std::env::var("CHOM_UPGRADE_INSTALL")
        .expect("CHOM_UPGRADE_INSTALL is the command that installs this version (scripts/test.sh sets it)");
    let output = std::process::Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(
        output.status.success(),
        "{command} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Both releases' libraries in one backend, in every order a database not yet updated meets them: this
/// version's loaded first (`LOAD`, or `session_preload_libraries` as a pooler or a DBA sets it), then the old
/// one for the database's objects; and an update rolled back, after which the session goes on with the old
/// release's objects and both libraries. Each session writes through every path and stays exact: neither library
/// defines a setting the other one did (0.1.0 and 0.2.0 cannot tell), so nothing fails to load.
fn libraries_meet_in_one_session(server: &Server, previous: &str, old_library: &str, new_library: &str) {
    let both = [old_library, new_library];
    let mut loaded_first = server.connect("upgraded");
    loaded_first.batch_execute(&format!("LOAD 'chom-{}'", env!("CARGO_PKG_VERSION"))).unwrap();
    write_sites(&mut loaded_first, "new-loaded-first");
    assert_exact_and_answering(&mut loaded_first, "healthy,unknown", "with this version's library loaded first");
    assert_libraries(&mut loaded_first, &both, "that loaded this version's library, then the old one");

    let mut rolled_back = server.connect("upgraded");
    write_sites(&mut rolled_back, "before-rolled-back-update");
    rolled_back.batch_execute("BEGIN; ALTER EXTENSION chom UPDATE; ROLLBACK").unwrap();
    assert_eq!(extension_version(&mut rolled_back), previous);
    write_sites(&mut rolled_back, "after-rolled-back-update");
    assert_exact_and_answering(&mut rolled_back, "healthy,unknown", "after an update rolled back in the session");
    assert_libraries(&mut rolled_back, &both, "whose update was rolled back");

    let mut dba = server.connect("upgraded");
    dba.batch_execute(&format!(
        "ALTER DATABASE upgraded SET session_preload_libraries = 'chom-{}'",
        env!("CARGO_PKG_VERSION")
    ))
    .unwrap();
    let mut preloaded = server.connect("upgraded");
    write_sites(&mut preloaded, "new-preloaded");
    assert_exact_and_answering(&mut preloaded, "healthy,unknown", "with this version's library preloaded");
    assert_libraries(&mut preloaded, &both, "with this version's library in session_preload_libraries");
    dba.batch_execute("ALTER DATABASE upgraded RESET session_preload_libraries").unwrap();
}

#[test]
fn a_release_installed_over_the_previous_one_serves_both_until_alter_extension_update_matches_a_fresh_install() {
    let previous = std::env::var("CHOM_UPGRADE_FROM").expect("CHOM_UPGRADE_FROM names the release to upgrade from");
    let current = env!("CARGO_PKG_VERSION");
    // 0.1.0 and 0.2.0 share one library file, chom.so; each release since has its own
    let old_library = if ["0.1.0", "0.2.0"].contains(&previous.as_str()) {
        "chom.so".to_string()
    } else {
        format!("chom-{previous}.so")
    };
    let new_library = format!("chom-{current}.so");
    let server = Server::start();

    // 1. before: the previous release, created and used; an old session that stays open
    let mut db = server.chom_database("upgraded");
    db.batch_execute(&format!("CREATE EXTENSION chom VERSION '{previous}'")).unwrap();
    write_sites(&mut db, "before");
    assert_exact_and_answering(&mut db, "healthy,unknown", "with the previous release");
    drop(db);
    let mut old = server.connect("upgraded");
    // a setting the old library defines, set in the session: after the update this version's library reads it
    old.batch_execute("SET chom.eligible_health = 'degraded'").unwrap();
    write_sites(&mut old, "old-before");
    assert_exact_and_answering(&mut old, "degraded", "in the old session before the install");
    assert_libraries(&mut old, &[&old_library], "with the previous release");
    // another pooled connection of the application, which will only see the update that another session runs
    let mut pooled = server.connect("upgraded");
    write_sites(&mut pooled, "pooled-before");
    assert_exact_and_answering(&mut pooled, "healthy,unknown", "in a pooled session before the install");

    // 2. install this version while the server runs
    install_this_version();

    // 3. the window: the database is still at the previous version
    let mut new = server.connect("upgraded");
    assert_eq!(extension_version(&mut new), previous);
    write_sites(&mut new, "window-new");
    assert_exact_and_answering(&mut new, "healthy,unknown", "in a new session before ALTER EXTENSION UPDATE");
    assert_libraries(&mut new, &[&old_library], "before ALTER EXTENSION UPDATE (the old objects keep their library)");
    write_sites(&mut old, "window-old");
    assert_exact_and_answering(&mut old, "degraded", "in the old session before ALTER EXTENSION UPDATE");
    drop(new);
    libraries_meet_in_one_session(&server, &previous, &old_library, &new_library);

    // lock_timeout, with a writer's transaction open (its locks on sites, tenants and chom's per-VPS table
    // held): the update either needs none of those locks and does not wait, or gives up with 55P03 when
    // lock_timeout runs out, changing nothing, instead of queueing every writer behind it
    let mut writer = server.connect("upgraded");
    writer
        .batch_execute(
            "BEGIN; INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
             VALUES (gen_random_uuid(), md5('tenant8')::uuid, md5('vps3')::uuid, 'open-writer.test', 21)",
        )
        .unwrap();
    let mut dba = server.connect("upgraded");
    let started = std::time::Instant::now();
    let attempt = dba.batch_execute("BEGIN; SET LOCAL lock_timeout = '500ms'; ALTER EXTENSION chom UPDATE");
    let waited = started.elapsed();
    dba.batch_execute("ROLLBACK").unwrap();
    let update_waits_for_writers = match attempt {
        Ok(()) => {
            assert!(waited < std::time::Duration::from_millis(500), "the update waited {waited:?}");
            false
        }
        Err(error) => {
            assert_eq!(error.code(), Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE), "{error:?}");
            assert!(waited < std::time::Duration::from_secs(5), "the update gave up after {waited:?}");
            true
        }
    };
    assert_eq!(extension_version(&mut dba), previous);
    writer.batch_execute("COMMIT").unwrap();
    assert_eq!(drifted_tenants(&mut dba), 0);
    drop((writer, dba));

    // the database now belongs to an untrusted role (public with it, through pg_database_owner), which fills
    // public with objects that outmatch the built-ins chom calls; the superuser who created the extension runs
    // the update
    server
        .connect("upgraded")
        .batch_execute("CREATE ROLE app_owner LOGIN; ALTER DATABASE upgraded OWNER TO app_owner")
        .unwrap();
    let mut app_owner = server.connect_as("upgraded", "app_owner");
    app_owner.batch_execute(HOSTILE_PUBLIC).expect("tests/fixtures/hostile_public.sql as app_owner");

    // a transaction open across the update (where the update does not wait for it; from 0.1.0 and 0.2.0 it
    // does): what it wrote through the old library before the update and through this version's after it are
    // each applied once, by the library that recorded them, at its COMMIT
    let straddler = (!update_waits_for_writers).then(|| {
        let mut straddler = server.connect("upgraded");
        straddler.batch_execute(&insert_one_site("straddle-before", "tenant3", "vps2", "BEGIN; ")).unwrap();
        straddler
    });

    // 4. the update, in the session that has used the old library: both libraries in one backend
    old.batch_execute("ALTER EXTENSION chom UPDATE").unwrap();
    // (checked once app_owner's objects are gone: the checks' own varchar comparisons would call them)
    let straddler = straddler.map(|mut straddler| {
        straddler.batch_execute(&insert_one_site("straddle-after", "tenant3", "vps3", "")).unwrap();
        straddler.batch_execute("COMMIT").expect("a transaction open across the update commits");
        assert_libraries(&mut straddler, &[&old_library, &new_library], "open across the update");
        straddler
    });
    assert_eq!(extension_version(&mut old), current);
    assert_owner_not_superuser(&mut old, "by ALTER EXTENSION chom UPDATE");
    // chom's functions and triggers as a superuser calls them, with those objects still in public (typed
    // arguments only: the checks below compare CHOM's varchar columns with literals, which the objects would
    // capture themselves, so they run once the objects are gone)
    for call in [
        "SELECT * FROM chom_status()",
        "SELECT * FROM chom_index_usage()",
        "SELECT * FROM chom_index_ddl()",
        "SELECT * FROM chom_metrics()",
        "SELECT * FROM chom_cache_drift()",
        "SELECT * FROM chom_vps_drift()",
        "SELECT * FROM chom_vps_load()",
        "SELECT chom_pick_vps()",
        "SELECT * FROM chom_tenant_stats(md5('tenant3')::uuid)",
        "SELECT * FROM chom_tenant_quota(md5('tenant3')::uuid)",
        "SELECT chom_refresh_tenant(md5('tenant3')::uuid)",
        "SELECT * FROM chom_drift_probe()",
        "SELECT chom_repair_drift()",
        "SELECT chom_refresh_all()",
        "CALL chom_refresh_all_batched()",
        "SELECT * FROM chom_install()",
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
         VALUES (md5('hostile-window')::uuid, md5('tenant5')::uuid, md5('vps2')::uuid, 'hostile-window.test', 3)",
        "UPDATE sites SET storage_used_mb = 4, vps_id = md5('vps3')::uuid WHERE id = md5('hostile-window')::uuid",
        "DELETE FROM sites WHERE id = md5('hostile-window')::uuid",
        "UPDATE vps_servers SET updated_at = updated_at WHERE id = md5('vps1')::uuid",
    ] {
        old.batch_execute(call).unwrap_or_else(|e| panic!("{call}, with app_owner's objects in public: {e:?}"));
    }
    assert_owner_not_superuser(&mut old, "by chom's functions and triggers");
    app_owner.batch_execute("DROP OWNED BY app_owner").unwrap();
    drop(app_owner);
    if let Some(mut straddler) = straddler {
        assert_straddle_applied_once(&mut straddler);
    }
    write_sites(&mut old, "updated-old");
    assert_exact_and_answering(&mut old, "degraded", "in the old session after ALTER EXTENSION UPDATE");
    assert_libraries(&mut old, &[&old_library, &new_library], "that updated (the previous release's and this one's)");
    // the setting this version adds is defined by its library beside the old library's ones, and read
    old.batch_execute("SET chom.enforce_site_quota = on").unwrap();
    let refused = old
        .execute(
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) \
             VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, 'over-quota.test', 1)",
            &[],
        )
        .expect_err("tenant 3 (starter, 5 sites at most) is over its quota");
    assert_eq!(refused.code(), Some(&postgres::error::SqlState::CHECK_VIOLATION), "{refused:?}");
    old.batch_execute("RESET chom.enforce_site_quota").unwrap();
    write_sites(&mut old, "updated-old-again");
    assert_exact_and_answering(&mut old, "degraded", "in the old session after a refused write");
    drop(old);
    // the pooled session that has used the old library sees the update and goes on, with both libraries
    assert_eq!(extension_version(&mut pooled), current);
    write_sites(&mut pooled, "pooled-after");
    assert_exact_and_answering(&mut pooled, "healthy,unknown", "in a pooled session after another ran the update");
    assert_libraries(&mut pooled, &[&old_library, &new_library], "that saw the update");
    drop(pooled);

    // 5. after: new sessions, this version's library only, and the objects of a fresh install
    let mut db = server.connect("upgraded");
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_vps_drift()"), 0, "VPS attributes filled by the upgrade");
    assert_libraries(&mut db, &[&new_library], "after ALTER EXTENSION UPDATE");
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps4')::uuid, 'after-update.test', 90); \
         UPDATE sites SET tenant_id = md5('tenant4')::uuid WHERE domain = 'before-a.test'; \
         UPDATE vps_servers SET health_status = 'unhealthy' WHERE id = md5('vps4')::uuid;",
    )
    .unwrap();
    write_sites(&mut db, "after");
    assert_exact_and_answering(&mut db, "healthy,unknown", "after the update");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_vps_drift()"), 0, "the new vps_servers trigger works");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    assert!(scalar_i64(&mut db, "SELECT count(*) FROM chom_index_usage()") >= 21);

    // a setting given before the library is loaded (a placeholder, as from postgresql.conf or ALTER DATABASE)
    // is defined by it with that value
    db.batch_execute("ALTER DATABASE upgraded SET chom.eligible_health = 'degraded'").unwrap();
    let mut configured = server.connect("upgraded");
    assert_exact_and_answering(&mut configured, "degraded", "with chom.eligible_health set for the database");
    db.batch_execute("ALTER DATABASE upgraded RESET chom.eligible_health").unwrap();
    drop(configured);

    let mut fresh = server.chom_database("fresh");
    fresh.batch_execute("CREATE EXTENSION chom").unwrap();
    let (mut upgraded_objects, mut fresh_objects) = (extension_objects(&mut db), extension_objects(&mut fresh));
    if previous == "0.3.0" {
        // 0.3.0's library looks chom_apply_pending() up by name at commit: the update leaves it bound to that
        // library, as the bridge for transactions open across the update, where a fresh install has this
        // version's stub; what the bridge is, is checked instead of comparing it
        let bridge = db
            .query_one(
                "SELECT p.probin, p.prosecdef, p.proowner = c.relowner, p.proacl IS NOT NULL \
                   FROM pg_proc p, pg_class c WHERE p.proname = 'chom_apply_pending' AND c.relname = 'tenants'",
                &[],
            )
            .unwrap();
        let bridge: (String, bool, bool, bool) = (bridge.get(0), bridge.get(1), bridge.get(2), bridge.get(3));
        assert_eq!(
            bridge,
            ("chom-0.3.0".into(), true, true, true),
            "the bridge: 0.3.0's library, as the tables' owner"
        );
        for objects in [&mut upgraded_objects, &mut fresh_objects] {
            objects.retain(|object| !object.starts_with("function chom_apply_pending()"));
        }
    }
    let only_upgraded: Vec<&String> = upgraded_objects.iter().filter(|o| !fresh_objects.contains(o)).collect();
    let only_fresh: Vec<&String> = fresh_objects.iter().filter(|o| !upgraded_objects.contains(o)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and a fresh install disagree:\nonly after upgrade: {only_upgraded:#?}\nonly in fresh install: {only_fresh:#?}"
    );
    assert_owner_not_superuser(&mut db, "by the end of the test");
}

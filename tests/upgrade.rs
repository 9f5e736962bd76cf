//! The upgrade test: the previous release (built from its commit by scripts/install-release.sh and installed
//! beside this version) is created, used, and updated with ALTER EXTENSION chom UPDATE; afterwards the data is
//! exact, the triggers work, and the extension's objects are exactly those of a fresh install of this version.

mod common;

use common::{drifted_tenants, drifted_vps, scalar_i64, Server};
use postgres::Client;

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

/// Where the upgraded cluster lives between the two phases (one per release upgraded from).
fn cluster_dir() -> String {
    format!(
        "/tmp/chom-upgrade-{}-{}",
        std::env::var("CHOM_UPGRADE_FROM").unwrap_or_default(),
        std::env::var("CHOM_PG_CONFIG").unwrap_or_default().replace('/', "_")
    )
}

/// Phase "before" runs with the previous release installed: a database is created with it and used. Phase
/// "after" runs once this version is installed over it (scripts/test.sh does both installs), in new
/// sessions as after a package upgrade: ALTER EXTENSION chom UPDATE, then the checks.
#[test]
fn alter_extension_update_from_the_previous_release_matches_a_fresh_install() {
    let previous = std::env::var("CHOM_UPGRADE_FROM").expect("CHOM_UPGRADE_FROM names the release to upgrade from");
    match std::env::var("CHOM_UPGRADE_PHASE").as_deref() {
        Ok("before") => before_upgrade(&previous),
        Ok("after") => after_upgrade(),
        other => panic!("CHOM_UPGRADE_PHASE must be before or after, not {other:?}"),
    }
}

fn before_upgrade(previous: &str) {
    let _ = std::fs::remove_dir_all(cluster_dir());
    let server = Server::persistent(&cluster_dir());
    let mut db = server.chom_database("upgraded");
    db.batch_execute(&format!("CREATE EXTENSION chom VERSION '{previous}'")).unwrap();
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, 'before-update.test', 9); \
         UPDATE sites SET deleted_at = now() WHERE domain = 'site8.example.test';",
    )
    .unwrap();
    assert_eq!(drifted_tenants(&mut db), 0, "the previous release keeps the aggregates exact");
}

fn after_upgrade() {
    let current = env!("CARGO_PKG_VERSION");
    let server = Server::persistent(&cluster_dir());
    let mut db = server.connect("upgraded");
    db.batch_execute("ALTER EXTENSION chom UPDATE").unwrap();
    let version: String =
        db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'chom'", &[]).unwrap().get(0);
    assert_eq!(version, current);
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_vps_drift()"), 0, "VPS attributes filled by the upgrade");
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps4')::uuid, 'after-update.test', 90); \
         UPDATE sites SET tenant_id = md5('tenant4')::uuid WHERE domain = 'before-update.test'; \
         UPDATE vps_servers SET health_status = 'unhealthy' WHERE id = md5('vps4')::uuid;",
    )
    .unwrap();
    assert_eq!(drifted_tenants(&mut db), 0, "triggers still work after the update");
    assert_eq!(drifted_vps(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_vps_drift()"), 0, "the new vps_servers trigger works");
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    assert!(scalar_i64(&mut db, "SELECT count(*) FROM chom_index_usage()") >= 21);

    let mut fresh = server.chom_database("fresh");
    fresh.batch_execute("CREATE EXTENSION chom").unwrap();
    let (upgraded_objects, fresh_objects) = (extension_objects(&mut db), extension_objects(&mut fresh));
    let only_upgraded: Vec<&String> = upgraded_objects.iter().filter(|o| !fresh_objects.contains(o)).collect();
    let only_fresh: Vec<&String> = fresh_objects.iter().filter(|o| !upgraded_objects.contains(o)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and a fresh install disagree:\nonly after upgrade: {only_upgraded:#?}\nonly in fresh install: {only_fresh:#?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(cluster_dir());
}

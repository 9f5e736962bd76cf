//! The upgrade test: the previous release (built from its commit by scripts/install-release.sh and installed
//! beside this version) is created, used, and updated with ALTER EXTENSION chom UPDATE; afterwards the data is
//! exact, the triggers work, and the extension's objects are exactly those of a fresh install of this version.

mod common;

use common::{drifted_tenants, drifted_vps, scalar_i64, Server};
use postgres::Client;

/// Every member of the extension, with the definition, privileges and settings of its functions.
fn extension_objects(db: &mut Client) -> Vec<String> {
    db.query(
        "SELECT pg_describe_object(d.classid, d.objid, d.objsubid) || coalesce(' ' || ( \
             SELECT pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, 'default') \
             FROM pg_proc p WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid AND p.prokind <> 'a'), '') \
         FROM pg_depend d WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'chom') AND d.deptype = 'e' \
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[test]
fn alter_extension_update_from_the_previous_release_matches_a_fresh_install() {
    let previous = std::env::var("CHOM_UPGRADE_FROM").expect("CHOM_UPGRADE_FROM names the release to upgrade from");
    let current = env!("CARGO_PKG_VERSION");
    let server = Server::start();
    let mut db = server.chom_database("upgraded");
    db.batch_execute(&format!("CREATE EXTENSION chom VERSION '{previous}'")).unwrap();
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps2')::uuid, 'before-update.test', 9); \
         UPDATE sites SET deleted_at = now() WHERE domain = 'site8.example.test';",
    )
    .unwrap();
    db.batch_execute("ALTER EXTENSION chom UPDATE").unwrap();
    let version: String = db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'chom'", &[]).unwrap().get(0);
    assert_eq!(version, current);
    assert_eq!(drifted_tenants(&mut db), 0);
    assert_eq!(drifted_vps(&mut db), 0);
    db.batch_execute(
        "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), md5('tenant3')::uuid, md5('vps4')::uuid, 'after-update.test', 90); \
         UPDATE sites SET tenant_id = md5('tenant4')::uuid WHERE domain = 'before-update.test';",
    )
    .unwrap();
    assert_eq!(drifted_tenants(&mut db), 0, "triggers still work after the update");
    assert_eq!(drifted_vps(&mut db), 0);
    assert_eq!(scalar_i64(&mut db, "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);

    let mut fresh = server.chom_database("fresh");
    fresh.batch_execute("CREATE EXTENSION chom").unwrap();
    let (upgraded_objects, fresh_objects) = (extension_objects(&mut db), extension_objects(&mut fresh));
    let only_upgraded: Vec<&String> = upgraded_objects.iter().filter(|o| !fresh_objects.contains(o)).collect();
    let only_fresh: Vec<&String> = fresh_objects.iter().filter(|o| !upgraded_objects.contains(o)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and a fresh install disagree:\nonly after upgrade: {only_upgraded:#?}\nonly in fresh install: {only_fresh:#?}"
    );
}

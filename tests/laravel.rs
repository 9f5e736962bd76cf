//! The Laravel kit (integrations/laravel) under Laravel's real database layer: PHP scripts in tests/laravel run
//! Eloquent 8.x standalone (Debian's php-illuminate-database, through Capsule) against a server this test
//! starts: the application's migrations with the kit's install migration, concurrent Eloquent writers from
//! several PHP processes (no deadlock, exact at the end), migrate:fresh's Schema::dropAllTables() and the
//! migrations again, the tier quota mapped to the application's 403, and the application's own column renames
//! and drops. Run by scripts/test.sh against each Postgres build (CHOM_PG_CONFIG), after `cargo pgrx install`
//! into it. PHP's output is printed when a script fails.

mod common;

use common::{drifted_tenants, Server};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

const DATABASE: &str = "app";

fn php_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/laravel")
}

/// The master seed: CHOM_SEED replays a run; otherwise a fresh one, printed.
fn seed() -> u64 {
    let seed = std::env::var("CHOM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() % 1_000_000).unwrap_or(1)
    });
    println!("seed = {seed} (replay with CHOM_SEED={seed})");
    seed
}

fn operations() -> u32 {
    std::env::var("CHOM_LARAVEL_OPERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

/// Who the application's PHP connects as: a superuser that also creates the extension in its migrations, or the
/// tables' owner, not a superuser, after a DBA created the extension (the documented production path).
#[derive(Clone, Copy)]
enum Role {
    Superuser,
    TablesOwner,
}

const TABLES_OWNER: &str = "laravel";

fn php(server: &Server, role: Role, script: &str, args: &[String]) -> Command {
    let mut command = Command::new(std::env::var("CHOM_PHP").unwrap_or_else(|_| "php".into()));
    if let Role::TablesOwner = role {
        command.env("CHOM_PG_USER", TABLES_OWNER).env("CHOM_DBA_CREATED", "1");
    }
    command
        .arg(php_dir().join(script))
        .args(args)
        .env("CHOM_PG_HOST", &server.dir)
        .env("CHOM_PG_PORT", server.port.to_string())
        .env("CHOM_PG_DATABASE", DATABASE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn described(script: &str, output: &Output) -> String {
    format!(
        "php {script}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a script to completion; panics with its whole output unless it exits 0.
fn run(server: &Server, role: Role, script: &str, args: &[String]) -> String {
    let output = php(server, role, script, args).output().unwrap_or_else(|e| panic!("php {script}: {e}"));
    let text = described(script, &output);
    assert!(output.status.success(), "{text}");
    println!("{text}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `workers` workload processes at once; panics unless every one exits 0 and none hit a deadlock.
fn concurrent_workload(server: &Server, role: Role, workers: u32, seed: u64, operations: u32) {
    let children: Vec<(u32, Child)> = (0..workers)
        .map(|w| {
            let args = [w.to_string(), seed.to_string(), operations.to_string()];
            (w, php(server, role, "workload.php", &args).spawn().expect("php workload.php"))
        })
        .collect();
    let mut deadlocks = 0;
    let mut failures = Vec::new();
    for (w, child) in children {
        let output = child.wait_with_output().expect("php workload.php");
        let text = described(&format!("workload.php {w}"), &output);
        println!("{text}");
        if !output.status.success() {
            failures.push(text);
            continue;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let result =
            stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| panic!("no RESULT line:\n{text}"));
        let count = result.split_whitespace().find_map(|f| f.strip_prefix("deadlocks=")).expect("deadlocks=");
        deadlocks += count.parse::<u32>().expect("deadlock count");
    }
    assert!(
        failures.is_empty(),
        "{} of {workers} PHP workers failed (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(deadlocks, 0, "deadlocks (SQLSTATE 40P01) among {workers} PHP workers (seed {seed})");
}

/// The application's migrations (kit's install migration last) and the seed, on a fresh database. As the
/// tables' owner, the database is that role's and a DBA has run `CREATE EXTENSION chom` in it first, while it
/// was still empty (chom's functions only); the workload's short deadlock_timeout (a superuser's setting) is
/// granted to the owner for the test.
fn migrated_app(server: &Server, role: Role, workers: u32, seed: u64) {
    let mut dba = server.create_database(DATABASE);
    if let Role::TablesOwner = role {
        dba.batch_execute(&format!(
            "CREATE ROLE {TABLES_OWNER} LOGIN; ALTER DATABASE {DATABASE} OWNER TO {TABLES_OWNER}; CREATE EXTENSION chom; \
             GRANT SET ON PARAMETER deadlock_timeout TO {TABLES_OWNER}"
        ))
        .unwrap();
    }
    run(server, role, "migrate.php", &[]);
    run(server, role, "seed.php", &[workers.to_string(), seed.to_string()]);
}

#[test]
fn eloquent_from_four_php_processes_never_deadlocks_and_stays_exact() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, Role::Superuser, 4, seed);
    concurrent_workload(&server, Role::Superuser, 4, seed, operations());
    run(&server, Role::Superuser, "check.php", &[]);
    assert_eq!(drifted_tenants(&mut server.connect(DATABASE)), 0, "tenant drift seen from Rust (seed {seed})");
}

/// down() and up() of the kit's migration, then Schema::dropAllTables() and the migrations again, with writers
/// before and after.
fn lifecycle(server: &Server, role: Role, seed: u64) {
    migrated_app(server, role, 2, seed);
    concurrent_workload(server, role, 2, seed, operations() / 3);
    run(server, role, "lifecycle.php", &[]);
    run(server, role, "seed.php", &["2".to_string(), seed.to_string()]);
    concurrent_workload(server, role, 2, seed + 1, operations() / 3);
    run(server, role, "check.php", &[]);
}

#[test]
fn migrate_fresh_drops_all_tables_with_chom_installed_and_the_migrations_install_it_again() {
    lifecycle(&Server::start(), Role::Superuser, seed());
}

/// The documented production path (SECURITY.md): a DBA creates the extension in the empty database, and the
/// application's migrations, run by the tables' owner, not a superuser, install chom, write, roll the kit back
/// and forth and drop every table, exact throughout; the owner gains nothing.
#[test]
fn migrations_run_by_the_tables_owner_after_a_dba_created_the_extension() {
    let server = Server::start();
    lifecycle(&server, Role::TablesOwner, seed());
    let mut dba = server.connect(DATABASE);
    assert_eq!(drifted_tenants(&mut dba), 0);
    let superuser: bool =
        dba.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&TABLES_OWNER]).unwrap().get(0);
    assert!(!superuser, "the tables' owner became a superuser through the Laravel kit's path");
}

#[test]
fn quota_refused_at_commit_reaches_laravel_as_sqlstate_23514_and_maps_to_the_apps_403() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, Role::Superuser, 1, seed);
    run(&server, Role::Superuser, "quota.php", &[]);
}

#[test]
fn laravel_schema_builder_rename_and_drop_of_columns_chom_uses() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, Role::Superuser, 1, seed);
    run(&server, Role::Superuser, "schema_changes.php", &[]);
}

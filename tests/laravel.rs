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

fn php(server: &Server, script: &str, args: &[String]) -> Command {
    let mut command = Command::new(std::env::var("CHOM_PHP").unwrap_or_else(|_| "php".into()));
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
fn run(server: &Server, script: &str, args: &[String]) -> String {
    let output = php(server, script, args).output().unwrap_or_else(|e| panic!("php {script}: {e}"));
    let text = described(script, &output);
    assert!(output.status.success(), "{text}");
    println!("{text}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `workers` workload processes at once; panics unless every one exits 0 and none hit a deadlock.
fn concurrent_workload(server: &Server, workers: u32, seed: u64, operations: u32) {
    let children: Vec<(u32, Child)> = (0..workers)
        .map(|w| {
            let args = [w.to_string(), seed.to_string(), operations.to_string()];
            (w, php(server, "workload.php", &args).spawn().expect("php workload.php"))
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

/// The application's migrations (kit's install migration last) and the seed, on a fresh database.
fn migrated_app(server: &Server, workers: u32, seed: u64) {
    server.create_database(DATABASE);
    run(server, "migrate.php", &[]);
    run(server, "seed.php", &[workers.to_string(), seed.to_string()]);
}

#[test]
fn eloquent_from_four_php_processes_never_deadlocks_and_stays_exact() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, 4, seed);
    concurrent_workload(&server, 4, seed, operations());
    run(&server, "check.php", &[]);
    assert_eq!(drifted_tenants(&mut server.connect(DATABASE)), 0, "tenant drift seen from Rust (seed {seed})");
}

#[test]
fn migrate_fresh_drops_all_tables_with_chom_installed_and_the_migrations_install_it_again() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, 2, seed);
    concurrent_workload(&server, 2, seed, operations() / 3);
    // the kit's down() and up() (migrate:rollback, migrate), then Schema::dropAllTables() and the migrations again
    run(&server, "lifecycle.php", &[]);
    run(&server, "seed.php", &["2".to_string(), seed.to_string()]);
    concurrent_workload(&server, 2, seed + 1, operations() / 3);
    run(&server, "check.php", &[]);
}

#[test]
fn quota_refused_at_commit_reaches_laravel_as_sqlstate_23514_and_maps_to_the_apps_403() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, 1, seed);
    run(&server, "quota.php", &[]);
}

#[test]
fn laravel_schema_builder_rename_and_drop_of_columns_chom_uses() {
    let seed = seed();
    let server = Server::start();
    migrated_app(&server, 1, seed);
    run(&server, "schema_changes.php", &[]);
}

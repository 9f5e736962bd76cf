//! A throwaway Postgres server per test, started from the build named by CHOM_PG_CONFIG (default: Debian's
//! Postgres 15), with chom already installed into that build by the test script. As root, the server runs as
//! the unprivileged user CHOM_TEST_USER (default chomtest), since Postgres refuses to run as root.

// Every test binary (integration, transactions, quota, upgrade, laravel) compiles this module and uses a part
// of it; each item here is used by at least one of them.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const CHOM_SCHEMA: &str = include_str!("../fixtures/chom_schema.sql");
pub const DATASET: &str = include_str!("../fixtures/dataset.sql");
pub const SMALL_DATA: &str = include_str!("../fixtures/small_data.sql");
/// Objects a hostile database owner (the role app_owner) puts in public to be run by a superuser.
pub const HOSTILE_PUBLIC: &str = include_str!("../fixtures/hostile_public.sql");

pub struct Server {
    pub bindir: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

fn test_user() -> String {
    std::env::var("CHOM_TEST_USER").unwrap_or_else(|_| "chomtest".into())
}

fn checked(output: std::io::Result<Output>, what: &str) -> Output {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs one of the build's server programs in `dir`, as the unprivileged user when we are root.
fn as_server_user(bindir: &Path, dir: &Path, args: &[&str], what: &str) -> Output {
    let program = bindir.join(args[0]);
    let mut command = if is_root() {
        let mut c = Command::new("sudo");
        c.arg("-u").arg(test_user()).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(&args[1..]).current_dir(dir);
    checked(command.output(), what)
}

fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20000 + (std::process::id() % 2000) * 10;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::SeqCst)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A directory of the Postgres build the tests run against (CHOM_PG_CONFIG, default Debian's 15), as its
/// pg_config prints it for `option` (`--bindir`, `--pkglibdir`, `--sharedir`).
pub fn pg_config_path(option: &str) -> PathBuf {
    let pg_config = std::env::var("CHOM_PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let output = checked(Command::new(&pg_config).arg(option).output(), "pg_config");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

impl Server {
    /// Starts a fresh cluster; it is stopped and removed when the Server is dropped.
    pub fn start() -> Server {
        let port = free_port();
        Server::start_in(PathBuf::from(format!("/tmp/chom-it-{}-{port}", std::process::id())), port)
    }

    fn start_in(dir: PathBuf, port: u16) -> Server {
        let bindir = pg_config_path("--bindir");
        let server = Server { bindir, dir, port };
        if !server.dir.join("data").exists() {
            let _ = std::fs::remove_dir_all(&server.dir);
            std::fs::create_dir_all(&server.dir).unwrap();
            if is_root() {
                checked(Command::new("chown").arg(test_user()).arg(&server.dir).output(), "chown");
            }
            server.as_server_user(&["initdb", "-D", "data", "-A", "trust", "-U", "postgres", "--no-sync"], "initdb");
        }
        server.pg_ctl_start();
        server
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off -c max_connections=60 -c max_prepared_transactions=10",
            self.port,
            self.dir.display()
        );
        self.as_server_user(&["pg_ctl", "-D", "data", "-l", "log", "-w", "-o", &options, "start"], "pg_ctl start");
    }

    /// Stops the server the way a crash does (`pg_ctl -m immediate`: no shutdown checkpoint, every backend
    /// killed) and starts it again, which runs crash recovery.
    pub fn crash_and_restart(&self) {
        self.as_server_user(&["pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop"], "pg_ctl stop -m immediate");
        self.pg_ctl_start();
    }

    fn as_server_user(&self, args: &[&str], what: &str) -> Output {
        as_server_user(&self.bindir, &self.dir, args, what)
    }

    /// Starts a hot standby of this server: a base backup (pg_basebackup -R) streaming from it. Stopped and
    /// removed when dropped.
    pub fn start_standby(&self) -> Server {
        let port = free_port();
        let dir = PathBuf::from(format!("{}-standby", self.dir.display()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            checked(Command::new("chown").arg(test_user()).arg(&dir).output(), "chown");
        }
        let (host, primary_port) = (self.dir.display().to_string(), self.port.to_string());
        let backup = [
            "pg_basebackup",
            "-h",
            &host,
            "-p",
            &primary_port,
            "-U",
            "postgres",
            "-D",
            "data",
            "-R",
            "-c",
            "fast",
            "-N",
        ];
        as_server_user(&self.bindir, &dir, &backup, "pg_basebackup");
        Server::start_in(dir, port)
    }

    pub fn connect(&self, database: &str) -> Client {
        self.connect_as(database, "postgres")
    }

    /// A connection as another role (the server trusts every local connection).
    pub fn connect_as(&self, database: &str, user: &str) -> Client {
        Client::configure()
            .host_path(&self.dir)
            .port(self.port)
            .user(user)
            .dbname(database)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect to {database} as {user}: {e}"))
    }

    /// Creates a database and returns a connection to it.
    pub fn create_database(&self, name: &str) -> Client {
        self.connect("postgres").batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.connect(name)
    }

    /// A database with CHOM's schema and the test dataset, without chom.
    pub fn chom_database(&self, name: &str) -> Client {
        let mut client = self.create_database(name);
        client.batch_execute(CHOM_SCHEMA).unwrap();
        client.batch_execute(DATASET).unwrap();
        client
    }

    /// Runs one of the build's client programs (pg_dump, pg_restore, psql) against this server.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        let output = Command::new(self.bindir.join(program))
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg("postgres")
            .args(args)
            .output();
        checked(output, program)
    }

    pub fn schema_dump(&self, database: &str) -> String {
        let out = self.tool("pg_dump", &["--schema-only", "--no-owner", "-d", database]);
        // newer pg_dump releases wrap the script in \restrict <random key>: not part of the schema
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "sudo" } else { "env" })
            .args(if is_root() { vec!["-u".to_string(), test_user()] } else { vec![] })
            .arg(self.bindir.join("pg_ctl"))
            .args(["-D", "data", "-m", "immediate", "stop"])
            .current_dir(&self.dir)
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The independent recount all tests share (tests/fixtures/recount.sql), as temporary views of the session.
const RECOUNT: &str = include_str!("../fixtures/recount.sql");

/// Runs `query` against the recount views, made for it and dropped after (a view would hold back DDL on the
/// tables and show in a schema dump's ordering).
fn against_recount(client: &mut Client, query: &str) -> i64 {
    client.batch_execute(&RECOUNT.replace(":schema", "pg_temp")).expect("the recount views");
    let count = scalar_i64(client, query);
    client.batch_execute("DROP VIEW pg_temp.recount_tenants, pg_temp.recount_vps").expect("dropping the recount views");
    count
}

/// Tenants whose stored aggregates differ from the independent recount (not chom's own drift check). Stored: the
/// cached columns plus the busy tenants' deltas not folded yet (src/deltas.rs), which a fold worker adds to the
/// columns at any moment; tests/busy_tenant.rs checks the columns alone once folded. (Releases before 0.4.0,
/// which the upgrade test installs, have no deltas.)
pub fn drifted_tenants(client: &mut Client) -> i64 {
    let deltas = client.query_one("SELECT to_regclass('chom.tenant_deltas') IS NOT NULL", &[]).unwrap().get(0);
    let unfolded = if deltas {
        "SELECT coalesce(sum(d.sites), 0) AS sites, coalesce(sum(d.storage_mb), 0) AS storage_mb \
           FROM chom.tenant_deltas d WHERE d.tenant_id = t.id"
    } else {
        "SELECT 0 AS sites, 0 AS storage_mb"
    };
    against_recount(
        client,
        &format!(
            "SELECT count(*) FROM tenants t JOIN pg_temp.recount_tenants r ON r.tenant_id = t.id \
               CROSS JOIN LATERAL ({unfolded}) u \
             WHERE (t.cached_sites_count + u.sites, t.cached_storage_mb + u.storage_mb) IS DISTINCT FROM (r.sites, r.storage_mb)"
        ),
    )
}

/// VPSes whose maintained live-site count differs from the independent recount.
pub fn drifted_vps(client: &mut Client) -> i64 {
    against_recount(
        client,
        "SELECT count(*) FROM pg_temp.recount_vps r LEFT JOIN chom.vps_load l ON l.vps_id = r.vps_id \
         WHERE l.live_sites IS DISTINCT FROM r.sites",
    )
}

pub fn scalar_i64(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

//! chom against the owner of CHOM's tables: the trust model of SECURITY.md, attack by attack.
//!
//! Each test starts a server where the superuser `postgres` creates chom in a database owned by the role
//! `app_owner` (not a superuser), which owns CHOM's tables and, on Postgres 15+, schema `public`. app_owner
//! plants code wherever chom, or a superuser using chom, might run it: `public.probe(vector)` reports who runs
//! it (a WARNING, which reaches the session even when its transaction then fails) and, run by a superuser,
//! makes app_owner one. After every case: app_owner is not a superuser, no probe ran as any role but
//! app_owner, and (where CHOM's tables are intact) the cached aggregates equal an independent recount.
//!
//! The classes, one or more tests each:
//!  0. the probes themselves: run by a superuser they do escalate, so that the other tests can fail;
//!  1. who chom's commit step is: the owner's row triggers, rules, index expressions, CHECK constraints and
//!     generated columns on `tenants` run as the owner (whoever wrote `sites`), also at CREATE EXTENSION, in
//!     recounts, repair and at PREPARE TRANSACTION; an escalation fails the COMMIT whole with chom's DETAIL;
//!     temporary tables, SET ROLE, PREPARE, WITH HOLD cursors, LISTEN and deferred triggers are refused inside it;
//!  2. no SQL from identifiers: the columns chom follows renamed to names with quotes, backslashes, dollar
//!     quotes, semicolons, spaces, mixed case and non-ASCII, under standard_conforming_strings on and off, and
//!     a hostile name for the schema of CHOM's tables;
//!  3. settings by who may change them: the superuser-set ones refuse the owner (session, role, database), and a
//!     database's chom.site_quota holds against a session's chom.enforce_site_quota;
//!  4. parallel query: the functions that read the transaction's pending changes run in the leader;
//!  5. install and uninstall by the owner after a DBA created the extension, refused to another role; the DBA
//!     functions are not the owner's unless granted;
//!  6. layouts chom refuses: tables of several owners, FORCE ROW LEVEL SECURITY;
//!  7. a view in place of a table: renames of CHOM's tables refused; a view of the owner's in place of
//!     `vps_servers` or `sites`, met by chom's commit step and by a superuser calling each of chom's functions;
//!  8. a schema `chom` created beforehand by the owner: CREATE EXTENSION refuses it;
//!  9. the caller's `search_path`: with the owner's database set to search `public` before `pg_catalog`, a
//!     superuser's first writes in fresh sessions (chom's triggers and commit step look chom's installation up
//!     then, outside any function with a SET clause) resolve nothing through the owner's objects.

mod common;

use common::{drifted_tenants, drifted_vps, scalar_i64, Server, CHOM_SCHEMA, SMALL_DATA};
use postgres::{Client, NoTls};
use std::sync::{Arc, Mutex};

const OWNER: &str = "app_owner";
/// Tenant 1 and VPS 1 of small_data.sql (tier starter).
const TENANT: &str = "'a0000000-0000-0000-0000-000000000001'::uuid";
const VPS: &str = "'b0000000-0000-0000-0000-000000000001'::uuid";
/// What the DETAIL of an error raised in chom's commit step says.
const COMMIT_STEP: &str = "chom was applying this transaction's changes";

/// The owner's probes, created by app_owner in its database. Every name is qualified: chom's step runs with
/// search_path = pg_catalog, pg_temp (an owner's unqualified name is simply not found there).
const OWNER_PROBES: &str = r#"
-- Reports who runs it, and makes app_owner a superuser when that is a superuser.
CREATE FUNCTION public.probe(vector text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'chom-probe|%|%', vector, current_user;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
        ALTER ROLE app_owner SUPERUSER;
    END IF;
    RETURN true;
END $$;
-- The blunt form: reports, then tries the escalation whoever runs it (an error for anyone but a superuser).
CREATE FUNCTION public.escalate(vector text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.probe(vector);
    ALTER ROLE app_owner SUPERUSER;
    RETURN true;
END $$;
-- For index expressions and generated columns, which must be IMMUTABLE: returns n.
CREATE FUNCTION public.probe_immutable(vector text, n bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM public.probe(vector);
    RETURN n;
END $$;
-- A row trigger running the statement it is given.
CREATE FUNCTION public.exec_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE TG_ARGV[0];
    RETURN NEW;
END $$;
"#;

/// Every probe run the test's sessions were told of, as (vector, role it ran as).
#[derive(Clone, Default)]
struct ProbeRuns(Arc<Mutex<Vec<(String, String)>>>);

impl ProbeRuns {
    fn record(&self, message: &str) {
        if let Some(report) = message.strip_prefix("chom-probe|") {
            let (vector, role) = report.rsplit_once('|').unwrap_or((report, "?"));
            self.0.lock().unwrap().push((vector.to_string(), role.to_string()));
        }
    }

    /// The runs reported since the last call.
    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The roles `vector` ran as, among the runs not taken yet.
    fn roles(&self, vector: &str) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(v, _)| v == vector).map(|(_, role)| role.clone()).collect()
    }
}

/// One server for one test, with the role app_owner, and the probe runs of every session opened through it.
struct Cluster {
    server: Server,
    runs: ProbeRuns,
}

impl Cluster {
    fn start() -> Cluster {
        let cluster = Cluster { server: Server::start(), runs: ProbeRuns::default() };
        cluster.superuser("postgres").batch_execute(&format!("CREATE ROLE {OWNER} LOGIN")).unwrap();
        cluster
    }

    /// A session as `user` (the server trusts local connections) whose probe reports are collected.
    fn connect(&self, database: &str, user: &str) -> Client {
        let runs = self.runs.clone();
        Client::configure()
            .host_path(&self.server.dir)
            .port(self.server.port)
            .user(user)
            .dbname(database)
            .notice_callback(move |notice| runs.record(notice.message()))
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect to {database} as {user}: {}", said(&e)))
    }

    fn superuser(&self, database: &str) -> Client {
        self.connect(database, "postgres")
    }

    fn owner(&self, database: &str) -> Client {
        self.connect(database, OWNER)
    }

    /// A database owned by app_owner holding only the owner's probes; a session of the owner.
    fn owner_database(&self, database: &str) -> Client {
        self.superuser("postgres").batch_execute(&format!("CREATE DATABASE {database} OWNER {OWNER}")).unwrap();
        let mut owner = self.owner(database);
        owner.batch_execute(OWNER_PROBES).expect("the owner's probes");
        owner
    }

    /// The same with CHOM's tables and the small dataset, created by the owner (who therefore owns them).
    fn chom_tables(&self, database: &str) -> Client {
        let mut owner = self.owner_database(database);
        owner.batch_execute(CHOM_SCHEMA).expect("CHOM's schema, as app_owner");
        owner.batch_execute(SMALL_DATA).expect("the small dataset, as app_owner");
        owner
    }

    /// The escalation, if there was one: app_owner became a superuser, or one of its probes ran as another role
    /// (since the last look). Takes the probe runs.
    fn escalation(&self, superuser: &mut Client) -> Option<String> {
        let rolsuper: bool = superuser
            .query_one("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'app_owner'", &[])
            .unwrap()
            .get(0);
        let foreign: Vec<_> = self.runs.take().into_iter().filter(|(_, role)| role != OWNER).collect();
        (rolsuper || !foreign.is_empty())
            .then(|| format!("app_owner is a superuser: {rolsuper}; the owner's code ran as another role: {foreign:?}"))
    }

    /// app_owner is still not a superuser, and no code of its ran as another role.
    fn assert_not_superuser(&self, superuser: &mut Client, context: &str) {
        if let Some(escalation) = self.escalation(superuser) {
            panic!("{context}: escalation: {escalation}");
        }
    }
}

/// The common case: database `app` with CHOM's tables of app_owner, where app_owner first runs `before_chom`
/// and then postgres runs `CREATE EXTENSION chom` (which installs on the tables at once). Returns the cluster,
/// a superuser's session and the owner's.
fn app(before_chom: &str) -> (Cluster, Client, Client) {
    let cluster = Cluster::start();
    let mut owner = cluster.chom_tables("app");
    owner.batch_execute(before_chom).unwrap_or_else(|e| panic!("the owner's set-up {before_chom}: {}", said(&e)));
    let mut superuser = cluster.superuser("app");
    superuser.batch_execute("CREATE EXTENSION chom").expect("CREATE EXTENSION chom by postgres");
    (cluster, superuser, owner)
}

/// The cached aggregates of every tenant and VPS equal the independent recount.
fn assert_exact(superuser: &mut Client, context: &str) {
    assert_eq!(drifted_tenants(superuser), 0, "{context}: tenants' cached aggregates differ from a recount");
    assert_eq!(drifted_vps(superuser), 0, "{context}: chom.vps_load differs from a recount");
}

/// A site of tenant 1 on VPS 1 whose domain starts with `label`.
fn add_site(label: &str) -> String {
    format!(
        "INSERT INTO public.sites (id, tenant_id, vps_id, domain, storage_used_mb) \
         VALUES (gen_random_uuid(), {TENANT}, {VPS}, '{label}-' || gen_random_uuid() || '.test', 7)"
    )
}

fn sites_labelled(client: &mut Client, label: &str) -> i64 {
    scalar_i64(client, &format!("SELECT count(*) FROM public.sites WHERE domain LIKE '{label}-%'"))
}

/// An error as Postgres gave it: SQLSTATE, message, DETAIL.
fn said(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {} (DETAIL: {})", db.code().code(), db.message(), db.detail().unwrap_or("")),
        None => error.to_string(),
    }
}

/// The SQLSTATE, message and DETAIL of the error `result` must be.
fn error_of<T>(result: Result<T, postgres::Error>, what: &str) -> (String, String, String) {
    let error = result.err().unwrap_or_else(|| panic!("{what}: succeeded, expected an error"));
    let db = error.as_db_error().unwrap_or_else(|| panic!("{what}: not a server error: {error}"));
    (db.code().code().to_string(), db.message().to_string(), db.detail().unwrap_or_default().to_string())
}

fn assert_sqlstate<T>(result: Result<T, postgres::Error>, code: &str, what: &str) -> String {
    let (actual, message, _) = error_of(result, what);
    assert_eq!(actual, code, "{what}: {message}");
    message
}

/// `sql` (ending with a commit, or autocommit) inserts sites labelled `label`; chom's commit step must fail it
/// with `code` and `message` in the error's message or DETAIL (case aside: Postgres 16 moved "superuser" from
/// the one to the other), naming chom's step in the DETAIL, and keep none of it.
fn assert_refused_at_commit(client: &mut Client, sql: &str, label: &str, code: &str, message: &str) {
    let (actual, text, detail) = error_of(client.batch_execute(sql), sql);
    let says = format!("{text} {detail}").to_lowercase().contains(&message.to_lowercase());
    assert_eq!((actual.as_str(), says), (code, true), "{sql}: {text} (DETAIL: {detail})");
    assert!(detail.contains(COMMIT_STEP), "{sql}: the DETAIL does not name chom's commit step: {detail:?}");
    let _ = client.batch_execute("ROLLBACK");
    assert_eq!(sites_labelled(client, label), 0, "{sql}: part of the failed transaction was kept");
}

/// A row trigger of the owner on `tenants`, BEFORE UPDATE, running `statement`.
fn owner_trigger(name: &str, statement: &str) -> String {
    format!(
        "CREATE TRIGGER {name} BEFORE UPDATE ON public.tenants FOR EACH ROW EXECUTE FUNCTION public.exec_trigger('{}')",
        statement.replace('\'', "''")
    )
}

/// An identifier, double-quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The probes are real: run by a superuser, each form makes app_owner a superuser — directly, in the blunt
/// form the escalating rule uses, through the IMMUTABLE wrapper of index expressions, and through an owner trigger on `tenants` fired by a superuser's
/// UPDATE (what chom's commit step must never be). Reverted after each.
#[test]
fn the_probes_escalate_when_a_superuser_runs_them() {
    let (cluster, mut superuser, mut owner) = app("");
    owner.batch_execute(&owner_trigger("owner_probe", "SELECT public.probe('trigger')")).unwrap();
    cluster.runs.take();
    for (sql, vector) in [
        ("SELECT public.probe('direct')", "direct"),
        ("SELECT public.escalate('blunt')", "blunt"),
        ("SELECT public.probe_immutable('immutable', 1)", "immutable"),
        (&*format!("UPDATE public.tenants SET name = name WHERE id = {TENANT}"), "trigger"),
    ] {
        superuser.batch_execute(sql).unwrap();
        assert_eq!(cluster.runs.roles(vector), ["postgres"], "{sql}: the probe did not report its run");
        cluster.runs.take();
        let rolsuper = "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner' AND rolsuper";
        assert_eq!(
            scalar_i64(&mut superuser, rolsuper),
            1,
            "{sql}: run by a superuser, the probe did not escalate: the tests prove nothing"
        );
        superuser.batch_execute("ALTER ROLE app_owner NOSUPERUSER").unwrap();
    }
    cluster.assert_not_superuser(&mut superuser, "reverted");
}

/// The owner's code on `tenants` — a row trigger, a rule, an index expression, a CHECK constraint and a
/// generated column, all on what chom's step updates — runs as app_owner whoever writes `sites`: the owner,
/// a superuser in autocommit or in a transaction of several writes; the trigger also at CREATE EXTENSION's
/// fill. A column DEFAULT is not evaluated by an UPDATE at all. (The rule comes after the install: with a rule
/// on `tenants`, chom_install() fails with 0A000, "WITH cannot be used in a query that is rewritten by rules
/// into multiple queries", which CREATE EXTENSION turns into a NOTICE and no install.)
#[test]
fn owner_code_on_tenants_runs_as_the_owner_at_commit() {
    let (cluster, mut superuser, mut owner) = app(&owner_trigger("owner_probe", "SELECT public.probe('trigger')"));
    let roles = cluster.runs.roles("trigger");
    assert!(!roles.is_empty(), "CREATE EXTENSION's fill did not reach the owner's trigger");
    assert!(roles.iter().all(|r| r == OWNER), "CREATE EXTENSION ran the owner's trigger as {roles:?}: escalation");
    cluster.assert_not_superuser(&mut superuser, "CREATE EXTENSION chom");
    owner
        .batch_execute(
            "CREATE RULE owner_rule AS ON UPDATE TO public.tenants DO ALSO SELECT public.probe('rule'); \
             CREATE INDEX owner_index ON public.tenants (public.probe_immutable('index', cached_sites_count)); \
             ALTER TABLE public.tenants ADD CONSTRAINT owner_check CHECK (public.probe('check') OR cached_sites_count >= 0); \
             ALTER TABLE public.tenants ADD COLUMN owner_generated bigint \
                 GENERATED ALWAYS AS (public.probe_immutable('generated', cached_storage_mb)) STORED; \
             ALTER TABLE public.tenants ADD COLUMN owner_default boolean DEFAULT public.probe('default')",
        )
        .unwrap();
    cluster.runs.take();
    let writes = [
        ("the owner's autocommit INSERT", true, add_site("owner")),
        ("a superuser's autocommit INSERT", false, add_site("dba")),
        (
            "a superuser's transaction",
            false,
            // net one more site: the count changes, so the index expression is evaluated (no HOT update)
            format!(
                "BEGIN; {}; {}; UPDATE public.sites SET storage_used_mb = storage_used_mb + 5 WHERE tenant_id = {TENANT}; \
                 UPDATE public.sites SET deleted_at = now() WHERE domain LIKE 'dba-%'; COMMIT",
                add_site("dba2"),
                add_site("dba3")
            ),
        ),
        ("a superuser's DELETE", false, "DELETE FROM public.sites WHERE domain LIKE 'owner-%'".into()),
    ];
    for (what, by_owner, sql) in writes {
        let client = if by_owner { &mut owner } else { &mut superuser };
        client.batch_execute(&sql).unwrap_or_else(|e| panic!("{what}: {}", said(&e)));
        for vector in ["trigger", "rule", "index", "check", "generated"] {
            let roles = cluster.runs.roles(vector);
            assert!(!roles.is_empty(), "{what}: chom's step did not reach the owner's {vector}");
            assert!(roles.iter().all(|r| r == OWNER), "{what}: the owner's {vector} ran as {roles:?}: escalation");
        }
        assert!(cluster.runs.roles("default").is_empty(), "{what}: a column DEFAULT ran on UPDATE");
        cluster.assert_not_superuser(&mut superuser, what);
    }
    assert_exact(&mut superuser, "after the writes");
}

/// An owner trigger on `tenants` that runs `ALTER ROLE app_owner SUPERUSER`, and a rule that calls a function
/// doing it: they run as app_owner and fail, so the INSERT (autocommit) or the COMMIT fails whole with chom's
/// DETAIL, for a write by the owner and by a superuser alike, and the site is not there.
#[test]
fn an_owner_trigger_or_rule_that_escalates_fails_the_commit_whole() {
    let (cluster, mut superuser, mut owner) = app("");
    let vectors = [
        (
            "DROP TRIGGER owner_escalation ON public.tenants",
            owner_trigger("owner_escalation", "ALTER ROLE app_owner SUPERUSER"),
        ),
        (
            "DROP RULE owner_escalation ON public.tenants",
            "CREATE RULE owner_escalation AS ON UPDATE TO public.tenants DO ALSO SELECT public.escalate('rule')".into(),
        ),
    ];
    for (drop, create) in vectors {
        owner.batch_execute(&create).unwrap();
        for (who, client) in [("owner", &mut owner), ("dba", &mut superuser)] {
            let autocommit = add_site(who);
            let transaction = format!("BEGIN; {}; {}; COMMIT", add_site(who), add_site(who));
            for sql in [autocommit, transaction] {
                assert_refused_at_commit(client, &sql, who, "42501", "superuser");
            }
        }
        cluster.assert_not_superuser(&mut superuser, &create);
        owner.batch_execute(drop).unwrap();
    }
    superuser.batch_execute(&add_site("after")).expect("a write once the owner's escalation is gone");
    assert_exact(&mut superuser, "after the refused commits");
}

/// Inside chom's step (a security-restricted operation) the owner cannot leave anything behind in the
/// committing session, nor change identity: a temporary table, SET ROLE / RESET ROLE / SET SESSION
/// AUTHORIZATION, a prepared statement, a WITH HOLD cursor or LISTEN from an owner trigger fail the superuser's
/// COMMIT (42501, chom's DETAIL). A DEFERRABLE INITIALLY DEFERRED constraint trigger on `tenants` is refused,
/// not silently dropped; once it is dropped, writes work and stay exact.
#[test]
fn the_security_restricted_operation_refuses_what_would_outlive_chom_step() {
    let (cluster, mut superuser, mut owner) = app("");
    for (statement, message) in [
        ("CREATE TEMP TABLE owner_temp (a int)", "cannot create temporary table within security-restricted operation"),
        ("SET ROLE postgres", "cannot set parameter \"role\""),
        ("RESET ROLE", "cannot set parameter \"role\""),
        ("SET SESSION AUTHORIZATION postgres", "cannot set parameter \"session_authorization\""),
        ("PREPARE owner_plan AS SELECT 1", "cannot execute PREPARE within security-restricted operation"),
        (
            "DECLARE owner_cursor CURSOR WITH HOLD FOR SELECT 1",
            "cannot create a cursor WITH HOLD within security-restricted operation",
        ),
        ("LISTEN owner_channel", "cannot execute LISTEN within security-restricted operation"),
    ] {
        owner.batch_execute(&owner_trigger("owner_statement", statement)).unwrap();
        let transaction = format!("BEGIN; {}; COMMIT", add_site("dba"));
        assert_refused_at_commit(&mut superuser, &transaction, "dba", "42501", message);
        cluster.assert_not_superuser(&mut superuser, statement);
        owner.batch_execute("DROP TRIGGER owner_statement ON public.tenants").unwrap();
    }
    owner
        .batch_execute(
            "CREATE CONSTRAINT TRIGGER owner_deferred AFTER UPDATE ON public.tenants DEFERRABLE INITIALLY DEFERRED \
             FOR EACH ROW EXECUTE FUNCTION public.exec_trigger('SELECT public.probe(''deferred'')')",
        )
        .unwrap();
    for (who, client) in [("owner", &mut owner), ("dba", &mut superuser)] {
        let message = "cannot fire deferred trigger within security-restricted operation";
        assert_refused_at_commit(client, &add_site(who), who, "42501", message);
    }
    cluster.assert_not_superuser(&mut superuser, "the deferred constraint trigger");
    owner.batch_execute("DROP TRIGGER owner_deferred ON public.tenants").unwrap();
    owner.batch_execute(&add_site("owner")).expect("a write once the deferred trigger is dropped");
    superuser.batch_execute(&add_site("dba")).expect("a superuser's write once the deferred trigger is dropped");
    assert_exact(&mut superuser, "after the deferred trigger was dropped");
}

/// The owner's trigger on `tenants` also fires when a superuser recounts: chom_refresh_tenant(),
/// chom_refresh_all(), CALL chom_refresh_all_batched(), a stale chom_tenant_stats() stored at commit, and
/// chom_repair_drift() after drift made behind chom's back. It runs as app_owner each time; the drift is mended.
#[test]
fn recounts_and_repair_run_the_owner_trigger_as_the_owner() {
    let (cluster, mut superuser, mut owner) = app("");
    owner.batch_execute(&owner_trigger("owner_probe", "SELECT public.probe('trigger')")).unwrap();
    // behind chom's back (and the owner's: replica mode fires no ordinary trigger)
    let behind = |sql: &str| format!("SET session_replication_role = replica; {sql}; RESET session_replication_role");
    let make_drift = behind(&format!(
        "{}; UPDATE public.sites SET storage_used_mb = storage_used_mb + 100 WHERE tenant_id = {TENANT}",
        add_site("behind")
    ));
    superuser.batch_execute(&make_drift).unwrap();
    assert!(drifted_tenants(&mut superuser) > 0 && drifted_vps(&mut superuser) > 0, "no drift was made");
    cluster.runs.take();
    for call in [
        format!("SELECT chom_refresh_tenant({TENANT})"),
        "SELECT chom_refresh_all()".into(),
        "CALL chom_refresh_all_batched(2)".into(),
        format!(
            "{}; BEGIN; SET LOCAL chom.max_staleness = 0; SELECT * FROM chom_tenant_stats({TENANT}); COMMIT",
            behind(&format!("UPDATE public.tenants SET cached_at = '2000-01-01' WHERE id = {TENANT}"))
        ),
        format!("{make_drift}; SELECT chom_repair_drift()"),
    ] {
        superuser.batch_execute(&call).unwrap_or_else(|e| panic!("{call}: {}", said(&e)));
        assert!(!cluster.runs.roles("trigger").is_empty(), "{call}: did not reach the owner's trigger");
        cluster.assert_not_superuser(&mut superuser, &call);
    }
    assert_exact(&mut superuser, "after chom_repair_drift()");
}

/// Two-phase commit: chom's step runs at PREPARE TRANSACTION, the owner's trigger as app_owner; COMMIT
/// PREPARED leaves the aggregates exact. With an escalating trigger, PREPARE TRANSACTION fails whole and
/// nothing is left prepared.
#[test]
fn prepare_transaction_runs_the_owner_trigger_as_the_owner() {
    let (cluster, mut superuser, mut owner) = app("");
    owner.batch_execute(&owner_trigger("owner_probe", "SELECT public.probe('trigger')")).unwrap();
    cluster.runs.take();
    superuser.batch_execute(&format!("BEGIN; {}; PREPARE TRANSACTION 'p1'", add_site("2pc"))).unwrap();
    assert_eq!(cluster.runs.roles("trigger"), [OWNER], "the owner's trigger at PREPARE TRANSACTION");
    superuser.batch_execute("COMMIT PREPARED 'p1'").unwrap();
    cluster.assert_not_superuser(&mut superuser, "PREPARE TRANSACTION");
    assert_eq!(sites_labelled(&mut superuser, "2pc"), 1);
    assert_exact(&mut superuser, "after COMMIT PREPARED");

    owner.batch_execute("DROP TRIGGER owner_probe ON public.tenants").unwrap();
    owner.batch_execute(&owner_trigger("owner_escalation", "ALTER ROLE app_owner SUPERUSER")).unwrap();
    let prepare = format!("BEGIN; {}; PREPARE TRANSACTION 'p2'", add_site("2pc-refused"));
    assert_refused_at_commit(&mut superuser, &prepare, "2pc-refused", "42501", "superuser");
    assert_eq!(
        scalar_i64(&mut superuser, "SELECT count(*) FROM pg_prepared_xacts"),
        0,
        "a transaction was left prepared"
    );
    cluster.assert_not_superuser(&mut superuser, "PREPARE TRANSACTION with an escalating trigger");
}

/// Names that would end a literal, an identifier or a dollar-quoted body, or a statement, if chom put them into
/// SQL unquoted or quoted by hand.
const HOSTILE_NAMES: &[&str] = &[
    r"x\');ALTER ROLE app_owner SUPERUSER--",
    "x');ALTER ROLE app_owner SUPERUSER--",
    "it's",
    r"back\slash",
    r"ends in a backslash\",
    "$$;ALTER ROLE app_owner SUPERUSER;$$",
    "$chom$",
    "a;b",
    "storage used mb",
    "StorageMB",
    "stockage_mégaoctets",
    "\"quoted\"",
];

/// The arguments of chom's triggers on `sites` (the current names of the columns chom uses).
fn sites_trigger_arguments(superuser: &mut Client) -> Vec<(String, Vec<String>)> {
    let rows = superuser
        .query(
            "SELECT tgname::text, tgargs FROM pg_trigger WHERE tgrelid = 'public.sites'::regclass AND tgname LIKE 'chom\\_%'",
            &[],
        )
        .unwrap();
    rows.iter()
        .map(|row| {
            let args: Vec<u8> = row.get(1);
            let args =
                args.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned());
            (row.get(0), args.collect())
        })
        .collect()
}

/// Runs every statement chom_index_ddl() returns (after dropping one of chom's indexes, so that there is one
/// to build), in a superuser's session with `settings`.
fn run_index_ddl(superuser: &mut Client, settings: &str, context: &str) {
    superuser.batch_execute(&format!("{settings}; DROP INDEX public.idx_sites_vps_status")).unwrap();
    let statements: Vec<String> =
        superuser.query("SELECT * FROM chom_index_ddl()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(!statements.is_empty(), "{context}: chom_index_ddl() has nothing to build after DROP INDEX");
    for statement in statements {
        superuser
            .batch_execute(&statement)
            .unwrap_or_else(|e| panic!("{context}: chom_index_ddl() gave {statement}: {}", said(&e)));
    }
}

/// No SQL from identifiers: the owner renames the storage column chom follows to each hostile name, under
/// standard_conforming_strings on and off. chom's DDL guard (run as a superuser) re-creates chom's triggers with
/// the new name as an argument, verbatim; writes through the new name stay exact; chom_index_ddl()'s statements
/// run cleanly in a superuser's session with the same setting; app_owner never becomes a superuser.
#[test]
fn renamed_columns_with_hostile_names_are_quoted() {
    let (cluster, mut superuser, mut owner) = app("");
    for conforming in ["on", "off"] {
        let settings = format!("SET standard_conforming_strings = {conforming}");
        owner.batch_execute(&settings).unwrap();
        for name in HOSTILE_NAMES {
            let context = format!("column renamed to {name:?}, standard_conforming_strings {conforming}");
            let column = ident(name);
            owner
                .batch_execute(&format!("ALTER TABLE public.sites RENAME COLUMN storage_used_mb TO {column}"))
                .unwrap_or_else(|e| panic!("{context}: the rename: {}", said(&e)));
            cluster.assert_not_superuser(&mut superuser, &context);
            for (trigger, args) in sites_trigger_arguments(&mut superuser) {
                assert!(args.iter().any(|a| a == name), "{context}: {trigger} carries {args:?}, not the new name");
            }
            owner
                .batch_execute(&format!(
                    "INSERT INTO public.sites (id, tenant_id, vps_id, domain, {column}) \
                     VALUES (gen_random_uuid(), {TENANT}, {VPS}, 'renamed-' || gen_random_uuid() || '.test', 11); \
                     UPDATE public.sites SET {column} = {column} + 1 WHERE tenant_id = {TENANT}"
                ))
                .unwrap_or_else(|e| panic!("{context}: writing through the new name: {}", said(&e)));
            run_index_ddl(&mut superuser, &settings, &context);
            cluster.assert_not_superuser(&mut superuser, &context);
            owner
                .batch_execute(&format!("ALTER TABLE public.sites RENAME COLUMN {column} TO storage_used_mb"))
                .unwrap_or_else(|e| panic!("{context}: renaming back: {}", said(&e)));
            // the independent recount reads storage_used_mb by its name: checked once it has it back
            assert_exact(&mut superuser, &context);
        }
    }
}

/// The schema of CHOM's tables (schema public, the owner's, where chom's functions live too) renamed by the
/// owner to a hostile name: the owner's and a superuser's writes, chom_status(), chom_repair_drift() and
/// chom_index_ddl()'s statements, under standard_conforming_strings on and off, quote it; app_owner never
/// becomes a superuser, and the aggregates are exact (checked once the schema has its name back: the check's
/// own DROP VIEW needs a DROP to work). A DROP in that database works while the schema has the hostile name.
#[test]
fn a_hostile_schema_name_is_quoted() {
    let (cluster, mut superuser, mut owner) = app("");
    // one of chom's indexes dropped while DROP works, so that chom_index_ddl() has one to build
    superuser.batch_execute("DROP INDEX public.idx_sites_vps_status").unwrap();
    let schema = ident(r"pub\');ALTER ROLE app_owner SUPERUSER;--$$");
    owner.batch_execute(&format!("ALTER SCHEMA public RENAME TO {schema}")).unwrap();
    cluster.assert_not_superuser(&mut superuser, "the schema rename");
    for conforming in ["on", "off"] {
        let context = format!("schema renamed, standard_conforming_strings {conforming}");
        let settings = format!("SET standard_conforming_strings = {conforming}; SET search_path = {schema}");
        for client in [&mut owner, &mut superuser] {
            client.batch_execute(&settings).unwrap();
            client.batch_execute(&add_site("renamed-schema").replace("public.", "")).unwrap();
        }
        for call in ["SELECT count(*) FROM chom_status()", "SELECT chom_repair_drift()"] {
            superuser.batch_execute(call).unwrap_or_else(|e| panic!("{context}: {call}: {}", said(&e)));
        }
        for statement in superuser.query("SELECT * FROM chom_index_ddl()", &[]).unwrap() {
            let statement: String = statement.get(0);
            superuser
                .batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{context}: chom_index_ddl() gave {statement}: {}", said(&e)));
        }
        cluster.assert_not_superuser(&mut superuser, &context);
    }
    assert_eq!(
        scalar_i64(&mut superuser, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_sites_vps_status'"),
        1
    );
    // chom's sql_drop event trigger runs on every DROP in the database, a superuser's included
    owner.batch_execute("CREATE TABLE owner_scratch (a int)").unwrap();
    let drop = superuser.batch_execute("DROP TABLE owner_scratch");
    owner.batch_execute(&format!("ALTER SCHEMA {schema} RENAME TO public")).unwrap();
    superuser.batch_execute("SET search_path = public").unwrap();
    assert_exact(&mut superuser, "after the writes under the hostile schema name");
    cluster.assert_not_superuser(&mut superuser, "the schema renamed back");
    drop.unwrap_or_else(|e| {
        panic!("with the schema of chom's functions renamed, chom's event trigger fails every DROP: {}", said(&e))
    });
}

/// The settings only a superuser may set refuse the owner with 42501 — in a session (SET, SET LOCAL,
/// set_config()), for its role and for its database. Set in a session before chom's library is loaded (a
/// placeholder), the owner's value is dropped when the library loads: the value in effect is the superuser's.
#[test]
fn guarded_settings_refuse_the_owner() {
    let (cluster, mut superuser, _) = app("");
    superuser.batch_execute("ALTER DATABASE app SET chom.site_quota = on").unwrap();
    let mut fresh = cluster.owner("app");
    // chom's library is not loaded yet in this session: Postgres keeps a placeholder, checked at load
    let early = ["SET chom.site_quota = off", "SET chom.max_staleness = 0", "SET chom.install_schema = 'x'"];
    for set in early {
        if let Err(e) = fresh.batch_execute(set) {
            assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{set} before the library loads: {}", said(&e));
        }
    }
    fresh.batch_execute(&format!("SELECT * FROM chom_tenant_quota({TENANT})")).expect("loading chom's library");
    for (setting, value) in [("chom.site_quota", "on"), ("chom.max_staleness", "5min"), ("chom.install_schema", "")] {
        let shown: String = fresh.query_one(&format!("SHOW {setting}"), &[]).unwrap().get(0);
        assert_eq!(shown, value, "the owner's early SET {setting} survived the library's loading");
    }
    let mut owner = cluster.owner("app");
    owner.batch_execute(&format!("SELECT * FROM chom_tenant_quota({TENANT})")).unwrap();
    for sql in [
        "SET chom.site_quota = off",
        "SET chom.max_staleness = 0",
        "SET chom.install_schema = 'x'",
        "BEGIN; SET LOCAL chom.site_quota = off; COMMIT",
        "SELECT set_config('chom.site_quota', 'off', false)",
        "ALTER DATABASE app SET chom.site_quota = off",
        "ALTER DATABASE app SET chom.max_staleness = 0",
        "ALTER ROLE app_owner SET chom.max_staleness = 0",
        "ALTER ROLE app_owner SET chom.site_quota = off",
        "ALTER ROLE app_owner IN DATABASE app SET chom.install_schema = 'x'",
    ] {
        assert_sqlstate(owner.batch_execute(sql), "42501", sql);
        let _ = owner.batch_execute("ROLLBACK");
    }
    let shown: String = owner.query_one("SHOW chom.site_quota", &[]).unwrap().get(0);
    assert_eq!(shown, "on");
    cluster.assert_not_superuser(&mut superuser, "the settings");
}

/// The quota a superuser sets for the database (chom.site_quota = on) holds against the owner's session, which
/// turns chom.enforce_site_quota off (and tries chom.site_quota off before chom's library is loaded): a starter
/// tenant (max_sites 5) cannot go over its limit (23514 at commit). Where chom.site_quota is off, a session may
/// turn the quota on with chom.enforce_site_quota = on.
#[test]
fn the_site_quota_of_the_database_holds_against_the_session() {
    let (cluster, mut superuser, mut owner) = app("");
    let quota_tenant = "'a0000000-0000-0000-0000-0000000000f1'::uuid";
    let add = |n: &str| {
        format!("INSERT INTO public.sites (id, tenant_id, domain) VALUES (gen_random_uuid(), {quota_tenant}, 'quota-{n}.test')")
    };
    owner
        .batch_execute(&format!(
            "INSERT INTO public.tenants (id, organization_id, name, slug, tier) \
             SELECT {quota_tenant}, organization_id, 'Quota', 'quota', 'starter' FROM public.tenants LIMIT 1; \
             {}; {}; {}; {}",
            add("1"),
            add("2"),
            add("3"),
            add("4")
        ))
        .unwrap();
    assert_eq!(
        scalar_i64(&mut owner, "SELECT max_sites::bigint FROM public.tier_limits WHERE tier = 'starter'"),
        5,
        "small_data's starter tier"
    );
    superuser.batch_execute("ALTER DATABASE app SET chom.site_quota = on").unwrap();
    let mut session = cluster.owner("app");
    let _ = session.batch_execute("SET chom.site_quota = off"); // a placeholder, dropped when the library loads
    session.batch_execute("SET chom.enforce_site_quota = off").unwrap();
    session.batch_execute(&add("5")).expect("the fifth site fits");
    assert_sqlstate(session.batch_execute(&add("6")), "23514", "a sixth site with the database's quota on");
    session.batch_execute("SET chom.enforce_site_quota = off").unwrap();
    assert_sqlstate(session.batch_execute(&add("6")), "23514", "a sixth site after SET chom.enforce_site_quota = off");

    superuser.batch_execute("ALTER DATABASE app RESET chom.site_quota").unwrap();
    let mut strict = cluster.owner("app");
    strict.batch_execute("SET chom.enforce_site_quota = on").unwrap();
    assert_sqlstate(strict.batch_execute(&add("6")), "23514", "a sixth site with the session's quota on");
    cluster.owner("app").batch_execute(&add("6")).expect("with the quota off everywhere, a sixth site is allowed");
    cluster.assert_not_superuser(&mut superuser, "the quota");
    assert_exact(&mut superuser, "the quota");
}

/// Parallel query cannot hide the transaction's own writes: chom_tenant_quota(), chom_cache_drift(),
/// chom_vps_drift() and chom_vps_load() are PARALLEL RESTRICTED (a worker has none of the leader's pending
/// changes), and under a forced parallel plan they see the transaction's insert.
#[test]
fn functions_reading_pending_changes_run_in_the_leader() {
    let (cluster, mut superuser, _) = app("");
    let functions = ["chom_tenant_quota", "chom_cache_drift", "chom_vps_drift", "chom_vps_load"];
    for function in functions {
        let parallel: String = superuser
            .query_one(&format!("SELECT proparallel::text FROM pg_proc WHERE proname = '{function}'"), &[])
            .unwrap()
            .get(0);
        assert_eq!(parallel, "r", "{function} is not PARALLEL RESTRICTED: a worker would miss pending changes");
    }
    let version = scalar_i64(&mut superuser, "SELECT current_setting('server_version_num')::bigint");
    let force = if version >= 160000 { "debug_parallel_query" } else { "force_parallel_mode" };
    let quota = format!("SELECT sites_count::bigint FROM chom_tenant_quota({TENANT})");
    let load = format!("SELECT live_sites::bigint FROM chom_vps_load() WHERE vps_id = {VPS}");
    let (sites_before, load_before) = (scalar_i64(&mut superuser, &quota), scalar_i64(&mut superuser, &load));
    superuser
        .batch_execute(&format!(
            "BEGIN; {}; SET LOCAL {force} = on; SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0; \
             SET LOCAL min_parallel_table_scan_size = 0",
            add_site("parallel")
        ))
        .unwrap();
    assert_eq!(scalar_i64(&mut superuser, &quota), sites_before + 1, "chom_tenant_quota() missed the insert");
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM chom_cache_drift()"), 0, "chom_cache_drift()");
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM chom_vps_drift()"), 0, "chom_vps_drift()");
    assert_eq!(scalar_i64(&mut superuser, &load), load_before + 1, "chom_vps_load() missed the insert");
    superuser.batch_execute("COMMIT").unwrap();
    cluster.assert_not_superuser(&mut superuser, "parallel");
    assert_exact(&mut superuser, "parallel");
}

/// The owner installs chom on its tables after a DBA created the extension in the empty database (the Laravel
/// kit's order), and uninstalls it; its trigger on `tenants` meets the install's fill as app_owner. A role
/// without the owner's privileges is refused both (42501). The DBA functions chom_repair_drift() and
/// chom_refresh_all() are not the owner's unless granted.
#[test]
fn the_owner_installs_and_uninstalls_and_other_roles_are_refused() {
    let cluster = Cluster::start();
    let mut owner = cluster.owner_database("late");
    let mut superuser = cluster.superuser("late");
    superuser.batch_execute("CREATE EXTENSION chom").expect("CREATE EXTENSION chom in an empty database");
    owner.batch_execute(CHOM_SCHEMA).unwrap();
    owner.batch_execute(SMALL_DATA).unwrap();
    owner.batch_execute(&owner_trigger("owner_probe", "SELECT public.probe('trigger')")).unwrap();
    let chom_triggers = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%' AND NOT tgisinternal";
    assert_eq!(scalar_i64(&mut superuser, chom_triggers), 0, "CREATE EXTENSION before the tables installed triggers");

    superuser.batch_execute("CREATE ROLE intruder LOGIN").unwrap();
    let mut intruder = cluster.connect("late", "intruder");
    assert_sqlstate(intruder.batch_execute("SELECT * FROM chom_install()"), "42501", "chom_install() by another role");
    assert_eq!(scalar_i64(&mut superuser, chom_triggers), 0, "the intruder's chom_install() left triggers");

    let installed = owner.query("SELECT * FROM chom_install()", &[]).expect("chom_install() by the tables' owner");
    assert!(!installed.is_empty(), "chom_install() by the owner reported nothing");
    assert_eq!(scalar_i64(&mut superuser, chom_triggers), 8, "chom's triggers after the owner's chom_install()");
    assert!(!cluster.runs.roles("trigger").is_empty(), "chom_install()'s fill did not reach the owner's trigger");
    cluster.assert_not_superuser(&mut superuser, "chom_install() by the owner");
    owner.batch_execute(&format!("{}; DELETE FROM public.sites WHERE domain LIKE 'site1%'", add_site("late"))).unwrap();
    cluster.assert_not_superuser(&mut superuser, "the owner's writes");
    assert_exact(&mut superuser, "after the owner's install and writes");

    for call in ["SELECT * FROM chom_install()", "SELECT * FROM chom_uninstall()", "SELECT chom_repair_drift()"] {
        assert_sqlstate(intruder.batch_execute(call), "42501", &format!("{call} by another role, chom installed"));
    }
    assert_eq!(scalar_i64(&mut superuser, chom_triggers), 8, "the intruder's calls changed chom's triggers");
    for call in ["SELECT chom_repair_drift()", "SELECT chom_refresh_all()"] {
        assert_sqlstate(owner.batch_execute(call), "42501", &format!("{call} by the owner, not granted"));
    }
    superuser
        .batch_execute("GRANT EXECUTE ON FUNCTION chom_repair_drift(), chom_refresh_all(integer) TO app_owner")
        .unwrap();
    for call in ["SELECT chom_repair_drift()", "SELECT chom_refresh_all()"] {
        owner.batch_execute(call).unwrap_or_else(|e| panic!("{call} by the owner, granted: {}", said(&e)));
    }
    cluster.assert_not_superuser(&mut superuser, "granted DBA functions run by the owner");
    assert_exact(&mut superuser, "after the owner's repair and refresh");

    let removed = owner.query("SELECT * FROM chom_uninstall()", &[]).expect("chom_uninstall() by the tables' owner");
    assert!(!removed.is_empty(), "chom_uninstall() by the owner reported nothing");
    assert_eq!(scalar_i64(&mut superuser, chom_triggers), 0, "chom's triggers after the owner's chom_uninstall()");
    cluster.assert_not_superuser(&mut superuser, "chom_uninstall() by the owner");
    // not installed any more: chom_uninstall() has no tables (and no owner) to act for; it answers with a NOTICE
    // and changes nothing for anyone but a superuser (the migrations' down() may run twice as the owner)
    superuser.batch_execute("INSERT INTO chom.vps_load (vps_id) SELECT id FROM public.vps_servers").unwrap();
    let outcome = intruder.batch_execute("SELECT * FROM chom_uninstall()");
    let loads = scalar_i64(&mut superuser, "SELECT count(*) FROM chom.vps_load");
    assert!(
        outcome.is_ok() && loads > 0,
        "chom_uninstall() by a role without privileges, chom not installed: {outcome:?}, chom.vps_load left with {loads} rows"
    );
    superuser.batch_execute("SELECT * FROM chom_uninstall()").unwrap();
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM chom.vps_load"), 0, "a superuser's call empties it");
}

/// Layouts chom cannot act on safely are refused with 0A000: CHOM's tables of several owners (chom acts as the
/// owner of `tenants`; the error names the owners), and FORCE ROW LEVEL SECURITY on `sites`, at install and,
/// once installed, by the DDL guard.
#[test]
fn tables_of_several_owners_and_forced_row_security_are_refused() {
    let cluster = Cluster::start();
    let mut owner = cluster.chom_tables("app");
    let mut superuser = cluster.superuser("app");
    superuser
        .batch_execute("CREATE ROLE other_owner; ALTER TABLE public.vps_servers OWNER TO other_owner; SET chom.install_on_create = off; CREATE EXTENSION chom")
        .unwrap();
    let message =
        assert_sqlstate(superuser.batch_execute("SELECT * FROM chom_install()"), "0A000", "tables of two owners");
    assert!(
        message.contains(OWNER) && message.contains("other_owner"),
        "the error does not name both owners: {message}"
    );
    superuser.batch_execute("ALTER TABLE public.vps_servers OWNER TO app_owner").unwrap();

    let force = "ALTER TABLE public.sites ENABLE ROW LEVEL SECURITY; ALTER TABLE public.sites FORCE ROW LEVEL SECURITY";
    owner.batch_execute(force).unwrap();
    assert_sqlstate(
        superuser.batch_execute("SELECT * FROM chom_install()"),
        "0A000",
        "FORCE ROW LEVEL SECURITY on sites",
    );
    owner.batch_execute("ALTER TABLE public.sites NO FORCE ROW LEVEL SECURITY").unwrap();
    superuser.batch_execute("SELECT * FROM chom_install()").expect("chom_install() once FORCE is gone");
    assert_sqlstate(owner.batch_execute(force), "0A000", "FORCE ROW LEVEL SECURITY on sites once chom is installed");
    cluster.assert_not_superuser(&mut superuser, "refused layouts");
    owner.batch_execute(&add_site("rls")).unwrap();
    assert_exact(&mut superuser, "refused layouts");
}

/// Renaming a table chom needs away (the first step of putting something else in its place) is refused by the
/// DDL guard with 42P16, for each of `tenants`, `sites` and `vps_servers`.
#[test]
fn renaming_a_table_chom_needs_is_refused() {
    let (cluster, mut superuser, mut owner) = app("");
    let mut accepted = Vec::new();
    for table in ["tenants", "sites", "vps_servers"] {
        let rename = format!("ALTER TABLE public.{table} RENAME TO {table}_real");
        match owner.batch_execute(&rename) {
            Ok(()) => {
                accepted.push(table);
                owner.batch_execute(&format!("ALTER TABLE public.{table}_real RENAME TO {table}")).unwrap();
            }
            Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("42P16"), "{rename}: {}", said(&e)),
        }
    }
    cluster.assert_not_superuser(&mut superuser, "the renames");
    assert!(accepted.is_empty(), "the DDL guard let the owner rename {accepted:?} (README: refused with 42P16)");
    assert_exact(&mut superuser, "after the renames");
}

/// The owner puts a view of its own, calling its probe, in place of `table` (renaming the table away if the
/// guard lets it, otherwise copying and dropping it); then the owner writes a site on a VPS (chom's commit
/// step), a superuser does too, and a superuser calls each of chom's functions. Whatever each answers or
/// raises, nothing may run the owner's view as a superuser. Returns the calls that escalated (each reverted).
fn view_in_place_of(table: &str) -> Vec<String> {
    let (cluster, mut superuser, mut owner) = app("");
    let rename = format!("ALTER TABLE public.{table} RENAME TO {table}_real");
    if let Err(e) = owner.batch_execute(&rename) {
        assert_eq!(e.code().map(|c| c.code()), Some("42P16"), "{rename}: {}", said(&e));
        owner
            .batch_execute(&format!(
                "CREATE TABLE public.{table}_real AS SELECT * FROM public.{table}; DROP TABLE public.{table} CASCADE"
            ))
            .unwrap();
    }
    owner
        .batch_execute(&format!(
            "CREATE VIEW public.{table} AS SELECT * FROM public.{table}_real WHERE public.probe('view {table}')"
        ))
        .unwrap();
    cluster.runs.take();
    let calls: [(&str, String); 19] = [
        ("owner", add_site("owner")),
        ("postgres", add_site("dba")),
        ("postgres", "SELECT count(*) FROM chom_status()".into()),
        ("postgres", "SELECT count(*) FROM chom_install()".into()),
        ("postgres", "SELECT count(*) FROM chom_vps_drift()".into()),
        ("postgres", "SELECT count(*) FROM chom_cache_drift()".into()),
        ("postgres", "SELECT chom_pick_vps()".into()),
        ("postgres", format!("BEGIN; {}; SELECT chom_pick_vps(); COMMIT", add_site("pick"))),
        ("postgres", "SELECT count(*) FROM chom_vps_load()".into()),
        ("postgres", format!("SELECT count(*) FROM chom_tenant_stats({TENANT})")),
        ("postgres", format!("SELECT count(*) FROM chom_tenant_quota({TENANT})")),
        ("postgres", format!("SELECT chom_refresh_tenant({TENANT})")),
        ("postgres", "SELECT chom_refresh_all()".into()),
        ("postgres", "SELECT chom_repair_drift()".into()),
        ("postgres", "SELECT count(*) FROM chom_drift_probe()".into()),
        ("postgres", "SELECT count(*) FROM chom_metrics()".into()),
        ("postgres", "SELECT count(*) FROM chom_index_usage()".into()),
        ("postgres", "SELECT count(*) FROM chom_index_ddl()".into()),
        ("postgres", "SELECT count(*) FROM chom_uninstall()".into()),
    ];
    let mut escalations = Vec::new();
    for (who, sql) in calls {
        let client = if who == "owner" { &mut owner } else { &mut superuser };
        let outcome = match client.batch_execute(&sql) {
            Ok(()) => "ok".to_string(),
            Err(e) => said(&e),
        };
        let _ = client.batch_execute("ROLLBACK");
        if let Some(escalation) = cluster.escalation(&mut superuser) {
            escalations.push(format!("{who}: {sql} ({outcome}): {escalation}"));
            superuser.batch_execute("ALTER ROLE app_owner NOSUPERUSER").unwrap();
        }
    }
    escalations
}

/// A view of the owner's in place of `vps_servers` (the guard refuses the rename; the owner drops the table
/// with CASCADE, which the guard allows, and creates the view): chom's commit step and chom's functions must
/// not read it as a superuser.
#[test]
fn a_view_in_place_of_vps_servers_runs_nothing_as_a_superuser() {
    let escalations = view_in_place_of("vps_servers");
    assert!(escalations.is_empty(), "escalation through a view in place of vps_servers:\n{}", escalations.join("\n"));
}

/// The same with a view in place of `sites`.
#[test]
fn a_view_in_place_of_sites_runs_nothing_as_a_superuser() {
    let escalations = view_in_place_of("sites");
    assert!(escalations.is_empty(), "escalation through a view in place of sites:\n{}", escalations.join("\n"));
}

/// A schema `chom` created by the database's owner before the extension: CREATE EXTENSION chom refuses it
/// (42P06) instead of putting chom's tables where the owner can replace them, and creates nothing.
#[test]
fn a_schema_chom_made_by_the_owner_stops_create_extension() {
    let cluster = Cluster::start();
    let mut owner = cluster.owner_database("fresh");
    owner.batch_execute("CREATE SCHEMA chom").unwrap();
    let mut superuser = cluster.superuser("fresh");
    let outcome = superuser.batch_execute("CREATE EXTENSION chom");
    assert_eq!(
        outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code()),
        Some("42P06"),
        "CREATE EXTENSION chom adopted a schema chom of the owner's (sql/schema.sql must refuse it): {outcome:?}"
    );
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM pg_extension WHERE extname = 'chom'"), 0);
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'chom\\_%'"), 0);
    assert_eq!(
        scalar_i64(&mut superuser, "SELECT count(*) FROM pg_class WHERE relnamespace = 'chom'::regnamespace"),
        0
    );
    let owner_of_chom: String = superuser
        .query_one("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'chom'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner_of_chom, OWNER);
    cluster.assert_not_superuser(&mut superuser, "CREATE EXTENSION with a schema chom of the owner's");
}

/// The owner of the database sets its search_path to `public, pg_catalog` (ALTER DATABASE is the owner's), so
/// that `public.=(name, name)` and `public.=(name, text)`, planted beside it, hide pg_catalog's own (the same
/// signatures, found first) in every comparison of a name with a name, a literal or text. A superuser's fresh
/// sessions then write `sites` (insert, soft delete), `vps_servers` and finally TRUNCATE `sites`: each first write of a backend has chom's triggers and its commit step look the
/// installation, the node and the shards up with SQL, which must resolve in pg_catalog only. Checked from a
/// session opened before the ALTER DATABASE (the checks' own unqualified comparisons would be captured too).
#[test]
fn the_callers_search_path_reaches_none_of_chom_s_lookups() {
    let (cluster, mut superuser, mut owner) = app("");
    owner
        .batch_execute(
            "CREATE FUNCTION public.name_eq_text(a name, b text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM public.probe('operator =(name, text)');
                 RETURN pg_catalog.nameeqtext(a, b);
             END $$;
             CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.name_eq_text);
             CREATE FUNCTION public.name_eq_name(a name, b name) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM public.probe('operator =(name, name)');
                 RETURN pg_catalog.nameeq(a, b);
             END $$;
             CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.name_eq_name);
             ALTER DATABASE app SET search_path = public, pg_catalog;",
        )
        .unwrap();
    // the operator is real: a superuser's comparison in such a session escalates
    let mut probe = cluster.superuser("app");
    probe.batch_execute("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'chom'").unwrap();
    assert!(cluster.escalation(&mut superuser).is_some(), "the planted operator did not capture a superuser");
    superuser.batch_execute("ALTER ROLE app_owner NOSUPERUSER").unwrap();
    drop(probe);
    let vps = "INSERT INTO public.vps_servers (id, hostname, ip_address, provider, region, spec_cpu, spec_memory_mb, \
               spec_disk_gb, status, allocation_type, health_status) VALUES (gen_random_uuid(), 'search-path.test', \
               '10.9.9.9', 'hetzner', 'eu-central', 2, 2048, 40, 'active', 'shared', 'healthy')";
    let soft_delete = "UPDATE public.sites SET deleted_at = now() \
                       WHERE id = (SELECT s.id FROM public.sites s WHERE s.deleted_at IS NULL LIMIT 1)";
    for (what, statement) in [
        ("a site inserted", add_site("search-path")),
        ("a site soft-deleted in a transaction block", format!("BEGIN; {soft_delete}; COMMIT")),
        ("a VPS inserted", vps.to_string()),
        ("TRUNCATE sites", "TRUNCATE public.sites CASCADE".to_string()),
    ] {
        let mut writer = cluster.superuser("app");
        writer.batch_execute(&statement).unwrap_or_else(|e| panic!("{what}: {}", said(&e)));
        drop(writer);
        cluster.assert_not_superuser(&mut superuser, what);
        assert_exact(&mut superuser, what);
    }
    assert_eq!(scalar_i64(&mut superuser, "SELECT count(*) FROM public.sites"), 0);
}

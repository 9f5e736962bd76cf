//! Shared set-up for the `#[pg_test]`s beside the code: CHOM's real schema (tests/fixtures), a small dataset,
//! and checks against an independent recount. Each test runs in one transaction, rolled back; multi-session
//! behaviour, dump/restore and CREATE INDEX CONCURRENTLY are in tests/ (over connections).

use pgrx::prelude::*;

pub const CHOM_SCHEMA: &str = include_str!("../tests/fixtures/chom_schema.sql");
pub const SMALL_DATA: &str = include_str!("../tests/fixtures/small_data.sql");
/// The independent recount all tests share, made temporary views for each check (a view would hold back the DDL
/// some tests make).
const RECOUNT: &str = include_str!("../tests/fixtures/recount.sql");

/// pg_temp.sqlstate_of(statement): the SQLSTATE a statement fails with (NULL when it succeeds), run in a
/// subtransaction so the test's transaction goes on.
pub fn define_sqlstate_of() {
    Spi::run(
        "CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE statement; RETURN NULL; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$",
    )
    .expect("helper");
}

pub fn load_schema() {
    Spi::run(CHOM_SCHEMA).expect("CHOM schema loads");
    define_sqlstate_of();
}

pub fn install_with_data() {
    load_schema();
    Spi::run(SMALL_DATA).expect("data loads");
    Spi::run("SELECT count(*) FROM chom_install()").expect("install");
}

pub fn count(sql: &str) -> i64 {
    Spi::get_one::<i64>(sql).expect("query runs").unwrap_or(0)
}

pub fn sqlstate(statement: &str) -> Option<String> {
    Spi::get_one_with_args::<String>("SELECT pg_temp.sqlstate_of($1)", &[statement.into()]).expect("helper runs")
}

/// Tenants whose aggregates as chom reports them to this transaction (chom_tenant_stats(): the cached columns
/// with the transaction's pending changes) differ from an independent recount. Each pg_test is one
/// transaction that never commits, so this is what can be checked here; tests/ checks the columns after
/// commit.
pub fn drifted_tenants() -> i64 {
    against_recount(
        "SELECT count(*) FROM pg_temp.recount_tenants r CROSS JOIN LATERAL chom_tenant_stats(r.tenant_id) chom \
         WHERE (chom.sites_count, chom.storage_mb) IS DISTINCT FROM (r.sites, r.storage_mb)",
    )
}

/// The same for the per-VPS loads (chom_vps_load()); a VPS missing from it counts as drifted.
pub fn drifted_vps() -> i64 {
    against_recount(
        "SELECT count(*) FROM pg_temp.recount_vps r LEFT JOIN chom_vps_load() l ON l.vps_id = r.vps_id \
         WHERE l.live_sites IS DISTINCT FROM r.sites",
    )
}

fn against_recount(query: &str) -> i64 {
    Spi::run(&RECOUNT.replace(":schema", "pg_temp")).expect("the recount views");
    let count = count(query);
    Spi::run("DROP VIEW pg_temp.recount_tenants, pg_temp.recount_vps").expect("dropping the recount views");
    count
}

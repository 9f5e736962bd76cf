//! chom_metrics(): one row of typed figures, from the same inspection and decision as chom_status().

use crate::control::decide::{self as control, Health, StorageState};
use crate::maintain::recount::count_tenants;
use crate::monitoring::runs::own;
use crate::schema::queries::Query;
use crate::schema::resolve;
use pgrx::datum::{AnyNumeric, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Object counts of chom_metrics(), from chom's one decision ([`control::classify`]); indexes by the state
/// chom_status() shows for them.
#[derive(Debug, Default, PartialEq)]
pub struct ObjectCounts {
    pub triggers_enabled: i32,
    pub triggers_disabled: i32,
    pub triggers_missing: i32,
    pub indexes_installed: i32,
    pub indexes_reused: i32,
    pub indexes_missing: i32,
    pub indexes_invalid: i32,
    pub indexes_conflict: i32,
}

pub fn object_counts(states: &control::States) -> ObjectCounts {
    let mut counts = ObjectCounts::default();
    for (trigger, state) in &states.triggers {
        // the health chom_status() shows: a trigger of an older chom works, so it counts as enabled
        match control::trigger_health(trigger, state).0 {
            Health::Installed | Health::Reused => counts.triggers_enabled += 1,
            Health::Disabled => counts.triggers_disabled += 1,
            Health::Missing | Health::Invalid | Health::Conflict => counts.triggers_missing += 1,
        }
    }
    for (index, state) in &states.indexes {
        match control::index_health(index, state, states.installed).0 {
            Health::Installed => counts.indexes_installed += 1,
            Health::Reused => counts.indexes_reused += 1,
            Health::Missing | Health::Disabled => counts.indexes_missing += 1,
            Health::Invalid => counts.indexes_invalid += 1,
            Health::Conflict => counts.indexes_conflict += 1,
        }
    }
    counts
}

/// tenants' fillfactor as the storage state says: None for a partitioned table.
fn fillfactor(state: &StorageState) -> Option<i32> {
    match state {
        StorageState::SetByChom(ff) | StorageState::Own(ff) => Some(*ff),
        StorageState::Default | StorageState::ResetSinceChom => Some(100),
        StorageState::NotApplicable => None,
    }
}

/// One row of typed figures for monitoring (no numbers inside prose): chom's version; whether chom is installed
/// on CHOM's tables; its triggers enabled / disabled / missing and its catalogue indexes installed / reused /
/// missing / invalid / conflict (the states chom_status() shows, from the same inspection); tenants'
/// fillfactor, its row updates and the share of them that were HOT (NULL before any); the rows of tenants and
/// of chom.vps_load; the last drift check (a probe or a repair: when, which, tenants and VPSes examined and
/// drifted), the last repair (when, tenants and VPSes fixed) and the last full refresh (when, tenants), from
/// chom.runs; and the busy tenants' deltas waiting to be folded into `tenants` and when the oldest was
/// written (docs/busy-tenant.md: `tenants.cached_sites_count` read directly is behind by them). Without CHOM's
/// tables the object and row counts are NULL.
// one row of many typed columns: pgrx needs the tuple written out in the signature
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe)]
pub fn chom_metrics() -> TableIterator<
    'static,
    (
        name!(chom_version, Option<String>),
        name!(installed, bool),
        name!(triggers_enabled, Option<i32>),
        name!(triggers_disabled, Option<i32>),
        name!(triggers_missing, Option<i32>),
        name!(indexes_installed, Option<i32>),
        name!(indexes_reused, Option<i32>),
        name!(indexes_missing, Option<i32>),
        name!(indexes_invalid, Option<i32>),
        name!(indexes_conflict, Option<i32>),
        name!(tenants_fillfactor, Option<i32>),
        name!(tenants_row_updates, Option<i64>),
        name!(tenants_hot_update_ratio, Option<AnyNumeric>),
        name!(tenants_tracked, Option<i64>),
        name!(vps_tracked, Option<i64>),
        name!(last_check_at, Option<TimestampWithTimeZone>),
        name!(last_check_kind, Option<String>),
        name!(last_check_tenants_examined, Option<i64>),
        name!(last_check_tenants_drifted, Option<i64>),
        name!(last_check_vps_examined, Option<i64>),
        name!(last_check_vps_drifted, Option<i64>),
        name!(last_repair_at, Option<TimestampWithTimeZone>),
        name!(last_repair_tenants_fixed, Option<i64>),
        name!(last_repair_vps_fixed, Option<i64>),
        name!(last_refresh_at, Option<TimestampWithTimeZone>),
        name!(last_refresh_tenants, Option<i64>),
        name!(unfolded_deltas, Option<i64>),
        name!(oldest_unfolded_delta_at, Option<TimestampWithTimeZone>),
    ),
> {
    let target = resolve::installed_or_discovered();
    let inspected = target.as_ref().map(|target| {
        let facts = crate::control::inspect::inspect(target);
        let states = control::classify(&facts);
        (facts, states)
    });
    let (updates, hot) = inspected
        .as_ref()
        .map(|(facts, _)| (facts.storage.updates.unwrap_or(0), facts.storage.hot_updates.unwrap_or(0)))
        .unwrap_or((0, 0));
    let history = crate::pg::db::rows(&own(Query::MetricsRuns), &[updates.into(), hot.into()], |row| {
        (
            row.get::<String>(1),
            row.get::<AnyNumeric>(2),
            (row.get(3), row.get::<String>(4), row.get(5), row.get(6), row.get(7), row.get(8)),
            (row.get(9), row.get(10), row.get(11)),
            (row.get(12), row.get(13)),
        )
    });
    let Some((version, ratio, check, repair, refresh)) = history.into_iter().next() else {
        crate::pg::db::missing("metrics_runs")
    };
    let (installed, counts, fillfactor, updates, tenants, vps) = match (&target, &inspected) {
        (Some(target), Some((facts, states))) => (
            states.installed,
            Some(object_counts(states)),
            fillfactor(&states.storage),
            facts.storage.updates,
            Some(count_tenants(target)),
            Some(facts.own_tables.vps_rows),
        ),
        _ => (false, None, None, None, None, None),
    };
    let count = |pick: fn(&ObjectCounts) -> i32| counts.as_ref().map(pick);
    // read by the inspection already; none to fold on Citus or before the update that creates the table
    let (unfolded, oldest_unfolded) = match &inspected {
        Some((facts, _)) => {
            let (depth, oldest) = facts.own_tables.unfolded_deltas.unwrap_or((0, None));
            (Some(depth), oldest)
        }
        None => (None, None),
    };
    TableIterator::once((
        version,
        installed,
        count(|c| c.triggers_enabled),
        count(|c| c.triggers_disabled),
        count(|c| c.triggers_missing),
        count(|c| c.indexes_installed),
        count(|c| c.indexes_reused),
        count(|c| c.indexes_missing),
        count(|c| c.indexes_invalid),
        count(|c| c.indexes_conflict),
        fillfactor,
        updates,
        ratio,
        tenants,
        vps,
        check.0,
        check.1,
        check.2,
        check.3,
        check.4,
        check.5,
        repair.0,
        repair.1,
        repair.2,
        refresh.0,
        refresh.1,
        unfolded,
        oldest_unfolded,
    ))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    fn metric(column: &str) -> i64 {
        count(&format!("SELECT ({column})::bigint FROM chom_metrics()"))
    }

    fn is_null(column: &str) -> bool {
        Spi::get_one::<bool>(&format!("SELECT ({column}) IS NULL FROM chom_metrics()")).unwrap().unwrap()
    }

    #[pg_test]
    fn metrics_without_chom_tables_say_not_installed_with_null_counts() {
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        for column in ["triggers_missing", "indexes_missing", "tenants_tracked", "vps_tracked", "last_check_at"] {
            assert!(is_null(column), "{column}");
        }
        assert_eq!(
            Spi::get_one::<String>("SELECT chom_version FROM chom_metrics()").unwrap().as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[pg_test]
    fn metrics_of_tables_chom_is_not_installed_on() {
        load_schema();
        Spi::run(SMALL_DATA).unwrap();
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_enabled"), 0);
        assert_eq!(metric("triggers_missing"), crate::schema::catalog::TRIGGERS.len() as i64);
        // CHOM's schema has three equivalents of catalogue indexes: reused; the rest are missing
        assert_eq!(metric("indexes_reused"), 3);
        assert_eq!(metric("indexes_missing"), metric("indexes_reused + indexes_missing") - 3);
        assert_eq!(metric("indexes_installed + indexes_invalid + indexes_conflict"), 0);
        assert_eq!(metric("tenants_tracked"), 4);
        assert_eq!(metric("vps_tracked"), 0);
        assert_eq!(metric("tenants_fillfactor"), 100);
    }

    #[pg_test]
    fn metrics_of_an_installation_in_each_state_agree_with_chom_status() {
        install_with_data();
        let triggers = crate::schema::catalog::TRIGGERS.len() as i64;
        assert!(Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_enabled"), triggers);
        assert_eq!(metric("triggers_disabled + triggers_missing"), 0);
        assert_eq!(
            metric("indexes_installed"),
            count("SELECT count(*) FROM chom_status() WHERE kind = 'index' AND state = 'installed'")
        );
        assert_eq!(metric("indexes_reused"), 3);
        assert_eq!(metric("indexes_missing + indexes_invalid + indexes_conflict"), 0);
        assert_eq!(metric("tenants_fillfactor"), 70);
        assert_eq!(metric("tenants_tracked"), 4);
        assert_eq!(metric("vps_tracked"), 4);
        // a disabled trigger, an invalid index, a dropped one
        Spi::run("ALTER TABLE sites DISABLE TRIGGER chom_sites_insert").unwrap();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_sites_vps_status'::regclass").unwrap();
        Spi::run("DROP INDEX idx_users_org_role").unwrap();
        assert_eq!(metric("triggers_disabled"), 1);
        assert_eq!(metric("triggers_enabled"), triggers - 1);
        assert_eq!(metric("indexes_invalid"), 1);
        assert_eq!(metric("indexes_missing"), 1);
        for (column, state) in
            [("indexes_invalid", "invalid"), ("indexes_missing", "missing"), ("triggers_disabled", "disabled")]
        {
            let kind = if column.starts_with("index") { "index" } else { "trigger" };
            assert_eq!(
                metric(column),
                count(&format!("SELECT count(*) FROM chom_status() WHERE kind = '{kind}' AND state = '{state}'")),
                "{column} agrees with chom_status()"
            );
        }
        // a squatter on a catalogue name: conflict
        Spi::run("CREATE INDEX idx_users_org_role ON users (email)").unwrap();
        assert_eq!(metric("indexes_conflict"), 1);
        assert_eq!(metric("indexes_missing"), 0);
        // HOT share: a ratio between 0 and 1 once tenants had row updates, NULL never
        let ratio =
            "SELECT tenants_hot_update_ratio IS NULL OR tenants_hot_update_ratio BETWEEN 0 AND 1 FROM chom_metrics()";
        assert!(Spi::get_one::<bool>(ratio).unwrap().unwrap());
        assert_eq!(
            Spi::get_one::<String>("SELECT pg_typeof(tenants_hot_update_ratio)::text FROM chom_metrics()")
                .unwrap()
                .as_deref(),
            Some("numeric")
        );
        // uninstalled: not installed, triggers missing
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert!(!Spi::get_one::<bool>("SELECT installed FROM chom_metrics()").unwrap().unwrap());
        assert_eq!(metric("triggers_missing"), triggers);
    }

    #[pg_test]
    fn the_probe_finds_drift_in_its_sample_and_is_recorded() {
        install_with_data();
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
        assert!(is_null("last_check_at") && is_null("last_repair_at") && is_null("last_refresh_at"));
        // a small table is sampled whole
        assert_eq!(count("SELECT sampled FROM chom_drift_probe()"), 4);
        assert_eq!(count("SELECT drifted + vps_drifted FROM chom_drift_probe()"), 0);
        assert_eq!(count("SELECT vps_sampled FROM chom_drift_probe(100, 1000) WHERE complete"), 4);
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), 3);
        // drift behind chom's back
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("UPDATE tenants SET cached_sites_count = cached_sites_count + 1 WHERE id = 'a0000000-0000-0000-0000-000000000002'").unwrap();
        Spi::run("UPDATE chom.vps_load SET live_sites = live_sites + 5 WHERE vps_id = 'b0000000-0000-0000-0000-000000000001'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        let found = "SELECT drifted::text || '/' || vps_drifted FROM chom_drift_probe(10, 5000)";
        assert_eq!(Spi::get_one::<String>(found).unwrap().as_deref(), Some("1/1"));
        assert_eq!(metric("last_check_tenants_drifted"), 1);
        assert_eq!(metric("last_check_vps_drifted"), 1);
        assert_eq!(metric("last_check_tenants_examined"), 4);
        assert_eq!(
            Spi::get_one::<String>("SELECT last_check_kind FROM chom_metrics()").unwrap().as_deref(),
            Some("probe")
        );
        // a sample smaller than the table
        assert_eq!(count("SELECT sampled FROM chom_drift_probe(2)"), 2);
        // the repair is recorded, and becomes the last check
        assert_eq!(count("SELECT chom_repair_drift()"), 2);
        assert_eq!(
            Spi::get_one::<String>("SELECT last_check_kind FROM chom_metrics()").unwrap().as_deref(),
            Some("repair")
        );
        assert_eq!(metric("last_repair_tenants_fixed"), 1);
        assert_eq!(metric("last_repair_vps_fixed"), 1);
        assert_eq!(metric("last_check_tenants_examined"), 4);
        assert_eq!(metric("last_check_tenants_drifted"), 1);
        assert_eq!(count("SELECT drifted + vps_drifted FROM chom_drift_probe()"), 0);
        // the refresh too
        assert!(is_null("last_refresh_at"));
        Spi::run("SELECT chom_refresh_all(3)").unwrap();
        assert_eq!(metric("last_refresh_tenants"), 4);
        assert!(!is_null("last_refresh_at"));
        assert_eq!(
            count(
                "SELECT count(*) FROM chom.runs WHERE finished_at >= started_at AND finished_at <= clock_timestamp()"
            ),
            count("SELECT count(*) FROM chom.runs")
        );
    }

    #[pg_test]
    fn a_read_only_transaction_probes_without_recording() {
        install_with_data();
        Spi::run("SET LOCAL transaction_read_only = on").unwrap();
        assert_eq!(count("SELECT sampled FROM chom_drift_probe()"), 4);
        assert_eq!(count("SELECT chom_repair_drift()"), 0);
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
    }

    #[pg_test]
    fn the_history_keeps_the_newest_runs_of_each_kind() {
        install_with_data();
        Spi::run("SELECT chom_repair_drift()").unwrap();
        Spi::run(&format!(
            "INSERT INTO chom.runs (kind, started_at, finished_at) \
             SELECT 'probe', now(), now() FROM generate_series(1, {})",
            crate::monitoring::runs::RUNS_KEPT + 10
        ))
        .unwrap();
        Spi::run("SELECT count(*) FROM chom_drift_probe()").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'probe'"), crate::monitoring::runs::RUNS_KEPT);
        assert_eq!(count("SELECT count(*) FROM chom.runs WHERE kind = 'repair'"), 1, "other kinds are kept");
        // the newest probe is the one just recorded (it has counts; the filler rows have none)
        assert_eq!(count("SELECT tenants_examined FROM chom.runs WHERE kind = 'probe' ORDER BY id DESC LIMIT 1"), 4);
        // nobody but chom records a run
        assert_eq!(sqlstate("SELECT chom.record_run()").as_deref(), Some("42501"));
    }

    #[pg_test]
    fn bad_input_gets_specific_sqlstates() {
        install_with_data();
        for (call, expected) in [
            ("SELECT * FROM chom_drift_probe(0)", "22023"),
            ("SELECT * FROM chom_drift_probe(100001)", "22023"),
            ("SELECT * FROM chom_drift_probe(-1)", "22023"),
            ("SELECT * FROM chom_drift_probe(100, 0)", "22023"),
            ("SELECT * FROM chom_drift_probe(100, 60001)", "22023"),
            ("SELECT * FROM chom_drift_probe(NULL)", "22004"),
            ("SELECT * FROM chom_drift_probe(100, NULL)", "22004"),
            ("SELECT * FROM chom.refresh_batch(NULL, 0, now(), 0)", "22023"),
            // a pg_test runs inside a transaction block
            ("CALL chom_refresh_all_batched()", "25001"),
            ("CALL chom_refresh_all_batched(0)", "25001"),
        ] {
            assert_eq!(sqlstate(call).as_deref(), Some(expected), "{call}");
        }
        assert_eq!(sqlstate("SELECT * FROM chom_metrics()"), None);
        assert_eq!(sqlstate("SELECT * FROM chom_drift_probe(1, 1)"), None);
    }

    #[pg_test]
    fn the_probe_needs_an_installation() {
        load_schema();
        assert_eq!(sqlstate("SELECT * FROM chom_drift_probe()").as_deref(), Some("55000"));
        assert_eq!(sqlstate("SELECT * FROM chom_metrics()"), None);
    }

    #[pg_test]
    fn a_batch_of_the_procedure_refreshes_and_the_last_records_the_run() {
        install_with_data();
        let first =
            "SELECT last_id::text || ' ' || refreshed || ' ' || total FROM chom.refresh_batch(NULL, 3, now(), 0)";
        let row = Spi::get_one::<String>(first).unwrap().unwrap();
        assert!(row.starts_with("a0000000-0000-0000-0000-000000000003 3 4"), "{row}");
        let rest = "SELECT refreshed FROM chom.refresh_batch('a0000000-0000-0000-0000-000000000003', 3, now(), 3)";
        assert_eq!(count(rest), 1);
        assert_eq!(count("SELECT count(*) FROM chom.runs"), 0);
        let last = "SELECT (last_id IS NULL AND total IS NULL)::int::bigint FROM chom.refresh_batch('a0000000-0000-0000-0000-000000000004', 3, now(), 4)";
        assert_eq!(count(last), 1);
        assert_eq!(metric("last_refresh_tenants"), 4);
        assert_eq!(drifted_tenants(), 0);
    }
}

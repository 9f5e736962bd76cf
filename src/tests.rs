//! `#[pg_test]`s: each runs in one transaction, rolled back, on CHOM's real schema (tests/fixtures).
//! Multi-session behaviour, dump/restore and CREATE INDEX CONCURRENTLY are in tests/ (over connections).

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const CHOM_SCHEMA: &str = include_str!("../tests/fixtures/chom_schema.sql");
    const SMALL_DATA: &str = include_str!("../tests/fixtures/small_data.sql");

    /// pg_temp.sqlstate_of(statement): the SQLSTATE a statement fails with (NULL when it succeeds), run in a
    /// subtransaction so the test's transaction goes on.
    fn define_sqlstate_of() {
        Spi::run(
            "CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$ \
             BEGIN EXECUTE statement; RETURN NULL; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$",
        )
        .expect("helper");
    }

    fn load_schema() {
        Spi::run(CHOM_SCHEMA).expect("CHOM schema loads");
        define_sqlstate_of();
    }

    fn install_with_data() {
        load_schema();
        Spi::run(SMALL_DATA).expect("data loads");
        Spi::run("SELECT count(*) FROM chom_install()").expect("install");
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).expect("query runs").unwrap_or(0)
    }

    fn sqlstate(statement: &str) -> Option<String> {
        Spi::get_one_with_args::<String>("SELECT pg_temp.sqlstate_of($1)", &[statement.into()]).expect("helper runs")
    }

    /// An independent recount, compared with the cached columns: the number of tenants that differ.
    fn drifted_tenants() -> i64 {
        count(
            "SELECT count(*) FROM tenants t CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(s.storage_used_mb), 0) AS mb \
             FROM sites s WHERE s.tenant_id = t.id AND s.deleted_at IS NULL) live \
             WHERE (t.cached_sites_count, t.cached_storage_mb) IS DISTINCT FROM (live.n, live.mb)",
        )
    }

    fn drifted_vps() -> i64 {
        count(
            "SELECT count(*) FROM vps_servers v LEFT JOIN chom_vps_load l ON l.vps_id = v.id \
             WHERE l.live_sites IS DISTINCT FROM (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL)",
        )
    }

    #[pg_test]
    fn the_catalogue_holds_the_seed_indexes_and_cached_at() {
        assert_eq!(count("SELECT count(*) FROM chom_managed_index"), 21);
        assert_eq!(count("SELECT count(*) FROM chom_managed_index WHERE name = 'idx_tenants_cached_at'"), 1);
        assert_eq!(
            count("SELECT count(*) FROM chom_managed_index WHERE descending = '{created_at}'"),
            4,
            "the chronological listings are newest first"
        );
    }

    #[pg_test]
    fn without_chom_tables_install_refuses_with_undefined_table() {
        define_sqlstate_of();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42P01"));
        assert_eq!(sqlstate("SELECT chom_pick_vps()").as_deref(), Some("55000"));
    }

    #[pg_test]
    fn install_reuses_the_three_equivalents_and_creates_the_rest() {
        load_schema();
        let reused = count("SELECT count(*) FROM chom_install() WHERE kind = 'index' AND action LIKE 'reused %'");
        assert_eq!(reused, 3);
        let reused_names: Vec<String> = Spi::connect(|c| {
            c.select("SELECT name || '=' || reused_index FROM chom_installed WHERE origin = 'reused' AND kind = 'index' ORDER BY 1", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        assert_eq!(
            reused_names,
            vec![
                "idx_audit_org_created=audit_logs_organization_id_created_at_index",
                "idx_sites_tenant_status=sites_tenant_id_status_index",
                "idx_vps_alloc_vps_tenant=vps_allocations_vps_id_tenant_id_unique",
            ]
        );
        assert_eq!(count("SELECT count(*) FROM chom_installed WHERE kind = 'index' AND origin = 'created'"), 18);
        // no two valid indexes of a table share their key columns
        assert_eq!(
            count(
                "SELECT count(*) FROM (SELECT indrelid, chom_index_key_columns(indexrelid) k FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
            0
        );
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')"), 0);
    }

    #[pg_test]
    fn install_is_idempotent() {
        install_with_data();
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE action = 'created'"), 0);
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn install_fills_the_aggregates_exactly() {
        install_with_data();
        assert!(count("SELECT count(*) FROM sites WHERE deleted_at IS NOT NULL") > 0, "fixture has soft-deleted sites");
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT count(*) FROM tenants WHERE cached_at IS NULL"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_cache_drift()"), 0);
    }

    #[pg_test]
    fn single_row_writes_keep_aggregates_exact() {
        install_with_data();
        let statements = [
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) VALUES (gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000002', 'x1.test', 42)",
            "UPDATE sites SET storage_used_mb = storage_used_mb + 7 WHERE domain = 'x1.test'",
            "UPDATE sites SET deleted_at = now() WHERE domain = 'x1.test'",
            "UPDATE sites SET deleted_at = NULL WHERE domain = 'x1.test'",
            "UPDATE sites SET tenant_id = 'a0000000-0000-0000-0000-000000000002', vps_id = NULL WHERE domain = 'x1.test'",
            "DELETE FROM sites WHERE domain = 'x1.test'",
        ];
        for statement in statements {
            Spi::run(statement).unwrap();
            assert_eq!(drifted_tenants(), 0, "after {statement}");
            assert_eq!(drifted_vps(), 0, "after {statement}");
        }
    }

    #[pg_test]
    fn bulk_and_cascading_writes_keep_aggregates_exact() {
        install_with_data();
        let statements = [
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT gen_random_uuid(), t.id, v.id, 'bulk' || i || '.' || t.slug, i FROM tenants t CROSS JOIN generate_series(1, 20) i CROSS JOIN LATERAL (SELECT id FROM vps_servers ORDER BY id OFFSET (i % 3) LIMIT 1) v",
            "UPDATE sites SET tenant_id = CASE WHEN tenant_id = 'a0000000-0000-0000-0000-000000000001' THEN 'a0000000-0000-0000-0000-000000000002'::uuid ELSE 'a0000000-0000-0000-0000-000000000001'::uuid END, storage_used_mb = storage_used_mb * 2 WHERE domain LIKE 'bulk1%' AND tenant_id IN ('a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002')",
            "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb) SELECT id, tenant_id, vps_id, domain, 1 FROM sites WHERE domain LIKE 'bulk2%' ON CONFLICT (id) DO UPDATE SET storage_used_mb = excluded.storage_used_mb, deleted_at = now()",
            "WITH moved AS (UPDATE sites SET deleted_at = now() WHERE domain LIKE 'bulk3%' RETURNING id) DELETE FROM sites WHERE domain LIKE 'bulk4%'",
            "DELETE FROM vps_servers WHERE id = 'b0000000-0000-0000-0000-000000000003'",
            "DELETE FROM tenants WHERE id = 'a0000000-0000-0000-0000-000000000003'",
            "MERGE INTO sites s USING (SELECT id FROM sites WHERE domain LIKE 'bulk5%') m ON s.id = m.id WHEN MATCHED THEN UPDATE SET storage_used_mb = 0",
            "TRUNCATE sites CASCADE",
        ];
        for statement in statements {
            Spi::run(statement).unwrap();
            assert_eq!(drifted_tenants(), 0, "after {statement}");
            assert_eq!(drifted_vps(), 0, "after {statement}");
        }
    }

    #[pg_test]
    fn savepoint_rollback_leaves_aggregates_exact() {
        install_with_data();
        assert_eq!(
            sqlstate("INSERT INTO sites (id, tenant_id, vps_id, domain) SELECT gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', NULL, 'dup.test' FROM generate_series(1, 2)").as_deref(),
            Some("23505"),
            "the second row violates (tenant_id, domain): the statement and its trigger work roll back together"
        );
        assert_eq!(drifted_tenants(), 0);
    }

    #[pg_test]
    fn uninstall_removes_what_chom_added_and_keeps_what_it_reused() {
        install_with_data();
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname LIKE 'idx\\_%' AND relkind = 'i'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname LIKE 'cached\\_%' AND NOT attisdropped"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname = 'sites_tenant_id_status_index'"), 1);
        assert_eq!(count("SELECT count(*) FROM chom_installed"), 0);
    }

    #[pg_test]
    fn columns_added_by_the_application_are_adopted_and_kept() {
        load_schema();
        Spi::run("ALTER TABLE tenants ADD COLUMN cached_storage_mb bigint NOT NULL DEFAULT 0, ADD COLUMN cached_sites_count integer NOT NULL DEFAULT 0, ADD COLUMN cached_at timestamp(0) NULL").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE kind = 'column' AND action LIKE 'reused%'"), 3);
        Spi::run("SELECT count(*) FROM chom_uninstall()").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname LIKE 'cached\\_%' AND NOT attisdropped"), 3);
    }

    #[pg_test]
    fn a_mistyped_schema_is_refused_and_nothing_is_left_behind() {
        load_schema();
        Spi::run("ALTER TABLE tenants ADD COLUMN cached_sites_count text").unwrap();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("42804"));
        assert_eq!(count("SELECT count(*) FROM chom_installed"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'"), 0);
    }

    #[pg_test]
    fn a_schema_without_uuid_keys_is_refused() {
        define_sqlstate_of();
        Spi::run("CREATE TABLE tenants (id bigint PRIMARY KEY); CREATE TABLE vps_servers (id bigint PRIMARY KEY); CREATE TABLE sites (id bigint PRIMARY KEY, tenant_id bigint, vps_id bigint, storage_used_mb bigint, deleted_at timestamp)").unwrap();
        let state = sqlstate("SELECT * FROM chom_install()");
        assert!(matches!(state.as_deref(), Some("42804") | Some("42703") | Some("42P16")), "got {state:?}");
    }

    #[pg_test]
    fn status_reports_an_invalid_index() {
        install_with_data();
        Spi::run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_sites_vps_status'::regclass").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE name = 'idx_sites_vps_status' AND state = 'invalid'"), 1);
        Spi::run("ALTER TABLE sites DISABLE TRIGGER chom_sites_insert").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_status() WHERE name = 'chom_sites_insert' AND state = 'disabled'"), 1);
    }

    #[pg_test]
    fn index_ddl_lists_only_missing_indexes() {
        load_schema();
        // 17 of 18: idx_tenants_cached_at needs the column chom_install() adds
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl() s WHERE s LIKE 'CREATE INDEX CONCURRENTLY IF NOT EXISTS %'"), 17);
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl(false) s WHERE s LIKE 'COMMENT ON INDEX %'"), 17);
        Spi::run("SELECT count(*) FROM chom_install()").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl()"), 0);
        Spi::run("DROP INDEX idx_sites_vps_status").unwrap();
        assert_eq!(count("SELECT count(*) FROM chom_index_ddl()"), 2);
    }

    #[pg_test]
    fn indexes_built_from_index_ddl_are_adopted_as_chom_own() {
        load_schema();
        let ddl: Vec<String> = Spi::connect(|c| {
            c.select("SELECT s FROM chom_index_ddl(false) s", None, &[]).unwrap().map(|r| r.get::<String>(1).unwrap().unwrap()).collect()
        });
        for statement in ddl {
            Spi::run(&statement).unwrap();
        }
        assert_eq!(count("SELECT count(*) FROM chom_install() WHERE kind = 'index' AND action = 'exists'"), 17);
        assert_eq!(count("SELECT count(*) FROM chom_installed WHERE kind = 'index' AND origin = 'created'"), 18);
    }

    #[pg_test]
    fn drift_from_bypassed_triggers_is_found_and_repaired() {
        install_with_data();
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("UPDATE sites SET deleted_at = now() WHERE tenant_id = 'a0000000-0000-0000-0000-000000000001' AND deleted_at IS NULL").unwrap();
        Spi::run("UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE tenant_id = 'a0000000-0000-0000-0000-000000000002'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        let found: Vec<String> = Spi::connect(|c| {
            c.select("SELECT tenant_id::text FROM chom_cache_drift() ORDER BY 1", None, &[]).unwrap().map(|r| r.get::<String>(1).unwrap().unwrap()).collect()
        });
        assert_eq!(found, vec!["a0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000002"]);
        assert_eq!(count("SELECT count(*) FROM chom_vps_drift()"), drifted_vps());
        let fixed = count("SELECT chom_repair_drift()");
        assert!(fixed >= 2);
        assert_eq!(drifted_tenants(), 0);
        assert_eq!(drifted_vps(), 0);
        assert_eq!(count("SELECT chom_repair_drift()"), 0);
    }

    #[pg_test]
    fn tenant_stats_reads_the_cache_and_recomputes_when_stale() {
        install_with_data();
        let tenant = "'a0000000-0000-0000-0000-000000000001'::uuid";
        let live = count(&format!("SELECT count(*) FROM sites WHERE tenant_id = {tenant} AND deleted_at IS NULL"));
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})")), live);
        // corrupt the cache behind chom's back and make it stale: the stats recompute and store
        Spi::run(&format!("SET LOCAL session_replication_role = replica; UPDATE tenants SET cached_sites_count = 999, cached_at = now() - interval '1 hour' WHERE id = {tenant}; SET LOCAL session_replication_role = origin")).unwrap();
        assert_eq!(count(&format!("SELECT sites_count::bigint FROM chom_tenant_stats({tenant})")), live);
        assert_eq!(count(&format!("SELECT cached_sites_count::bigint FROM tenants WHERE id = {tenant}")), live);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_stats('00000000-0000-0000-0000-00000000dead')"), 0);
        assert_eq!(count("SELECT count(*) FROM chom_tenant_stats(NULL)"), 0);
    }

    #[pg_test]
    fn refresh_functions_recount_and_reject_bad_input() {
        install_with_data();
        assert_eq!(count("SELECT chom_refresh_all(2)"), count("SELECT count(*) FROM tenants"));
        assert_eq!(sqlstate("SELECT chom_refresh_all(0)").as_deref(), Some("22023"));
        assert_eq!(sqlstate("SELECT chom_refresh_all(NULL)").as_deref(), Some("22004"));
        assert_eq!(sqlstate("SELECT chom_refresh_tenant(NULL)").as_deref(), Some("22004"));
        assert_eq!(sqlstate("SELECT chom_refresh_tenant('00000000-0000-0000-0000-00000000dead')").as_deref(), Some("P0002"));
        assert_eq!(sqlstate("SELECT chom_refresh_tenant('a0000000-0000-0000-0000-000000000001')"), None);
    }

    #[pg_test]
    fn pick_vps_takes_the_least_loaded_eligible_one() {
        install_with_data();
        let expected: Option<String> = Spi::get_one(
            "SELECT v.id::text FROM vps_servers v WHERE v.status = 'active' AND v.allocation_type = 'shared' \
             AND v.health_status IN ('healthy', 'unknown') \
             ORDER BY (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL), v.id LIMIT 1",
        )
        .unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap(), expected);
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps(region => 'nowhere')::text").unwrap(), None);
        Spi::run("UPDATE vps_servers SET health_status = 'unhealthy'").unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap(), None);
        Spi::run("SET LOCAL chom.eligible_health = 'unhealthy'").unwrap();
        assert!(Spi::get_one::<String>("SELECT chom_pick_vps()::text").unwrap().is_some());
    }

    #[pg_test]
    fn pick_vps_rejects_bad_arguments_with_22023() {
        install_with_data();
        for call in [
            "SELECT chom_pick_vps(-1)",
            "SELECT chom_pick_vps(NULL, -5)",
            "SELECT chom_pick_vps(2147483647)",
            "SELECT chom_pick_vps(region => repeat('x', 51))",
            "SELECT chom_pick_vps(provider => '')",
        ] {
            assert_eq!(sqlstate(call).as_deref(), Some("22023"), "{call}");
        }
        assert_eq!(sqlstate("SELECT chom_pick_vps(region => 'it''s; DROP TABLE sites')"), None);
        Spi::run("SET LOCAL chom.eligible_health = 'healthy,bogus'").unwrap();
        assert_eq!(sqlstate("SELECT chom_pick_vps()").as_deref(), Some("22023"));
    }

    /// Every public function against NULLs, unknown ids, out-of-range numbers and hostile strings: a documented
    /// result or a specific SQLSTATE, never XX000 or a crash.
    #[pg_test]
    fn every_public_function_answers_bad_input_with_a_specific_sqlstate() {
        install_with_data();
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT * FROM chom_tenant_stats(NULL)", None),
            ("SELECT * FROM chom_tenant_stats('ffffffff-ffff-ffff-ffff-ffffffffffff')", None),
            ("SELECT chom_refresh_tenant(NULL)", Some("22004")),
            ("SELECT chom_refresh_tenant('ffffffff-ffff-ffff-ffff-ffffffffffff')", Some("P0002")),
            ("SELECT chom_refresh_all(NULL)", Some("22004")),
            ("SELECT chom_refresh_all(-1)", Some("22023")),
            ("SELECT chom_refresh_all(2147483647)", Some("22023")),
            ("SELECT * FROM chom_index_ddl(NULL)", Some("22004")),
            ("SELECT chom_pick_vps(NULL, NULL, NULL, NULL)", None),
            ("SELECT chom_pick_vps(-2147483648)", Some("22023")),
            ("SELECT chom_pick_vps(0, 2147483647)", Some("22023")),
            ("SELECT chom_pick_vps(region => repeat('é', 51))", Some("22023")),
            ("SELECT chom_pick_vps(region => 'eu''; SELECT pg_sleep(10); --')", None),
            ("SELECT chom_index_key_columns(NULL)", None),
            ("SELECT chom_index_key_columns(0)", None),
            ("SELECT * FROM chom_status()", None),
            ("SELECT * FROM chom_index_usage()", None),
            ("SELECT * FROM chom_vps_load()", None),
            ("SELECT * FROM chom_cache_drift()", None),
            ("SELECT * FROM chom_vps_drift()", None),
            ("SELECT chom_repair_drift()", None),
            ("SET chom.stale_after = '-1s'", Some("22023")),
            ("SET chom.install_on_create = 'maybe'", Some("22023")),
        ];
        for (call, expected) in cases {
            assert_eq!(sqlstate(call).as_deref(), *expected, "{call}");
        }
    }
}

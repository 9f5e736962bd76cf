#!/usr/bin/env bash
# The main job as a demo: build chom, start a throwaway Postgres 15, load CHOM's schema with generated data,
# CREATE EXTENSION chom, and show what it did and the before/after figures (the benchmark at a small scale).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
TEST_USER=${CHOM_TEST_USER:-chomtest}
echo "== building and installing chom into Postgres 15"
cargo pgrx install --pg-config "$PG15_CONFIG" --no-default-features --features pg15 >/tmp/chom-demo-install.log 2>&1 \
  || { cat /tmp/chom-demo-install.log; exit 1; }
bindir=$("$PG15_CONFIG" --bindir)
dir=$(mktemp -d /tmp/chom-demo.XXXXXX); chown "$TEST_USER" "$dir"; port=5433
as_pg() { sudo -u "$TEST_USER" "$@"; }
as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -k $dir -c listen_addresses=''" start >/dev/null
trap 'as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
psql=("$bindir/psql" -X -q -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE DATABASE chom_demo"
echo "== CHOM's schema and a generated dataset (tests/fixtures/dataset.sql)"
"${psql[@]}" -d chom_demo -f tests/fixtures/chom_schema.sql 2>/dev/null
"${psql[@]}" -d chom_demo -f tests/fixtures/dataset.sql
echo "== CREATE EXTENSION chom"
"${psql[@]}" -d chom_demo -c "CREATE EXTENSION chom"
"${psql[@]}" -d chom_demo -P pager=off <<'SQL'
\echo What chom manages (chom_status()):
SELECT kind, state, count(*) AS objects, string_agg(name, ', ' ORDER BY name) FILTER (WHERE state = 'reused') AS reused
  FROM chom_status() GROUP BY 1, 2 ORDER BY 1, 2;
\echo The biggest tenant, from the cache and from a live recount:
SELECT s.*, (SELECT count(*) FROM sites WHERE tenant_id = t.id AND deleted_at IS NULL) AS live_count
  FROM tenants t, chom_tenant_stats(t.id) s ORDER BY t.cached_sites_count DESC LIMIT 1;
\echo A write (its own transaction), and the cache follows it when it commits:
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
SELECT gen_random_uuid(), t.id, chom_pick_vps(), 'demo' || g || '.test', 100 FROM tenants t, generate_series(1, 3) g
 WHERE t.id = md5('tenant1')::uuid;
SELECT count(*) AS drifted_tenants FROM chom_cache_drift();
\echo Least-loaded VPS (chom_pick_vps()) and the load table:
SELECT chom_pick_vps() AS picked;
SELECT * FROM chom_vps_load() LIMIT 5;
SQL
if [ -x bench/run.sh ]; then
  echo "== before/after figures (bench/run.sh --quick)"
  bash bench/run.sh --quick
fi

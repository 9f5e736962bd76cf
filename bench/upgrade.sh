#!/usr/bin/env bash
# What ALTER EXTENSION chom UPDATE locks, and for how long, on a database of the benchmark's size: for each
# release of scripts/releases (or those given), the release is installed (scripts/install-release.sh), a
# database is loaded with bench/sql/dataset.sql and CREATE EXTENSION chom VERSION '<release>', this version is
# installed over it (cargo pgrx install), and the update runs twice: once in a transaction that lists the
# locks it holds (then rolled back), once for real, timed. docs/install-and-upgrade.md (Upgrading) quotes its output.
#
#   bash bench/upgrade.sh [--sites N] [--pg-config PATH] [release...]     (default: 1000000 sites, Postgres 16)
#
# It installs into the pg_config's build (each release, then this version): run it on a build no test is using.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIGS=${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env
# shellcheck disable=SC1090 # written by scripts/setup.sh; checked after the arguments, so that --help works without it
[ ! -f "$PG_CONFIGS" ] || . "$PG_CONFIGS"
SITES=1000000 PGC=${PG16_CONFIG:-} PORT=${CHOM_BENCH_PORT:-5561} RUN_AS=${CHOM_TEST_USER:-chomtest} releases=()
while (($#)); do
  case $1 in
    --sites) SITES=$2; shift ;;
    --pg-config) PGC=$2; shift ;;
    -h|--help)
      cat <<USAGE
usage: bash bench/upgrade.sh [--sites N] [--pg-config PATH] [release...] [--help]

For each release of scripts/releases (or those given), what ALTER EXTENSION chom UPDATE to this version locks
and how long it takes, at N sites (1000000). Per release: scripts/install-release.sh installs the release into
the build of --pg-config (default: scripts/setup.sh's Postgres 16, under /opt/chom-pg), a throwaway server starts as chomtest
(CHOM_TEST_USER) with its data and unix socket in /tmp/chom-upgrade-bench-<release>, port \$CHOM_BENCH_PORT
(5561) on that socket only, shared_buffers=1GB; the dataset is loaded, this version is installed over the
release (cargo pgrx install into the same build), and the update runs twice. Run it on a build no test uses.
Time on 2 cores: roughly 10-15 minutes per release at 1M sites (the load dominates), more the first time
(builds); --sites 100000 for a quick look.
USAGE
      exit 0 ;;
    -*) echo "bench/upgrade.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    *) releases+=("$1") ;;
  esac
  shift
done
[ -n "$PGC" ] || { echo "bench/upgrade.sh: no Postgres 16 build in $PG_CONFIGS (run scripts/setup.sh) and no --pg-config" >&2; exit 1; }
((${#releases[@]})) || mapfile -t releases < <(awk 'NF && !/^#/ { print $1 }' scripts/releases)
major=$("$PGC" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
BIN=$("$PGC" --bindir)
TENANTS=$((SITES / 5)); ORGS=$((TENANTS * 4 / 5)); VPS=$((SITES / 500)); ((VPS < 20)) && VPS=20
VPS_USED=$((VPS * 95 / 100)); BIG=$((SITES / 200)); ((BIG < 50)) && BIG=50; POOL=$((SITES < 50000 ? SITES : 50000))

for release in "${releases[@]}"; do
  W=/tmp/chom-upgrade-bench-$release
  sudo -u "$RUN_AS" "$BIN/pg_ctl" -D "$W/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W" && mkdir -p "$W" && chown "$RUN_AS" "$W"
  bash scripts/install-release.sh "$release" "$PGC" "$major"
  sudo -u "$RUN_AS" "$BIN/initdb" -D "$W/data" -U postgres -A trust --no-sync >/dev/null
  sudo -u "$RUN_AS" "$BIN/pg_ctl" -D "$W/data" -l "$W/log" -w \
    -o "-p $PORT -k $W -c listen_addresses='' -c shared_buffers=1GB -c max_wal_size=8GB" start >/dev/null
  p() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -P pager=off -h "$W" -p "$PORT" -U postgres "$@"; }
  p -d postgres -c "CREATE DATABASE b"
  PGOPTIONS="-c client_min_messages=warning" p -d b -1 -f tests/fixtures/chom_schema.sql >/dev/null
  p -d b -v sites="$SITES" -v tenants="$TENANTS" -v orgs="$ORGS" -v vps="$VPS" -v vps_used="$VPS_USED" \
    -v big="$BIG" -v pool="$POOL" -f bench/sql/dataset.sql >/dev/null
  p -d b -c "VACUUM ANALYZE"
  p -d b -c "CREATE EXTENSION chom VERSION '$release'" 2>/dev/null
  cargo pgrx install --pg-config "$PGC" --no-default-features --features "pg$major" >"$W/install.log" 2>&1 \
    || { tail -30 "$W/install.log"; exit 1; }
  echo "=== chom $release -> this version, $SITES sites, Postgres $major: locks held until the update commits"
  p -d b -c "BEGIN" -c "ALTER EXTENSION chom UPDATE" \
    -c "SELECT l.mode, string_agg(DISTINCT CASE
                  WHEN l.locktype = 'object' THEN 'objects of ' || l.classid::regclass
                  WHEN c.oid IS NULL THEN 'a table the update drops'
                  WHEN c.relkind = 'i' THEN 'index ' || c.relname
                  ELSE c.relname END, ', ') AS locked
          FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = pg_backend_pid() AND l.locktype IN ('relation', 'object')
           AND (c.oid IS NULL OR c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace))
           AND NOT (l.mode = 'AccessShareLock' AND c.relkind = 'i')
         GROUP BY l.mode ORDER BY 1" -c "ROLLBACK"
  echo "=== chom $release -> this version: the update, committed"
  p -d b -c "\\timing on" -c "ALTER EXTENSION chom UPDATE"
  p -d b -At -c "SELECT 'now at ' || extversion FROM pg_extension WHERE extname = 'chom'" \
    -c "SELECT 'tenants drifted: ' || count(*) FROM chom_cache_drift()" -c "SELECT 'VPSes drifted: ' || count(*) FROM chom_vps_drift()"
  sudo -u "$RUN_AS" "$BIN/pg_ctl" -D "$W/data" -m fast stop >/dev/null
  rm -rf "$W"
done

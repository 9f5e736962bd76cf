#!/usr/bin/env bash
# The main job as a demo: build chom, start a throwaway Postgres 15, load CHOM's schema with generated data,
# CREATE EXTENSION chom, and show what it did and the before/after figures (the benchmark at a small scale).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
usage: bash scripts/demo.sh [--port P] [--help]

chom on CHOM's schema, from nothing, in about 11 minutes on 2 cores (run as root):
  1. scripts/setup.sh: on a machine not set up yet it installs Debian packages (Postgres 15, PHP), cargo-pgrx,
     Postgres 16-18 under /opt/chom-pg and the system user chomtest (about 10 more minutes; see its --help);
     it stops, starts or reconfigures no Postgres of yours;
  2. builds chom (cargo pgrx install) and installs it into Debian's Postgres 15: the system directories
     /usr/lib/postgresql/15/lib and /usr/share/postgresql/15/extension;
  3. starts a throwaway Postgres 15 server as chomtest, its data and unix socket in /tmp/chom-demo.XXXXXX (no
     TCP listener), on a port no server uses (5433 or the next free one; --port P to choose), loads CHOM's
     schema and a generated dataset, CREATE EXTENSION chom, and shows what chom did;
  4. bench/run.sh --quick on another free port: chom built again in release mode and installed into the same
     Postgres 15 directories, its own throwaway server in /tmp/chom-bench.XXXXXX (20k sites, about 9 minutes),
     the before/after figures, and its report in bench/out/report-<date>.md.
Both servers are stopped and their directories removed at the end. --help does nothing but print this.
USAGE
}
PORT=""
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --port) PORT=${2:?--port takes a port number}; shift ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -z $PORT || $PORT =~ ^[0-9]+$ ]] || { echo "demo: --port takes a number" >&2; exit 2; }
# port_in_use <port>: a TCP listener (from /proc/net: ss may be missing), or a Postgres unix socket of that port
port_in_use() {
  awk -v port=":$(printf '%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
    END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null \
    || awk -v sock=".s.PGSQL.$1" '$4 == "00010000" && substr($8, length($8) - length(sock) + 1) == sock { found = 1 }
         END { exit !found }' /proc/net/unix
}
free_port() { # <first>: that port or the next one nobody uses
  local p=$1
  while port_in_use "$p"; do p=$((p + 1)); done
  echo "$p"
}
if [ -n "$PORT" ]; then
  if port_in_use "$PORT"; then echo "demo: port $PORT is in use (--port chose it); pick another" >&2; exit 1; fi
  port=$PORT
else
  port=$(free_port 5433)
fi

bash scripts/setup.sh
# shellcheck disable=SC1091
. "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
TEST_USER=${CHOM_TEST_USER:-chomtest}
echo "== building and installing chom into Postgres 15"
cargo pgrx install --pg-config "$PG15_CONFIG" --no-default-features --features pg15 >/tmp/chom-demo-install.log 2>&1 \
  || { cat /tmp/chom-demo-install.log; exit 1; }
bindir=$("$PG15_CONFIG" --bindir)
dir=$(mktemp -d /tmp/chom-demo.XXXXXX); chown "$TEST_USER" "$dir"
echo "== a throwaway Postgres 15 as $TEST_USER on port $port (free; unix socket in $dir, no TCP)"
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
  bench_port=$(free_port $((port + 1)))
  echo "== before/after figures (bench/run.sh --quick --port $bench_port: its own throwaway server, about 9 minutes)"
  bash bench/run.sh --quick --port "$bench_port"
fi

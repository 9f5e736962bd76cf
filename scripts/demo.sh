#!/usr/bin/env bash
# The main job as a demo: the before/after benchmark at a small scale (bench/run.sh --quick, which builds chom and
# installs it into Postgres 15), then a throwaway Postgres 15 with CHOM's schema and generated data, CREATE
# EXTENSION chom, and what it did: a write and a rollback next to a live recount, the pick before and after a VPS
# fills up, the drift check. Progress lines while it works; the last screen shows what chom did and the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
usage: bash scripts/demo.sh [--port P] [--help]

chom on CHOM's schema, from nothing, in about 10 minutes on 2 cores (run as root):
  1. scripts/setup.sh: on a machine not set up yet it installs Debian packages (Postgres 15, PHP), cargo-pgrx,
     Postgres 16-18 under /opt/chom-pg and the system user chomtest (about 10 more minutes; see its --help);
     it stops, starts or reconfigures no Postgres of yours;
  2. bench/run.sh --quick --no-shapes on a free port (about 9 minutes): builds chom in release mode and installs
     it into Debian's Postgres 15, i.e. the system directories /usr/lib/postgresql/15/lib and
     /usr/share/postgresql/15/extension; starts its own throwaway server as chomtest in /tmp/chom-bench.XXXXXX
     (20k sites) and measures before/after; its report goes to bench/out/report-<date>.md and every pgbench
     run to bench/out/demo-<date>.log (the screen shows progress lines only);
  3. starts a throwaway Postgres 15 server as chomtest, its data and unix socket in /tmp/chom-demo.XXXXXX (no
     TCP listener), on a port no server uses (5433 or the next free one; --port P to choose), loads CHOM's
     schema and a generated dataset (200 tenants, 6,000 sites), CREATE EXTENSION chom, and shows what chom did;
  4. ends on one screen (under 60 lines): what chom installed, its figures next to live recounts, and the
     benchmark's targets at 20,000 sites: a verdict where the target holds at any scale, the ratio alone where
     the baseline grows with the data (those are judged at 1M sites, by the full run: BENCHMARKS.md).
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

T0=$SECONDS
say() { printf '[%2dm%02ds] %s\n' $(((SECONDS - T0) / 60)) $(((SECONDS - T0) % 60)) "$*"; }
say "scripts/setup.sh (what it installs when missing: bash scripts/setup.sh --help)"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
TEST_USER=${CHOM_TEST_USER:-chomtest}
bindir=$("$PG15_CONFIG" --bindir)
STAMP=$(date +%Y%m%d-%H%M%S)
commas() { sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta' <<<"$1"; } # 20000 -> 20,000

# 1. the benchmark first: it builds chom (release) and installs it into Postgres 15; its raw runs go to a log
bench_log=""
if [ -x bench/run.sh ]; then
  mkdir -p bench/out
  bench_log=$PWD/bench/out/demo-$STAMP.log
  bench_port=$(free_port $((port + 1)))
  say "building chom (release) into Postgres 15 ($("$PG15_CONFIG" --pkglibdir), $("$PG15_CONFIG" --sharedir)/extension)"
  say "and measuring before/after at 20,000 sites: bench/run.sh --quick --no-shapes, port $bench_port, about 9 minutes"
  # on screen: its progress lines ("[  Ns] ..."); every pgbench run only in the log
  if ! bash bench/run.sh --quick --no-shapes --port "$bench_port" 2>&1 | tee "$bench_log" \
       | { grep --line-buffered -E '^\[ *[0-9]+s\] ' | sed -u 's/^/    bench /' || true; }; then
    echo "demo: bench/run.sh failed; its last lines ($bench_log):"
    tail -30 "$bench_log"
    exit 1
  fi
else
  say "building chom into Postgres 15 ($("$PG15_CONFIG" --pkglibdir), $("$PG15_CONFIG" --sharedir)/extension)"
  cargo pgrx install --pg-config "$PG15_CONFIG" --no-default-features --features pg15 >/tmp/chom-demo-install.log 2>&1 \
    || { cat /tmp/chom-demo-install.log; exit 1; }
fi

# 2. a database of CHOM's with chom in it (its port checked again: the benchmark took minutes)
if port_in_use "$port"; then
  [ -z "$PORT" ] || { echo "demo: port $PORT is in use now (--port chose it)" >&2; exit 1; }
  port=$(free_port "$port")
fi
dir=$(mktemp -d /tmp/chom-demo.XXXXXX); chown "$TEST_USER" "$dir"
say "a throwaway Postgres 15 as $TEST_USER on port $port (checked free; unix socket in $dir, no TCP)"
as_pg() { sudo -u "$TEST_USER" "$@"; }
as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -k $dir -c listen_addresses=''" start >/dev/null
trap 'as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
psql=("$bindir/psql" -X -q -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE DATABASE chom_demo"
say "CHOM's schema (tests/fixtures/chom_schema.sql), 200 tenants, 6,000 sites, 30 VPSes (tests/fixtures/dataset.sql)"
"${psql[@]}" -d chom_demo -f tests/fixtures/chom_schema.sql >/dev/null 2>&1
"${psql[@]}" -d chom_demo -f tests/fixtures/dataset.sql >/dev/null
say "CREATE EXTENSION chom, then writes, a rollback, picks and the drift check"
"${psql[@]}" -d chom_demo -c "CREATE EXTENSION chom"

# 3. the last screen: what chom did, then the figures
"${psql[@]}" -d chom_demo -P pager=off <<'SQL'
\pset footer off
\pset null '-'
SELECT t.id AS big, t.name AS big_name FROM tenants t ORDER BY t.cached_sites_count DESC, t.id LIMIT 1 \gset
\echo
\echo '1. What CREATE EXTENSION chom did to the database (chom_status(); reused: an index the application had)'
SELECT kind, state, count(*) AS objects,
       string_agg(name, ', ' ORDER BY name) FILTER (WHERE state = 'reused') AS reused
  FROM chom_status() GROUP BY 1, 2 ORDER BY 1, 2;

-- each step: chom's figures for the biggest tenant (chom_tenant_stats(): the cached columns, one indexed read)
-- next to a live recount of its sites (the application's COUNT/SUM before chom)
CREATE TEMP TABLE demo_steps (ord serial, step text, chom_sites int, chom_mb bigint, recount_sites bigint, recount_mb bigint);
PREPARE step(text) AS
  INSERT INTO demo_steps (step, chom_sites, chom_mb, recount_sites, recount_mb)
  SELECT $1, s.sites_count, s.storage_mb, l.n, l.mb
    FROM chom_tenant_stats(:'big') s,
         (SELECT count(*) AS n, coalesce(sum(storage_used_mb), 0) AS mb FROM sites
           WHERE tenant_id = :'big' AND deleted_at IS NULL) l;
EXECUTE step('after CREATE EXTENSION chom');
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
SELECT gen_random_uuid(), :'big', chom_pick_vps(), 'demo' || g || '.test', 100 FROM generate_series(1, 3) g;
EXECUTE step('INSERT 3 sites of 100 MB, committed');
BEGIN;
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
SELECT gen_random_uuid(), :'big', NULL, 'undone' || g || '.test', 50 FROM generate_series(1, 2) g;
SELECT s.sites_count AS in_sites, s.storage_mb AS in_mb FROM chom_tenant_stats(:'big') s \gset
ROLLBACK;
INSERT INTO demo_steps (step, chom_sites, chom_mb) VALUES ('  2 more in a transaction (as it sees them)', :in_sites, :in_mb);
EXECUTE step('  ... ROLLBACK');
UPDATE sites SET deleted_at = now()
 WHERE id = (SELECT id FROM sites WHERE tenant_id = :'big' AND deleted_at IS NULL AND domain LIKE 'demo%' ORDER BY domain LIMIT 1);
EXECUTE step('soft-delete one of them (deleted_at)');
\echo '2.' :big_name '(the biggest tenant): chom_tenant_stats() next to a live COUNT/SUM of its sites'
SELECT step, chom_sites AS "chom: sites", chom_mb AS "chom: MB", recount_sites AS "recount: sites", recount_mb AS "recount: MB"
  FROM demo_steps ORDER BY ord;

-- the pick: chom_pick_vps() (maintained counts) next to the least-loaded eligible VPS by a live count, before and
-- after the picked VPS fills up past the next one
CREATE TEMP TABLE demo_picks (ord serial, step text, chom_pick text, chom_load bigint, recount_pick text, recount_load bigint);
PREPARE pick(text) AS
  WITH live AS (
    SELECT v.id, v.hostname, (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL) AS n
      FROM vps_servers v
     WHERE v.status = 'active' AND v.allocation_type = 'shared' AND v.health_status IN ('healthy', 'unknown'))
  INSERT INTO demo_picks (step, chom_pick, chom_load, recount_pick, recount_load)
  SELECT $1, l.hostname, l.n, r.hostname, r.n
    FROM (SELECT chom_pick_vps() AS id) c JOIN live l ON l.id = c.id,
         (SELECT hostname, n FROM live ORDER BY n, id LIMIT 1) r;
EXECUTE pick('before');
SELECT l.vps_id AS full_vps, l.hostname AS full_host,
       (SELECT min(live_sites) FROM chom_vps_load() o WHERE o.eligible AND o.vps_id <> l.vps_id) - l.live_sites + 1 AS fill
  FROM chom_vps_load() l WHERE l.vps_id = chom_pick_vps() \gset
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
SELECT gen_random_uuid(), :'big', :'full_vps', 'fill' || g || '.test', 10 FROM generate_series(1, :fill) g;
EXECUTE pick('after ' || :fill || ' sites placed on ' || :'full_host');
\echo '3. The least-loaded VPS: chom_pick_vps() next to a live count over every eligible VPS'
SELECT step, chom_pick AS "chom_pick_vps()", chom_load AS "its sites", recount_pick AS "live count picks", recount_load AS "its sites"
  FROM demo_picks ORDER BY ord;
SELECT (SELECT count(*) FROM chom_cache_drift()) AS drift_t, (SELECT count(*) FROM chom_vps_drift()) AS drift_v \gset
\echo '4. The drift check after these writes (chom_cache_drift(), chom_vps_drift(): cached figures against a recount):' :drift_t 'tenants,' :drift_v 'VPSes drifted'
SQL
if [ -n "$bench_log" ]; then
  # 5. the benchmark's targets, from its raw runs (bench/out/results-<date>.tsv) through its own report views
  # (bench/sql/report.sql), loaded into a database of the demo's server: only the verdicts that hold at its scale
  report=$(sed -nE 's/^\[ *[0-9]+s\] report: //p' "$bench_log" | tail -1)
  results=${report%.md}.tsv; results=${results/\/report-/\/results-}
  if [ -n "$report" ] && [ -f "$report" ] && [ -f "$results" ]; then
    sites=$(sed -nE 's/^- scale: ([0-9]+) sites.*/\1/p' "$report")
    bulk=$(sed -nE 's/.*, bulk ([0-9]+) x [0-9]+\).*/\1/p' "$report")
    full=$(sed -nE 's/^FULL=([0-9]+).*/\1/p' bench/run.sh)
    cp "$results" "$dir/results.tsv"; chown "$TEST_USER" "$dir/results.tsv"
    "${psql[@]}" -c "CREATE DATABASE demo_bench"
    "${psql[@]}" -d demo_bench -v res="$dir/results.tsv" -v bulk="$bulk" -v sites="$sites" -v full="$full" \
      -f bench/sql/report.sql >/dev/null
    echo
    echo "5. Before/after at $(commas "$sites") sites (bench/run.sh --quick: medians of 3 short pgbench runs, this machine)"
    "${psql[@]}" -d demo_bench -P pager=off -P footer=off <<'SQL'
SELECT target AS "target: chom against",
       baseline, measured AS chom, fx(ratio) AS ratio,
       CASE WHEN result = '1M only' THEN '(1M) ' || goal ELSE goal END AS goal,
       CASE WHEN result = '1M only' THEN 'at 1M' ELSE result END AS "verdict here"
  FROM targets
 WHERE result IN ('PASS', 'MISS', '1M only')
   -- the busy tenant's inserts with 4 and 16 clients say more than one client's, and the screen has 60 lines
   AND target NOT LIKE 'insert, biggest tenant, 1 client:%'
 ORDER BY result = '1M only' DESC, ord;
SQL
    printf '%s\n' \
      "at 1M: the baseline grows with the data (live COUNT/SUM, withCount, the seed's recount), so these goals are set for" \
      "  $(commas "$full") sites and judged by the full run (BENCHMARKS.md). PASS / MISS: the other targets, judged at this scale." \
      "  'no trigger' keeps no aggregates at all; the floor keeps them by hand in each statement."
  fi
  echo "report: ${report:-(none written)}; every pgbench run: $bench_log"
fi
say "done"

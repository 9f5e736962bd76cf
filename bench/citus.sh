#!/usr/bin/env bash
# chom on Citus at scale: the same synthetic CHOM dataset (bench/sql/dataset.sql) in one database distributed over
# a Citus coordinator and two workers and in one plain database on the coordinator's server, then, on both, in
# one run: single-row writes without chom and with chom, chom_tenant_stats() and chom_pick_vps(), chom's drift
# checks, and on Citus one drain of the outbox after the writes. Prints every figure with its ratio; asserts
# nothing (a benchmark, see BENCHMARKS.md's notes on noise).
#
#   sudo bench/citus.sh                 # 200k sites (--sites N; --secs S per pgbench run, default 10)
#
# Builds Citus like scripts/citus.sh (whose functions it uses) and chom with --release; skipped, saying so,
# without the Citus source archive. Everything it starts is stopped and removed at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SITES=200000 SECS=10
while [ $# -gt 0 ]; do
  case $1 in
    --sites) SITES=$2; shift ;;
    --secs) SECS=$2; shift ;;
    -h|--help)
      cat <<'USAGE'
usage: bash bench/citus.sh [--sites N] [--secs S] [--help]

chom on Citus at scale against one plain node (see the comment at the top of this script). Without the Citus
source archive (CHOM_CITUS_SRC, as scripts/citus.sh) it says it skipped and exits 0. With it, as root:
builds and installs Citus into the system's Postgres 15 (/usr/lib/postgresql/15/lib,
/usr/share/postgresql/15/extension) as scripts/citus.sh does, builds chom with --release and installs it there,
and starts a coordinator and two workers as chomtest in /tmp/chom-citus.XXXXXX on free 127.0.0.1 ports
20000-39999, stopped and removed at the end.
  --sites N   sites in the dataset (200000)
  --secs S    seconds per pgbench run (10)
Time on 2 cores: not measured for this text; at the default 200k sites count on half an hour or more
(a few minutes of builds, the loads, some twenty pgbench runs).
USAGE
      exit 0 ;;
    *) echo "bench/citus.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
export CHOM_CITUS_CARGO_FLAGS=--release
# shellcheck source-path=SCRIPTDIR source=../scripts/citus.sh
source "$HERE/../scripts/citus.sh"

TENANTS=$((SITES / 5)); ORGS=$((TENANTS * 4 / 5))
VPS=$((SITES / 500)); ((VPS < 20)) && VPS=20
VPS_USED=$((VPS * 95 / 100))
BIG=$((SITES / 200)); ((BIG < 50)) && BIG=50
POOL=$((SITES < 50000 ? SITES : 50000))
SINGLE=chom_single
P=$HERE/pgbench
declare -A FIG

load() { # db
  q coord "$1" -1 -f "$ROOT/tests/fixtures/chom_schema.sql" >/dev/null 2>&1
  q coord "$1" -v sites="$SITES" -v tenants="$TENANTS" -v orgs="$ORGS" -v vps="$VPS" -v vps_used="$VPS_USED" \
    -v big="$BIG" -f "$HERE/sql/dataset.sql" >/dev/null
}

# pgbench on the coordinator: key db clients script-args...; records "tps latency-ms" under key
pb() {
  local key=$1 db=$2 clients=$3 out
  shift 3
  out=$("$BINDIR/pgbench" -n -h "$WORK/sock" -p "${PORT[coord]}" -U postgres -c "$clients" -j "$clients" -T "$SECS" \
          -D lo=1 -D hi="$TENANTS" -D vps_used="$VPS_USED" -D pool="$POOL" "$@" "$db" 2>&1) \
    || { echo "$out" | tail -20; die "pgbench $key"; }
  FIG[$key]="$(awk '/^tps/ { printf "%.0f", $3 }' <<<"$out") $(awk '/latency average/ { print $4 }' <<<"$out")"
}

timed_ms() { # db sql: milliseconds one statement takes, from psql's \timing
  q coord "$1" -c '\timing on' -c "$2" | awk '/^Time:/ { print $2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

writes() { # label
  for target in "$SINGLE" "$DB"; do
    pb "write $1 $target" "$target" 4 -f "$P/w_insert.sql@1" -f "$P/w_update.sql@1"
  done
}

bench_main() {
  build_citus
  start_cluster
  DB=chom
  create_cluster_db "$DB"
  q coord postgres -c "CREATE DATABASE $SINGLE" >/dev/null
  say "dataset: $SITES sites, $TENANTS tenants, $VPS VPS, in $SINGLE (one node) and $DB (then distributed)"
  load "$SINGLE"
  load "$DB"
  distribute "$DB" >/dev/null || die "sql/citus/distribute.sql"
  q coord "$SINGLE" -c "VACUUM ANALYZE" && q coord "$DB" -c "VACUUM ANALYZE"
  say "single-row writes without chom (4 clients, ${SECS}s each)"
  writes without
  say "chom installed on both (release build)"
  chom_install
  q coord "$SINGLE" -c "CREATE EXTENSION chom" >/dev/null 2>&1 || die "CREATE EXTENSION chom on $SINGLE"
  say "single-row writes with chom"
  writes with
  FIG[queued]=$(q1 coord "$DB" "SELECT count(*) FROM chom.vps_delta")
  FIG[vps_drift_queued]=$(timed_ms "$DB" "SELECT count(*) FROM chom_vps_drift()")
  FIG[drain]=$(timed_ms "$DB" "SELECT chom_drain_vps_deltas()")
  for target in "$SINGLE" "$DB"; do
    FIG[cache_drift $target]=$(timed_ms "$target" "SELECT count(*) FROM chom_cache_drift()")
    FIG[vps_drift $target]=$(timed_ms "$target" "SELECT count(*) FROM chom_vps_drift()")
  done
  say "reads (1 client, ${SECS}s each)"
  for target in "$SINGLE" "$DB"; do
    PGOPTIONS="-c chom.max_staleness=86400" pb "stats $target" "$target" 1 -f "$P/stats_chom.sql"
    pb "pick $target" "$target" 1 -f "$P/pick_vps_chom.sql"
  done
  echo
  echo "chom on Citus, $SITES sites, coordinator + 2 workers on this machine ($(nproc) cores), one run:"
  printf '  %-50s %-22s %-22s %s\n' "" "one node" "Citus coordinator" "Citus / one node"
  local w
  for w in without with; do
    read -r t1 l1 <<<"${FIG[write $w $SINGLE]}"; read -r t2 l2 <<<"${FIG[write $w $DB]}"
    printf '  %-50s %-22s %-22s %s\n' "single-row writes $w chom, 4 clients (tps)" "$t1" "$t2" "$(ratio "$t2" "$t1")"
  done
  read -r a _ <<<"${FIG[write without $SINGLE]}"; read -r b _ <<<"${FIG[write with $SINGLE]}"
  read -r c _ <<<"${FIG[write without $DB]}"; read -r d _ <<<"${FIG[write with $DB]}"
  printf '  %-50s %-22s %-22s\n' "  with chom / without chom" "$(ratio "$b" "$a")" "$(ratio "$d" "$c")"
  for r in stats pick; do
    read -r _ l1 <<<"${FIG[$r $SINGLE]}"; read -r _ l2 <<<"${FIG[$r $DB]}"
    printf '  %-50s %-22s %-22s %s\n' "$([ $r = stats ] && echo "chom_tenant_stats(), random tenant (ms)" || echo "chom_pick_vps() (ms)")" "$l1" "$l2" "$(ratio "$l2" "$l1")"
  done
  printf '  %-50s %-22s %-22s %s\n' "chom_cache_drift(), full check (ms)" "${FIG[cache_drift $SINGLE]}" "${FIG[cache_drift $DB]}" "$(ratio "${FIG[cache_drift $DB]}" "${FIG[cache_drift $SINGLE]}")"
  printf '  %-50s %-22s %-22s %s\n' "chom_vps_drift(), full check (ms)" "${FIG[vps_drift $SINGLE]}" "${FIG[vps_drift $DB]}" "$(ratio "${FIG[vps_drift $DB]}" "${FIG[vps_drift $SINGLE]}")"
  printf '  %-50s %-22s %-22s\n' "chom_vps_drift() with the outbox queued (ms)" "" "${FIG[vps_drift_queued]}"
  printf '  %-50s %-22s %-22s\n' "one drain of ${FIG[queued]} queued changes (ms)" "" "${FIG[drain]}"
}

bench_main

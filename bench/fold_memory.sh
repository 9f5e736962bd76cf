#!/usr/bin/env bash
# bench/fold_memory.sh: what one transaction that changes the sites of many tenants costs a backend in memory,
# with chom's triggers and without them, on the same server and data (issue 22: a bounded fold).
#
# Loads a CHOM dataset of 1M tenants with 2M sites (two each, on average), then, each in a new session,
# runs BEGIN; UPDATE sites SET storage_used_mb = storage_used_mb + 1 over the sites of the first K tenants;
# COMMIT for K = 10,000, 100,000, 250,000 and every tenant, once without chom's triggers
# (session_replication_role = replica, rolled back instead of committed, so that nothing drifts) and once with
# them, and prints per run: the backend's anonymous memory before the transaction ends (RssAnon: what the
# transaction holds), its peak resident set (VmHWM) after it, and the time of the COMMIT (ROLLBACK for none).
# Set-up as for the tests (scripts/setup.sh); chom installed into Postgres 15 (cargo pgrx install --release), or
# into the build whose bin directory PGBIN names.
# Its server runs as chomtest (CHOM_TEST_USER) in /tmp/chom-fold-memory.*, removed at the end. Takes about 15
# minutes on 2 cores at the default scale (most of it loading the data).
#
#   bench/fold_memory.sh [--tenants N] [--port P]     (default 1000000 tenants, twice as many sites, port 5545)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RUN_AS=${CHOM_TEST_USER:-chomtest}
TENANTS=1000000 PORT=5545
while (($#)); do
  case $1 in
    --tenants) TENANTS=$2; shift ;;
    --port) PORT=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SITES=$((TENANTS * 2))
VPS=$((SITES / 500)); ((VPS < 20)) && VPS=20

WORK=$(mktemp -d /tmp/chom-fold-memory.XXXXXX)
chmod 755 "$WORK"; chown "$RUN_AS" "$WORK"
DATA=$WORK/data SOCK=$WORK
as_pg() { sudo -u "$RUN_AS" "$@"; }
db() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U "$RUN_AS" -d chom_fold "$@"; }
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "fold memory: $TENANTS tenants, $SITES sites, $VPS VPSes; $("$PGBIN/postgres" --version) on port $PORT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
as_pg "$PGBIN/initdb" -D "$DATA" -U "$RUN_AS" --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -o "-p $PORT -k $SOCK -c listen_addresses=" start >/dev/null
"$PGBIN/psql" -X -q -h "$SOCK" -p "$PORT" -U "$RUN_AS" -d postgres -c "CREATE DATABASE chom_fold"
PGOPTIONS="-c client_min_messages=warning" db -1 -f "$REPO/tests/fixtures/chom_schema.sql" >/dev/null
db -v sites="$SITES" -v tenants="$TENANTS" -v orgs="$((TENANTS / 5))" -v vps="$VPS" -v vps_used="$((VPS * 95 / 100))" \
   -v big=50 -f "$HERE/sql/dataset.sql" >/dev/null
db -c "CREATE EXTENSION chom" -c "VACUUM ANALYZE" >/dev/null
echo "chom $(db -At -c "SELECT extversion FROM pg_extension WHERE extname = 'chom'"), $(db -At -c "SELECT count(DISTINCT tenant_id) FROM sites WHERE deleted_at IS NULL") tenants with live sites"

# One transaction in a new session; prints: RssAnon before its end (kB), VmHWM after it (kB), the end's time (ms).
run() {
  local mode=$1 tenants=$2 fifo=$WORK/session.in out=$WORK/session.out pid anon hwm ms
  rm -f "$fifo"; mkfifo "$fifo"
  db -At <"$fifo" >"$out" 2>&1 &
  exec 3>"$fifo"
  echo "SELECT 'pid', pg_backend_pid();" >&3
  [ "$mode" = none ] && echo "SET session_replication_role = replica;" >&3
  echo "BEGIN; UPDATE sites SET storage_used_mb = storage_used_mb + 1 WHERE tenant_id IN (SELECT id FROM tenants ORDER BY id LIMIT $tenants); SELECT 'updated';" >&3
  until grep -q '^updated$' "$out" 2>/dev/null; do sleep 0.2; grep -q ERROR "$out" && { cat "$out"; exit 1; }; done
  pid=$(awk -F'|' '$1 == "pid" { print $2 }' "$out")
  anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$pid/status")
  printf '%s\n' '\timing on' >&3
  if [ "$mode" = none ]; then echo "ROLLBACK;" >&3; else echo "COMMIT;" >&3; fi
  echo "SELECT 'committed';" >&3
  until grep -q '^committed$' "$out" 2>/dev/null; do sleep 0.2; grep -q ERROR "$out" && { cat "$out"; exit 1; }; done
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
  ms=$(grep -o 'Time: [0-9.]*' "$out" | head -1 | cut -d' ' -f2)
  exec 3>&-
  wait
  echo "$anon $hwm $ms"
}

printf '\n| tenants changed | RssAnon before the end, none / chom (MB) | VmHWM after it, none / chom (MB) | ROLLBACK none / COMMIT chom (ms) |\n|---:|---:|---:|---:|\n'
for tenants in 10000 100000 250000 "$TENANTS"; do
  read -r none_anon none_hwm none_ms <<<"$(run none "$tenants")"
  read -r chom_anon chom_hwm chom_ms <<<"$(run chom "$tenants")"
  printf '| %s | %d / %d | %d / %d | %s / %s |\n' "$tenants" \
    $((none_anon / 1024)) $((chom_anon / 1024)) $((none_hwm / 1024)) $((chom_hwm / 1024)) "$none_ms" "$chom_ms"
done
echo
echo "drifted tenants after the runs: $(db -At -c "SELECT count(*) FROM chom_cache_drift()"); load average $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# bench/run.sh: chom's benchmark. Starts a throwaway Postgres 15 server, loads a synthetic CHOM dataset on the
# real schema, and measures with pgbench, on the same server and data:
#   reads  : before (base schema) vs seed (the app's 20 indexes + live COUNT/SUM + withCount) vs chom
#   writes : none (chom's sites triggers disabled) vs the seed's recount row trigger vs chom: single-row writes,
#            (and floor: the same writes keeping the aggregates by hand, no trigger: bench/pgbench/floor_*.sql;
#            journal: the same writes appending one unindexed row per commit: bench/pgbench/journal_*.sql),
#            multi-statement transactions (pgbench counting deadlocks), bulk insert
# Prints a table and writes bench/out/report-<date>.md. Builds chom in release mode and installs it into
# Postgres 15 first (--no-build to measure what is installed); set-up as for the tests (scripts/setup.sh).
#
#   bench/run.sh --quick            20k sites, short runs: about 9 minutes on 2 cores
#   bench/run.sh                    1M sites, 3 runs of 5 s (reads) / 10 s (writes): about 50 minutes
# Runs scripts/setup.sh first (see its --help); its server runs as chomtest in /tmp/chom-bench.* on port 5544.
# Options: --sites N  --runs R  --read-secs S  --write-secs S  --bulk ROWS  --bulk-runs R (default 5)
#          --port P  --keep (leave the data dir)
#          --no-build  --reads-only (skip the write phase)  --no-shapes (skip the seed-index query shapes)
#          --busy-only (the busy tenant alone: inserts into the biggest tenant, none / chom / quota on, its stats
#          read and the lag beside 16 writers; about 12 minutes at 1M)
#          --sync-commit off (default on: Postgres' default durability)  --out DIR
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RUN_AS=${CHOM_TEST_USER:-chomtest}
ARGS="$*"
SITES=1000000 RUNS=3 BULK_RUNS="" READ_T="" WRITE_T="" BULK="" PORT=5544 KEEP=0 QUICK=0 SYNC=on OUT=$HERE/out BUILD=1 READS_ONLY=0 BUSY_ONLY=0 SHAPES=1

while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --sites) SITES=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --bulk-runs) BULK_RUNS=$2; shift ;;
    --read-secs) READ_T=$2; shift ;;
    --write-secs) WRITE_T=$2; shift ;;
    --bulk) BULK=$2; shift ;;
    --port) PORT=$2; shift ;;
    --sync-commit) SYNC=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --reads-only) READS_ONLY=1 ;;
    --busy-only) BUSY_ONLY=1 ;;
    --no-shapes) SHAPES=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((QUICK)); then
  SITES=20000; : "${READ_T:=2}" "${WRITE_T:=3}" "${BULK:=10000}" "${BULK_RUNS:=3}"
fi
: "${READ_T:=5}" "${WRITE_T:=10}" "${BULK:=100000}" "${BULK_RUNS:=5}"
TENANTS=$((SITES / 5)); ORGS=$((TENANTS * 4 / 5))
VPS=$((SITES / 500)); ((VPS < 20)) && VPS=20
VPS_USED=$((VPS * 95 / 100))
BIG=$((SITES / 200)); ((BIG < 50)) && BIG=50
POOL=$((SITES < 50000 ? SITES : 50000))
TX_N=12      # tenants of the multi-statement transaction tests (1..12, the biggest)
FULL=1000000 # the scale the targets are set for

if ((BUILD)); then
  bash "$REPO/scripts/setup.sh"
  echo "bench: building chom (release) and installing it into Postgres 15"
  (cd "$REPO" && cargo pgrx install --release --pg-config "$PGBIN/pg_config" --no-default-features --features pg15) \
    >/tmp/chom-bench-install.log 2>&1 || { tail -30 /tmp/chom-bench-install.log; exit 1; }
fi

T0=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# the library of this version (each release installs its own, chom-<version>.so)
SO=$("$PGBIN/pg_config" --pkglibdir)/chom-$(awk -F'"' '/^version *=/ { print $2; exit }' "$REPO/Cargo.toml").so
so_id() { stat -c '%s bytes, modified %y' "$SO" 2>/dev/null | sed 's/\.[0-9]* / /'; }
SO_START=$(so_id)
SO_KIND=$(file -b "$SO" | grep -q 'with debug_info' && [ "$(stat -c %s "$SO")" -gt 20000000 ] \
          && echo "DEBUG build (unoptimised; rebuild with cargo pgrx install --release for meaningful chom figures)" || echo "release build")
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/chom-bench.XXXXXX)
chmod 755 "$WORK"; chown "$RUN_AS" "$WORK"
DATA=$WORK/data SOCK=$WORK/sock RES=$WORK/results.tsv LOG=$WORK/bench.log
mkdir -p "$SOCK" "$OUT"; chown "$RUN_AS" "$SOCK"; : >"$RES"

say() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*" | tee -a "$LOG"; }
as_pg() { sudo -u "$RUN_AS" "$@"; }
psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U "$RUN_AS" "$@"; }
db() { psql_ -d chom_bench "$@"; }
val() { db -At -c "$1"; }

stop_server() {
  if [ -f "$DATA/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true; fi
  if ((KEEP)); then echo "data dir kept: $DATA (work dir $WORK)"; else rm -rf "$WORK"; fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------------------
say "$(basename "$SO"): $SO_KIND; load average $LOAD_START"
say "server: initdb + start (Postgres 15, port $PORT, socket $SOCK, synchronous_commit=$SYNC)"
as_pg "$PGBIN/initdb" -D "$DATA" -U "$RUN_AS" --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
  || as_pg "$PGBIN/initdb" -D "$DATA" -U "$RUN_AS" --auth=trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w \
  -o "-p $PORT -k $SOCK -c listen_addresses= -c synchronous_commit=$SYNC" start >/dev/null
psql_ -d postgres -c "CREATE DATABASE chom_bench" -c "CREATE DATABASE chom_bench_results"

say "dataset: $SITES sites, $TENANTS tenants (biggest $BIG sites), $ORGS organizations, $VPS VPS"
PGOPTIONS="-c client_min_messages=warning" db -1 -f "$REPO/tests/fixtures/chom_schema.sql" >/dev/null
db -v sites="$SITES" -v tenants="$TENANTS" -v orgs="$ORGS" -v vps="$VPS" -v vps_used="$VPS_USED" -v big="$BIG" \
   -f "$HERE/sql/dataset.sql" 2>&1 | sed 's/^/    /' | tee -a "$LOG"
say "dataset: VACUUM ANALYZE"
db -c "VACUUM ANALYZE"
LOAD_SECS=$(($(date +%s) - T0))
read -r BIG_LIVE BIG_MB <<<"$(val "SELECT count(*), sum(storage_used_mb) FROM sites WHERE tenant_id = md5('tenant1')::uuid AND deleted_at IS NULL" | tr '|' ' ')"
DATASET=$(val "SELECT string_agg(format('%s %s', relname, n_live_tup), ', ' ORDER BY n_live_tup DESC) FROM pg_stat_user_tables")
DB_SIZE=$(val "SELECT pg_size_pretty(pg_database_size('chom_bench'))")
say "dataset loaded in ${LOAD_SECS}s ($DB_SIZE): $DATASET"
say "dataset: biggest tenant has $BIG_LIVE live sites; $(val "SELECT round(100.0 * count(*) FILTER (WHERE deleted_at IS NOT NULL) / count(*), 1) FROM sites")% of sites soft-deleted"

# ---------------------------------------------------------------------------------------------------------------
# pgbench <phase> <config> <test> <clients> <rep> <secs> <pgbench args...>: one timed run, appended to $RES.
bench() {
  local phase=$1 config=$2 test=$3 clients=$4 rep=$5 secs=$6; shift 6
  local out
  if ! out=$("$PGBIN/pgbench" -n -M prepared -h "$SOCK" -p "$PORT" -U "$RUN_AS" -c "$clients" -j "$clients" -T "$secs" \
        -D tenants="$TENANTS" -D orgs="$ORGS" -D sites="$SITES" -D vps="$VPS" -D vps_used="$VPS_USED" -D pool="$POOL" \
        "$@" chom_bench 2>&1); then
    echo "$out" | tail -20 >&2; say "pgbench failed: $phase $config $test"; exit 1
  fi
  local tps lat failed deadlocks
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out") # "... ms (including failures)" with failures
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
  # only with --failures-detailed (the multi-statement transaction tests): empty otherwise
  deadlocks=$(sed -n 's/^number of deadlock failures: \([0-9]*\).*/\1/p' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$config" "$test" "$clients" "$rep" "$tps" "$lat" "$deadlocks" >>"$RES"
  printf '    %-5s %-6s %-26s c=%s run %s: %10.1f tps %9.3f ms%s%s\n' "$phase" "$config" "$test" "$clients" "$rep" "$tps" "$lat" \
    "$([ "${failed:-0}" != 0 ] && echo " ($failed failed)")" "$([ -n "$deadlocks" ] && echo " deadlocks $deadlocks")" | tee -a "$LOG"
}

P=$HERE/pgbench
# the main query shapes of the other seed indexes (same statement in every configuration): test name, script
SHAPES_LIST=(
  "ops: tenant+status"           shape_ops_tenant_status
  "ops: tenant, newest 20"       shape_ops_tenant_recent
  "audit: org, newest 20"        shape_audit_org_recent
  "audit: resource"              shape_audit_resource
  "usage: tenant+metric+period"  shape_usage_period
  "backups: site, newest 10"     shape_backups_site_recent
  "subscriptions: org+status"    shape_subs_org_status
  "invoices: org+status"         shape_invoices_org_status
  "vps: provider+region"         shape_vps_provider_region
  "users: org+role"              shape_users_org_role
  "sites: vps+status"            shape_sites_vps_status
)
read_phase() { # <config>
  ((BUSY_ONLY)) && return 0
  local config=$1 stats=$P/stats_live.sql pick=$P/pick_vps_seed.sql rep i
  if [ "$config" = chom ]; then stats=$P/stats_chom.sql pick=$P/pick_vps_chom.sql; fi
  for ((rep = 1; rep <= RUNS; rep++)); do
    # each read right after the one report.sql pairs it with (pick and stats: the PK read of the biggest tenant,
    # the quota: the PK read of a random one, chom's stats: the seed's live COUNT/SUM), seconds apart
    bench read "$config" "pk read, biggest"     1 "$rep" "$READ_T" -D lo=1 -D hi=1 -f "$P/pk_read.sql"
    bench read "$config" "pick vps"             1 "$rep" "$READ_T" -f "$pick"
    bench read "$config" "tenant stats, biggest" 1 "$rep" "$READ_T" -D lo=1 -D hi=1 -f "$stats"
    if [ "$config" = chom ]; then
      bench read "$config" "live COUNT/SUM, biggest" 1 "$rep" "$READ_T" -D lo=1 -D hi=1 -f "$P/stats_live.sql"
    fi
    bench read "$config" "pk read, random"      1 "$rep" "$READ_T" -D lo=1 -D hi="$TENANTS" -f "$P/pk_read.sql"
    if [ "$config" = chom ]; then
      bench read "$config" "tenant quota, random" 1 "$rep" "$READ_T" -D lo=1 -D hi="$TENANTS" -f "$P/quota_chom.sql"
    fi
    bench read "$config" "tenant stats, random"  1 "$rep" "$READ_T" -D lo=1 -D hi="$TENANTS" -f "$stats"
    bench read "$config" "list sites, random"   1 "$rep" "$READ_T" -D lo=1 -D hi="$TENANTS" -f "$P/list_sites.sql"
    if ((SHAPES)); then
      for ((i = 0; i < ${#SHAPES_LIST[@]}; i += 2)); do
        bench shape "$config" "${SHAPES_LIST[i]}" 1 "$rep" "$READ_T" -f "$P/${SHAPES_LIST[i + 1]}.sql"
      done
    fi
  done
}

say "reads: before (base schema only)"
read_phase before
say "reads: seed (the application's 20 indexes, live COUNT/SUM, withCount)"
db -f "$HERE/sql/seed_indexes.sql"
db -c "ANALYZE"
read_phase seed
say "reads: chom (CREATE EXTENSION chom)"
db -c "CREATE EXTENSION chom" 2>&1 | tee -a "$LOG"
db -c "VACUUM ANALYZE"
DRIFT0=$(val "SELECT (SELECT count(*) FROM chom_cache_drift()) || '/' || (SELECT count(*) FROM chom_vps_drift())")
say "chom installed; drift tenants/vps = $DRIFT0"
read_phase chom

# ---------------------------------------------------------------------------------------------------------------
CHECKS=()
SITES_NOW=$(val "SELECT count(*) FROM sites")
if ((READS_ONLY)); then
  say "writes: skipped (--reads-only)"
else
say "writes: snapshot of the $POOL sampled sites (restored after every run)"
db -c "CREATE TABLE bench_pool_orig AS SELECT id, storage_used_mb, deleted_at, status, updated_at FROM sites
        WHERE id IN (SELECT md5('site' || g)::uuid FROM generate_series(1, $POOL) g)"
db -c "ALTER TABLE bench_pool_orig ADD PRIMARY KEY (id)"
# the multi-statement transaction tests update sites of tenants 1..$TX_N (the biggest): their live sites of the
# sample above (so restore_writes puts them back), numbered k = 1..n per tenant by age, then repeated up to k = 20
# for the 20-update loop (a tenant of a small dataset may have fewer)
say "writes: bench_tx_sites, the live sampled sites of tenants 1..$TX_N for the multi-statement transactions"
db -c "CREATE TABLE bench_tx_sites AS
  WITH live AS (SELECT n AS t, s.id, row_number() OVER (PARTITION BY n ORDER BY s.created_at, s.id) AS r,
                       count(*) OVER (PARTITION BY n) AS cnt
                  FROM generate_series(1, $TX_N) n
                  JOIN sites s ON s.tenant_id = md5('tenant' || n)::uuid
                  JOIN bench_pool_orig o ON o.id = s.id AND o.deleted_at IS NULL)
  SELECT l.t, k, l.id FROM (SELECT DISTINCT t, cnt FROM live) c
   CROSS JOIN LATERAL generate_series(1, greatest(c.cnt, 20)::int) k
    JOIN live l ON l.t = c.t AND l.r = 1 + (k - 1) % c.cnt" \
   -c "ALTER TABLE bench_tx_sites ADD PRIMARY KEY (t, k)" -c "ANALYZE bench_tx_sites"
# the journal's table (bench/pgbench/journal_*.sql): one row per writing commit, no index
db -c "CREATE TABLE bench_journal (tenant_ids uuid[] NOT NULL, sites integer[] NOT NULL, storage_mb bigint[] NOT NULL,
                                   vps_ids uuid[], vps_sites integer[])"
read -r TX_TENANTS TX_MIN <<<"$(val "SELECT count(*), min(n) FROM (SELECT t, count(DISTINCT id) AS n FROM bench_tx_sites GROUP BY t) x" | tr '|' ' ')"
# A's site of the random-order transaction has an odd k, C's an even one: k <= 2 * TX_PER are distinct sites
TX_PER=$((TX_MIN / 2))
if [ "$TX_TENANTS" != "$TX_N" ] || ((TX_PER < 1)); then
  say "bench_tx_sites: $TX_TENANTS of $TX_N tenants with sampled live sites, fewest $TX_MIN: the dataset is too small"; exit 1
fi
say "  $TX_N tenants, $TX_MIN to $(val "SELECT max(n) FROM (SELECT count(DISTINCT id) AS n FROM bench_tx_sites GROUP BY t) x") sampled live sites each"
check_drift() { # <when>
  local d
  d=$(val "SELECT (SELECT count(*) FROM chom_cache_drift()) || '/' || (SELECT count(*) FROM chom_vps_drift())")
  CHECKS+=("$1: chom_cache_drift/chom_vps_drift rows = $d")
  say "  drift check ($1): tenants/vps rows = $d"
}
bulk_run() { # <config> <rep>: one timed INSERT ... SELECT of $BULK sites, rolled back
  local ms
  ms=$(db -v tenants="$TENANTS" -v vps_used="$VPS_USED" -v bulk="$BULK" -f "$HERE/sql/bulk_insert.sql" | sed -n 's/^BULK_MS //p')
  printf '%s\t%s\t%s\t%s\t%s\t\t%s\t\n' write "$1" "bulk insert ${BULK} rows" 1 "$2" "$ms" >>"$RES"
  printf '    write %-6s %-22s     run %s: %10s    %9.1f ms\n' "$1" "bulk insert" "$2" "" "$ms" | tee -a "$LOG"
}
restore_writes() { # put the data back as it was, with whatever triggers are on
  db -v pool="$POOL" -f "$HERE/sql/restore_writes.sql"
  db -c "VACUUM ANALYZE sites, tenants"
}
# each write test for one configuration: <config> <rep> [clients]. none, seed and chom run the application's
# statements (bench/pgbench/w_*.sql); floor and journal their own (floor_*.sql, journal_*.sql)
scripts_of() { case $1 in floor|journal) echo "$1" ;; *) echo w ;; esac; }
# the single-row mix: <config> <rep> <clients> [off]; with off, the sessions run with synchronous_commit off, as
# issue 22 sets the mix's target: no commit waits for its WAL flush, so what is left is each commit's CPU
mix_run() {
  local p test="single-row mix" options=""
  p=$(scripts_of "$1")
  if [ "${4:-on}" = off ]; then test="single-row mix (synchronous_commit off)" options="-c synchronous_commit=off"; fi
  PGOPTIONS="${PGOPTIONS:-} $options" bench write "$1" "$test" "$3" "$2" "$WRITE_T" -D lo=1 -D hi="$TENANTS" \
    -f "$P/${p}_insert.sql@5" -f "$P/${p}_update.sql@4" -f "$P/${p}_softdelete.sql@1"
}
# the multi-statement transactions, pgbench counting deadlocks (no retries); the seed's per-row recount locks each
# tenant at its statement, so its random-order transactions deadlock: the reference. The floor commits as chom
# does (rows locked in id order without waiting, the changes of rows others hold spilled), so a fold worker runs
tx3_run() {
  local p; p=$(scripts_of "$1")
  [ "$1" = floor ] && wake_fold_worker
  bench write "$1" "3-tenant tx, random order" 4 "$2" "$WRITE_T" -D ntx="$TX_N" -D per="$TX_PER" \
    --max-tries=1 --failures-detailed -f "$P/${p}_tx3_random.sql"
}
loop_run() {
  local p; p=$(scripts_of "$1")
  bench write "$1" "20-update tx, one tenant" "$3" "$2" "$WRITE_T" -D ntx="$TX_N" -D nclients="$3" \
    --max-tries=1 --failures-detailed -f "$P/${p}_tx_loop20.sql"
}
# inserts into the biggest tenant (issue 23). none, seed and chom: the application's insert; chom-quota: the same
# with chom.site_quota on, the tenant far from its limit (busy_tests raises its tier); floor: with one writer, the
# single-row mix's insert with its maintenance (floor_insert.sql: no other commit holds the row, so chom does not
# spill), with several, each insert writing by hand what a spilled commit writes (floor_busy_insert.sql: a delta
# row and the VPS's count);
# floor-quota: the same after the headroom read a spill must do where the quota applies
# (floor_busy_insert_quota.sql). A fold worker folds the floors' deltas meanwhile, as it folds chom's: the fold's
# work (its CPU, the tenant row's updates beside the writers' foreign-key locks) is part of what the design costs
insert_run() {
  case $1 in
    floor) if (($3 == 1)); then
        bench write floor "insert, biggest tenant" 1 "$2" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/floor_insert.sql"
      else
        wake_fold_worker
        bench write floor "insert, biggest tenant" "$3" "$2" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/floor_busy_insert.sql"
      fi ;;
    floor-quota) wake_fold_worker
      bench write floor-quota "insert, biggest tenant" "$3" "$2" "$WRITE_T" -D lo=1 -D hi=1 -D inflight="$INFLIGHT" \
        -f "$P/floor_busy_insert_quota.sql" ;;
    chom-quota) db -c "ALTER DATABASE chom_bench SET chom.site_quota = on"
      bench write chom-quota "insert, biggest tenant" "$3" "$2" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/w_insert.sql"
      db -c "ALTER DATABASE chom_bench RESET chom.site_quota" ;;
    *) bench write "$1" "insert, biggest tenant" "$3" "$2" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/w_insert.sql" ;;
  esac
  case $1 in floor*) db -c "SELECT chom_fold_deltas()" >/dev/null ;; esac
}
busy_tenant_tests() { # <rep>: chom on: 16 writers of the biggest tenant with chom_tenant_stats() and a PK read of it
  # timed beside them, and the lag of tenants.cached_sites_count (the oldest unfolded delta) sampled meanwhile
  local lag
  bench busy chom "insert, biggest tenant" 16 "$1" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/w_insert.sql" &
  bench busy chom "tenant stats, biggest, beside 16 writers" 1 "$1" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/stats_chom.sql" &
  bench busy chom "pk read, biggest, beside 16 writers" 1 "$1" "$WRITE_T" -D lo=1 -D hi=1 -f "$P/pk_read.sql" &
  lag=$(db -At -v secs="$WRITE_T" -f "$HERE/sql/delta_lag.sql" | sed -n 's/^LAG //p')
  wait
  read -r -a lag <<<"$lag"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' lag chom "oldest unfolded delta, 16 writers" 16 "$1" "${lag[0]}" "${lag[1]}" >>"$RES"
  say "    lag of tenants.cached_sites_count beside 16 writers: oldest unfolded delta p50 ${lag[0]} ms, p99 ${lag[1]} ms, at most ${lag[2]} deltas"
}
raise_busy_tier() { # the biggest tenant's tier far above its live sites, for the runs with the quota on
  local tier
  tier=$(val "SELECT tier FROM tenants WHERE id = md5('tenant1')::uuid")
  db -c "CREATE TABLE IF NOT EXISTS bench_tier_orig AS SELECT * FROM tier_limits" \
     -c "UPDATE tier_limits SET max_sites = $BIG_LIVE + 1000000 WHERE tier = '$tier'"
}
restore_tiers() { db -c "UPDATE tier_limits l SET max_sites = o.max_sites FROM bench_tier_orig o WHERE o.tier = l.tier"; }
wake_fold_worker() { # with chom's triggers off: one spill (a site inserted while another session holds its tenant's
  # row), which starts the database's fold worker; the floor's deltas keep it running (the site is a bench row)
  chom_triggers enable
  db -c "BEGIN" -c "SELECT 1 FROM tenants WHERE id = md5('tenant1')::uuid FOR NO KEY UPDATE" \
     -c "SELECT pg_sleep(0.5)" -c "COMMIT" >/dev/null &
  sleep 0.2
  db -c "INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, status, storage_used_mb, db_name,
                            created_at, updated_at)
         VALUES (gen_random_uuid(), md5('tenant1')::uuid, md5('vps1')::uuid, 'wake-' || gen_random_uuid() || '.bench',
                 'wordpress', '8.2', 'creating', 1, 'bench', localtimestamp(0), localtimestamp(0))" >/dev/null
  wait
  chom_triggers disable
  # a floor run without the fold would measure less than the design costs: stop rather than report it
  local tries
  for ((tries = 0; tries < 20; tries++)); do
    [ "$(val "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'chom fold'")" -gt 0 ] && return 0
    sleep 0.1
  done
  say "wake_fold_worker: no fold worker runs after a spill"; exit 1
}
# chom's triggers on sites off (none) or on (chom): the same tables, indexes and data otherwise
chom_triggers() { db -c "ALTER TABLE sites ${1^^} TRIGGER USER"; }
# in_turn <rep> <configs> <run> [clients]: one write test run by each configuration, back to back, in an order
# rotated from run to run, each on restored data: a slow spell of the shared machine hits every configuration of a
# test alike, and report.sql pairs each run's figures. none and journal run with chom's triggers off and are
# restored so (nothing drifts); the floor keeps the aggregates itself, and its restore with chom's triggers on
# undoes both exactly. Every sampled site of the transactions is live at their start (the restore), as the
# floor's maintenance by hand, which adds each update's storage to its tenant, needs
in_turn() {
  local rep=$1 run=$3 configs i config
  read -r -a configs <<<"$2"; shift 3
  for ((i = 0; i < ${#configs[@]}; i++)); do
    config=${configs[(i + rep - 1) % ${#configs[@]}]}
    case $config in chom*) chom_triggers enable ;; *) chom_triggers disable ;; esac
    "$run" "$config" "$rep" "$@"
    case $config in floor*) chom_triggers enable ;; journal) db -c "TRUNCATE bench_journal" ;; esac
    restore_writes
  done
}
busy_tests() { # <rep>: inserts into the biggest tenant, each number of writers in every configuration back to back
  # (the quota's only where writers share the tenant's row), then the busy tenant's reads beside 16 writers
  local c
  raise_busy_tier
  in_turn "$1" "none floor chom" insert_run 1
  for c in 4 16; do in_turn "$1" "none floor chom floor-quota chom-quota" insert_run "$c"; done
  restore_tiers
  check_drift "the inserts into the biggest tenant of run $1 (floors, chom), after the restores"
  chom_triggers enable; busy_tenant_tests "$1"; restore_writes
  check_drift "chom, after the busy tenant's run $1 and the restore"
}
paired_writes() {
  local rep c
  # the most spills that can be in flight at once (src/maintain/deltas.rs, processes_at_most), for the quota's floor
  INFLIGHT=$(val "SELECT current_setting('max_connections')::int + current_setting('autovacuum_max_workers')::int + 1
                         + current_setting('max_worker_processes')::int + current_setting('max_wal_senders')::int
                         + current_setting('max_prepared_transactions')::int")
  db -c "VACUUM ANALYZE sites, tenants" -c "CHECKPOINT"
  for ((rep = 1; rep <= RUNS; rep++)); do
    if ! ((BUSY_ONLY)); then
      for c in 1 4; do in_turn "$rep" "none journal floor chom" mix_run "$c"; done
      for c in 1 4; do in_turn "$rep" "none journal floor chom" mix_run "$c" off; done
      check_drift "the single-row mix of run $rep (floor, chom), after the restores"
      in_turn "$rep" "none journal floor chom" tx3_run
      for c in 1 4; do in_turn "$rep" "none floor chom" loop_run "$c"; done
      check_drift "the transactions of run $rep (floor, chom), after the restores"
    fi
    busy_tests "$rep"
  done
}
paired_bulk() { # <none label> <chom label>: the bulk insert without and with chom's triggers, in turn
  local rep
  for ((rep = 1; rep <= BULK_RUNS; rep++)); do
    chom_triggers disable; db -c "VACUUM sites, tenants" -c "CHECKPOINT"; bulk_run "$1" "$rep"
    chom_triggers enable; db -c "VACUUM sites, tenants" -c "CHECKPOINT"; bulk_run "$2" "$rep"
  done
}

if ! ((BUSY_ONLY)); then
say "writes: seed (recount row trigger, bench/sql/seed_recount_on.sql; chom uninstalled)"
db -c "SELECT * FROM chom_uninstall()" >/dev/null
db -f "$HERE/sql/seed_recount_on.sql"
db -c "VACUUM ANALYZE sites, tenants" -c "CHECKPOINT"
for ((rep = 1; rep <= RUNS; rep++)); do
  for c in 1 4; do mix_run seed "$rep" "$c"; done
  for c in 1 4 16; do insert_run seed "$rep" "$c"; done
  tx3_run seed "$rep"
  for c in 1 4; do loop_run seed "$rep" "$c"; done
  bulk_run seed "$rep"
  # the seed trigger would recount once per restored row: switched off meanwhile
  db -c "ALTER TABLE sites DISABLE TRIGGER bench_seed_recount"; restore_writes
  db -c "ALTER TABLE sites ENABLE TRIGGER bench_seed_recount"
done
db -f "$HERE/sql/seed_recount_off.sql"
fi
say "writes: none / journal / floor / chom back to back per test, order rotated per run (chom_install(); none = chom's sites triggers disabled)"
db -c "SELECT * FROM chom_install()" >/dev/null
check_drift "chom, after chom_install()"
paired_writes
check_drift "chom, after the restores (DELETE + UPDATE ... FROM, statement triggers)"
if ! ((BUSY_ONLY)); then
say "writes: bulk insert, none / chom in turn, tenants freshly packed at chom's fillfactor (VACUUM FULL)"
db -c "VACUUM FULL tenants" -c "ANALYZE tenants"
paired_bulk none chom
# what chom.tenants_fillfactor buys: the same with tenants packed at fillfactor 100, as after a bulk load
say "writes: bulk insert, none / chom in turn, tenants left at fillfactor 100 (chom.tenants_fillfactor = 100)"
db -c "SELECT * FROM chom_uninstall()" >/dev/null
PGOPTIONS="-c chom.tenants_fillfactor=100" db -c "SELECT * FROM chom_install()" >/dev/null
db -c "VACUUM FULL tenants" -c "ANALYZE tenants"
paired_bulk none-ff100 chom-ff100
db -c "SELECT * FROM chom_uninstall()" -c "SELECT * FROM chom_install()" >/dev/null
fi
check_drift "chom, at the end"
SITES_NOW=$(val "SELECT count(*) FROM sites")
fi
[ "$SITES_NOW" = "$SITES" ] || say "WARNING: sites has $SITES_NOW rows, expected $SITES"

# ---------------------------------------------------------------------------------------------------------------
PGVER=$(val "SELECT version()")
SETTINGS=$(val "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings
                 WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'work_mem', 'max_wal_size', 'jit')")
CHOM_VER=$(val "SELECT extversion FROM pg_extension WHERE extname = 'chom'")
TOTAL_SECS=$(($(date +%s) - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
SO_END=$(so_id)
SO_NOTE="$SO: $SO_KIND, $SO_START"
[ "$SO_START" = "$SO_END" ] || SO_NOTE="$SO_NOTE; WARNING: replaced during the run (now $SO_END): backends started after that ran the new build"
REPORT=$OUT/report-$STAMP.md
RSQL=(psql_ -d chom_bench_results -v res="$RES" -v bulk="$BULK" -v sites="$SITES" -v full="$FULL")
# below the full scale, the targets whose baseline grows with the data get no verdict (report.sql: '1M only')
SCALE_NOTE=""
((SITES < FULL)) && SCALE_NOTE="Targets marked '1M only' compare chom with a baseline that grows with the data (live COUNT/SUM, \
withCount('sites'), the seed's recount of the biggest tenant): they are set for $FULL sites and judged by the full run \
(bench/run.sh); at $SITES sites their ratios are shown without a verdict. The other targets (write cost against no \
trigger, deadlocks, latency against a PK read) hold at any scale."

"${RSQL[@]}" -f "$HERE/sql/report.sql" >/dev/null
cp "$RES" "$OUT/results-$STAMP.tsv"
# charts (Python 3 stdlib; skipped without python3): write-cost bars and read latencies per configuration
CHARTS=()
if command -v python3 >/dev/null; then
  if python3 "$HERE/chart.py" run "$OUT/results-$STAMP.tsv" --out-prefix "$OUT/chart-$STAMP" --title "$SITES sites" >>"$LOG" 2>&1; then
    for c in reads writes shapes; do [ -f "$OUT/chart-$STAMP-$c.svg" ] && CHARTS+=("$c:chart-$STAMP-$c.svg"); done
  else
    say "WARNING: bench/chart.py failed (see $LOG); no charts"
  fi
fi
chart() { local c; for c in "${CHARTS[@]}"; do [ "${c%%:*}" = "$1" ] && printf '\n![%s](%s)\n' "$1" "${c#*:}"; done; return 0; }

{
  echo "# chom benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "- machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(uname -sr)"
  echo "- Postgres: $PGVER; chom $CHOM_VER; server settings: $SETTINGS (all other settings default)"
  echo "- chom library: $SO_NOTE"
  echo "- load average (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END (other work on the machine skews figures)"
  echo "- scale: $SITES sites ($TENANTS tenants, biggest tenant $BIG_LIVE live sites / $BIG_MB MB; $VPS VPS), database $DB_SIZE, loaded in ${LOAD_SECS}s"
  echo "- rows: $DATASET"
  if ((READS_ONLY)); then
    echo "- method: pgbench -M prepared, 1 client for reads (-T $READ_T s); writes skipped (--reads-only);"
    echo "  every figure is the median of $RUNS runs (runs interleaved across tests). Ratios are chom / baseline in"
    echo "  throughput (higher is better for chom)."
  else
    echo "- method: pgbench -M prepared, 1 client for reads (-T $READ_T s), 1 and 4 clients for writes (-T $WRITE_T s);"
    echo "  every figure is the median of $RUNS runs. Each write test runs none, journal, floor and chom back to back"
    echo "  (chom's sites triggers disabled or enabled on the same tables), in an order rotated from run to run, and each"
    echo "  ratio is paired: the median of the runs' own ratios, whose two sides ran a minute apart at most (reads: in"
    echo "  the same phase, seconds apart). Bulk insert = one INSERT ... SELECT of $BULK sites over all tenants, timed"
    echo "  inside a transaction that is rolled back, $BULK_RUNS none/chom pairs. Multi-statement transactions:"
    echo "  BEGIN; update a site of tenant A; insert a site of tenant B; update a site of tenant C; COMMIT with A, B, C"
    echo "  three different tenants at random among tenants 1..$TX_N (4 clients), and 20 single-row updates of one tenant's"
    echo "  sites in one transaction (1 client; 4 clients on different tenants), run with --max-tries=1 so that a deadlock"
    echo "  is a failed transaction, counted (sum over the runs) and not retried. Ratios are chom / baseline in throughput"
    echo "  (higher is better for chom) or chom / baseline in time for the bulk insert (lower is better)."
  fi
  echo "- command: bench/run.sh $ARGS (sites $SITES, runs $RUNS, read -T $READ_T s, write -T $WRITE_T s, bulk $BULK x $BULK_RUNS); total time ${TOTAL_SECS}s"
  echo
  echo "## Targets"
  echo
  if [ -n "$SCALE_NOTE" ]; then echo "$SCALE_NOTE"; echo; fi
  "${RSQL[@]}" -At -c "SELECT line FROM md_targets ORDER BY ord"
  echo
  echo "## Reads (median TPS / mean latency, 1 client)"
  echo
  "${RSQL[@]}" -At -c "SELECT line FROM md_reads ORDER BY ord"
  chart reads
  echo
  if ((SHAPES)); then
    echo "## Other seed-index query shapes (median TPS / mean latency, 1 client)"
    echo
    echo "The main query of each of the other composite indexes of the app's migration (bench/pgbench/shape_*.sql); the same"
    echo "statement in every configuration: seed/before is what the migration's index buys, chom/seed what chom changes for"
    echo "these reads (chom_install() reuses the seed indexes, so only noise is expected)."
    echo
    "${RSQL[@]}" -At -c "SELECT line FROM md_shapes ORDER BY ord"
    chart shapes
    echo
  fi
  if ! ((READS_ONLY)); then
    echo "## Writes (median TPS; bulk insert: median ms)"
    echo
    echo "none = chom's triggers on sites disabled (same tables, indexes and data), seed = recount row trigger (chom"
    echo "uninstalled), chom = chom's statement triggers; each test's configurations ran back to back. floor = the single-row"
    echo "mix with chom's triggers off and the same maintenance written by hand into each statement (the tenant's count"
    echo "and storage, the VPS's live sites: bench/pgbench/floor_*.sql), what exact per-commit aggregates cost at the"
    echo "least; for the multi-statement transactions, floor = the same transaction with the maintenance chom does at"
    echo "commit written by hand as its last statement, as chom does it: tenants locked in id order without waiting,"
    echo "the changes of rows other commits hold spilled to chom.tenant_deltas and folded (bench/pgbench/floor_tx*.sql);"
    echo "for inserts into the biggest tenant, floor = with one writer the single-row mix's insert and its maintenance"
    echo "(floor_insert.sql), with 4 and 16 writers each insert writing by hand what a spilled"
    echo "commit writes (a row of chom.tenant_deltas and the VPS's count: bench/pgbench/floor_busy_insert.sql; with the"
    echo "quota on, after the headroom read a spill must do: floor_busy_insert_quota.sql), with a fold worker folding"
    echo "those rows meanwhile as it folds chom's: what exact aggregates cost at the least when writers of one tenant"
    echo "must not queue on its row. The targets table also compares with no trigger each floor (what chom's design"
    echo "reaches at most) and a journal (the single-row mix and the 3-tenant transactions appending their changes as"
    echo "one unindexed row per commit, chom's triggers off: bench/pgbench/journal_*.sql), what a design that writes no"
    echo "aggregate at commit reaches at most."
    echo "deadlocks none / seed / chom: deadlock failures over all runs (the multi-statement transaction tests,"
    echo "pgbench --max-tries=1)."
    echo
    "${RSQL[@]}" -At -c "SELECT line FROM md_writes ORDER BY ord"
    chart writes
    echo
  fi
  echo "## Checks"
  echo
  echo "- chom after CREATE EXTENSION: drift tenants/vps = $DRIFT0"
  for c in "${CHECKS[@]}"; do echo "- $c"; done
  echo "- sites rows at the end: $SITES_NOW (expected $SITES)"
  echo
  echo "Raw runs: results-$STAMP.tsv (phase, config, test, clients, run, tps, latency or bulk ms)."
} >"$REPORT"

echo
TERM_V=(-c "SELECT * FROM term_reads")
((SHAPES)) && TERM_V+=(-c "SELECT * FROM term_shapes")
((READS_ONLY)) || TERM_V+=(-c "SELECT * FROM term_writes")
"${RSQL[@]}" "${TERM_V[@]}" -c "SELECT * FROM term_targets"
if [ -n "$SCALE_NOTE" ]; then echo "$SCALE_NOTE" | fold -s -w 116; echo; fi
say "report: $REPORT"

#!/usr/bin/env bash
# Issue 21: a 1M-site ALTER EXTENSION chom UPDATE from 0.1.0 crashed once inside chom-0.3.0.so. This hunts that
# crash, repeatably, on the Postgres 17 build only (see --help). docs/crash-hunt.md says what it found.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash bench/crash_hunt.sh [--from RELEASE] [--to RELEASE] [--iterations N] [--minutes M] [--sites N]
                                [--port P] [--work DIR] [--session FILE] [--fresh-base] [--no-debuginfo]
                                [--set-core-pattern]

Runs the update of issue 21 over and over with core dumps on, and prints the backtrace of any crash:

  1. builds each release from its commit (scripts/releases) in WORK/releases/chom-<v>, with its own target dir,
     by `cargo pgrx package` (the release profile; with debug info added unless --no-debuginfo: the same code);
  2. installs --from's files ($libdir/chom.so for 0.1.0 and 0.2.0, its scripts and control file), loads
     bench/sql/dataset.sql (--sites) into a database created at --from ONCE (kept in WORK/data and reused by
     later runs; --fresh-base reloads it), then installs --to's library and scripts beside it;
  3. each iteration clones that database (CREATE DATABASE ... TEMPLATE, STRATEGY FILE_COPY), and in ONE
     session writes sites through the old library (insert, update, a rolled-back savepoint, a delete, the old
     chom_tenant_stats() and chom_pick_vps()), runs ALTER EXTENSION chom UPDATE TO '<to>' (timed), writes again
     (through --to's library, with the old one still mapped: checked in /proc/self/maps), checks drift, and
     ends; then the clone is dropped. A backend killed by a signal ("terminated by signal" in the server log)
     is a crash: its core is kept in WORK/crashes/iter-<n>/ with `gdb bt` and `info sharedlibrary`.
  4. stops after --iterations or --minutes, whichever comes first, prints a summary, stops its server.

Options (defaults):
  --from RELEASE     the release the database starts at: 0.1.0 or 0.2.0 (0.1.0)
  --to RELEASE       the release updated to (0.3.0); its library must not be chom.so
  --iterations N     clone-update-drop rounds (10)
  --minutes M        stop starting new rounds after M minutes (60)
  --sites N          sites in the dataset (1000000; tenants N/5, VPSes N/500)
  --port P           the server's port (5571); socket and data under WORK
  --work DIR         everything this script makes (/tmp/chom-crash-hunt)
  --session FILE     run this psql script in each clone instead of the built-in session (WORK/session.sql,
                     written at every run); psql variable :to is the release to update to
  --fresh-base       drop and reload the database at --from even if a complete one exists
  --no-debuginfo     build the releases exactly as released (no DWARF: backtraces by symbol only)
  --set-core-pattern when kernel.core_pattern pipes to a program, point it at WORK/cores/ for the run and
                     restore it at exit (root only; system-wide while it runs)

Only the Postgres 17 build ($PG17_CONFIG of /opt/chom-pg/pg_configs.env) is used: the releases are
installed into it and its server runs as $CHOM_TEST_USER (chomtest). One hunt at a time (WORK/hunt.lock).
Time on 2 cores: the first run builds the releases (a few minutes each) and loads 1M sites (about 10 minutes);
then rounds until --iterations or --minutes, so up to about 75 minutes with the defaults.
Exit status: 0 when no iteration crashed, 3 when one did, 1 on any other failure.
EOF
}

PG_CONFIGS=${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env
# shellcheck disable=SC1090 # written by scripts/setup.sh; checked after the arguments, so that --help works without it
[ ! -f "$PG_CONFIGS" ] || . "$PG_CONFIGS"
PGC=${PG17_CONFIG:-}
FROM=0.1.0 TO=0.3.0 ITERATIONS=10 MINUTES=60 SITES=1000000 PORT=5571 WORK=/tmp/chom-crash-hunt
FRESH=0 DEBUGINFO=true SET_CORE_PATTERN=0 RUN_AS=${CHOM_TEST_USER:-chomtest} CUSTOM_SESSION=
while (($#)); do
  case $1 in
    --from) FROM=$2; shift ;;
    --to) TO=$2; shift ;;
    --iterations) ITERATIONS=$2; shift ;;
    --minutes) MINUTES=$2; shift ;;
    --sites) SITES=$2; shift ;;
    --port) PORT=$2; shift ;;
    --work) WORK=$2; shift ;;
    --session) CUSTOM_SESSION=$(realpath "$2"); shift ;;
    --fresh-base) FRESH=1 ;;
    --no-debuginfo) DEBUGINFO=false ;;
    --set-core-pattern) SET_CORE_PATTERN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "crash_hunt: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "crash_hunt: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*"; }

[ -n "$PGC" ] || die "no Postgres 17 build in $PG_CONFIGS: run scripts/setup.sh first"
major=$("$PGC" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
[ "$major" = 17 ] || die "$PGC is Postgres $major: this hunt runs on the Postgres 17 build only"
for release in "$FROM" "$TO"; do
  awk -v v="$release" '$1 == v { found = 1 } END { exit !found }' scripts/releases \
    || die "no release $release in scripts/releases"
done
case $FROM in 0.1.0|0.2.0) ;; *) die "--from is 0.1.0 or 0.2.0 (the releases whose library is chom.so)" ;; esac
[[ $ITERATIONS =~ ^[0-9]+$ && $MINUTES =~ ^[0-9]+$ && $SITES =~ ^[0-9]+$ && $PORT =~ ^[0-9]+$ ]] \
  || die "--iterations, --minutes, --sites and --port take whole numbers"
((SITES >= 1000)) || die "--sites: at least 1000"
[ "$(id -u)" = 0 ] || die "run as root: the server runs as $RUN_AS, started with core dumps allowed"
command -v gdb >/dev/null || die "gdb is missing (apt-get install -y gdb)"

BIN=$("$PGC" --bindir)
PKGLIBDIR=$("$PGC" --pkglibdir)
EXTDIR=$("$PGC" --sharedir)/extension
DATA=$WORK/data
TENANTS=$((SITES / 5)); ORGS=$((TENANTS * 4 / 5)); VPS=$((SITES / 500)); ((VPS < 20)) && VPS=20
VPS_USED=$((VPS * 95 / 100)); BIG=$((SITES / 200)); ((BIG < 50)) && BIG=50; POOL=$((SITES < 50000 ? SITES : 50000))
BASE="hunt_base_${FROM//./_}_$SITES"

mkdir -p "$WORK/releases" "$WORK/crashes" "$WORK/cores"
chown "$RUN_AS" "$WORK" "$WORK/cores"
exec 9>"$WORK/hunt.lock"
flock -n 9 || die "another hunt holds $WORK/hunt.lock"

p() { PGOPTIONS=${PGOPTIONS--c client_min_messages=warning} "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -P pager=off -h "$WORK" -p "$PORT" -U postgres "$@"; }

OLD_CORE_PATTERN=
stop_server() {
  # a shutdown request that arrives while the postmaster reinitializes after a crash can be lost: wait for the
  # server to accept connections first, and stop it immediately if a fast shutdown does not end it
  for _ in $(seq 60); do "$BIN/pg_isready" -q -h "$WORK" -p "$PORT" && break; sleep 1; done
  sudo -u "$RUN_AS" "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 \
    || sudo -u "$RUN_AS" "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
}

cleanup() {
  if [ -f "$DATA/postmaster.pid" ]; then
    stop_server
  fi
  if [ -n "$OLD_CORE_PATTERN" ]; then
    printf '%s\n' "$OLD_CORE_PATTERN" >/proc/sys/kernel/core_pattern && log "kernel.core_pattern restored"
  fi
}
trap cleanup EXIT

# --- core dumps -------------------------------------------------------------------------------------------------
core_pattern=$(cat /proc/sys/kernel/core_pattern)
if [[ $core_pattern == '|'* ]]; then
  if ((SET_CORE_PATTERN)); then
    OLD_CORE_PATTERN=$core_pattern
    echo "$WORK/cores/core.%e.%p" >/proc/sys/kernel/core_pattern
    log "kernel.core_pattern was '$OLD_CORE_PATTERN': set to $WORK/cores/core.%e.%p until exit"
  else
    log "warning: kernel.core_pattern pipes cores to '${core_pattern#|}': pass --set-core-pattern to keep them here"
  fi
fi

# --- the releases ---------------------------------------------------------------------------------------------
# build <version>: WORK/releases/pkg-<version>, the files `cargo pgrx install` would install, for Postgres 17
build() {
  local version=$1 commit src pkg stamp
  commit=$(awk -v v="$version" '$1 == v { print $2 }' scripts/releases)
  src=$WORK/releases/chom-$version pkg=$WORK/releases/pkg-$version
  stamp="$commit debuginfo=$DEBUGINFO"
  if [ -f "$pkg/.built" ] && [ "$(cat "$pkg/.built")" = "$stamp" ]; then
    return
  fi
  if [ ! -f "$src/Cargo.toml" ]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
  fi
  log "building chom $version ($commit, debug info: $DEBUGINFO) in $src"
  rm -rf "$pkg"
  (cd "$src" && CARGO_PROFILE_RELEASE_DEBUG=$DEBUGINFO CARGO_TARGET_DIR="$src/target" \
    cargo pgrx package --pg-config "$PGC" --no-default-features --features pg17 --out-dir "$pkg") \
    >"$WORK/releases/build-$version.log" 2>&1 || { tail -40 "$WORK/releases/build-$version.log"; die "build $version"; }
  echo "$stamp" >"$pkg/.built"
}

# install <version>: copies a release's library, scripts and control file into the Postgres 17 build. A library
# is removed before it is copied (as cargo pgrx install does): a library rewritten in place changes the code of
# every backend that has it mapped.
install_release() {
  local version=$1 pkg=$WORK/releases/pkg-$1 file
  for file in "$pkg$PKGLIBDIR"/*; do
    rm -f "$PKGLIBDIR/$(basename "$file")"
    cp "$file" "$PKGLIBDIR/"
  done
  cp "$pkg$EXTDIR"/* "$EXTDIR/"
  log "installed chom $version: $(cd "$pkg$PKGLIBDIR" && echo *) and $(cd "$pkg$EXTDIR" && echo *)"
}

build "$FROM"
build "$TO"
[ ! -e "$WORK/releases/pkg-$TO$PKGLIBDIR/chom.so" ] || die "--to $TO installs chom.so: it would replace $FROM's"

# --- the server -------------------------------------------------------------------------------------------------
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  sudo -u "$RUN_AS" "$BIN/initdb" -D "$DATA" -U postgres -A trust --no-sync >/dev/null
fi
if [ -f "$DATA/postmaster.pid" ]; then
  stop_server
fi
# sudo drops the core size limit: the server is started through setpriv, which keeps this shell's
ulimit -c unlimited
setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups "$BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -c \
  -o "-p $PORT -k $WORK -c listen_addresses='' -c shared_buffers=1GB -c max_wal_size=8GB \
      -c restart_after_crash=on -c log_min_messages=warning" start >/dev/null 9>&-
grep -q 'Max core file size *unlimited' "/proc/$(head -1 "$DATA/postmaster.pid")/limits" \
  || die "the server cannot dump core (see /proc/<postmaster>/limits)"
log "Postgres $major on port $PORT (data $DATA, log $WORK/server.log), core dumps on (core_pattern: $(cat /proc/sys/kernel/core_pattern))"

# --- the database at --from, loaded once --------------------------------------------------------------------------
install_release "$FROM"
complete="crash hunt base: chom $FROM, $SITES sites, complete"
state=$(p -d postgres -At -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$BASE'")
if ((FRESH)) || [ "$state" != "$complete" ]; then
  log "loading $BASE: $SITES sites at chom $FROM"
  started=$SECONDS
  p -d postgres -c "DROP DATABASE IF EXISTS $BASE" -c "CREATE DATABASE $BASE"
  p -d "$BASE" -1 -f tests/fixtures/chom_schema.sql >/dev/null
  p -d "$BASE" -v sites="$SITES" -v tenants="$TENANTS" -v orgs="$ORGS" -v vps="$VPS" -v vps_used="$VPS_USED" \
    -v big="$BIG" -v pool="$POOL" -f bench/sql/dataset.sql >/dev/null
  p -d "$BASE" -c "VACUUM ANALYZE"
  p -d "$BASE" -c "CREATE EXTENSION chom VERSION '$FROM'"
  p -d postgres -c "COMMENT ON DATABASE $BASE IS '$complete'"
  log "loaded $BASE in $((SECONDS - started)) s"
else
  log "reusing $BASE ($complete)"
fi
p -d "$BASE" -At -c "SELECT 'base at chom ' || extversion FROM pg_extension WHERE extname = 'chom'"
install_release "$TO"
(cd "$PKGLIBDIR" && echo "  in $PKGLIBDIR:" chom*.so)
(cd "$EXTDIR" && echo "  in $EXTDIR:" chom*)

# --- the session of each iteration ------------------------------------------------------------------------------
SESSION=$WORK/session.sql
cat >"$SESSION" <<'SQL'
\set ON_ERROR_STOP 1
SELECT 'pid ' || pg_backend_pid() AS backend \gset
\echo :backend
-- through the old library (its triggers write tenants and chom_vps_load in each statement)
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
VALUES (md5('hunt-a')::uuid, md5('tenant3')::uuid, md5('vps2')::uuid, 'hunt-a.test', 11),
       (md5('hunt-b')::uuid, md5('tenant5')::uuid, md5('vps3')::uuid, 'hunt-b.test', 12),
       (md5('hunt-c')::uuid, md5('tenant5')::uuid, NULL, 'hunt-c.test', 13);
UPDATE sites SET storage_used_mb = storage_used_mb + 100, vps_id = md5('vps4')::uuid WHERE id = md5('hunt-a')::uuid;
BEGIN;
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
VALUES (md5('hunt-d')::uuid, md5('tenant7')::uuid, md5('vps3')::uuid, 'hunt-d.test', 15);
SAVEPOINT s;
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
VALUES (md5('hunt-e')::uuid, md5('tenant7')::uuid, md5('vps2')::uuid, 'hunt-e.test', 16);
ROLLBACK TO SAVEPOINT s;
DELETE FROM sites WHERE id = md5('hunt-c')::uuid;
COMMIT;
SELECT count(*) > 0 AS old_stats FROM chom_tenant_stats(md5('tenant1')::uuid) \gset
SELECT chom_pick_vps() IS NOT NULL AS old_pick \gset
-- the update, in the same session
\timing on
ALTER EXTENSION chom UPDATE TO :'to';
\timing off
-- through the new library, the old one still loaded
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
VALUES (md5('hunt-f')::uuid, md5('tenant3')::uuid, md5('vps2')::uuid, 'hunt-f.test', 21);
BEGIN;
UPDATE sites SET storage_used_mb = 150, vps_id = md5('vps3')::uuid WHERE id = md5('hunt-f')::uuid;
SAVEPOINT s;
DELETE FROM sites WHERE id = md5('hunt-b')::uuid;
ROLLBACK TO SAVEPOINT s;
UPDATE sites SET deleted_at = now() WHERE id = md5('hunt-d')::uuid;
SELECT sites_count > 0 AS new_stats FROM chom_tenant_stats(md5('tenant3')::uuid) \gset
SELECT chom_pick_vps() IS NOT NULL AS new_pick \gset
COMMIT;
DELETE FROM sites WHERE id IN (md5('hunt-a')::uuid, md5('hunt-f')::uuid);
SELECT 'libraries ' || string_agg(DISTINCT m[1], ' ' ORDER BY m[1]) AS libraries
  FROM regexp_matches(pg_read_file('/proc/self/maps'), '/(chom[^/[:space:]]*\.so)', 'g') AS m \gset
\echo :libraries
SELECT 'drift ' || (SELECT count(*) FROM chom_cache_drift()) || ' tenants, '
       || (SELECT count(*) FROM chom_vps_drift()) || ' VPSes' AS drift \gset
\echo :drift
SQL
chmod 644 "$SESSION"
if [ -n "$CUSTOM_SESSION" ]; then
  [ -f "$CUSTOM_SESSION" ] || die "--session: no file $CUSTOM_SESSION"
  SESSION=$CUSTOM_SESSION
  log "each iteration runs $SESSION"
fi

wait_ready() {
  for _ in $(seq 120); do "$BIN/pg_isready" -q -h "$WORK" -p "$PORT" && return 0; sleep 1; done
  die "the server does not accept connections (see $WORK/server.log)"
}
crash_line() { tail -c +"$((log_offset + 1))" "$WORK/server.log" | grep -E 'terminated by (signal|exception)' || true; }

crashes=0 ran=0 log_offset=0 deadline=$((SECONDS + MINUTES * 60))
declare -a summary=()
for ((i = 1; i <= ITERATIONS; i++)); do
  if ((SECONDS >= deadline)); then
    log "--minutes $MINUTES reached: stopping after $ran iterations"
    break
  fi
  db=hunt_iter_$i
  wait_ready
  log_offset=$(stat -c %s "$WORK/server.log")
  started=$SECONDS
  p -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE $BASE STRATEGY FILE_COPY"
  cloned=$((SECONDS - started))
  out=$WORK/iter.out
  status=0
  touch "$WORK/iter.stamp"
  PGOPTIONS='' p -d "$db" -v to="$TO" -f "$SESSION" >"$out" 2>&1 || status=$?
  session=$((SECONDS - started - cloned))
  ran=$((ran + 1))
  update_ms=$(awk '/^Time:/ { print $2; exit }' "$out")
  # The session's backend may still be exiting, and a crash at exit (or one killed by a signal) reaches the
  # log only once the backend has dumped core (shared_buffers are in it: seconds) and the postmaster has reaped
  # it: wait until it is reported or gone, then for the server to accept connections again.
  for ((waited = 0; waited < 60; waited++)); do
    [ -n "$(crash_line)" ] && break
    left=$(p -d postgres -At -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'" 2>/dev/null) || left=
    [ "$left" = 0 ] && break
    sleep 1
  done
  wait_ready
  crashed=$(crash_line)
  if [ -n "$crashed" ]; then
    crashes=$((crashes + 1))
    dir=$WORK/crashes/iter-$i-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$dir"
    log "iteration $i: CRASH: $crashed"
    cp "$out" "$dir/session.out"
    tail -c +"$((log_offset + 1))" "$WORK/server.log" >"$dir/server.log"
    core=$(find "$DATA" "$WORK/cores" -maxdepth 1 -name 'core*' -newer "$WORK/iter.stamp" -type f 2>/dev/null | head -1)
    if [ -n "$core" ]; then
      mv "$core" "$dir/core"
      gdb -batch -ex 'bt' -ex 'info sharedlibrary' -ex 'bt full' "$BIN/postgres" "$dir/core" >"$dir/backtrace.txt" 2>&1 || true
      sed -n '1,/^From /p' "$dir/backtrace.txt" | grep '^#' | head -60
      grep -E '/chom[^/]*\.so$' "$dir/backtrace.txt" || true
      log "core, backtrace and logs in $dir"
    else
      log "no core file found (kernel.core_pattern: $(cat /proc/sys/kernel/core_pattern)); logs in $dir"
    fi
    summary+=("iteration $i: CRASH ($crashed), clone ${cloned}s, session ${session}s; see $dir")
  elif ((status != 0)); then
    tail -20 "$out"
    summary+=("iteration $i: psql failed (exit $status) without a crash; clone ${cloned}s, session ${session}s")
    log "iteration $i: the session failed (exit $status), no backend crashed"
  else
    line="iteration $i: ok, clone ${cloned}s, update ${update_ms:-?} ms, session ${session}s, $(grep '^libraries' "$out"), $(grep '^drift' "$out")"
    summary+=("$line")
    log "$line"
  fi
  p -d postgres -c "DROP DATABASE IF EXISTS $db" || true
done

echo "=== crash hunt: chom $FROM -> $TO, $SITES sites, Postgres $major: $ran iterations, $crashes crashed"
printf '  %s\n' "${summary[@]}"
((crashes == 0)) || exit 3

#!/usr/bin/env bash
# Isolation tests: the specs in tests/isolation/specs (isolationtester format), run by pg_isolation_regress
# against a throwaway server of one Postgres build, with chom installed into that build beforehand (this script
# does not build or install chom; scripts/test.sh does).
#
#   scripts/isolation.sh [pg_config ...]   (default: the four builds of /opt/chom-pg/pg_configs.env, or those
#                                           named in CHOM_PG_VERSIONS, e.g. "15 18")
#
# For each build: a server is started as the unprivileged CHOM_TEST_USER (default chomtest; Postgres refuses to
# run as root) with its socket in a private directory under /tmp and no TCP listener. The database chom_template
# gets CHOM's schema (tests/fixtures/chom_schema.sql), the small fixed dataset of tests/isolation/dataset.sql,
# CREATE EXTENSION chom and tests/isolation/helpers.sql. Each spec of tests/isolation/isolation_schedule then
# runs in its own copy of that template (CREATE DATABASE ... TEMPLATE chom_template), so specs cannot disturb
# one another; within a spec, every permutation starts from the same data (setup calls iso_reset()).
# Results and diffs stay in /tmp/chom-isolation-pg<major>/; diffs are printed on failure. The server is stopped
# on exit. The last line is "N passed, N failed" (one test = one spec on one build); the exit status is 0 only
# when every spec passed on every build.
set -euo pipefail

case ${1:-} in
  -h|--help)
    cat <<'USAGE'
usage: bash scripts/isolation.sh [pg_config ...]
       bash scripts/isolation.sh --help

Runs the isolation specs of tests/isolation (pg_isolation_regress) on each Postgres build given (default: those
of /opt/chom-pg/pg_configs.env, or the majors in CHOM_PG_VERSIONS, e.g. "15 18"). chom must be installed into
each build already (scripts/test.sh does that); this script installs nothing.
Per build it starts a throwaway server as chomtest (CHOM_TEST_USER), its data and unix socket in
/tmp/chom-isolation-server-XXXXXX on a random port 30000-49999 with no TCP listener, stopped and removed at
the end; results and diffs stay in /tmp/chom-isolation-pg<major>/. Ends with "N passed, N failed" (one test =
one spec on one build). Time on 2 cores: about a minute or two per build (14 specs; each at most
CHOM_ISOLATION_TIMEOUT seconds, 600 by default).
USAGE
    exit 0 ;;
  -*) echo "isolation: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ISO=$ROOT/tests/isolation
SCHEMA=$ROOT/tests/fixtures/chom_schema.sql
# each release installs its own library, chom-<version>.so (see docs/install-and-upgrade.md, Upgrading)
LIBRARY=chom-$(awk -F'"' '/^version *=/ { print $2; exit }' "$ROOT/Cargo.toml").so
TEST_USER=${CHOM_TEST_USER:-chomtest}
# The specs check the lock orders of chom's locked path: the busy-tenant spill (src/maintain/deltas.rs) is off unless a spec's
# sessions turn it on (busy_tenant_spill.spec), and no fold worker runs behind a spec's back
SPEC_SETTINGS="-c chom.busy_tenant_spill=off -c chom.fold_in_background=off"
SPEC_TIMEOUT=${CHOM_ISOLATION_TIMEOUT:-600}   # seconds per spec: a permutation stuck on a lock fails, not hangs

mapfile -t SPECS < <(sed -n 's/^test:[[:space:]]*//p' "$ISO/isolation_schedule" | tr ' ' '\n' | sed '/^$/d')
((${#SPECS[@]})) || { echo "isolation: no specs in $ISO/isolation_schedule" >&2; exit 2; }

if (($#)); then
  PG_CONFIGS=("$@")
else
  # shellcheck disable=SC1091
  . "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
  PG_CONFIGS=()
  for v in ${CHOM_PG_VERSIONS:-15 16 17 18}; do
    var="PG${v}_CONFIG"
    PG_CONFIGS+=("${!var}")
  done
fi

as_server_user() {
  if [ "$(id -u)" = 0 ]; then sudo -u "$TEST_USER" "$@"; else "$@"; fi
}

passed=0
failed=0
summary=()
SERVER_DIR=
SERVER_BINDIR=

stop_server() {
  if [ -n "$SERVER_DIR" ] && [ -f "$SERVER_DIR/data/postmaster.pid" ]; then
    as_server_user "$SERVER_BINDIR/pg_ctl" -D "$SERVER_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$SERVER_DIR" ] && rm -rf "$SERVER_DIR"
  SERVER_DIR=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# run_build <pg_config>: runs every spec on one build; adds to passed/failed.
run_build() {
  local pg_config=$1
  local version bindir pkglibdir sharedir major regress out port spec db rc
  version=$("$pg_config" --version)
  bindir=$("$pg_config" --bindir)
  pkglibdir=$("$pg_config" --pkglibdir)
  sharedir=$("$pg_config" --sharedir)
  major=$(sed -E 's/^PostgreSQL ([0-9]+).*/\1/' <<<"$version")
  regress=$pkglibdir/pgxs/src/test/isolation/pg_isolation_regress
  echo "=== $version ($pg_config)"

  local missing='' detail=''
  if ! [ -x "$regress" ] || ! [ -x "$(dirname "$regress")/isolationtester" ]; then
    missing="no pg_isolation_regress" detail="pg_isolation_regress/isolationtester not found under $(dirname "$regress")"
  elif ! [ -f "$sharedir/extension/chom.control" ] || ! [ -f "$pkglibdir/$LIBRARY" ]; then
    # installing chom is scripts/test.sh's job (cargo pgrx install), not this script's
    missing="chom not installed" detail="chom is not installed into this build (no $sharedir/extension/chom.control or $pkglibdir/$LIBRARY)"
  fi
  if [ -n "$missing" ]; then
    echo "FAIL: $detail; all ${#SPECS[@]} specs counted as failed"
    failed=$((failed + ${#SPECS[@]}))
    summary+=("pg$major: not run, $missing")
    return 0
  fi

  out=/tmp/chom-isolation-pg$major
  rm -rf "$out" && mkdir -p "$out"
  SERVER_DIR=$(mktemp -d /tmp/chom-isolation-server-XXXXXX)
  SERVER_BINDIR=$bindir
  chmod 755 "$SERVER_DIR"
  [ "$(id -u)" = 0 ] && chown "$TEST_USER" "$SERVER_DIR"
  port=$((30000 + RANDOM % 20000))
  as_server_user "$bindir/initdb" -D "$SERVER_DIR/data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
    >"$out/initdb.log" 2>&1 || { cat "$out/initdb.log"; return 1; }
  as_server_user "$bindir/pg_ctl" -D "$SERVER_DIR/data" -l "$SERVER_DIR/log" -w \
    -o "-p $port -k $SERVER_DIR -c listen_addresses='' -c fsync=off -c max_connections=50 -c max_prepared_transactions=10 $SPEC_SETTINGS" start \
    >"$out/pg_ctl.log" 2>&1 || { cat "$out/pg_ctl.log" "$SERVER_DIR/log" 2>/dev/null; return 1; }

  export PGHOST=$SERVER_DIR PGPORT=$port PGUSER=postgres
  local psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1)
  {
    "$bindir/createdb" chom_template
    "${psql[@]}" -d chom_template -1 -f "$SCHEMA"
    "${psql[@]}" -d chom_template -1 -f "$ISO/dataset.sql"
    "${psql[@]}" -d chom_template -c "CREATE EXTENSION chom"
    "${psql[@]}" -d chom_template -1 -v schema=public -f "$ROOT/tests/fixtures/recount.sql"
    "${psql[@]}" -d chom_template -1 -f "$ISO/helpers.sql"
  } >"$out/template.log" 2>&1 || { echo "FAIL: preparing chom_template:"; cat "$out/template.log"; return 1; }
  # the starting point must be exact, or every spec would fail for a reason that is not a race
  if [ "$("${psql[@]}" -At -d chom_template -c "SELECT all_exact FROM iso_all_exact")" != t ]; then
    echo "FAIL: chom_template's cached aggregates do not match a recount after CREATE EXTENSION chom:"
    "${psql[@]}" -d chom_template -c "SELECT * FROM iso_tenants" -c "SELECT * FROM iso_vps"
    failed=$((failed + ${#SPECS[@]}))
    summary+=("pg$major: not run (template not exact)")
    stop_server
    return 0
  fi

  local build_passed=0 build_failed=0
  for spec in "${SPECS[@]}"; do
    db=iso_$spec
    "${psql[@]}" -d postgres -c "CREATE DATABASE $db TEMPLATE chom_template" >/dev/null \
      || echo "could not create $db from chom_template"
    mkdir -p "$out/$spec"
    rc=0
    timeout --kill-after=10 "$SPEC_TIMEOUT" "$regress" --use-existing --bindir="$bindir" \
      --host="$SERVER_DIR" --port="$port" --user=postgres --dbname="$db" \
      --inputdir="$ISO" --outputdir="$out/$spec" "$spec" >"$out/$spec/run.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
      echo "ok     pg$major $spec"
      build_passed=$((build_passed + 1))
    else
      if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "FAILED pg$major $spec: still running after ${SPEC_TIMEOUT}s (a session stuck waiting?)"
      else
        echo "FAILED pg$major $spec (pg_isolation_regress exit $rc)"
      fi
      cat "$out/$spec/run.log"
      if [ -s "$out/$spec/regression.diffs" ]; then
        echo "--- $out/$spec/regression.diffs"
        cat "$out/$spec/regression.diffs"
      fi
      build_failed=$((build_failed + 1))
    fi
  done
  passed=$((passed + build_passed))
  failed=$((failed + build_failed))
  summary+=("pg$major: $build_passed passed, $build_failed failed")
  unset PGHOST PGPORT PGUSER
  stop_server
}

for pg_config in "${PG_CONFIGS[@]}"; do
  if ! run_build "$pg_config"; then
    echo "FAIL: could not run the specs on $pg_config; all ${#SPECS[@]} counted as failed"
    failed=$((failed + ${#SPECS[@]}))
    summary+=("$pg_config: not run")
    stop_server
  fi
done

# per build only when there are several (with one, its figures are the last line's: printed once)
if ((${#PG_CONFIGS[@]} > 1)); then echo "=== isolation: ${summary[*]/%/;}"; fi
echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Major-version upgrades with chom installed (issue 24): pg_upgrade from Postgres 15 to 17 and to 18, and
# pg_dump from 15 with pg_restore into the new major, checked end to end. scripts/test.sh runs it; the
# docs/install-and-upgrade.md's "Major-version upgrades" says what an operator does and quotes what this prints.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
Usage: bash scripts/pg-upgrade.sh [--to "17 18"] [--sites N] [--keep] [--help]

An old cluster on Postgres 15 (Debian's) with chom in four databases:
  app_<shared>     created at the newest release whose library is the shared $libdir/chom (0.2.0), used;
  app_<previous>   created at the newest earlier release with a library of its own (0.3.0: chom-0.3.0), used;
  app              this version, CHOM's tables owned by the role chom_app, chom.site_quota = on for the database;
  app_busy         this version, pgbench writers committing when the server is shut down (pg_ctl -m fast) and a
                   transaction left open, rolled back by the shutdown.
Then, for each new major (a fresh copy of the old cluster each time; 17 with --link, 18 with --copy):
  1. pg_upgrade --check with the new major's chom.so and chom-<previous>.so moved aside: it must fail, naming
     both libraries and their databases in loadable_libraries.txt (printed);
  2. what docs/install-and-upgrade.md tells the operator: app_<shared> updated on 15 (ALTER EXTENSION chom
     UPDATE), the previous release's library installed for the new major; then pg_upgrade --check passes, and
     pg_upgrade runs (timed);
  3. on the new cluster: chom's catalogue and data equal to the old cluster's (tests/fixtures/pg_upgrade_state.sql),
     every database exact and answering (tests/fixtures/pg_upgrade_check.sql: cached columns and VPS loads
     against a recount, chom_cache_drift()/chom_vps_drift() empty, chom_status() clean, chom_pick_vps() and
     chom_tenant_quota() right), chom's triggers firing (tests/fixtures/pg_upgrade_writes.sql, then exact again),
     the quota refusing (23514), app_<previous> working on its own library, then brought to this version by the
     update_extensions.sql pg_upgrade wrote, exact after; every library a database names loads;
  4. dump and restore: a fresh cluster of the new major, the roles from pg_dumpall --globals-only, and
     pg_restore --create of 15's pg_dump -Fc of app and app_<previous>, and the new major's pg_dump of app
     restored into a database made by hand: exact, triggers firing, nothing run for chom.
A new major whose build is missing, or lacks pg_upgrade, pg_dump or pg_restore, is skipped and named at the end.
Debian's 15.20 keeps attribute versions (pg_attver) that the 17.10 and 18.6 builds do not know: pg_upgrade from it
to them fails for any database, chom or not. When the machine's 15 has them and a new major's pg_dump does not,
the old cluster runs on Debian's newest postgresql-15 without them (15.18, apt-get download, unpacked once into
/opt/chom-pg/15-pre-attver), saying so; without one those pg_upgrade legs are skipped, saying why.

  --to "17 18"   the new majors (default: CHOM_PG_UPGRADE_TO, else "17 18")
  --sites N      load app with bench/sql/dataset.sql at N sites instead of tests/fixtures/dataset.sql (6,000),
                 for the timings (docs/install-and-upgrade.md quotes --sites 1000000)
  --keep         keep the clusters and logs in the work directory (CHOM_PG_UPGRADE_WORK, /tmp/chom-pg-upgrade)
  --help         this text; installs and starts nothing

It installs into the Postgres builds of scripts/setup.sh (CHOM_PG_ROOT, /opt/chom-pg): this version where it is
not installed (cargo pgrx install, as scripts/test.sh does), the two releases from their commits
(scripts/install-release.sh), putting this version's control file and update scripts back after each; servers
run as CHOM_TEST_USER (chomtest) on unix sockets in the work directory (ports 5591-5594 name the sockets).
Time on 2 cores: about a minute once the releases are built (3 s to a minute each); --sites 1000000, about
18 minutes. Everything it started is stopped on exit; the work directory is removed unless --keep or a failure.
USAGE
}

TARGETS=${CHOM_PG_UPGRADE_TO:-17 18} SITES="" KEEP=0
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --to) TARGETS=${2:?--to takes a list of majors}; shift ;;
    --sites) SITES=${2:?--sites takes a number}; shift ;;
    --keep) KEEP=1 ;;
    *) echo "pg-upgrade: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ -z $SITES || $SITES =~ ^[0-9]+$ ]] || { echo "pg-upgrade: --sites takes a whole number" >&2; exit 2; }

PG_ROOT=${CHOM_PG_ROOT:-/opt/chom-pg}
TEST_USER=${CHOM_TEST_USER:-chomtest}
WORK=${CHOM_PG_UPGRADE_WORK:-/tmp/chom-pg-upgrade}
SOCK=$WORK/sock
PORT_OLD=5591 PORT_UPGRADE_OLD=5592 PORT_UPGRADE_NEW=5593 PORT_NEW=5594
FIX=$PWD/tests/fixtures
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)

say() { echo "pg-upgrade: $*"; }
fail() { echo "pg-upgrade: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

[ -f "$PG_ROOT/pg_configs.env" ] || fail "$PG_ROOT/pg_configs.env is missing: run scripts/setup.sh first"
# shellcheck disable=SC1091
. "$PG_ROOT/pg_configs.env"
OLD_CONFIG=${PG15_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

# the releases the old databases start from: the newest one whose objects name the shared $libdir/chom (its
# control file names module_pathname) and the newest one before this version with a library of its own
shared_release="" previous_release=""
while read -r release commit; do
  { [ -n "$release" ] && [ "${release:0:1}" != "#" ] && [ "$release" != "$version" ]; } || continue
  if git show "$commit:chom.control" | grep -q '^module_pathname'; then shared_release=$release; else previous_release=$release; fi
done <scripts/releases
{ [ -n "$shared_release" ] && [ -n "$previous_release" ]; } \
  || fail "scripts/releases needs a release with the shared library and one with its own (found '$shared_release', '$previous_release')"
db_shared=app_${shared_release//./} db_previous=app_${previous_release//./}

# what runs: the old side needs Debian's 15 with its client tools; each new major its server and pg_upgrade,
# pg_dump, pg_restore and psql
skipped=()
missing_tools() { # <bindir> <program>...: prints the programs the directory lacks
  local dir=$1 p out=()
  shift
  for p in "$@"; do [ -x "$dir/$p" ] || out+=("$p"); done
  echo "${out[*]}"
}
SYSBIN=""
[ -x "$OLD_CONFIG" ] && SYSBIN=$("$OLD_CONFIG" --bindir)
if [ -z "$SYSBIN" ]; then
  say "SKIPPED every upgrade: no Postgres 15 ($OLD_CONFIG; scripts/setup.sh installs Debian's postgresql-15)"
  exit 0
fi
lacking=$(missing_tools "$SYSBIN" initdb pg_ctl postgres pg_controldata pg_dump pg_dumpall psql pgbench)
if [ -n "$lacking" ]; then
  say "SKIPPED every upgrade: Postgres 15 in $SYSBIN has no $lacking"
  exit 0
fi
targets=()
for major in $TARGETS; do
  config_var=PG${major}_CONFIG
  config=${!config_var:-}
  if [ -z "$config" ] || [ ! -x "$config" ]; then
    skipped+=("15 -> $major: no Postgres $major build (no PG${major}_CONFIG in $PG_ROOT/pg_configs.env)")
    continue
  fi
  lacking=$(missing_tools "$("$config" --bindir)" initdb pg_ctl postgres pg_controldata pg_resetwal pg_upgrade pg_dump pg_dumpall pg_restore psql)
  if [ -n "$lacking" ]; then
    skipped+=("15 -> $major: the Postgres $major build in $("$config" --bindir) has no $lacking")
    continue
  fi
  targets+=("$major")
done
if ((${#targets[@]} == 0)); then
  for s in "${skipped[@]}"; do say "SKIPPED $s"; done
  say "no new major to upgrade to (asked for: $TARGETS)"
  exit 0
fi

# Postgres's attribute versions. From 15.20 on (the minor releases of November 2026), the back branches keep a
# version of each column in pg_attribute.attoptions under the reserved key pg_attver, and their pg_dump leaves it
# out. A new major's build from before that round (this machine's 17.10 and 18.6) has a pg_dump that dumps it
# and a server that refuses it ('unrecognized parameter "pg_attver"'): pg_upgrade from a 15.20 cluster to such a
# build fails at "Restoring database schemas in the new cluster" for every database with a table, chom or not,
# after pg_upgrade --check said the clusters are compatible; the new major's pg_dump of a 15.20 server cannot
# be restored either. Whether a build knows the key is read from its programs (the key is a string in them).
knows_attver() { grep -qa pg_attver "$1"; }
# shellcheck disable=SC2034 # read through ${!...}
declare -A attver_blocked=()
OLDBIN=$SYSBIN
if knows_attver "$SYSBIN/postgres"; then
  for major in "${targets[@]}"; do
    config_var=PG${major}_CONFIG
    knows_attver "$("${!config_var}" --bindir)/pg_dump" || attver_blocked[$major]=1
  done
fi
# fetch_pre_attver_15: Debian's newest postgresql-15 without attribute versions (15.18, bookworm's point
# release before 15.20), unpacked whole into $PG_ROOT/15-pre-attver (apt-get download, dpkg-deb -x; a Postgres
# installation moved whole finds its files relative to its programs). Prints its bindir.
fetch_pre_attver_15() {
  local dest=$PG_ROOT/15-pre-attver tmp ver deb
  if [ -x "$dest/usr/lib/postgresql/15/bin/postgres" ] && ! knows_attver "$dest/usr/lib/postgresql/15/bin/postgres"; then
    echo "$dest/usr/lib/postgresql/15/bin"
    return 0
  fi
  for attempt in cached updated; do
    [ "$attempt" = updated ] && { apt-get update >/dev/null 2>&1 || return 1; }
    for ver in $(apt-cache madison postgresql-15 | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | sort -Vr -u); do
      tmp=$(mktemp -d /tmp/chom-postgresql-15.XXXXXX)
      if (cd "$tmp" && apt-get download "postgresql-15=$ver" "postgresql-client-15=$ver") >/dev/null 2>&1; then
        for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
        if ! knows_attver "$tmp/root/usr/lib/postgresql/15/bin/postgres"; then
          rm -rf "$dest" && mkdir -p "$dest" && cp -a "$tmp/root/." "$dest/" && chmod -R a+rX "$dest"
          rm -rf "$tmp"
          echo "$dest/usr/lib/postgresql/15/bin"
          return 0
        fi
      fi
      rm -rf "$tmp"
    done
  done
  return 1
}
if ((${#attver_blocked[@]})); then
  say "$("$SYSBIN/postgres" --version) keeps attribute versions (pg_attver) that the pg_dump of Postgres $(printf "%s\n" "${!attver_blocked[@]}" | sort -n | xargs) here predates:"
  say "  pg_upgrade from it to them fails for any database with a table, chom or not (docs/install-and-upgrade.md, Major-version upgrades)"
  if OLDBIN=$(fetch_pre_attver_15); then
    say "  so the old cluster runs on $("$OLDBIN/postgres" --version) ($OLDBIN), with chom built for 15 as for 15.20;"
    say "  15.20's pg_dump is the one the dump and restore leg uses"
    attver_blocked=()
  else
    OLDBIN=$SYSBIN
    for major in "${!attver_blocked[@]}"; do
      skipped+=("pg_upgrade 15 -> $major and the restore of $major's pg_dump: $("$SYSBIN/postgres" --version) keeps attribute versions (pg_attver) that Postgres $major's pg_dump here does not know, and apt offers no postgresql-15 without them")
    done
  fi
fi
for s in "${skipped[@]}"; do say "will skip: $s"; done   # and says SKIPPED at the end, once each

# ---------------------------------------------------------------------------------------------------------------
# servers, files put aside, saved install files: all put back on exit, whatever happens
started=()   # "<bindir> <datadir>" of servers this run started
aside=()     # files moved out of a pkglibdir for the failing check, under $WORK/aside
saved=()     # "<extdir> <copy>": this version's control file and update scripts, to put back over a release's
stop_started() {
  local entry bin dir
  for entry in "${started[@]}"; do
    bin=${entry%% *} dir=${entry#* }
    if [ -f "$dir/postmaster.pid" ]; then sudo -u "$TEST_USER" "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true; fi
  done
  started=()
}
put_back() {
  local f entry
  for f in "${aside[@]}"; do mv -f "$WORK/aside$f" "$f"; done
  aside=()
  for entry in "${saved[@]}"; do cp -a "${entry#* }"/. "${entry%% *}"/; done
}
cleanup() {
  local rc=$?
  stop_started
  put_back || rc=1
  if ((rc == 0 && KEEP == 0)); then rm -rf "$WORK"; elif ((rc)); then say "clusters and logs kept in $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a server of an earlier run of this script left running (it was killed): stopped by its own pid file
if [ -d "$WORK" ]; then
  while read -r pidfile; do
    pid=$(head -1 "$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null && sleep 1
  done < <(find "$WORK" -maxdepth 3 -name postmaster.pid)
  rm -rf "$WORK"
fi
mkdir -p "$SOCK" "$WORK/dumps" "$WORK/aside"
chown "$TEST_USER" "$WORK" "$SOCK" "$WORK/dumps"

as_server() { sudo -u "$TEST_USER" "$@"; }
start_server() { # <bindir> <datadir> <port>
  as_server "$1/pg_ctl" -D "$2" -l "$2.log" -w -o "-p $3 -k $SOCK -c listen_addresses=''" start >/dev/null \
    || { tail -20 "$2.log"; fail "could not start $2"; }
  started+=("$1 $2")
}
stop_server() { # <bindir> <datadir>
  as_server "$1/pg_ctl" -D "$2" -m fast -w stop >/dev/null
}
initdb_() { # <bindir> <datadir>: every cluster alike, so that pg_upgrade accepts the pair (checksums on: 18's default)
  as_server "$1/initdb" -D "$2" -U postgres -A trust --no-sync --data-checksums --locale=C --encoding=UTF8 >"$2.initdb.log"
}
q() { # <bindir> <port> <database> psql arguments...
  local bin=$1 port=$2 db=$3
  shift 3
  "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$port" -U postgres -d "$db" "$@"
}
val() { q "$1" "$2" "$3" -At -c "$4"; }

# the owner of CHOM's tables in a database: the writes run as the application would
tables_owner() { val "$1" "$2" "$3" "SELECT relowner::regrole FROM pg_class WHERE oid = 'sites'::regclass"; }
check_db() { # <bindir> <port> <database> <when>: tests/fixtures/pg_upgrade_check.sql prints nothing
  local problems
  problems=$(q "$1" "$2" "$3" -At -f "$FIX/pg_upgrade_check.sql") || fail "$3 $4: the check did not run"
  [ -z "$problems" ] || fail "$3 $4: $(wc -l <<<"$problems") problem(s):
$(head -20 <<<"$problems")"
}
write_db() { # <bindir> <port> <database> <tag>: writes through every path, as the tables' owner
  local owner
  owner=$(tables_owner "$1" "$2" "$3")
  q "$1" "$2" "$3" -U "$owner" -v tag="$4" -f "$FIX/pg_upgrade_writes.sql" >/dev/null || fail "$3: the writes ($4) failed"
}
write_and_check() { # <bindir> <port> <database> <when> <tag>: exact, writes, exact again
  check_db "$1" "$2" "$3" "$4"
  write_db "$1" "$2" "$3" "$5"
  check_db "$1" "$2" "$3" "after writes $4"
}
extversion() { val "$1" "$2" "$3" "SELECT extversion FROM pg_extension WHERE extname = 'chom'"; }
libraries() { # the libraries chom's functions name in a database
  val "$1" "$2" "$3" "SELECT string_agg(DISTINCT probin, ' ' ORDER BY probin) FROM pg_proc WHERE probin LIKE '%chom%'"
}
quota_refuses() { # <bindir> <port> <database>: with chom.site_quota on for the database, a site over a starter
  # tenant's limit fails at commit with 23514
  local tenant out
  tenant=$(val "$1" "$2" "$3" "SELECT t.id FROM tenants t JOIN tier_limits l ON l.tier = t.tier
                                 WHERE l.max_sites >= 0 AND t.cached_sites_count >= l.max_sites ORDER BY t.id LIMIT 1")
  [ -n "$tenant" ] || fail "$3: no tenant at its site limit to check the quota with"
  if out=$(q "$1" "$2" "$3" -U "$(tables_owner "$1" "$2" "$3")" -v VERBOSITY=verbose -c "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
            VALUES (gen_random_uuid(), '$tenant', NULL, 'over-quota.test', 1)" 2>&1); then
    fail "$3: a site over tenant $tenant's limit was accepted (chom.site_quota is not on for the database)"
  fi
  grep -q "ERROR:  23514" <<<"$out" || fail "$3: a site over the limit failed otherwise: $out"
}

# ---------------------------------------------------------------------------------------------------------------
# installs: this version where missing, the releases from their commits, this version's files put back after each
pg_dirs() { # <pg_config>: sets pkglibdir and extdir
  pkglibdir=$("$1" --pkglibdir) extdir=$("$1" --sharedir)/extension
}
ensure_this_version() { # <pg_config> <major>
  pg_dirs "$1"
  if [ -f "$pkglibdir/chom-$version.so" ] && [ -f "$extdir/chom--$version.sql" ] \
     && grep -qx "default_version = '$version'" "$extdir/chom.control" 2>/dev/null; then
    return
  fi
  say "installing chom $version into Postgres $2 (cargo pgrx install)"
  cargo pgrx install --pg-config "$1" --no-default-features --features "pg$2" >"/tmp/chom-install-pg$2.log" 2>&1 \
    || { tail -40 "/tmp/chom-install-pg$2.log"; fail "cargo pgrx install into Postgres $2"; }
}
save_this_version() { # <pg_config> <major>: this version's control file and update scripts, put back on exit too
  pg_dirs "$1"
  local copy=$WORK/saved-pg$2
  mkdir -p "$copy"
  cp -a "$extdir/chom.control" "$extdir"/chom--*--*.sql "$copy/"
  saved+=("$extdir $copy")
}
put_back_this_version() { # <major>
  local entry
  for entry in "${saved[@]}"; do
    [[ ${entry#* } == "$WORK/saved-pg$1" ]] && cp -a "${entry#* }"/. "${entry%% *}"/
  done
  return 0
}
install_release() { # <release> <pg_config> <major>
  local started_at
  started_at=$(now)
  bash scripts/install-release.sh "$1" "$2" "$3" >/dev/null
  say "chom $1 built from its commit and installed into Postgres $3 ($(since "$started_at"))"
}
sync_old_installation() { # chom's files of Debian's 15 copied into the old cluster's installation, when it is another
  [ "$OLDBIN" = "$SYSBIN" ] && return 0
  local lib ext
  lib=$("$OLDBIN/pg_config" --pkglibdir) ext=$("$OLDBIN/pg_config" --sharedir)/extension
  rm -f "$lib"/chom*.so "$ext"/chom*
  cp -a "$("$OLD_CONFIG" --pkglibdir)"/chom*.so "$lib/"
  cp -a "$("$OLD_CONFIG" --sharedir)"/extension/chom* "$ext/"
}

ensure_this_version "$OLD_CONFIG" 15
save_this_version "$OLD_CONFIG" 15
sync_old_installation
for major in "${targets[@]}"; do
  config_var=PG${major}_CONFIG
  ensure_this_version "${!config_var}" "$major"
  save_this_version "${!config_var}" "$major"
  # the previous release's library for the new major, as its package carries it (scripts/package.sh)
  install_release "$previous_release" "${!config_var}" "$major"
  put_back_this_version "$major"
done

# ---------------------------------------------------------------------------------------------------------------
# the old cluster, on Postgres 15
OLD=$WORK/old15
say "=== the old cluster: Postgres 15 ($("$OLDBIN/postgres" --version)), chom in four databases"
initdb_ "$OLDBIN" "$OLD"
start_server "$OLDBIN" "$OLD" "$PORT_OLD"
o() { q "$OLDBIN" "$PORT_OLD" "$@"; }
o postgres -c "CREATE ROLE chom_app LOGIN"
chom_database() { # <database> <owner> [<sites>]: CHOM's schema and a dataset, loaded as the owner
  o postgres -c "CREATE DATABASE $1 OWNER $2"
  PGOPTIONS="-c client_min_messages=warning" o "$1" -U "$2" -1 -f "$FIX/chom_schema.sql" >/dev/null
  if [ -n "${3:-}" ]; then
    local tenants=$(($3 / 5)) vps=$(($3 / 500)) big=$(($3 / 200))
    ((vps < 20)) && vps=20
    ((big < 50)) && big=50
    # as a superuser: the load skips foreign-key triggers (session_replication_role)
    o "$1" -v sites="$3" -v tenants="$tenants" -v orgs=$((tenants * 4 / 5)) -v vps="$vps" \
      -v vps_used=$((vps * 95 / 100)) -v big="$big" -v pool=$(($3 < 50000 ? $3 : 50000)) -f bench/sql/dataset.sql >/dev/null
    o "$1" -c "VACUUM ANALYZE" >/dev/null
  else
    PGOPTIONS="-c client_min_messages=error" o "$1" -U "$2" -f "$FIX/dataset.sql" >/dev/null
  fi
}

# the release whose objects name $libdir/chom, installed with its own control file (its scripts name
# MODULE_PATHNAME), created and used
install_release "$shared_release" "$OLD_CONFIG" 15
sync_old_installation
chom_database "$db_shared" postgres
o "$db_shared" -c "CREATE EXTENSION chom VERSION '$shared_release'"
write_db "$OLDBIN" "$PORT_OLD" "$db_shared" "old-$shared_release"
# the previous versioned release, likewise
install_release "$previous_release" "$OLD_CONFIG" 15
sync_old_installation
chom_database "$db_previous" postgres
o "$db_previous" -c "CREATE EXTENSION chom VERSION '$previous_release'"
write_and_check "$OLDBIN" "$PORT_OLD" "$db_previous" "on 15 at $previous_release" "old-$previous_release"
put_back_this_version 15
sync_old_installation
# this version: app (the application's role owns CHOM's tables; the quota on for the database) and app_busy
started_at=$(now)
chom_database app chom_app "$SITES"
o app -c "CREATE EXTENSION chom" -c "ALTER DATABASE app SET chom.site_quota = on"
say "app: CHOM's schema, ${SITES:-6000 (fixture)} sites, CREATE EXTENSION chom ($(since "$started_at"))"
write_and_check "$OLDBIN" "$PORT_OLD" app "on 15" old-app
quota_refuses "$OLDBIN" "$PORT_OLD" app
chom_database app_busy chom_app
o app_busy -c "CREATE EXTENSION chom"
check_db "$OLDBIN" "$PORT_OLD" app_busy "on 15"
for db in "$db_shared" "$db_previous" app app_busy; do
  say "$db: chom $(extversion "$OLDBIN" "$PORT_OLD" "$db"), its functions name $(libraries "$OLDBIN" "$PORT_OLD" "$db")"
done

# app_busy: the application writing when the server is shut down for the upgrade, and a transaction left open
say "app_busy: pgbench writers (3 clients) and an open transaction, then pg_ctl stop -m fast while they run"
"$OLDBIN/psql" -X -q -h "$SOCK" -p "$PORT_OLD" -U chom_app -d app_busy \
  -c "BEGIN" -c "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
                 VALUES (gen_random_uuid(), md5('tenant2')::uuid, md5('vps2')::uuid, 'in-flight.test', 999)" \
  -c "SELECT pg_sleep(3600)" >"$WORK/open-transaction.log" 2>&1 &
open_pid=$!
"$OLDBIN/pgbench" -n -h "$SOCK" -p "$PORT_OLD" -U chom_app -c 3 -j 3 -T 600 --max-tries 20 \
  -f "$FIX/pg_upgrade_writers.pgbench" app_busy >"$WORK/writers.log" 2>&1 &
writers_pid=$!
for _ in $(seq 120); do
  committed=$(val "$OLDBIN" "$PORT_OLD" app_busy "SELECT count(*) FROM sites WHERE domain LIKE 'w-%'")
  ((committed >= 300)) && break
  sleep 0.5
done
((committed >= 300)) || fail "app_busy: the writers committed $committed sites in 60 s ($(tail -5 "$WORK/writers.log"))"
open=$(val "$OLDBIN" "$PORT_OLD" postgres "SELECT count(*) FROM pg_stat_activity
                                            WHERE datname = 'app_busy' AND xact_start IS NOT NULL AND query LIKE '%pg_sleep%'")
{ [ "$open" = 1 ] && kill -0 "$writers_pid" 2>/dev/null; } || fail "app_busy: the open transaction or the writers are gone before the shutdown"
stop_server "$OLDBIN" "$OLD"
wait "$writers_pid" || true
wait "$open_pid" || true
grep -q "terminating connection due to administrator command" "$WORK/writers.log" \
  || fail "app_busy: the writers were not cut off by the shutdown ($(tail -5 "$WORK/writers.log"))"

# the old cluster once more: what the shutdown left, checked; the dumps for the restore leg taken
start_server "$OLDBIN" "$OLD" "$PORT_OLD"
committed=$(val "$OLDBIN" "$PORT_OLD" app_busy "SELECT count(*) FROM sites WHERE domain LIKE 'w-%'")
[ "$(val "$OLDBIN" "$PORT_OLD" app_busy "SELECT count(*) FROM sites WHERE domain = 'in-flight.test'")" = 0 ] \
  || fail "app_busy: the open transaction's site survived the shutdown"
check_db "$OLDBIN" "$PORT_OLD" app_busy "after the shutdown during writes"
say "app_busy: $committed sites of the writers committed before the shutdown, the open transaction rolled back, exact"
started_at=$(now)
as_server "$SYSBIN/pg_dumpall" -h "$SOCK" -p "$PORT_OLD" -U postgres --globals-only -f "$WORK/dumps/globals.sql"
for db in app "$db_previous"; do
  as_server "$SYSBIN/pg_dump" -h "$SOCK" -p "$PORT_OLD" -U postgres -Fc -d "$db" -f "$WORK/dumps/$db.pg15.dump"
done
say "pg_dump -Fc of app and $db_previous, pg_dumpall --globals-only: $("$SYSBIN/pg_dump" --version) ($(since "$started_at"))"
for major in "${targets[@]}"; do
  [ -z "${attver_blocked[$major]:-}" ] || continue
  config_var=PG${major}_CONFIG
  started_at=$(now)
  as_server "$("${!config_var}" --bindir)/pg_dump" -h "$SOCK" -p "$PORT_OLD" -U postgres -Fc -d app -f "$WORK/dumps/app.pg$major.dump"
  say "pg_dump ($major) -Fc of app from the 15 server ($(since "$started_at"))"
done
stop_server "$OLDBIN" "$OLD"

# ---------------------------------------------------------------------------------------------------------------
n() { q "$newbin" "$PORT_NEW" "$@"; }
pg_upgrade_leg() { # <major> <transfer mode>
  local major=$1 mode=$2 config_var=PG${1}_CONFIG old new out rc started_at report db f
  newbin=$("${!config_var}" --bindir)
  pg_dirs "${!config_var}"
  dir=$WORK/to$major old=$WORK/to$major/old15 new=$WORK/to$major/new$major
  say "=== 15 -> $major ($("$newbin/postgres" --version)): pg_upgrade $mode, from a copy of the old cluster"
  cp -a "$OLD" "$old"
  initdb_ "$newbin" "$new"
  pg_upgrade_() { (cd "$dir" && as_server "$newbin/pg_upgrade" -b "$OLDBIN" -B "$newbin" -d "$old" -D "$new" \
    -p "$PORT_UPGRADE_OLD" -P "$PORT_UPGRADE_NEW" -s "$SOCK" -U postgres -j 2 "$@"); }

  # 1. a library that a database names, missing for the new major: pg_upgrade --check fails and says which
  for f in "$pkglibdir/chom.so" "$pkglibdir/chom-$previous_release.so"; do
    if [ -e "$f" ]; then mkdir -p "$WORK/aside$(dirname "$f")" && mv "$f" "$WORK/aside$f" && aside+=("$f"); fi
  done
  rc=0
  out=$(pg_upgrade_ --check 2>&1) || rc=$?
  put_back
  ((rc != 0)) || fail "15 -> $major: pg_upgrade --check passed with chom.so and chom-$previous_release.so missing"
  grep -q "references loadable libraries" <<<"$out" \
    || fail "15 -> $major: pg_upgrade --check failed otherwise:
$out"
  report=$(find "$new/pg_upgrade_output.d" -name loadable_libraries.txt | head -1)
  [ -n "$report" ] || fail "15 -> $major: pg_upgrade --check wrote no loadable_libraries.txt"
  # 0.1.0 and 0.2.0 name "$libdir/chom"; releases since name "chom-<version>" (found on dynamic_library_path)
  for f in "library \"\$libdir/chom\": ERROR:  could not access file \"\$libdir/chom\"" "In database: $db_shared" \
           "library \"chom-$previous_release\": ERROR:  could not access file \"chom-$previous_release\"" \
           "In database: $db_previous"; do
    grep -qF "$f" "$report" || fail "15 -> $major: loadable_libraries.txt does not say '$f':
$(cat "$report")"
  done
  say "pg_upgrade --check without chom.so and chom-$previous_release.so for $major fails as it should; it printed:"
  sed -n '/loadable libraries/,/loadable_libraries.txt/p' <<<"$out" | sed "s|$WORK|\$WORK|g; s/^/    | /"
  say "and loadable_libraries.txt says:"
  sed 's/^/    | /' "$report"
  rm -rf "$new/pg_upgrade_output.d"

  # 2. the operator's steps before: every database at a release with its own library (app_<shared> updated on
  # 15), the previous release's library installed for the new major (just put back); pg_upgrade --check passes
  start_server "$OLDBIN" "$old" "$PORT_OLD"
  o "$db_shared" -c "ALTER EXTENSION chom UPDATE"
  say "$db_shared: ALTER EXTENSION chom UPDATE on 15, now $(extversion "$OLDBIN" "$PORT_OLD" "$db_shared"), its functions name $(libraries "$OLDBIN" "$PORT_OLD" "$db_shared")"
  for db in "$db_shared" "$db_previous" app app_busy; do
    check_db "$OLDBIN" "$PORT_OLD" "$db" "on 15 before pg_upgrade"
    q "$OLDBIN" "$PORT_OLD" "$db" -At -f "$FIX/pg_upgrade_state.sql" >"$dir/$db.before"
  done
  stop_server "$OLDBIN" "$old"
  started_at=$(now)
  out=$(pg_upgrade_ --check 2>&1) || { echo "$out"; fail "15 -> $major: pg_upgrade --check"; }
  grep -q "Clusters are compatible" <<<"$out" || { echo "$out"; fail "15 -> $major: pg_upgrade --check said otherwise"; }
  say "pg_upgrade --check: clusters are compatible ($(since "$started_at"))"
  started_at=$(now)
  out=$(pg_upgrade_ "$mode" 2>&1) || { echo "$out"; fail "15 -> $major: pg_upgrade $mode"; }
  say "pg_upgrade $mode -j 2: done ($(since "$started_at")); besides its steps, it printed:"
  grep -v -e '^Checking\|^Performing\|^Setting\|^Analyzing\|^Freezing\|^Deleting\|^Copying\|^Resetting\|^Restoring\|^Linking\|^Adding\|^Sync' \
       -e '^Creating dump\|^Cloning\|^-*$\|^If pg_upgrade fails\|^new cluster before' <<<"$out" \
    | grep -v '^ *$' | sed "s|$WORK|\$WORK|g; s/^/    | /"

  # 3. the new cluster: chom's catalogue and data as they were, exact, triggers firing, the pick and the quota
  start_server "$newbin" "$new" "$PORT_NEW"
  for db in "$db_shared" "$db_previous" app app_busy; do
    n "$db" -At -f "$FIX/pg_upgrade_state.sql" >"$dir/$db.after"
    diff "$dir/$db.before" "$dir/$db.after" >"$dir/$db.diff" \
      || fail "15 -> $major: $db's catalogue or data changed:
$(head -40 "$dir/$db.diff")"
  done
  say "chom's catalogue and data in every database as on 15 ($(wc -l <"$dir/app.after") lines of tests/fixtures/pg_upgrade_state.sql in app)"
  for db in "$db_shared" app app_busy; do
    write_and_check "$newbin" "$PORT_NEW" "$db" "on $major after pg_upgrade" "pg$major"
  done
  [ "$(val "$newbin" "$PORT_NEW" app_busy "SELECT count(*) FROM sites WHERE domain LIKE 'w-%'")" = "$committed" ] \
    || fail "app_busy: the writers' sites differ after pg_upgrade"
  quota_refuses "$newbin" "$PORT_NEW" app
  say "$db_shared, app, app_busy: exact, chom_status() clean, pick and quota right; writes through every path, exact again; the quota (chom.site_quota = on, carried) refuses with 23514"
  [ "$(extversion "$newbin" "$PORT_NEW" "$db_previous")" = "$previous_release" ] || fail "$db_previous is not at $previous_release"
  write_and_check "$newbin" "$PORT_NEW" "$db_previous" "on $major at $previous_release" "pg$major-$previous_release"
  say "$db_previous: chom $previous_release on chom-$previous_release.so built for $major: exact, writes, exact again"
  # the operator's step after: the script pg_upgrade wrote
  [ -f "$dir/update_extensions.sql" ] || fail "15 -> $major: pg_upgrade wrote no update_extensions.sql"
  grep -q "ALTER EXTENSION \"chom\" UPDATE" "$dir/update_extensions.sql" || fail "update_extensions.sql does not update chom"
  say "update_extensions.sql, as pg_upgrade wrote it:"
  sed 's/^/    | /' "$dir/update_extensions.sql"
  started_at=$(now)
  n postgres -f "$dir/update_extensions.sql" >/dev/null
  say "psql -f update_extensions.sql ($(since "$started_at"))"
  [ "$(extversion "$newbin" "$PORT_NEW" "$db_previous")" = "$version" ] || fail "$db_previous is not at $version after update_extensions.sql"
  write_and_check "$newbin" "$PORT_NEW" "$db_previous" "on $major after the update to $version" "pg$major-updated"
  say "$db_previous: chom $version, exact, writes, exact again"
  for db in "$db_shared" "$db_previous" app app_busy; do
    for f in $(libraries "$newbin" "$PORT_NEW" "$db"); do
      n "$db" -c "LOAD '$f'" || fail "$db names $f, which Postgres $major cannot load"
    done
    say "$db: chom $(extversion "$newbin" "$PORT_NEW" "$db"), its functions name $(libraries "$newbin" "$PORT_NEW" "$db") (each loads)"
  done
  stop_server "$newbin" "$new"
}

# 4. dump and restore into a fresh cluster of the new major: the roles, then each database with --create
restore_leg() { # <major>
  local major=$1 config_var=PG${1}_CONFIG restore=$WORK/to$1/restore$1 started_at db
  newbin=$("${!config_var}" --bindir)
  say "=== 15 -> $major: pg_dump ($("$SYSBIN/pg_dump" --version | awk '{ print $3 }')) and pg_restore ($("$newbin/pg_restore" --version | awk '{ print $3 }')) into a fresh Postgres $major cluster"
  initdb_ "$newbin" "$restore"
  start_server "$newbin" "$restore" "$PORT_NEW"
  # the globals file re-creates the role postgres too, which exists: that one error is expected
  n postgres -v ON_ERROR_STOP=0 -f "$WORK/dumps/globals.sql" >/dev/null 2>"$dir/globals.err" || true
  grep -v 'role "postgres" already exists' "$dir/globals.err" | grep -q ERROR && fail "the globals: $(cat "$dir/globals.err")"
  for db in app "$db_previous"; do
    started_at=$(now)
    as_server "$newbin/pg_restore" -h "$SOCK" -p "$PORT_NEW" -U postgres --exit-on-error --create -d postgres \
      "$WORK/dumps/$db.pg15.dump" 2>"$dir/restore-$db.log" || { cat "$dir/restore-$db.log"; fail "pg_restore of $db"; }
    say "$db: pg_restore --create of 15's dump ($(since "$started_at")): chom $(extversion "$newbin" "$PORT_NEW" "$db"), it printed: $(tr '\n' ' ' <"$dir/restore-$db.log" | head -c 300)"
    write_and_check "$newbin" "$PORT_NEW" "$db" "restored into $major" "restored$major"
  done
  quota_refuses "$newbin" "$PORT_NEW" app
  say "restored app and $db_previous (now chom $version): exact, chom_status() clean, pick and quota right, writes exact; app's chom.site_quota came with --create and refuses"
  if [ -n "${attver_blocked[$major]:-}" ]; then
    stop_server "$newbin" "$restore"
    return
  fi
  n postgres -c "CREATE DATABASE app_newdump OWNER chom_app"
  started_at=$(now)
  as_server "$newbin/pg_restore" -h "$SOCK" -p "$PORT_NEW" -U postgres --exit-on-error -d app_newdump \
    "$WORK/dumps/app.pg$major.dump" 2>"$dir/restore-app_newdump.log" || { cat "$dir/restore-app_newdump.log"; fail "pg_restore of app ($major's pg_dump)"; }
  say "app_newdump: pg_restore of $major's pg_dump of app ($(since "$started_at"))"
  write_and_check "$newbin" "$PORT_NEW" app_newdump "restored into $major" "restored$major"
  say "app_newdump: exact, chom_status() clean, pick and quota right, writes exact"
  stop_server "$newbin" "$restore"
}

legs=()
for major in "${targets[@]}"; do
  dir=$WORK/to$major
  mkdir -p "$dir" && chown "$TEST_USER" "$dir"
  if [ -z "${attver_blocked[$major]:-}" ]; then
    mode=--copy
    ((major == 17)) && mode=--link
    pg_upgrade_leg "$major" "$mode"
    legs+=("pg_upgrade $mode 15 -> $major")
  fi
  restore_leg "$major"
  legs+=("pg_dump 15 / pg_restore $major")
  ((KEEP)) || rm -rf "$dir"
done
joined=$(printf '%s, ' "${legs[@]}")
say "ok: ${joined%, }"
for s in "${skipped[@]}"; do say "SKIPPED $s"; done

#!/usr/bin/env bash
# scripts/setup.sh must leave every Postgres on the machine as it found it (issue 25): it used to stop every
# Debian cluster on each run. This starts two servers the way a user would have them, runs setup.sh, and checks
# that both still run, with the same postmaster (not stopped, not restarted):
#   - a Debian cluster (pg_createcluster 15 <name> --start, on a free port; what `pg_lsclusters` lists);
#   - a plain initdb/pg_ctl server of Debian's Postgres 15 as $CHOM_TEST_USER, unix socket only, in /tmp.
# Both are removed at the end (pg_dropcluster --stop; pg_ctl stop, rm -rf). Needs root and a machine where
# setup.sh has run (then setup.sh takes about a second); scripts/test.sh runs it right after setup.sh.
# With no Debian Postgres 15 or pg_createcluster it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: bash tests/scripts/setup-leaves-postgres.sh [--help]

Starts a throwaway Debian cluster (pg_createcluster 15 chom_setup_test_<pid> --start, on a free TCP port of
localhost; its files in /etc/postgresql/15/<name> and /var/lib/postgresql/15/<name>) and a throwaway server of
/usr/lib/postgresql/15/bin run as chomtest (a unix socket in /tmp/chom-setup-test.*, no TCP), runs
scripts/setup.sh, and fails unless both still run with the postmaster they had. Removes both at the end.
Runs scripts/setup.sh for real: on a machine not set up yet that installs everything (see its --help).
Needs root. About 10 seconds on 2 cores once setup.sh has run.
USAGE
    exit 0 ;;
  *) echo "setup-leaves-postgres: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

say() { echo "setup-leaves-postgres: $*"; }
fail() { echo "setup-leaves-postgres: FAIL: $*" >&2; exit 1; }
BIN=/usr/lib/postgresql/15/bin
TEST_USER=${CHOM_TEST_USER:-chomtest}
if [ "$(id -u)" != 0 ]; then say "skipped: needs root (pg_createcluster, sudo -u $TEST_USER)"; exit 0; fi
if [ ! -x "$BIN/initdb" ] || ! command -v pg_createcluster >/dev/null; then
  say "skipped: no Debian Postgres 15 (postgresql-15, postgresql-common) on this machine"; exit 0
fi
id "$TEST_USER" >/dev/null 2>&1 || { say "skipped: no user $TEST_USER (scripts/setup.sh creates it)"; exit 0; }

free_port() { # a port with no TCP listener (from /proc/net: ss may be missing) and no Postgres unix socket
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    awk -v port=":$(printf '%04X' "$p")" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
      END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null && continue
    grep -qF ".s.PGSQL.$p" /proc/net/unix && continue
    echo "$p"; return
  done
}
postmaster_pid() { head -1 "$1/postmaster.pid" 2>/dev/null || true; }

NAME=chom_setup_test_$$
WORK=$(mktemp -d /tmp/chom-setup-test.XXXXXX)
CLUSTER_MADE=0
cleanup() {
  local rc=$?
  if ((CLUSTER_MADE)); then pg_dropcluster --stop 15 "$NAME" >/dev/null 2>&1 || rc=1; fi
  if [ -f "$WORK/data/postmaster.pid" ]; then
    sudo -u "$TEST_USER" "$BIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || rc=1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port)
CLUSTER_MADE=1
pg_createcluster 15 "$NAME" -p "$port" --start --start-conf manual -- --no-sync >"$WORK/createcluster.log" 2>&1 \
  || { cat "$WORK/createcluster.log"; fail "pg_createcluster 15 $NAME"; }
cluster_data=/var/lib/postgresql/15/$NAME
pg_lsclusters -h 15 "$NAME" | grep -q online || fail "cluster 15/$NAME did not start"
cluster_pid=$(postmaster_pid "$cluster_data")

chmod 755 "$WORK"; chown "$TEST_USER" "$WORK"
plain_port=$(free_port)
out=$(sudo -u "$TEST_USER" "$BIN/initdb" -D "$WORK/data" -A trust -U postgres --no-sync 2>&1) \
  || { echo "$out"; fail "initdb"; }
sudo -u "$TEST_USER" "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w \
  -o "-p $plain_port -k $WORK -c listen_addresses=''" start >/dev/null || fail "pg_ctl start"
plain_pid=$(postmaster_pid "$WORK/data")
say "running: Debian cluster 15/$NAME (port $port, postmaster $cluster_pid), a server in $WORK/data (postmaster $plain_pid)"

start=$SECONDS
bash scripts/setup.sh >"$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log"; fail "scripts/setup.sh failed"; }
say "scripts/setup.sh ran ($((SECONDS - start))s): $(tail -1 "$WORK/setup.log")"

pg_lsclusters -h 15 "$NAME" | grep -q online \
  || fail "scripts/setup.sh stopped the Debian cluster 15/$NAME ($(pg_lsclusters -h 15 "$NAME" | awk '{ print $4 }'))"
{ [ "$(postmaster_pid "$cluster_data")" = "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; } \
  || fail "scripts/setup.sh restarted the Debian cluster 15/$NAME (postmaster $cluster_pid is gone)"
"$BIN/pg_isready" -q -h localhost -p "$port" || fail "the Debian cluster 15/$NAME no longer answers on port $port"
{ [ "$(postmaster_pid "$WORK/data")" = "$plain_pid" ] && kill -0 "$plain_pid" 2>/dev/null; } \
  || fail "scripts/setup.sh stopped or restarted the server in $WORK/data (postmaster $plain_pid is gone)"
"$BIN/pg_isready" -q -h "$WORK" -p "$plain_port" || fail "the server in $WORK/data no longer answers"
say "ok: both still run, same postmasters"

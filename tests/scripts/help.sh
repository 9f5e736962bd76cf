#!/usr/bin/env bash
# Every script's --help (issue 25): each script under scripts/, bench/, integrations/, tests/scripts/ and .ci/run
# must answer --help with exit 0 and some text, and refuse an unknown argument with exit 2, and neither may
# install or start anything. Around each call this compares a snapshot of the machine: listening TCP ports and
# unix sockets, running postmasters, /var/lib/dpkg/status and /etc/passwd (apt, dpkg, useradd), ~/.pgrx and
# ~/.cargo/bin, /opt/chom-pg and the lib and extension directories of every Postgres build of scripts/setup.sh.
# A difference is checked once more (another run of the same call) before it counts, since other work on the
# machine may start or stop a server meanwhile. scripts/lint.sh runs it. See --help.
set -euo pipefail
cd "$(dirname "$0")/../.."

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: bash tests/scripts/help.sh [--help]

Runs `bash <script> --help` and `bash <script> --no-such-option` for every script of scripts/*.sh, bench/*.sh,
integrations/**/*.sh, tests/scripts/*.sh and .ci/run (tracked or new), each under a 30-second timeout, and fails
unless --help exits 0 with text on stdout and the unknown option exits 2, with nothing installed or started
(listening ports and sockets, postmasters, dpkg's status, /etc/passwd, ~/.pgrx, ~/.cargo/bin, /opt/chom-pg and
the Postgres builds' lib and extension directories compared before and after). Installs and starts nothing
itself. Takes about 10 seconds.
USAGE
    exit 0 ;;
  *) echo "help test: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

PG_ROOT=${CHOM_PG_ROOT:-/opt/chom-pg}
PGRX_DIR=${PGRX_HOME:-$HOME/.pgrx}
WORK=$(mktemp -d /tmp/chom-help-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# the directories a build or install writes into: every Postgres build's lib and extension directories
watch_dirs=(/usr/lib/postgresql/15/lib /usr/share/postgresql/15/extension)
if [ -f "$PG_ROOT/pg_configs.env" ]; then
  while IFS='=' read -r _ pg_config; do
    [ -x "$pg_config" ] || continue
    watch_dirs+=("$("$pg_config" --pkglibdir)" "$("$pg_config" --sharedir)/extension")
  done < <(grep -E '^PG[0-9]+_CONFIG=' "$PG_ROOT/pg_configs.env")
fi
mapfile -t watch_dirs < <(printf '%s\n' "${watch_dirs[@]}" | sort -u)

snapshot() {
  # from /proc, not ss: iproute2 may be missing on a fresh machine
  echo "# listening TCP (address:port in hex)"
  awk '$4 == "0A" { print $2 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u
  echo "# listening unix sockets of Postgres"
  awk '$4 == "00010000" && $8 ~ /[.]s[.]PGSQL[.]/ { print $8 }' /proc/net/unix | sort -u
  echo "# postmasters (a postgres process whose parent is not one)"
  ps -eo pid=,ppid=,comm= | awk '$3 == "postgres" { comm[$1] = 1; parent[$1] = $2 }
    END { for (p in comm) if (!(parent[p] in comm)) print p, "postgres" }' | sort
  echo "# packages, users, cargo, pgrx"
  stat -c '%n %Y %s' /var/lib/dpkg/status /etc/passwd "$PGRX_DIR/config.toml" 2>/dev/null || true
  find "$HOME/.cargo/bin" -maxdepth 1 -printf '%p %T@ %s\n' 2>/dev/null | sort || true
  echo "# files"
  find "$PG_ROOT" -maxdepth 2 -printf '%p %T@\n' 2>/dev/null | sort || true
  for d in "${watch_dirs[@]}"; do find "$d" -maxdepth 1 -printf '%p %T@ %s\n' 2>/dev/null | sort || true; done
}

# call <out-prefix> <script> <args...>: runs it with a timeout; sets rc; fills <out-prefix>.out/.err/.diff
call() {
  local out=$1 script=$2
  shift 2
  snapshot >"$out.before"
  rc=0
  timeout -k 5 30 bash "$script" "$@" </dev/null >"$out.out" 2>"$out.err" || rc=$?
  snapshot >"$out.after"
  diff "$out.before" "$out.after" >"$out.diff" || true
}
# checked <out-prefix> <script> <args...>: call, and once more when something changed (another process's doing?)
checked() {
  call "$@"
  if [ -s "$1.diff" ]; then call "$@"; fi
}

failures=()
mapfile -t scripts < <({ git ls-files --cached --others --exclude-standard -- \
    'scripts/*.sh' 'bench/*.sh' 'integrations/*.sh' 'tests/scripts/*.sh' .ci/run; } | sort -u)
((${#scripts[@]})) || { echo "help test: no scripts found (git ls-files)" >&2; exit 1; }
for s in "${scripts[@]}"; do
  [ -f "$s" ] || continue
  o=$WORK/$(tr '/' '_' <<<"$s")
  checked "$o.help" "$s" --help
  if ((rc != 0)); then
    failures+=("$s --help: exit $rc (wanted 0)$( ((rc == 124)) && echo ': still running after 30 s')")
  elif ! grep -q '[[:alnum:]]' "$o.help.out"; then
    failures+=("$s --help: printed nothing on stdout")
  fi
  if [ -s "$o.help.diff" ]; then
    failures+=("$s --help changed the machine:"$'\n'"$(sed 's/^/      /' "$o.help.diff")")
    continue   # a script that acts on --help may act on anything: not given another argument
  fi
  ((rc == 0)) || continue
  checked "$o.bad" "$s" --no-such-option
  if ((rc != 2)); then
    failures+=("$s --no-such-option: exit $rc (wanted 2: unknown arguments refused)")
  fi
  if [ -s "$o.bad.diff" ]; then
    failures+=("$s --no-such-option changed the machine:"$'\n'"$(sed 's/^/      /' "$o.bad.diff")")
  fi
done

if ((${#failures[@]})); then
  for f in "${failures[@]}"; do echo "help test: FAIL: $f"; done
  echo "help test: ${#failures[@]} failures over ${#scripts[@]} scripts"
  exit 1
fi
echo "help test: ${#scripts[@]} scripts: --help exits 0 and says what it does, an unknown option exits 2, nothing installed or started"

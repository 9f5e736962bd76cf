#!/usr/bin/env bash
# The Debian package on this machine's Postgres 15 (Debian's postgresql-15), as CI runs it from scripts/test.sh:
# builds it (scripts/package.sh), installs it with dpkg -i, creates the extension in a fresh cluster (initdb as
# the test user, its own socket directory), runs a smoke test (CHOM's schema with a few rows, CREATE EXTENSION
# chom, writes, exact aggregates, a pick), stops the cluster, removes the package with dpkg -r and checks that
# none of its files is left.
#
# It leaves the machine as it found it: files of a `cargo pgrx install` that the package overwrites (same
# paths) are saved first and put back at the end, whatever happens; a machine where the package is installed
# already is refused. PG_CONFIG (default Debian's Postgres 15) selects another Debian/PGDG postgresql-<major>.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: bash scripts/package-test.sh [--help]

Builds chom's Debian package (scripts/package.sh, see its --help), installs it with dpkg -i into the system's
Postgres 15 (Debian's postgresql-15: /usr/lib/postgresql/15/lib, /usr/share/postgresql/15/extension), starts a
throwaway server as chomtest (data and unix socket in /tmp/chom-package-test.XXXXXX, port 5432 on that socket
only, no TCP listener), runs a smoke test, stops it, and removes the package with dpkg -r. Files of an earlier
cargo pgrx install at the same paths are saved first and put back at the end; a machine with the package
installed already is refused. PG_CONFIG selects another Debian/PGDG postgresql-<major>.
Time on 2 cores: the package build (release builds of chom and of the releases it carries: several minutes
the first time, about a minute after), then under a minute. Run as root.
USAGE
    exit 0 ;;
  *) echo "package-test: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${CHOM_TEST_USER:-chomtest}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
name=postgresql-$major-chom
bindir=$("$PG_CONFIG" --bindir)
deb=$PWD/target/packages/${name}_${version}_$(dpkg --print-architecture).deb
say() { echo "package-test: $*"; }
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "installed"; then
  fail "$name is installed on this machine already; this test installs and removes it (dpkg -r $name first)"
fi
bash scripts/package.sh

files=$(dpkg-deb --contents "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' | grep -v '/$')
work=$(mktemp -d /tmp/chom-package-test.XXXXXX)
saved=()
for f in $files; do
  if [ -e "$f" ]; then mkdir -p "$work/saved$(dirname "$f")" && cp -a "$f" "$work/saved$f" && saved+=("$f"); fi
done
# chom files of other installs that the package does not carry (an earlier release's scripts, put there by the
# upgrade test) are moved aside while the package is tested: what it supports must not depend on them
aside=()
for f in "$("$PG_CONFIG" --sharedir)"/extension/chom* "$("$PG_CONFIG" --pkglibdir)"/chom*; do
  if [ -e "$f" ] && ! grep -qx "$f" <<<"$files"; then
    mkdir -p "$work/aside$(dirname "$f")" && mv "$f" "$work/aside$f" && aside+=("$f")
  fi
done
cleanup() {
  local rc=$?
  if [ -f "$work/data/postmaster.pid" ]; then
    sudo -u "$TEST_USER" "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "installed"; then dpkg -r "$name" >/dev/null || rc=1; fi
  for f in "${saved[@]}"; do cp -a "$work/saved$f" "$f" || rc=1; done
  for f in "${aside[@]}"; do mv "$work/aside$f" "$f" || rc=1; done
  if ((${#saved[@]} + ${#aside[@]})); then say "put back the files of an earlier install: ${saved[*]} ${aside[*]}"; fi
  if ((rc)); then say "cluster log:"; tail -20 "$work/log" 2>/dev/null || true; fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

say "dpkg -i $deb"
dpkg -i "$deb" >/dev/null
listed=$(dpkg -L "$name")
packaged_files=()
for f in $listed; do
  if [ -f "$f" ]; then packaged_files+=("$f"); elif [ ! -e "$f" ]; then fail "dpkg -L lists $f, which is missing"; fi
done
for f in $files; do grep -qx "$f" <<<"$listed" || fail "$f is in the package but not listed by dpkg -L"; done
((${#packaged_files[@]} == $(wc -w <<<"$files"))) || fail "dpkg -L lists ${#packaged_files[@]} files, the package has $(wc -w <<<"$files")"
say "installed: ${packaged_files[*]}"

say "a fresh cluster (initdb as $TEST_USER) and a smoke test"
chown "$TEST_USER" "$work"
sudo -u "$TEST_USER" "$bindir/initdb" -D "$work/data" -U postgres -A trust --no-sync >/dev/null
sudo -u "$TEST_USER" "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w \
  -o "-p 5432 -k $work -c listen_addresses=''" start >/dev/null
psql_() { "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p 5432 -U postgres "$@"; }
val() { psql_ -d chom -At -c "$1"; }
psql_ -d postgres -c "CREATE DATABASE chom"
PGOPTIONS="-c client_min_messages=warning" psql_ -d chom -1 -f tests/fixtures/chom_schema.sql
psql_ -d chom -f tests/fixtures/small_data.sql
psql_ -d chom -c "CREATE EXTENSION chom"
[ "$(val "SELECT extversion FROM pg_extension WHERE extname = 'chom'")" = "$version" ] || fail "extension version"
libraries=$(val "SELECT string_agg(DISTINCT probin, ',') FROM pg_proc WHERE probin LIKE '%chom%'")
[ "$libraries" = "chom-$version" ] || fail "chom's functions name the library '$libraries', not chom-$version"
psql_ -d chom -c "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
                   VALUES (gen_random_uuid(), 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000002', 'package.test', 7)" \
  -c "UPDATE sites SET deleted_at = now() WHERE domain = 'site3.test'"
[ "$(val "SELECT count(*) FROM chom_cache_drift()")" = 0 ] || fail "chom_cache_drift() is not empty"
[ "$(val "SELECT count(*) FROM chom_vps_drift()")" = 0 ] || fail "chom_vps_drift() is not empty"
recount=$(val "SELECT count(*) FROM sites WHERE tenant_id = 'a0000000-0000-0000-0000-000000000001' AND deleted_at IS NULL")
[ "$(val "SELECT cached_sites_count FROM tenants WHERE id = 'a0000000-0000-0000-0000-000000000001'")" = "$recount" ] \
  || fail "tenants.cached_sites_count differs from a recount"
picked=$(val "SELECT chom_pick_vps()")
[ -n "$picked" ] || fail "chom_pick_vps() found no VPS"
say "CREATE EXTENSION chom $version, a write, no drift, chom_pick_vps() = $picked"
# What the package supports, as docs/install-and-upgrade.md's Upgrading section says: this version installs fresh; each earlier
# release of scripts/releases is an update source only (ALTER EXTENSION chom UPDATE reaches this version from it),
# and CREATE EXTENSION chom VERSION '<it>' is refused by Postgres, naming the version
psql_ -d postgres -c "CREATE DATABASE versions"
mapfile -t releases < <(awk 'NF && !/^#/ { print $1 }' scripts/releases)
for release in "${releases[@]}"; do
  path=$(val "SELECT path FROM pg_extension_update_paths('chom') WHERE source = '$release' AND target = '$version'")
  [ -n "$path" ] || fail "no update path from $release to $version in the package"
  refused=$("$bindir/psql" -X -q -h "$work" -p 5432 -U postgres -d versions \
    -c "CREATE EXTENSION chom VERSION '$release'" 2>&1) && fail "CREATE EXTENSION chom VERSION '$release' succeeded"
  grep -q "no installation script nor update path for version \"$release\"" <<<"$refused" \
    || fail "CREATE EXTENSION chom VERSION '$release' failed otherwise: $refused"
done
say "releases ${releases[*]}: update paths to $version, refused as fresh installs"
sudo -u "$TEST_USER" "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null

say "dpkg -r $name"
dpkg -r "$name" >/dev/null
for f in "${packaged_files[@]}"; do
  if [ -e "$f" ]; then fail "$f is left after dpkg -r"; fi
done
say "ok: the package installed, worked and left none of its ${#packaged_files[@]} files"

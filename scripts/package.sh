#!/usr/bin/env bash
# Builds chom's Debian package for one Postgres major: target/packages/postgresql-<major>-chom_<version>_<arch>.deb,
# laid out where that major's pg_config says (Debian's and PGDG's postgresql-<major>: the library in
# /usr/lib/postgresql/<major>/lib, the control file and every install and update script in
# /usr/share/postgresql/<major>/extension), depending on postgresql-<major>.
#
#   bash scripts/package.sh                                                    # Postgres 15 (Debian's)
#   PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config bash scripts/package.sh    # any major, from its pg_config
#
# The library is chom-<version>.so (each release its own file, see docs/install-and-upgrade.md, Upgrading): installing the
# package leaves the chom.so of releases before 0.3.0 alone. Releases in scripts/releases whose library is
# versioned too are built from their commits and carried in the package, so that upgrading the package keeps
# serving databases that still run them until ALTER EXTENSION chom UPDATE.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: [PG_CONFIG=/usr/lib/postgresql/<major>/bin/pg_config] bash scripts/package.sh [--help]

Builds target/packages/postgresql-<major>-chom_<version>_<arch>.deb (default: Debian's Postgres 15) with
cargo pgrx package (a release build into target/packages/postgresql-<major>-chom-root) and, for each release of
scripts/releases with a library of its own, a release build of it from its commit in target/releases/.
Installs nothing and starts nothing (scripts/package-test.sh installs and removes the package).
Log: /tmp/chom-package-pg<major>.log. Time on 2 cores: several minutes the first time, about a minute after.
USAGE
    exit 0 ;;
  *) echo "package: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
arch=$(dpkg --print-architecture)
name=postgresql-$major-chom
pkglibdir=$("$pg_config" --pkglibdir)
extdir=$("$pg_config" --sharedir)/extension
out=$PWD/target/packages
root=$out/$name-root
deb=$out/${name}_${version}_${arch}.deb
log=/tmp/chom-package-pg$major.log
meta_version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' META.json)
[ "$meta_version" = "$version" ] || { echo "package: META.json says $meta_version, Cargo.toml $version"; exit 1; }
mkdir -p "$out"
rm -rf "$root" "$deb"

# cargo pgrx package: a release build installed into $root + the pg_config paths, as cargo pgrx install would
echo "package: building chom $version for Postgres $major (release build, $log)"
cargo pgrx package --pg-config "$pg_config" --no-default-features --features "pg$major" --out-dir "$root" \
  >"$log" 2>&1 || { tail -40 "$log"; exit 1; }

# earlier releases with a library of their own name, built from their commits (scripts/releases)
while read -r release commit; do
  { [ -n "$release" ] && [ "${release:0:1}" != "#" ] && [ "$release" != "$version" ]; } || continue
  if git show "$commit:chom.control" | grep -q '^module_pathname'; then
    continue   # before 0.3.0: one chom.so for every release, not the package's to carry
  fi
  src=$PWD/target/releases/chom-$release
  if [ ! -f "$src/Cargo.toml" ]; then
    rm -rf "$src" && mkdir -p "$src" && git archive "$commit" | tar -x -C "$src"
  fi
  echo "package: carrying chom $release's library (built from $commit)"
  rm -rf "$src/package-root"
  (cd "$src" && CARGO_TARGET_DIR="$src/target" cargo pgrx package --pg-config "$pg_config" \
    --no-default-features --features "pg$major" --out-dir "$src/package-root") >>"$log" 2>&1 \
    || { tail -40 "$log"; exit 1; }
  cp "$src/package-root$pkglibdir/chom-$release.so" "$root$pkglibdir/"
done <scripts/releases

# what the package installs: the library, the control file, the install script and every update script
expected=$({
  echo ".$pkglibdir/chom-$version.so"
  echo ".$extdir/chom.control"
  echo ".$extdir/chom--$version.sql"
  for script in sql/chom--*--*.sql; do echo ".$extdir/${script#sql/}"; done
} | sort)
found=$(cd "$root" && find . -type f ! -name "chom-*.so" -o -type f -name "chom-$version.so" | sort)
[ "$found" = "$expected" ] || { echo "package: unexpected files in $root:"; diff <(echo "$expected") <(echo "$found"); exit 1; }
grep -q '^module_pathname' "$root$extdir/chom.control" && { echo "package: chom.control names a module_pathname"; exit 1; }
if grep -l "MODULE_PATHNAME\|@CARGO_VERSION@" "$root$extdir"/*.sql; then
  echo "package: a script above still names MODULE_PATHNAME or @CARGO_VERSION@"; exit 1
fi

# Debian's layout: root-owned, 0755 directories, 0644 files, the library stripped of its symbols' debug info
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
strip --strip-debug --remove-section=.comment "$root$pkglibdir"/chom-*.so
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: CHOM maintainers <maintainers@users.noreply.r-seed-8c03e40b.example>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: postgresql-$major, libc6, libgcc-s1
Section: database
Priority: optional
Description: CHOM's database optimisations for PostgreSQL $major
 chom is a PostgreSQL extension for CHOM, a multi-tenant hosting platform:
 it manages CHOM's composite indexes, keeps per-tenant site counts and storage
 exact with statement-level triggers applied at commit, and answers the
 least-loaded VPS from maintained counts. CREATE EXTENSION chom in CHOM's
 database; ALTER EXTENSION chom UPDATE after upgrading this package.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "package: $deb"
dpkg-deb --contents "$deb" | awk '{ print "  " $6 }' | grep -v '/$'

#!/usr/bin/env bash
# Builds a released chom version from its commit (scripts/releases) and installs it into a Postgres build, so
# that the upgrade test can CREATE EXTENSION chom VERSION '<it>' and then ALTER EXTENSION chom UPDATE.
# Usage: scripts/install-release.sh <version> <pg_config> <pg major>
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  cat <<'USAGE'
usage: bash scripts/install-release.sh <version> <pg_config> <pg major>
       bash scripts/install-release.sh --help

Builds the chom release <version> of scripts/releases from its commit (git archive into
target/releases/chom-<version>, its own cargo target directory there) and installs it with cargo pgrx install
into the Postgres build of <pg_config>: its pkglibdir and sharedir/extension (for Debian's Postgres 15 the system
directories /usr/lib/postgresql/15/lib and /usr/share/postgresql/15/extension). Starts no server.
Log: /tmp/chom-release-<version>-pg<major>.log. Time on 2 cores: a few minutes for the first build of a
release for a major, under a minute after. scripts/test.sh and the upgrade benchmarks run it.
USAGE
}
case ${1:-} in
  -h|--help) usage; exit 0 ;;
  -*) echo "install-release: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
(($# == 3)) || { usage >&2; exit 2; }
version=$1 pg_config=$2 major=$3
commit=$(awk -v v="$version" '$1 == v { print $2 }' scripts/releases)
[ -n "$commit" ] || { echo "no release $version in scripts/releases" >&2; exit 1; }
src=target/releases/chom-$version
if [ ! -f "$src/Cargo.toml" ]; then
  rm -rf "$src" && mkdir -p "$src"
  git archive "$commit" | tar -x -C "$src"
fi
# a target dir of its own: the releases and the working tree are different builds of one crate, and cargo
# keeps one schema generator binary per target dir (shared, the last build's would write every release's SQL)
# Each Postgres major built there writes the same deps/libchom.so, and cargo does not rebuild (nor copy
# back) a build it finds fresh: touching the release's sources makes it build this major's library again.
touch "$src/src/lib.rs"
(cd "$src" && CARGO_TARGET_DIR="$PWD/target" cargo pgrx install --pg-config "$pg_config" \
  --no-default-features --features "pg$major") >"/tmp/chom-release-$version-pg$major.log" 2>&1 \
  || { tail -40 "/tmp/chom-release-$version-pg$major.log"; exit 1; }
echo "installed chom $version ($commit) into Postgres $major"

#!/usr/bin/env bash
# The layering of src/ (issue 26): scripts/layers.py passes on the tree as it is, and fails on copies of it with
# an import that runs upwards, with a circle between two files of one plane, and with a file left outside the
# planes; so the check that scripts/lint.sh runs can fail. See --help.
set -euo pipefail
cd "$(dirname "$0")/../.."

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: bash tests/scripts/layers.sh [--help]

Runs scripts/layers.py on src/ (must pass), then on three copies of src/ in a temporary directory, each with
one fault put in (must fail, naming the file): maintain/changes.rs importing api::stats (upwards, across
planes), schema/layout.rs importing schema::resolve (a circle inside a plane), and a file src/loose.rs. Reads
and copies files only; installs and starts nothing; takes under a second.
USAGE
    exit 0 ;;
  *) echo "layers test: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

python3 scripts/layers.py src >/dev/null || { python3 scripts/layers.py src; echo "layers test: src/ fails" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# fault <name> <expected file in the message> <command that puts the fault into $work/src>
fault() {
  local name=$1 expect=$2 out
  rm -rf "$work/src" && cp -r src "$work/src"
  (cd "$work" && eval "$3")
  if out=$(python3 scripts/layers.py "$work/src" 2>&1); then
    echo "layers test: $name was not caught" >&2
    exit 1
  fi
  grep -q "$expect" <<<"$out" || { printf '%s\n' "$out"; echo "layers test: $name: no line names $expect" >&2; exit 1; }
}
fault "an upward import" "maintain/changes.rs imports upwards: crate::api::stats" \
  "sed -i '0,/^use /s//use crate::api::stats::chom_tenant_stats;\nuse /' src/maintain/changes.rs"
fault "a circle inside a plane" "schema/layout.rs imports upwards: crate::schema::resolve" \
  "sed -i '0,/^use /s//use crate::schema::resolve::installed;\nuse /' src/schema/layout.rs"
fault "a file outside the planes" "src/loose.rs" "echo '//! loose' > src/loose.rs"
echo "layers test: ok (src/ passes; an upward import, a circle and a loose file are each caught)"

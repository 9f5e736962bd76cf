#!/usr/bin/env bash
# Lint: cargo fmt --check, shellcheck over the tracked shell scripts, every script's --help (tests/scripts/help.sh),
# every relative link of the Markdown files (tests/scripts/links.sh), the layering of src/ (tests/scripts/layers.sh), cargo clippy -D warnings on each Postgres build that is set up. One line per check; stops at the first failure with the tool's output. See --help.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIGS=${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
PG15_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<EOF
usage: bash scripts/lint.sh [--help]

Runs from the repository root, one line per check, stopping at the first failure with the tool's output:
  1. cargo fmt --check
  2. shellcheck -x over every tracked *.sh under scripts/, bench/, integrations/, sim/, tests/scripts/ and .ci/,
     and .ci/run
  3. tests/scripts/help.sh: every script's --help exits 0 and says what it does, an unknown option exits 2,
     and neither installs or starts anything (about 10 seconds)
  4. tests/scripts/links.sh: every relative link (and anchor) of every *.md resolves (about a second)
  5. tests/scripts/layers.sh: scripts/layers.py passes on src/ (every file imports only files declared before
     it: planes bottom-up in src/lib.rs, files bottom-up in each plane's mod.rs) and catches an upward import,
     a circle and a file outside the planes in copies of src/ (under a second)
  6. cargo clippy --all-targets -- -D warnings, when cargo-pgrx and $PGRX_CONFIG are present:
     - Postgres 15: --features "pg15 integration" (needs $PG15_PG_CONFIG)
     - every other major with a pg_config listed in $PG_CONFIGS:
       --no-default-features --features "pgNN integration"
     A build that is not set up is reported as skipped (scripts/setup.sh sets them all up).

May install: shellcheck, with apt-get install -y shellcheck (after apt-get update if that fails), when it is
not on PATH. Nothing else is installed or changed. --help does nothing but print this.
EOF
    exit 0 ;;
  *) echo "lint: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

# check <label> <command...>: runs the command quietly; on failure prints its output and stops
check() {
  local label=$1 out
  shift
  out=$("$@" 2>&1) || { printf '%s\n' "$out"; echo "lint: $label FAILED: $*" >&2; exit 1; }
}

# 1. formatting
check fmt cargo fmt --check
echo "lint: fmt ok"

# 2. shellcheck (-x follows sourced files, e.g. bench/citus.sh sourcing scripts/citus.sh)
install_shellcheck() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y shellcheck \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y shellcheck; }
}
command -v shellcheck >/dev/null || check "shellcheck install (apt-get)" install_shellcheck
mapfile -t scripts < <(git ls-files -- 'scripts/*.sh' 'bench/*.sh' 'integrations/*.sh' 'sim/*.sh' 'tests/scripts/*.sh' '.ci/*.sh' .ci/run)
((${#scripts[@]})) || { echo "lint: shellcheck FAILED: no scripts found (git ls-files)" >&2; exit 1; }
check shellcheck shellcheck -x "${scripts[@]}"
echo "lint: shellcheck ok (${#scripts[@]} scripts)"

# 3. every script's --help, and nothing installed or started by it
check "--help test (tests/scripts/help.sh)" bash tests/scripts/help.sh
echo "lint: --help ok (exit 0, unknown options refused, nothing installed or started)"

# 4. every relative link of the Markdown files
check "dead links (tests/scripts/links.sh)" bash tests/scripts/links.sh
echo "lint: links ok (every relative link and anchor of the Markdown files resolves)"

# 5. the layering of src/: planes bottom-up, no import upwards, no circle (and the check's own test)
check "layers (tests/scripts/layers.sh)" bash tests/scripts/layers.sh
echo "lint: layers ok ($(python3 scripts/layers.py | sed 's/^layers: ok, //'))"

# 6. clippy, per Postgres major that is set up
if ! cargo pgrx --version >/dev/null 2>&1; then
  not_set_up="no cargo-pgrx"
elif [ ! -f "$PGRX_CONFIG" ]; then
  not_set_up="no $PGRX_CONFIG"
else
  not_set_up=""
fi
# clippy <major> <pg_config> <cargo feature flags...>
clippy() {
  local v=$1 pg_config=$2
  shift 2
  if [ -n "$not_set_up" ]; then
    echo "lint: clippy pg$v skipped ($not_set_up)"
  elif [ ! -x "$pg_config" ]; then
    echo "lint: clippy pg$v skipped (no pg_config)"
  else
    check "clippy pg$v" cargo clippy --quiet --all-targets "$@" -- -D warnings
    echo "lint: clippy pg$v ok"
  fi
}
clippy 15 "$PG15_PG_CONFIG" --features "pg15 integration"
if [ -f "$PG_CONFIGS" ]; then
  # shellcheck disable=SC1090 # written by scripts/setup.sh: PG15_CONFIG=..., PG16_CONFIG=..., one per major
  . "$PG_CONFIGS"
  mapfile -t majors < <(sed -nE 's/^PG([0-9]+)_CONFIG=.*/\1/p' "$PG_CONFIGS")
  for v in "${majors[@]}"; do
    var=PG${v}_CONFIG
    [ "$v" = 15 ] || clippy "$v" "${!var:-}" --no-default-features --features "pg$v integration"
  done
fi

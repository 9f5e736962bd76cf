#!/usr/bin/env bash
# The whole test suite on Postgres 15, 16, 17 and 18 (or those named in CHOM_PG_VERSIONS, e.g. "15 18"):
# for each build, the #[pg_test]s (cargo pgrx test); on 15 and 18 the upgrade test from every release of
# scripts/releases (each built from its commit and used, then this version installed over it while the server
# runs, the window before ALTER EXTENSION chom UPDATE, the update, a fresh install compared); then chom
# installed into that build, the integration tests in tests/ over real connections against servers they start
# themselves, and the isolation specs (pg_isolation_regress) of tests/isolation. Formatting and clippy first,
# then the Debian package (scripts/package-test.sh, with Postgres 15).
# Then pg_upgrade from 15 to 17 and 18 and dump/restore across majors (scripts/pg-upgrade.sh), and the Citus leg
# (scripts/citus.sh; it says plainly that it skipped when the Citus source archive is absent).
# Ends with each leg's figures and one line of totals, "N passed, 0 failed". See --help.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: [CHOM_PG_VERSIONS="15 18"] bash scripts/test.sh [--help]

Every test of chom, as CI runs it (run as root):
  - scripts/setup.sh (see its --help: on a machine not set up yet it installs Debian packages, cargo-pgrx,
    Postgres 16-18 under /opt/chom-pg and the system user chomtest; it stops no Postgres of yours), then
    tests/scripts/setup-leaves-postgres.sh (a throwaway Debian cluster and server must survive setup.sh);
  - cargo fmt --check and cargo clippy;
  - with 15: the Debian package (scripts/package-test.sh: dpkg -i into the system's Postgres 15, then dpkg -r);
  - per major (CHOM_PG_VERSIONS, default "15 16 17 18"): cargo pgrx test; on 15 and 18 the upgrade test from
    each release of scripts/releases; chom installed (cargo pgrx install) into that build (for 15 the system
    directories /usr/lib/postgresql/15/lib and /usr/share/postgresql/15/extension, for 16-18 /opt/chom-pg);
    the integration tests (tests/*.rs) and the isolation specs (scripts/isolation.sh);
  - with 15 and 17 or 18: pg_upgrade and dump/restore across majors (scripts/pg-upgrade.sh);
  - Citus (scripts/citus.sh): installs Citus into the system's Postgres 15 and runs a 3-node cluster; skipped,
    saying so, without the Citus source archive (CHOM_CITUS_SRC).
Every server it starts is a throwaway one, run as chomtest, in /tmp (unix sockets in private directories; the
pgrx test server on localhost port 32215-32218, Citus on free 127.0.0.1 ports), stopped at the end.
Logs in /tmp/chom-*.log. Ends with each leg's figures and "N passed, 0 failed".
Time on 2 cores: about 35-45 minutes for all four majors; about 9 minutes with CHOM_PG_VERSIONS=15 (with the
Citus leg skipped; its first Citus build adds about 3 minutes). Add about 10 minutes of setup on a fresh machine.
USAGE
    exit 0 ;;
  *) echo "test: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

# The totals: every leg adds what it ran; a leg that prints no count of its own counts as one check.
passed=0       # tests, specs and checks that passed
figures=()     # one line per leg: "<leg>|<what ran>"
declare -A per_version   # "<major>" -> "57 pg_tests, 18 upgrade tests, ..."
leg=""         # the leg running, named if it fails
cur_v=""       # the major whose legs are running (its figures so far are printed if one fails)
summary=()
totals() {
  local rc=$? line
  if ((rc == 0)); then echo "=== all green: ${summary[*]}"; else echo "=== FAILED in $leg (exit $rc); the legs before it:"; fi
  if ((rc != 0)) && [ -n "$cur_v" ] && [ -n "${per_version[$cur_v]:-}" ]; then
    figures+=("pg$cur_v|${per_version[$cur_v]} (then $leg failed)")
  fi
  for line in "${figures[@]}"; do printf '  %-11s %s\n' "${line%%|*}" "${line#*|}"; done
  if ((rc == 0)); then echo "$passed passed, 0 failed"; else echo "$passed passed, 1 failed ($leg; later legs not run)"; fi
}
trap totals EXIT
# cargo_passed <log>: the sum of N over cargo's "test result: ok. N passed; ..." lines
cargo_passed() { awk '/^test result: / { for (i = 2; i <= NF; i++) if ($i == "passed;") n += $(i - 1) } END { print n + 0 }' "$1"; }
add_version() { # <major> <count> <what>
  passed=$((passed + ${2:-0}))
  per_version[$1]+="${per_version[$1]:+, }${2:-?} $3"
}

leg="setup"
bash scripts/setup.sh
leg="setup leaves Postgres running"
echo "=== scripts/setup.sh leaves every Postgres running (tests/scripts/setup-leaves-postgres.sh)"
bash tests/scripts/setup-leaves-postgres.sh | tee /tmp/chom-test-setup.log
if ! grep -q "skipped" /tmp/chom-test-setup.log; then
  passed=$((passed + 1)); figures+=("setup|1 check: a Debian cluster and a server still running after setup.sh")
else
  figures+=("setup|skipped ($(sed -n 's/.*skipped: //p' /tmp/chom-test-setup.log))")
fi
# shellcheck disable=SC1091
. "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
TEST_USER=${CHOM_TEST_USER:-chomtest}
leg="fmt, clippy"
echo "=== cargo fmt --check, cargo clippy --all-targets -D warnings"
cargo fmt --check
cargo clippy --quiet --all-targets --features "pg15 integration" -- -D warnings
versions=${CHOM_PG_VERSIONS:-15 16 17 18}
if [[ " $versions " == *" 15 "* ]]; then
  # Before any cargo pgrx install into Postgres 15 below: on a fresh machine the package then installs into a
  # layout holding no chom file, and its removal is checked to leave none (files of an earlier install on a
  # developer's machine are saved and put back by the test).
  leg="Debian package"
  echo "=== Debian package: build, dpkg -i on Postgres 15, smoke test in a fresh cluster, dpkg -r"
  bash scripts/package-test.sh
  summary+=("package ok")
  passed=$((passed + 1)); figures+=("package|1 check: built, dpkg -i, smoke test, dpkg -r leaving no file")
fi
for v in $versions; do
  config_var="PG${v}_CONFIG"; pg_config=${!config_var}
  cur_v=$v
  leg="Postgres $v: cargo pgrx test"
  echo "=== Postgres $v ($("$pg_config" --version)): cargo pgrx test"
  pgdata=/tmp/chom-pgrx-$v
  rm -rf "$pgdata"; mkdir -p "$pgdata"; chown "$TEST_USER" "$pgdata" 2>/dev/null || true
  cargo pgrx test "pg$v" --runas "$TEST_USER" --pgdata "$pgdata" 2>&1 | tee "/tmp/chom-test-pg$v.log" | grep -E "^test |test result|panicked|error" || true
  { grep -q "test result: ok" "/tmp/chom-test-pg$v.log" && ! grep -q "test result: FAILED" "/tmp/chom-test-pg$v.log"; } \
    || { echo "pg_test failed on Postgres $v: see /tmp/chom-test-pg$v.log"; tail -80 "/tmp/chom-test-pg$v.log"; exit 1; }
  add_version "$v" "$(cargo_passed "/tmp/chom-test-pg$v.log")" pg_tests
  if [[ " ${CHOM_UPGRADE_VERSIONS:-15 18} " == *" $v "* ]]; then
    mapfile -t releases < <(awk 'NF && !/^#/ { print $1 }' scripts/releases)
    upgrade_passed=0
    for release in "${releases[@]}"; do
      # the release installed (its library is $libdir/chom), a database created and used with it and a session
      # left open; the test then installs this version (the command below) while the server runs, checks the
      # window before ALTER EXTENSION chom UPDATE, updates from the old session and compares with a fresh install
      leg="Postgres $v: upgrade test from $release"
      echo "=== Postgres $v: upgrade test from $release (installed, used, this version installed over it, update)"
      bash scripts/install-release.sh "$release" "$pg_config" "$v"
      CHOM_PG_CONFIG="$pg_config" CHOM_UPGRADE_FROM="$release" \
        CHOM_UPGRADE_INSTALL="cargo pgrx install --pg-config '$pg_config' --no-default-features --features pg$v >/tmp/chom-install-pg$v.log 2>&1 || { tail -40 /tmp/chom-install-pg$v.log; exit 1; }" \
        cargo test --features integration --test upgrade 2>&1 | tee "/tmp/chom-test-upgrade-pg$v-$release.log"
      upgrade_passed=$((upgrade_passed + $(cargo_passed "/tmp/chom-test-upgrade-pg$v-$release.log")))
    done
    add_version "$v" "$upgrade_passed" "upgrade tests (from ${releases[*]})"
  fi
  leg="Postgres $v: cargo pgrx install"
  cargo pgrx install --pg-config "$pg_config" --no-default-features --features "pg$v" >"/tmp/chom-install-pg$v.log" 2>&1 \
    || { cat "/tmp/chom-install-pg$v.log"; exit 1; }
  leg="Postgres $v: integration tests"
  echo "=== Postgres $v: integration tests"
  CHOM_PG_CONFIG="$pg_config" cargo test --features integration --test integration --test transactions --test quota --test laravel --test monitoring --test security --test busy_tenant -- --test-threads 2 \
    2>&1 | tee "/tmp/chom-test-integration-pg$v.log"
  add_version "$v" "$(cargo_passed "/tmp/chom-test-integration-pg$v.log")" "integration tests"
  leg="Postgres $v: isolation specs"
  echo "=== Postgres $v: isolation specs"
  bash scripts/isolation.sh "$pg_config" | tee "/tmp/chom-test-isolation-pg$v.log"
  add_version "$v" "$(tail -1 "/tmp/chom-test-isolation-pg$v.log" | awk '$2 == "passed," { print $1 }')" "isolation specs"
  summary+=("pg$v ok")
  figures+=("pg$v|${per_version[$v]}")
  cur_v=""
done
# Major-version upgrades (scripts/pg-upgrade.sh): pg_upgrade from 15 to 17 and to 18 and pg_dump/pg_restore across
# majors, with chom installed and this version built for each major by the legs above; only the majors run here
upgrade_to=""
for v in 17 18; do if [[ " $versions " == *" $v "* ]]; then upgrade_to+="$v "; fi; done
if [[ " $versions " == *" 15 "* && -n $upgrade_to ]]; then
  leg="major-version upgrades"
  echo "=== Major-version upgrades: 15 -> ${upgrade_to% } with chom installed (scripts/pg-upgrade.sh)"
  bash scripts/pg-upgrade.sh --to "${upgrade_to% }" | tee /tmp/chom-test-pg-upgrade.log
  # its last lines: "pg-upgrade: ok: <leg>, <leg>, ..." and one "pg-upgrade: SKIPPED <why>" per major skipped
  ok_legs=$(sed -n 's/^pg-upgrade: ok: //p' /tmp/chom-test-pg-upgrade.log | tail -1)
  skipped=$(sed -n 's/^pg-upgrade: SKIPPED //p' /tmp/chom-test-pg-upgrade.log | paste -sd';' - | sed 's/;/; /g')
  if [ -n "$ok_legs" ]; then
    n=$(awk -F', ' '{ print NF }' <<<"$ok_legs")
    passed=$((passed + n))
    summary+=("pg_upgrade ok")
    figures+=("pg_upgrade|$n checks: $ok_legs${skipped:+; skipped: $skipped}")
  else
    summary+=("pg_upgrade skipped")
    figures+=("pg_upgrade|skipped: ${skipped:-(pg-upgrade.sh said neither ok nor SKIPPED)}")
  fi
else
  echo "=== Major-version upgrades: skipped (they need 15 and 17 or 18 in CHOM_PG_VERSIONS)"
  summary+=("pg_upgrade skipped")
  figures+=("pg_upgrade|skipped (they need 15 and 17 or 18 in CHOM_PG_VERSIONS)")
fi
leg="Citus"
echo "=== Citus: CHOM's schema distributed on a coordinator and two workers (scripts/citus.sh)"
bash scripts/citus.sh | tee /tmp/chom-test-citus.log
if why=$(sed -n 's/^citus: skipped: //p' /tmp/chom-test-citus.log) && [ -n "$why" ]; then
  summary+=("citus skipped (${why%% at *})")
  figures+=("citus|skipped: $why")
else
  n=$(grep -c '^  ok  ' /tmp/chom-test-citus.log || true)
  ((n > 0)) || n=1
  passed=$((passed + n))
  summary+=("citus ok")
  figures+=("citus|$n checks on a coordinator and two workers")
fi
leg=""

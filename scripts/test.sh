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
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${CHOM_PG_ROOT:-/opt/chom-pg}/pg_configs.env"
TEST_USER=${CHOM_TEST_USER:-chomtest}
echo "=== cargo fmt --check, cargo clippy --all-targets -D warnings"
cargo fmt --check
cargo clippy --quiet --all-targets --features "pg15 integration" -- -D warnings
versions=${CHOM_PG_VERSIONS:-15 16 17 18}
summary=()
if [[ " $versions " == *" 15 "* ]]; then
  # Before any cargo pgrx install into Postgres 15 below: on a fresh machine the package then installs into a
  # layout holding no chom file, and its removal is checked to leave none (files of an earlier install on a
  # developer's machine are saved and put back by the test).
  echo "=== Debian package: build, dpkg -i on Postgres 15, smoke test in a fresh cluster, dpkg -r"
  bash scripts/package-test.sh
  summary+=("package ok")
fi
for v in $versions; do
  config_var="PG${v}_CONFIG"; pg_config=${!config_var}
  echo "=== Postgres $v ($("$pg_config" --version)): cargo pgrx test"
  pgdata=/tmp/chom-pgrx-$v
  rm -rf "$pgdata"; mkdir -p "$pgdata"; chown "$TEST_USER" "$pgdata" 2>/dev/null || true
  cargo pgrx test "pg$v" --runas "$TEST_USER" --pgdata "$pgdata" 2>&1 | tee "/tmp/chom-test-pg$v.log" | grep -E "^test |test result|panicked|error" || true
  { grep -q "test result: ok" "/tmp/chom-test-pg$v.log" && ! grep -q "test result: FAILED" "/tmp/chom-test-pg$v.log"; } \
    || { echo "pg_test failed on Postgres $v: see /tmp/chom-test-pg$v.log"; tail -80 "/tmp/chom-test-pg$v.log"; exit 1; }
  if [[ " ${CHOM_UPGRADE_VERSIONS:-15 18} " == *" $v "* ]]; then
    mapfile -t releases < <(awk 'NF && !/^#/ { print $1 }' scripts/releases)
    for release in "${releases[@]}"; do
      # the release installed (its library is $libdir/chom), a database created and used with it and a session
      # left open; the test then installs this version (the command below) while the server runs, checks the
      # window before ALTER EXTENSION chom UPDATE, updates from the old session and compares with a fresh install
      echo "=== Postgres $v: upgrade test from $release (installed, used, this version installed over it, update)"
      bash scripts/install-release.sh "$release" "$pg_config" "$v"
      CHOM_PG_CONFIG="$pg_config" CHOM_UPGRADE_FROM="$release" \
        CHOM_UPGRADE_INSTALL="cargo pgrx install --pg-config '$pg_config' --no-default-features --features pg$v >/tmp/chom-install-pg$v.log 2>&1 || { tail -40 /tmp/chom-install-pg$v.log; exit 1; }" \
        cargo test --features integration --test upgrade
    done
  fi
  cargo pgrx install --pg-config "$pg_config" --no-default-features --features "pg$v" >"/tmp/chom-install-pg$v.log" 2>&1 \
    || { cat "/tmp/chom-install-pg$v.log"; exit 1; }
  echo "=== Postgres $v: integration tests"
  CHOM_PG_CONFIG="$pg_config" cargo test --features integration --test integration --test transactions --test quota --test laravel --test monitoring --test security -- --test-threads 2
  echo "=== Postgres $v: isolation specs"
  bash scripts/isolation.sh "$pg_config"
  summary+=("pg$v ok")
done
# Major-version upgrades (scripts/pg-upgrade.sh): pg_upgrade from 15 to 17 and to 18 and pg_dump/pg_restore across
# majors, with chom installed and this version built for each major by the legs above; only the majors run here
upgrade_to=""
for v in 17 18; do if [[ " $versions " == *" $v "* ]]; then upgrade_to+="$v "; fi; done
if [[ " $versions " == *" 15 "* && -n $upgrade_to ]]; then
  echo "=== Major-version upgrades: 15 -> ${upgrade_to% } with chom installed (scripts/pg-upgrade.sh)"
  bash scripts/pg-upgrade.sh --to "${upgrade_to% }"
  summary+=("pg_upgrade ok")
else
  echo "=== Major-version upgrades: skipped (they need 15 and 17 or 18 in CHOM_PG_VERSIONS)"
fi
echo "=== Citus: CHOM's schema distributed on a coordinator and two workers (scripts/citus.sh)"
bash scripts/citus.sh
summary+=("citus ok")
echo "=== all green: ${summary[*]}"

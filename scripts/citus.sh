#!/usr/bin/env bash
# chom's scale-out leg on a real Citus cluster (issue 15, docs/scaling.md).
#
#   1. builds Citus from a source archive (CHOM_CITUS_SRC, default ../shared/citus/citus-13.2.2.tar.gz beside the
#      repository; when there is none it says so and exits 0) against Debian's Postgres 15, installing its apt
#      build dependencies when missing and applying the one header fix Debian's 15.20 needs; the build is cached
#      (target/citus-build/<archive hash>, and a stamp beside the installed extension: an installed citus.so that
#      matches the stamp is not rebuilt, not even from a fresh clone);
#   2. starts a coordinator and two workers as $CHOM_TEST_USER (chomtest) in a private directory under /tmp, on
#      127.0.0.1 ports and a private unix-socket directory (password authentication over TCP, a private passfile);
#   3. creates CHOM's schema (tests/fixtures/chom_schema.sql) with a generated dataset (tests/fixtures/dataset.sql)
#      on the coordinator and runs sql/citus/distribute.sql (then runs it again: it must say it has nothing to do);
#      also distributes an empty CHOM database and loads the dataset through the coordinator afterwards;
#   4. runs the scale-out tests: the distribution checks, then chom on the cluster (CREATE EXTENSION and
#      chom_install() on the coordinator; concurrent writers through the coordinator, drift and VPS drift 0, stats
#      equal to recounts, the pick equal to an independent least-loaded pick; a shard move during writes; drift
#      made on one shard behind chom's back, repaired; a trigger missing on a shard, reported and re-created;
#      chom_uninstall()), and prints the latency of chom_tenant_stats() and chom_pick_vps() through the
#      coordinator against one node with the same data, measured in the same run.
# Everything it started is stopped and removed on exit (also on errors and signals).
#
# Settings: CHOM_CITUS_SRC (archive), CHOM_CITUS_PG_CONFIG (default Debian's 15), CHOM_TEST_USER,
# CHOM_CITUS_SHARDS (citus.shard_count for the test database, default 8), CHOM_CITUS_LATENCY_SECONDS (per
# latency figure, default 5),
# CHOM_CITUS_KEEP=1 (leave the cluster running at the end and print how to reach and stop it; for debugging).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then   # run, not sourced (bench/citus.sh parses its own arguments)
  case ${1:-} in
    "") ;;
    -h|--help)
      cat <<'USAGE'
usage: bash scripts/citus.sh [--help]

chom on a real Citus cluster (issue 15; docs/scaling.md). Needs the Citus 13.2.2 source archive: CHOM_CITUS_SRC,
default ../shared/citus/citus-13.2.2.tar.gz beside the repository (the tag v13.2.2 of citusdata/citus:
https://github.com/citusdata/citus/archive/refs/tags/v13.2.2.tar.gz; the archive the tests ran with has sha256
dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430, see the README); without it, it prints
"citus: skipped: ..." and exits 0, having done nothing. With it, as root:
  - installs Citus's build dependencies with apt-get when missing (liblz4-dev libzstd-dev libkrb5-dev libssl-dev
    libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev), builds Citus in target/citus-build/<hash>/ and
    installs it (make install) into the system's Postgres 15: /usr/lib/postgresql/15/lib and
    /usr/share/postgresql/15/extension (CHOM_CITUS_PG_CONFIG for another build); a build that matches its stamp
    there is not redone;
  - starts a coordinator and two workers as chomtest (CHOM_TEST_USER) in /tmp/chom-citus.XXXXXX, listening on
    127.0.0.1 on free ports 20000-39999 (password authentication) and on unix sockets in that directory;
  - runs the distribution and scale-out checks (one "  ok  ..." line each) and stops and removes the cluster at
    the end (CHOM_CITUS_KEEP=1 leaves it running, for debugging).
chom itself must be installed into that Postgres 15 already (scripts/test.sh does it).
Time on 2 cores: about 3 minutes for the first Citus build, then several minutes of checks.
USAGE
      exit 0 ;;
    *) echo "citus: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
fi
SRC=${CHOM_CITUS_SRC:-$ROOT/../shared/citus/citus-13.2.2.tar.gz}
if [ ! -f "$SRC" ]; then
  echo "citus: skipped: no Citus source archive at $(realpath -m "$SRC") (set CHOM_CITUS_SRC)"
  exit 0
fi
SRC=$(realpath "$SRC")
PG_CONFIG=${CHOM_CITUS_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${CHOM_TEST_USER:-chomtest}
SHARDS=${CHOM_CITUS_SHARDS:-8}
BINDIR=$("$PG_CONFIG" --bindir)
T0=$SECONDS
say() { echo "citus: [$((SECONDS - T0))s] $*"; }
die() { echo "citus: FAILED: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# 1. Build and install Citus (cached)

CITUS_DEPS=(liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev)

build_citus() {
  local pkglibdir sharedir sha build src_dir stamp want
  pkglibdir=$("$PG_CONFIG" --pkglibdir)
  sharedir=$("$PG_CONFIG" --sharedir)
  sha=$(sha256sum "$SRC" | cut -c1-16)
  stamp=$sharedir/extension/citus.chom-build   # "<archive hash> <sha256 of the citus.so installed from it>"
  if [ -f "$stamp" ] && [ -f "$pkglibdir/citus.so" ] && [ -f "$sharedir/extension/citus.control" ] &&
     [ "$(cat "$stamp")" = "$sha $(sha256sum "$pkglibdir/citus.so" | cut -d' ' -f1)" ]; then
    say "Citus from $(basename "$SRC") is installed in $pkglibdir (cached build, $stamp)"
    return
  fi
  local missing=()
  for p in "${CITUS_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "apt-get install ${missing[*]} (Citus build dependencies)"
    apt-get update >/tmp/chom-citus-apt.log 2>&1 || { cat /tmp/chom-citus-apt.log; die "apt-get update"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >>/tmp/chom-citus-apt.log 2>&1 || { cat /tmp/chom-citus-apt.log; die "apt-get install"; }
  fi
  build=$ROOT/target/citus-build/$sha
  if [ ! -f "$build/.built" ]; then
    say "building Citus from $SRC in $build (a few minutes on 2 cores)"
    rm -rf "$build" && mkdir -p "$build"
    tar -xzf "$SRC" -C "$build"
    src_dir=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -1)
    # Debian's 15.20 headers export have_createdb_privilege() (commands/dbcommands.h), which Citus 13.2.2's
    # pg_version_compat.h also defines as static inline for Postgres < 16: drop Citus's copy (the same function).
    if grep -q "have_createdb_privilege" "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h" 2>/dev/null; then
      perl -0pi -e 's/\nstatic inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n/\n/s' \
        "$src_dir/src/include/pg_version_compat.h"
    fi
    (cd "$src_dir" && ./configure PG_CONFIG="$PG_CONFIG" --without-libcurl && make -j"$(nproc)") \
      >"$build/build.log" 2>&1 || { tail -40 "$build/build.log"; die "Citus build, see $build/build.log"; }
    echo "$src_dir" >"$build/.built"
  fi
  src_dir=$(cat "$build/.built")
  say "installing Citus into $pkglibdir"
  (cd "$src_dir" && make install) >"$build/install.log" 2>&1 || { tail -20 "$build/install.log"; die "make install"; }
  want="$sha $(sha256sum "$pkglibdir/citus.so" | cut -d' ' -f1)"
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------------------------------------------
# 2. A coordinator and two workers

WORK=""
NODES=(coord w1 w2)
declare -A PORT
STARTED=()
as_test() { sudo -u "$TEST_USER" env PGPASSFILE="$WORK/pgpass" "$@"; }

cleanup() {
  local rc=$?
  if [ -n "${CHOM_CITUS_KEEP:-}" ] && [ -n "$WORK" ]; then
    echo "citus: kept running in $WORK (psql: ${PSQL_HINT:-}); stop with:"
    for n in "${STARTED[@]}"; do echo "  sudo -u $TEST_USER $BINDIR/pg_ctl -D $WORK/$n -m immediate stop"; done
    echo "  rm -rf $WORK"
    exit "$rc"
  fi
  for n in "${STARTED[@]}"; do
    as_test "$BINDIR/pg_ctl" -D "$WORK/$n" -m immediate -w stop >/dev/null 2>&1 || true
  done
  [ -n "$WORK" ] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # a 127.0.0.1 port nobody listens on
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return; fi
  done
}

start_cluster() {
  WORK=$(mktemp -d /tmp/chom-citus.XXXXXX)
  chmod 700 "$WORK"; mkdir -p "$WORK/sock"
  local pw
  pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  echo "$pw" >"$WORK/pw"
  echo "127.0.0.1:*:*:postgres:$pw" >"$WORK/pgpass"
  chmod 600 "$WORK/pw" "$WORK/pgpass"
  chown -R "$TEST_USER" "$WORK"
  for n in "${NODES[@]}"; do
    PORT[$n]=$(free_port)
    as_test "$BINDIR/initdb" -D "$WORK/$n" -U postgres --pwfile="$WORK/pw" --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >"$WORK/$n.initdb.log" 2>&1 \
      || { cat "$WORK/$n.initdb.log"; die "initdb $n"; }
    cat >>"$WORK/$n/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PORT[$n]}
unix_socket_directories = '$WORK/sock'
shared_preload_libraries = 'citus'
citus.local_hostname = '127.0.0.1'
max_connections = 200
max_prepared_transactions = 200
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
log_min_messages = warning
log_line_prefix = '%m [%p] $n %d: '
CONF
    # TCP from this machine only, with the password (Citus's own connections between nodes read $PGPASSFILE)
    printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$WORK/$n/pg_hba.conf"
    as_test "$BINDIR/pg_ctl" -D "$WORK/$n" -l "$WORK/$n.log" -w -t 60 start >/dev/null \
      || { tail -20 "$WORK/$n.log"; die "start $n"; }
    STARTED+=("$n")
  done
  PSQL_HINT="$BINDIR/psql -h $WORK/sock -p ${PORT[coord]} -U postgres chom"
  say "coordinator on 127.0.0.1:${PORT[coord]}, workers on ${PORT[w1]} and ${PORT[w2]} (data and sockets in $WORK)"
}

# psql on a node: node db [psql args...]
q() { local n=$1 db=$2; shift 2; "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "${PORT[$n]}" -U postgres -d "$db" "$@"; }
# one value
q1() { local n=$1 db=$2; shift 2; q "$n" "$db" -At -c "$1"; }

# a database with the citus extension on every node, the workers registered with the coordinator
create_cluster_db() {
  local db=$1
  for n in "${NODES[@]}"; do
    q "$n" postgres -c "CREATE DATABASE $db"
    q "$n" "$db" -c "CREATE EXTENSION citus" 2>&1 | grep -v "^$" || true
  done
  q coord "$db" -c "SELECT citus_set_coordinator_host('127.0.0.1', ${PORT[coord]})" >/dev/null
  q coord "$db" -c "SELECT citus_add_node('127.0.0.1', ${PORT[w1]})" >/dev/null
  q coord "$db" -c "SELECT citus_add_node('127.0.0.1', ${PORT[w2]})" >/dev/null
}

# expect_error node db 'text the error must contain' sql: the statement must fail with that text
expect_error() {
  local n=$1 db=$2 want=$3 sql=$4 out
  if out=$(q "$n" "$db" -c "$sql" 2>&1); then die "expected an error containing '$want' from: $sql"; fi
  grep -qF -- "$want" <<<"$out" || die "expected an error containing '$want' from: $sql; got: $out"
}
check() { # label sql expected-value: q1 on the coordinator of $DB must print exactly the expected value
  local got
  got=$(q1 coord "$DB" "$2") || die "$1: query failed: $2"
  [ "$got" = "$3" ] || die "$1: expected '$3', got '$got' (query: $2)"
  echo "  ok  $1"
}

# ---------------------------------------------------------------------------------------------------------------
# 3. CHOM's schema and data, distributed

TABLES=(tier_limits organizations users vps_servers subscriptions invoices tenants sites vps_allocations usage_records
        operations site_backups audit_logs)
EXPECTED_LAYOUT="audit_logs local
invoices reference
operations distributed by tenant_id
organizations reference
site_backups distributed by tenant_id
sites distributed by tenant_id
subscriptions reference
tenants distributed by id
tier_limits reference
usage_records distributed by tenant_id
users reference
vps_allocations distributed by tenant_id
vps_servers reference"
LAYOUT_SQL="SELECT string_agg(logicalrelid::text || ' ' || CASE WHEN partmethod = 'h' THEN 'distributed by '
  || column_to_column_name(logicalrelid, partkey) WHEN repmodel = 't' THEN 'reference' ELSE 'local' END, E'\n'
  ORDER BY logicalrelid::text) FROM pg_dist_partition"

# a digest of every table's rows (site_backups without the tenant_id that distribute.sql adds)
digests() {
  local db=$1 t
  for t in "${TABLES[@]}"; do
    printf '%s %s\n' "$t" "$(q1 coord "$db" "SELECT count(*) || ' ' || coalesce(md5(string_agg(j, ',' ORDER BY j)), '-')
      FROM (SELECT (to_jsonb(x) - 'tenant_id')::text AS j FROM $t x WHERE '$t' = 'site_backups'
            UNION ALL SELECT to_jsonb(x)::text FROM $t x WHERE '$t' <> 'site_backups') s")"
  done
}

distribute() { # db: runs sql/citus/distribute.sql, prints its NOTICEs and errors, returns psql's status
  local out rc=0
  out=$(PGOPTIONS="-c citus.shard_count=$SHARDS" q coord "$1" -f "$ROOT/sql/citus/distribute.sql" 2>&1) || rc=$?
  grep -v -E '^(BEGIN|DO|COMMIT|ROLLBACK)$' <<<"$out" | sed 's/^psql:[^ ]* //' || true
  return "$rc"
}

# dataset.sql with site_backups given their tenant (the application's one change when writing backups)
dataset_for_distributed() {
  sed '/^INSERT INTO site_backups/,/;$/d' "$ROOT/tests/fixtures/dataset.sql" | sed '/^ANALYZE;$/d'
  cat <<'SQL'
INSERT INTO site_backups (id, site_id, tenant_id, backup_type, status, expires_at, created_at)
SELECT md5('backup' || i)::uuid, s.id, s.tenant_id, (ARRAY['full', 'files', 'database'])[1 + i % 3],
       'completed', timestamp '2025-07-01' + i * interval '1 hour', timestamp '2025-06-01' + i * interval '1 hour'
  FROM generate_series(1, 1000) i JOIN sites s ON s.id = md5('site' || (1 + i % 6000))::uuid;
ANALYZE;
SQL
}

# ---------------------------------------------------------------------------------------------------------------
# 4. The distribution checks

check_layout() {
  echo "citus: distribution checks on $DB"
  check "every CHOM table in the layout of docs/scaling.md" "$LAYOUT_SQL" "$EXPECTED_LAYOUT"
  check "distributed tables colocated with tenants, $SHARDS shards each" \
    "SELECT count(DISTINCT colocation_id) || ' ' || min(shard_count) || ' ' || max(shard_count)
       FROM citus_tables WHERE citus_table_type = 'distributed'" "1 $SHARDS $SHARDS"
  check "shards on both workers" \
    "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'tenants'::regclass" "2"
  check "each sites shard on the node of its tenants shard" \
    "SELECT count(*) FROM citus_shards s JOIN pg_dist_shard ss ON ss.shardid = s.shardid
       JOIN pg_dist_shard ts ON ts.logicalrelid = 'tenants'::regclass AND ts.shardminvalue = ss.shardminvalue
       JOIN citus_shards t ON t.shardid = ts.shardid
      WHERE s.table_name = 'sites'::regclass AND t.nodeport <> s.nodeport" "0"
  check "primary keys include tenant_id" \
    "SELECT string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conrelid::regclass::text)
       FROM pg_constraint WHERE contype = 'p'
        AND conrelid::regclass::text IN ('sites', 'vps_allocations', 'usage_records', 'operations', 'site_backups')" \
    "operations PRIMARY KEY (id, tenant_id); site_backups PRIMARY KEY (id, tenant_id); sites PRIMARY KEY (id, tenant_id); usage_records PRIMARY KEY (id, tenant_id); vps_allocations PRIMARY KEY (id, tenant_id)"
  check "tenants: (organization_id, slug) indexed, no longer unique" \
    "SELECT count(*) FILTER (WHERE indisunique) || ' ' || count(*) FROM pg_index
      WHERE indrelid = 'tenants'::regclass AND indkey::text = (SELECT attnum FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname = 'organization_id') || ' ' || (SELECT attnum FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname = 'slug')" "0 1"
  check "foreign keys: all 16 but organizations.default_tenant_id, site_backups' on (site_id, tenant_id)" \
    "SELECT count(*) || ' ' || count(*) FILTER (WHERE conname = 'organizations_default_tenant_id_foreign') || ' '
            || max(pg_get_constraintdef(oid)) FILTER (WHERE conname = 'site_backups_site_id_foreign')
       FROM pg_constraint WHERE contype = 'f' AND conrelid IN (SELECT logicalrelid FROM pg_dist_partition)" \
    "15 0 FOREIGN KEY (site_id, tenant_id) REFERENCES sites(id, tenant_id) ON DELETE CASCADE"
  check "no rows left in the coordinator's shell tables" \
    "SELECT sum(pg_relation_size(logicalrelid)) FROM pg_dist_partition WHERE repmodel <> 's' OR partmethod = 'h'" "0"
  # what the database now refuses or does, as docs/scaling.md says
  expect_error coord "$DB" "violates foreign key constraint" \
    "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), gen_random_uuid(), 'x.test')"
  expect_error coord "$DB" "the partition column of table public.site_backups should have a value" \
    "INSERT INTO site_backups (id, site_id) SELECT gen_random_uuid(), id FROM sites WHERE tenant_id = md5('tenant1')::uuid LIMIT 1"
  expect_error coord "$DB" "violates foreign key constraint" \
    "INSERT INTO site_backups (id, site_id, tenant_id) VALUES (gen_random_uuid(), md5('site1')::uuid, md5('tenant2')::uuid)"
  expect_error coord "$DB" "modifying the partition value of rows is not allowed" \
    "UPDATE sites SET tenant_id = md5('tenant2')::uuid WHERE tenant_id = md5('tenant1')::uuid"
  echo "  ok  refused: unknown tenant, a backup without its tenant or with another one, a site changing tenant"
  check "cascades: deleting a tenant, a VPS (SET NULL across nodes), a site (its backups)" \
    "BEGIN;
     DELETE FROM operations WHERE tenant_id = md5('tenant7')::uuid;  -- no ON DELETE action there (as on one node)
     DELETE FROM tenants WHERE id = md5('tenant7')::uuid;
     DELETE FROM vps_servers WHERE id = md5('vps3')::uuid;
     DELETE FROM sites WHERE id = md5('site2')::uuid;
     SELECT (SELECT count(*) FROM sites WHERE tenant_id = md5('tenant7')::uuid) + (SELECT count(*) FROM vps_allocations WHERE tenant_id = md5('tenant7')::uuid)
            || ' ' || (SELECT count(*) FROM sites WHERE vps_id = md5('vps3')::uuid)
            || ' ' || (SELECT count(*) FROM site_backups WHERE site_id = md5('site2')::uuid);
     ROLLBACK;" "0 0 0"
  check "a duplicate tenant slug in one organization is accepted (the application checks it)" \
    "BEGIN;
     INSERT INTO tenants (id, organization_id, name, slug) SELECT gen_random_uuid(), organization_id, 'dup', slug FROM tenants WHERE id = md5('tenant1')::uuid;
     SELECT count(*) FROM tenants WHERE (organization_id, slug) = (SELECT organization_id, slug FROM tenants WHERE id = md5('tenant1')::uuid);
     ROLLBACK;" "2"
}

# distribute.sql refuses what it cannot convert, before changing anything
check_refusals() {
  local db=chom_refuse
  echo "citus: distribute.sql refusals (database $db)"
  create_cluster_db "$db"
  q coord "$db" -f "$ROOT/tests/fixtures/chom_schema.sql" >/dev/null 2>&1
  q coord "$db" -f "$ROOT/tests/fixtures/small_data.sql" >/dev/null
  q coord "$db" -c "INSERT INTO operations (id, tenant_id, operation_type) VALUES (gen_random_uuid(), NULL, 'system.backup')
    ; CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'
    ; CREATE TRIGGER some_trigger AFTER INSERT ON sites FOR EACH STATEMENT EXECUTE FUNCTION noop()" >/dev/null
  local out
  out=$(distribute "$db" 2>&1) && die "distribute.sql accepted operations without a tenant and a trigger"
  { grep -q "1 operations have no tenant_id" <<<"$out" && grep -q 'sites has triggers (some_trigger)' <<<"$out"; } \
    || die "distribute.sql: unexpected refusal: $out"
  [ "$(q1 coord "$db" "SELECT count(*) FROM pg_dist_partition")" = 0 ] || die "distribute.sql left Citus tables behind"
  echo "  ok  operations without a tenant and a trigger on sites: refused, named, nothing changed"
  q coord "$db" -c "DELETE FROM operations WHERE tenant_id IS NULL; DROP TRIGGER some_trigger ON sites" >/dev/null
  q coord "$db" -c "SELECT create_reference_table('vps_servers')" >/dev/null 2>&1
  out=$(distribute "$db" 2>&1) && die "distribute.sql accepted a partly converted schema"
  grep -q "is partly converted already" <<<"$out" || die "distribute.sql: unexpected refusal: $out"
  echo "  ok  a partly converted schema (vps_servers made a reference table by hand): refused"
}

# ---------------------------------------------------------------------------------------------------------------
# 5. Writers through the coordinator, a shard move (the workload chom's tests will check)

# pgbench script: one write per transaction, every write path chom must follow (on Citus a site changes tenant by a
# DELETE and an INSERT in one distributed transaction: the distribution column cannot be updated)
write_workload() {
  cat >"$WORK/writers.sql" <<'SQL'
\set t random(1, 200)
\set t2 random(1, 200)
\set v random(1, 30)
\set k random(0, 9)
\set mb random(1, 5000)
\set op random(1, 100)
\if :op <= 30
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, status, created_at)
VALUES (gen_random_uuid(), md5('tenant' || :t)::uuid, CASE WHEN :v = 30 THEN NULL ELSE md5('vps' || :v)::uuid END,
        'w-' || gen_random_uuid() || '.test', :mb, 'active', now());
\elif :op <= 50
UPDATE sites SET storage_used_mb = :mb, updated_at = now()
 WHERE tenant_id = md5('tenant' || :t)::uuid
   AND id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid ORDER BY id LIMIT 1 OFFSET :k);
\elif :op <= 60
UPDATE sites SET deleted_at = now()
 WHERE tenant_id = md5('tenant' || :t)::uuid
   AND id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid AND deleted_at IS NULL ORDER BY id LIMIT 1 OFFSET :k);
\elif :op <= 68
UPDATE sites SET deleted_at = NULL
 WHERE tenant_id = md5('tenant' || :t)::uuid
   AND id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid AND deleted_at IS NOT NULL ORDER BY id LIMIT 1);
\elif :op <= 80
UPDATE sites SET vps_id = md5('vps' || :v)::uuid
 WHERE tenant_id = md5('tenant' || :t)::uuid
   AND id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid ORDER BY id DESC LIMIT 1 OFFSET :k);
\elif :op <= 88
DELETE FROM sites
 WHERE tenant_id = md5('tenant' || :t)::uuid
   AND id IN (SELECT id FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid ORDER BY id LIMIT 1 OFFSET :k);
\elif :op <= 98
BEGIN;
SELECT coalesce((SELECT id::text FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid AND deleted_at IS NULL
                  ORDER BY id LIMIT 1 OFFSET :k), '') AS moved \gset
DELETE FROM sites WHERE tenant_id = md5('tenant' || :t)::uuid AND id::text = ':moved';
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, status, created_at)
SELECT gen_random_uuid(), md5('tenant' || :t2)::uuid, md5('vps' || :v)::uuid, 'moved-' || gen_random_uuid() || '.test',
       :mb, 'active', now()
 WHERE ':moved' <> '';
COMMIT;
\else
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, status, created_at)
SELECT gen_random_uuid(), t.id, md5('vps' || (1 + abs(hashtext(t.id::text)) % 29))::uuid,
       'bulk-' || gen_random_uuid() || '.test', 10, 'active', now()
  FROM tenants t WHERE abs(hashtext(t.id::text)) % 20 = :k;
\endif
SQL
}

writers() { # clients transactions-per-client: pgbench through the coordinator's socket
  local clients=$1 per=$2 log=$WORK/pgbench.$RANDOM.log
  "$BINDIR/pgbench" -n -h "$WORK/sock" -p "${PORT[coord]}" -U postgres -c "$clients" -j "$clients" -t "$per" \
    --max-tries=10 -f "$WORK/writers.sql" "$DB" >"$log" 2>&1 || { tail -30 "$log"; die "writers failed"; }
  local done_tx failed
  done_tx=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' "$log")
  failed=$(awk '/number of failed transactions/ { print $5 }' "$log")
  [ "${failed:-0}" = 0 ] || { cat "$log"; die "writers: $failed failed transactions"; }
  LAST_TPS=$(grep -E '^tps' "$log" | awk '{print $3}')
  echo "  ok  $clients writers through the coordinator: $done_tx transactions ($LAST_TPS tps), $(awk '/number of transactions retried/ { print $5 }' "$log") retried (distributed deadlocks, serialization)"
}

# the least-loaded eligible VPS by an independent query (what chom_pick_vps() must answer)
INDEPENDENT_PICK="SELECT v.id FROM vps_servers v
  LEFT JOIN (SELECT vps_id, count(*) AS n FROM sites WHERE deleted_at IS NULL GROUP BY vps_id) c ON c.vps_id = v.id
 WHERE v.status = 'active' AND v.allocation_type = 'shared' AND v.health_status IN ('healthy', 'unknown')
 ORDER BY coalesce(c.n, 0), v.id LIMIT 1"

# the coordinator's answers equal the sum of what the workers hold (the data is consistent across the cluster)
check_consistent() {
  local want got
  want=$(q1 coord "$DB" "SELECT count(*) || ' ' || coalesce(sum(storage_used_mb), 0) FROM sites WHERE deleted_at IS NULL")
  got=$(q1 coord "$DB" "SELECT sum(split_part(result, ' ', 1)::bigint) || ' ' || sum(split_part(result, ' ', 2)::bigint)
    FROM run_command_on_shards('sites', \$\$SELECT count(*) || ' ' || coalesce(sum(storage_used_mb), 0) FROM %s WHERE deleted_at IS NULL\$\$)")
  [ "$want" = "$got" ] || die "live sites through the coordinator ($want) differ from the sum over the shards ($got)"
  echo "  ok  live sites and storage through the coordinator = the sum over the shards, read on the workers ($got)"
}

move_a_shard() { # moves the shard group of tenant1 (the big one) to the other worker, writers running
  local shard node port other
  shard=$(q1 coord "$DB" "SELECT get_shard_id_for_distribution_column('tenants', md5('tenant1')::uuid)")
  port=$(q1 coord "$DB" "SELECT nodeport FROM citus_shards WHERE shardid = $shard")
  other=${PORT[w1]}; [ "$port" = "${PORT[w1]}" ] && other=${PORT[w2]}
  writers 2 150 &
  local wpid=$!
  q coord "$DB" -c "SELECT citus_move_shard_placement($shard, '127.0.0.1', $port, '127.0.0.1', $other)" >/dev/null
  wait "$wpid" || die "writers during the shard move failed"
  node=$(q1 coord "$DB" "SELECT nodeport FROM citus_shards WHERE shardid = $shard")
  [ "$node" = "$other" ] || die "shard $shard is on $node, not $other"
  echo "  ok  citus_move_shard_placement: tenant1's shard group ($shard and colocated) moved $port -> $other during writes"
}

# ---------------------------------------------------------------------------------------------------------------
# 6. chom on the cluster, answered from the coordinator

chom_install() {
  # shellcheck disable=SC2086 # CHOM_CITUS_CARGO_FLAGS: extra words (bench/citus.sh passes --release)
  (cd "$ROOT" && cargo pgrx install --pg-config "$PG_CONFIG" --no-default-features --features pg15 ${CHOM_CITUS_CARGO_FLAGS:-}) \
    >"$WORK/chom-install.log" 2>&1 || { tail -30 "$WORK/chom-install.log"; die "cargo pgrx install"; }
  # chom's drain worker on the coordinator: its library preloaded, the database named; restart to start it
  local version
  version=$(awk -F'"' '/^version/ { print $2; exit }' "$ROOT/Cargo.toml")
  printf "shared_preload_libraries = 'citus,chom-%s'\nchom.drain_databases = '%s'\nchom.drain_interval = '200ms'\n" \
    "$version" "$DB" >>"$WORK/coord/postgresql.conf"
  as_test "$BINDIR/pg_ctl" -D "$WORK/coord" -l "$WORK/coord.log" -w -t 60 restart >/dev/null || die "restart the coordinator"
  # Citus repeats CREATE EXTENSION on the workers (functions only there); chom is installed from the coordinator
  q coord "$DB" -c "CREATE EXTENSION chom" || die "CREATE EXTENSION chom on the coordinator"
  check "CREATE EXTENSION chom: chom's functions on every worker" \
    "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT count(*) FROM pg_proc WHERE proname = 'chom_sites_aggregates'\$\$)" "1,1"
  q coord "$DB" -c "SELECT * FROM chom_install()" >"$WORK/chom-install.out" || die "chom_install() on the coordinator"
  echo "  ok  chom_install() on the coordinator: $(grep -c ' created' "$WORK/chom-install.out") objects created"
  check "chom_install() again: nothing to do" "SELECT count(*) FROM chom_install() WHERE action NOT IN ('exists') AND action NOT LIKE 'reused%' AND action NOT LIKE 'fillfactor%'" "0"
  check "chom's sites triggers on every shard (Citus copies them), not the TRUNCATE trigger" \
    "SELECT sum(result::int) FROM run_command_on_shards('sites', \$\$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgname LIKE 'chom_sites_%%'\$\$)" "$((SHARDS * 3))"
  check "the outbox colocated with tenants" \
    "SELECT (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'chom.vps_delta'::regclass) = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'tenants'::regclass)" "t"
  check "chom_index_ddl(): nothing left to build" "SELECT count(*) FROM chom_index_ddl()" "0"
  check "chom_drain_vps_deltas(): callable, nothing queued yet" "SELECT chom_drain_vps_deltas()" "0"
  check "chom's drain worker running on the coordinator" \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'chom drain'" "1"
  drain_interval 1h
  expect_error w1 "$DB" "runs on the Citus coordinator, not on a worker" "SELECT chom_pick_vps()"
  echo "  ok  a worker refuses chom's functions, naming the coordinator"
}

# the drain worker's interval, changed by a reload (it wakes up and reads it): between checks it is paused, so
# that the checks find changes queued in the outbox
drain_interval() {
  echo "chom.drain_interval = '$1'" >>"$WORK/coord/postgresql.conf"
  as_test "$BINDIR/pg_ctl" -D "$WORK/coord" reload >/dev/null
}

# the drain worker empties the outbox within its interval (200 ms here): wait for it, 30 s at most
wait_drained() {
  local waited=0
  while [ "$(q1 coord "$DB" "SELECT count(*) FROM chom.vps_delta")" != 0 ]; do
    sleep 0.2; waited=$((waited + 1))
    [ "$waited" -lt 150 ] || die "chom's drain worker left the outbox undrained for 30 s (see $WORK/coord.log)"
  done
}

chom_check_exact() { # label: every aggregate chom keeps equals a recount, answered from the coordinator
  check "$1: chom_cache_drift() empty" "SELECT count(*) FROM chom_cache_drift()" "0"
  # the settled counts (live sites minus the undrained outbox, per shard) make the check exact before a drain
  local queued
  queued=$(q1 coord "$DB" "SELECT count(*) FROM chom.vps_delta")
  check "$1: chom_vps_drift() empty, $queued changes still queued in the outbox" "SELECT count(*) FROM chom_vps_drift()" "0"
  drain_interval 200ms
  wait_drained
  drain_interval 1h
  echo "  ok  $1: the outbox drained by chom's drain worker"
  check "$1: chom.vps_load = a recount of live sites per VPS" \
    "SELECT count(*) FROM vps_servers v LEFT JOIN chom.vps_load l ON l.vps_id = v.id
      LEFT JOIN (SELECT vps_id, count(*) AS n FROM sites WHERE deleted_at IS NULL GROUP BY vps_id) c ON c.vps_id = v.id
      WHERE l.live_sites IS DISTINCT FROM coalesce(c.n, 0)" "0"
  check "$1: chom_vps_drift() empty" "SELECT count(*) FROM chom_vps_drift()" "0"
  # tenant ids and the recount as intermediate results: chom_tenant_stats() is called on the coordinator
  check "$1: chom_tenant_stats() = recount for every tenant" \
    "WITH ids AS MATERIALIZED (SELECT id FROM tenants),
          live AS MATERIALIZED (SELECT tenant_id, count(*) AS n, coalesce(sum(storage_used_mb), 0) AS mb
                                  FROM sites WHERE deleted_at IS NULL GROUP BY tenant_id)
     SELECT count(*) FROM ids CROSS JOIN LATERAL chom_tenant_stats(ids.id) s LEFT JOIN live l ON l.tenant_id = ids.id
      WHERE (s.sites_count, s.storage_mb) IS DISTINCT FROM (coalesce(l.n, 0), coalesce(l.mb, 0))" "0"
  check "$1: chom_pick_vps() = the independent least-loaded pick" \
    "SELECT chom_pick_vps() = ($INDEPENDENT_PICK)" "t"
  check "$1: chom_status() all installed" \
    "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')" "0"
  check "$1: no busy-tenant spill on Citus (chom.tenant_deltas empty on the coordinator)" \
    "SELECT count(*) FROM chom.tenant_deltas" "0"
}

# drift made behind chom's back (triggers bypassed on one shard), found and repaired from the coordinator
chom_check_repair() {
  local shard
  shard=$(q1 coord "$DB" "SELECT get_shard_id_for_distribution_column('sites', md5('tenant3')::uuid)")
  q coord "$DB" -c "SELECT run_command_on_shards('sites', \$\$SELECT set_config('session_replication_role', 'replica', true);
      UPDATE %s SET deleted_at = now() WHERE tenant_id = md5('tenant3')::uuid AND deleted_at IS NULL\$\$)" >/dev/null
  check "drift behind chom's back (triggers bypassed on shard $shard): found" \
    "SELECT (SELECT count(*) FROM chom_cache_drift()) > 0 AND (SELECT count(*) FROM chom_vps_drift()) > 0" "t"
  q1 coord "$DB" "SELECT chom_repair_drift()" >/dev/null || die "chom_repair_drift()"
  check "chom_repair_drift(): no drift left" "SELECT (SELECT count(*) FROM chom_cache_drift()) + (SELECT count(*) FROM chom_vps_drift())" "0"
  # a trigger missing on one shard is reported with the shard, and chom_install() puts it back
  q coord "$DB" -c "SET citus.enable_unsafe_triggers = on; SELECT run_command_on_shards('sites', \$\$DROP TRIGGER IF EXISTS chom_sites_update_$shard ON %s\$\$)" >/dev/null
  check "a trigger dropped on shard $shard: chom_status() says so" \
    "SELECT state || ': ' || detail FROM chom_status() WHERE name = 'chom_sites_update'" \
    "missing: missing or disabled on shards $shard of sites: SELECT * FROM chom_install() re-creates it there and recounts"
  q coord "$DB" -c "SELECT * FROM chom_install()" >/dev/null || die "chom_install() after a trigger went missing"
  check "chom_install(): the trigger is back on shard $shard" \
    "SELECT state FROM chom_status() WHERE name = 'chom_sites_update'" "installed"
}

# writes routed through a worker (Citus lets any node with its metadata route them) fire the same shard triggers
chom_check_worker_writes() {
  q w1 "$DB" -c "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
                 SELECT gen_random_uuid(), md5('tenant' || i)::uuid, md5('vps' || (1 + i % 29))::uuid, 'via-worker-' || i || '.test', i
                   FROM generate_series(1, 40) i" \
    -c "UPDATE sites SET deleted_at = now() WHERE domain LIKE 'via-worker-1%'" \
    -c "UPDATE sites SET vps_id = md5('vps2')::uuid WHERE domain LIKE 'via-worker-2%'" >/dev/null \
    || die "writes through a worker"
  echo "  ok  inserts, soft deletes and VPS moves routed through worker 1"
  expect_error w1 "$DB" "Run TRUNCATE sites on the coordinator" "TRUNCATE sites CASCADE"
  echo "  ok  TRUNCATE sites through a worker: refused, naming the coordinator"
}

# vps_servers is a reference table: its trigger fires on every node's copy and counts on the coordinator's
chom_check_vps_registry() {
  q coord "$DB" -c "INSERT INTO vps_servers (id, hostname, ip_address, provider, region, spec_cpu, spec_memory_mb,
                      spec_disk_gb, status, allocation_type, health_status)
                    VALUES (md5('vps-new')::uuid, 'vps-new.example.test', '10.9.9.9', 'hetzner', 'eu', 4, 8192, 160,
                            'active', 'shared', 'healthy')" >/dev/null || die "insert into vps_servers"
  check "a new VPS: chom_pick_vps() picks it (no sites yet)" "SELECT chom_pick_vps() = md5('vps-new')::uuid" "t"
  q coord "$DB" -c "DELETE FROM vps_servers WHERE id = md5('vps5')::uuid" >/dev/null || die "delete from vps_servers"
  echo "  ok  a VPS with sites deleted (its sites set to no VPS on every shard)"
}

# The tables' owner's code on a cluster (SECURITY.md): CHOM's tables owned by a role that is no superuser, with a
# trigger of that role's on tenants. It fires on the workers' shards inside chom's step of each shard statement,
# and on the coordinator's recounts, which Citus sends to the workers over connections as that role: it refuses
# to run as anyone but the owner, and the owner is no superuser on any node after writes and a recount.
chom_check_owner_code() {
  local table n pw
  pw=$(cat "$WORK/pw")
  echo "127.0.0.1:*:*:chom_app_owner:$pw" >>"$WORK/pgpass"
  q coord "$DB" -c "CREATE ROLE chom_app_owner LOGIN PASSWORD '$pw'" >/dev/null || die "CREATE ROLE chom_app_owner"
  for table in tenants sites vps_servers tier_limits; do
    q coord "$DB" -c "ALTER TABLE $table OWNER TO chom_app_owner" >/dev/null || die "ALTER TABLE $table OWNER TO"
  done
  q coord "$DB" -c "CREATE FUNCTION public.chom_owner_only() RETURNS trigger LANGUAGE plpgsql AS \$f\$
        BEGIN
          IF current_user::text <> 'chom_app_owner' THEN
            RAISE EXCEPTION 'the owner''s trigger on tenants ran as %', current_user;
          END IF;
          RETURN NEW;
        END \$f\$" \
    -c "ALTER FUNCTION public.chom_owner_only() OWNER TO chom_app_owner" \
    -c "SET citus.enable_unsafe_triggers = on" \
    -c "CREATE TRIGGER chom_owner_only BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION public.chom_owner_only()" \
    >/dev/null || die "the owner's trigger on tenants"
  q coord "$DB" -c "INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb)
                    SELECT gen_random_uuid(), md5('tenant' || i)::uuid, md5('vps' || (10 + i % 10))::uuid, 'owner-' || i || '.test', i
                      FROM generate_series(1, 20) i" >/dev/null || die "writes with the owner's trigger on tenants"
  q w2 "$DB" -c "UPDATE sites SET deleted_at = now() WHERE domain LIKE 'owner-1%'" >/dev/null \
    || die "a write through a worker with the owner's trigger on tenants"
  check "a recount from the coordinator with the owner's trigger on tenants" \
    "SELECT count(*) FROM (SELECT chom_refresh_tenant(md5('tenant3')::uuid)) recount" "1"
  for n in "${NODES[@]}"; do
    [ "$(q1 "$n" "$DB" "SELECT rolsuper FROM pg_roles WHERE rolname = 'chom_app_owner'")" = f ] \
      || die "chom_app_owner became a superuser on $n"
  done
  q coord "$DB" -c "SET citus.enable_unsafe_triggers = on" -c "DROP TRIGGER chom_owner_only ON tenants" \
    -c "DROP FUNCTION public.chom_owner_only()" >/dev/null || die "dropping the owner's trigger"
  for table in tenants sites vps_servers tier_limits; do
    q coord "$DB" -c "ALTER TABLE $table OWNER TO postgres" >/dev/null || die "ALTER TABLE $table OWNER TO postgres"
  done
  q coord "$DB" -c "DROP ROLE chom_app_owner" >/dev/null || die "DROP ROLE chom_app_owner"
  echo "  ok  CHOM's tables owned by a role that is no superuser: its trigger on tenants ran as that role on the shards and in a recount from the coordinator, and it gained nothing"
}

# chom.site_quota: checked where the tenant row is updated, on the worker, against its copy of tier_limits
chom_check_quota() {
  local n limit tier
  tier="'$(q1 coord "$DB" "SELECT tier FROM tenants WHERE id = md5('tenant1')::uuid")'"
  # Citus propagates ALTER DATABASE … SET to every node (and refuses it on a worker)
  q coord "$DB" -c "ALTER DATABASE $DB SET chom.site_quota = on" >/dev/null
  n=$(q1 coord "$DB" "SELECT sites_count FROM chom_tenant_stats(md5('tenant1')::uuid)")
  limit=$(q1 coord "$DB" "SELECT max_sites FROM tier_limits WHERE tier = $tier")
  q coord "$DB" -c "UPDATE tier_limits SET max_sites = $n WHERE tier = $tier" >/dev/null
  expect_error coord "$DB" "over its tier's limit of $n" \
    "INSERT INTO sites (id, tenant_id, domain) VALUES (gen_random_uuid(), md5('tenant1')::uuid, 'over-quota.test')"
  check "the refused insert left nothing behind" \
    "SELECT (SELECT sites_count FROM chom_tenant_stats(md5('tenant1')::uuid)) || ' ' || (SELECT count(*) FROM sites WHERE domain = 'over-quota.test')" "$n 0"
  q coord "$DB" -c "UPDATE sites SET deleted_at = now() WHERE id = (SELECT id FROM sites WHERE tenant_id = md5('tenant1')::uuid AND deleted_at IS NULL ORDER BY id LIMIT 1)" >/dev/null \
    || die "a soft delete by a tenant at its limit"
  q coord "$DB" -c "UPDATE tier_limits SET max_sites = $limit WHERE tier = $tier" >/dev/null
  q coord "$DB" -c "ALTER DATABASE $DB RESET chom.site_quota" >/dev/null
  echo "  ok  chom.site_quota (ALTER DATABASE on the coordinator): an insert over the tier's limit refused (23514), a soft delete at the limit accepted"
}

# chom_tenant_stats() and chom_pick_vps() through the coordinator against a single node with the same data, in
# this run: the same server, database chom_single without Citus
chom_latency() {
  q coord postgres -c "CREATE DATABASE chom_single" >/dev/null
  q coord chom_single -f "$ROOT/tests/fixtures/chom_schema.sql" >/dev/null 2>&1
  q coord chom_single -f "$ROOT/tests/fixtures/dataset.sql" >/dev/null
  q coord chom_single -c "CREATE EXTENSION chom" >/dev/null 2>&1 || die "CREATE EXTENSION chom on one node"
  printf '\\set t random(1, 200)\nSELECT * FROM chom_tenant_stats(md5('"'"'tenant'"'"' || :t)::uuid);\n' >"$WORK/stats.sql"
  printf 'SELECT chom_pick_vps();\n' >"$WORK/pick.sql"
  local script db ms
  declare -A latency
  for script in stats pick; do
    for db in chom_single "$DB"; do
      ms=$(PGOPTIONS="-c chom.max_staleness=86400" "$BINDIR/pgbench" -n -h "$WORK/sock" -p "${PORT[coord]}" -U postgres \
             -c 1 -T "${CHOM_CITUS_LATENCY_SECONDS:-5}" -f "$WORK/$script.sql" "$db" 2>&1 \
           | awk '/latency average/ { print $4 }')
      [ -n "$ms" ] || die "pgbench $script on $db"
      latency[$script.$db]=$ms
    done
    echo "  ==  $script: $(printf '%-22s' "chom_$([ $script = stats ] && echo tenant_stats || echo pick_vps)()") one node ${latency[$script.chom_single]} ms, through the Citus coordinator ${latency[$script.$DB]} ms ($(awk -v a="${latency[$script.$DB]}" -v b="${latency[$script.chom_single]}" 'BEGIN { printf "%.2fx", a / b }'))"
  done
}

chom_uninstall() {
  q coord "$DB" -c "SELECT * FROM chom_uninstall()" -c "DROP EXTENSION chom" >/dev/null || die "chom_uninstall()"
  check "chom_uninstall(): no trigger, no chom index, no outbox, no cached column left on any node or shard" \
    "SELECT (SELECT sum(result::int) FROM run_command_on_all_nodes(\$\$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'chom\\_%'\$\$))
          + (SELECT sum(result::int) FROM run_command_on_all_nodes(\$\$SELECT count(*) FROM pg_class WHERE relname LIKE 'idx\\_sites\\_vps\\_status%' OR relname LIKE 'vps\\_delta%'\$\$))
          + (SELECT sum(result::int) FROM run_command_on_all_nodes(\$\$SELECT count(*) FROM pg_attribute WHERE attname = 'cached_sites_count'\$\$))" "0"
  echo "  ok  chom_uninstall(); DROP EXTENSION chom"
}

# ---------------------------------------------------------------------------------------------------------------

main() {
  build_citus
  start_cluster
  DB=chom
  create_cluster_db "$DB"
  say "CHOM's schema and dataset on the coordinator (database $DB), then sql/citus/distribute.sql"
  q coord "$DB" -f "$ROOT/tests/fixtures/chom_schema.sql" >/dev/null 2>&1
  q coord "$DB" -f "$ROOT/tests/fixtures/dataset.sql" >/dev/null
  [ "${CHOM_CITUS_STOP_AFTER:-}" = schema ] && return
  digests "$DB" >"$WORK/digests.before"
  distribute "$DB" || die "sql/citus/distribute.sql on $DB"
  digests "$DB" >"$WORK/digests.after"
  diff "$WORK/digests.before" "$WORK/digests.after" || die "the data changed in the conversion"
  echo "  ok  every row kept ($(awk '{ n += $2 } END { print n }' "$WORK/digests.after") rows in ${#TABLES[@]} tables, digests equal)"
  local again
  again=$(distribute "$DB" 2>&1)
  grep -q "already in the Citus layout (13 tables); nothing to do" <<<"$again" || die "second run of distribute.sql: $again"
  echo "  ok  distribute.sql run again: nothing to do"
  check_layout

  say "an empty CHOM database distributed, then the same dataset written through the coordinator (database chom_empty)"
  create_cluster_db chom_empty
  q coord chom_empty -f "$ROOT/tests/fixtures/chom_schema.sql" >/dev/null 2>&1
  distribute chom_empty || die "sql/citus/distribute.sql on chom_empty"
  dataset_for_distributed | q coord chom_empty >/dev/null
  digests chom_empty >"$WORK/digests.empty"
  diff "$WORK/digests.after" "$WORK/digests.empty" || die "the dataset written into the distributed schema differs"
  echo "  ok  same rows as the populated database converted"
  DB=chom_empty check "chom_empty: the same layout" "$LAYOUT_SQL" "$EXPECTED_LAYOUT"
  check_refusals
  [ "${CHOM_CITUS_STOP_AFTER:-}" = distribute ] && return

  say "scale-out tests on $DB"
  write_workload
  writers 4 250
  local without=$LAST_TPS
  chom_install
  chom_check_exact "after install"
  writers 4 250
  echo "  ==  the same writers without chom $without tps, with chom $LAST_TPS tps ($(awk -v a="$LAST_TPS" -v b="$without" 'BEGIN { printf "%.2fx", a / b }'))"
  check_consistent
  chom_check_exact "after concurrent writers"
  move_a_shard
  check "after the shard move: chom's triggers on the moved shards" \
    "SELECT count(*) FROM chom_status() WHERE state NOT IN ('installed', 'reused')" "0"
  writers 4 100
  check_consistent
  chom_check_exact "after a shard move and more writes"
  chom_check_repair
  writers 2 100
  chom_check_exact "after a repair and more writes"
  chom_check_worker_writes
  chom_check_exact "after writes through a worker"
  chom_check_vps_registry
  chom_check_owner_code
  chom_check_quota
  chom_check_exact "after VPSes added and deleted, and a quota check"
  check "chom_refresh_all(): every tenant recounted" "SELECT chom_refresh_all(50) = (SELECT count(*) FROM tenants)" "t"
  check "chom_drift_probe(): a sample, no drift" "SELECT sampled > 0 AND drifted = 0 AND vps_drifted = 0 FROM chom_drift_probe(50, 5000)" "t"
  check "chom_metrics(): installed, every trigger enabled" "SELECT installed AND triggers_missing = 0 AND triggers_disabled = 0 FROM chom_metrics()" "t"
  say "latency through the coordinator against one node"
  chom_latency
  chom_uninstall
  say "all checks passed"
}

# run, unless sourced for its functions (bench/citus.sh)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi

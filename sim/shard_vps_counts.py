#!/usr/bin/env python3
"""Simulation backing docs/scaling.md: per-VPS live-site counts when `sites` is sharded by tenant.

Stand-alone (Python 3.11 stdlib + the Postgres 15 binaries; no chom code). It starts ONE local Postgres 15 as the
unprivileged user `chomtest`, listening on a unix socket only, and creates:

  shard_0 .. shard_{N-1}  databases standing in for the worker nodes: `tenants` and `sites` (the tenants that hash
                          to that shard), a statement-level AFTER trigger per event with transition tables (plain
                          plpgsql standing in for chom's Rust trigger) that
                            * keeps tenants.cached_sites_count / cached_storage_mb exact (a shard-local UPDATE), and
                            * folds the statement into one net delta per VPS and appends it to the node-local
                              outbox `vps_delta(xid xid8, vps_id, delta)`;
  coord                   the coordinator: `vps_servers` (the reference table), `vps_load(vps_id, live_sites)` with
                          the (live_sites, vps_id) index, `shard_watermark(shard, applied_xmin xid8)`.

A propagator moves outbox deltas to the coordinator exactly once: it reads the rows of transactions that are
certainly finished (xid < the shard's snapshot xmin), applies their sum per VPS and advances that shard's watermark in
one coordinator transaction, then prunes the shard outbox (idempotent). The driver writes random inserts (placed by
the coordinator pick), soft deletes, restores, hard deletes, VPS moves, tenant moves (delete on one shard + insert on
another: Citus refuses to UPDATE a distribution column) and multi-shard VPS evacuations, and measures

  * pick latency on the coordinator (index walk, FOR NO KEY UPDATE SKIP LOCKED, in a transaction) against a
    scatter-gather count(*) ... GROUP BY vps_id sent to all shards in parallel and merged client-side;
  * staleness before each propagation (coordinator vs. a recount across shards) and exactness after it;
  * the outbox commit-order hazard: a watermark on the outbox sequence loses a delta committed out of order, the
    xid/xmin watermark does not.

Usage:  python3 sim/shard_vps_counts.py [--quick] [--shards N] [--sites N] [--rounds N] [--seed N] [--keep]
"""

import argparse
import os
import random
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

PGBIN = "/usr/lib/postgresql/15/bin"
RUN_AS = "chomtest"


# ----------------------------------------------------------------------------------------------------------------
# a persistent psql session (stdlib only: psql is driven over pipes, one round trip per call)

class Session:
    def __init__(self, sockdir, port, db):
        self.db = db
        self.p = subprocess.Popen(
            [f"{PGBIN}/psql", "-X", "-q", "-A", "-t", "-F", "|", "-h", sockdir, "-p", str(port), "-U", "postgres",
             "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.q("SET client_min_messages = warning; SET statement_timeout = '60s'")

    def send(self, sql):
        self.p.stdin.write(sql.strip().rstrip(";") + ";\n\\echo __END__\n")
        self.p.stdin.flush()

    def recv(self):
        out = []
        while True:
            line = self.p.stdout.readline()
            if line == "":
                raise RuntimeError(f"{self.db}: psql exited")
            line = line.rstrip("\n")
            if line == "__END__":
                break
            if "ERROR:" in line or "FATAL:" in line:
                raise RuntimeError(f"{self.db}: {line}")
            if line:
                out.append(line)
        return out

    def q(self, sql):
        self.send(sql)
        return self.recv()

    def one(self, sql):
        rows = self.q(sql)
        return rows[0] if rows else None

    def close(self):
        try:
            self.p.stdin.write("\\q\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=10)


# ----------------------------------------------------------------------------------------------------------------
# server lifecycle

def as_owner(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--"] + cmd
    return cmd


def free_port(sockdir):
    for _ in range(200):
        port = random.randint(20000, 60000)
        if os.path.exists(os.path.join(sockdir, f".s.PGSQL.{port}")):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:   # also free on loopback, to be safe
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def start_server():
    base = tempfile.mkdtemp(prefix="chom-sim-")
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, RUN_AS, RUN_AS)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    subprocess.run(as_owner(["mkdir", "-p", sock]), check=True)
    subprocess.run(as_owner([f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port(sock)
    opts = (f"-p {port} -k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c shared_buffers=256MB -c max_connections=100")
    subprocess.run(as_owner([f"{PGBIN}/pg_ctl", "-D", data, "-l", os.path.join(base, "server.log"), "-w",
                             "-o", opts, "start"]), check=True, stdout=subprocess.DEVNULL)
    return base, data, sock, port


def stop_server(base, data, keep):
    subprocess.run(as_owner([f"{PGBIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# schema

SHARD_DDL = r"""
CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    cached_sites_count integer NOT NULL DEFAULT 0,
    cached_storage_mb bigint NOT NULL DEFAULT 0
);
CREATE TABLE sites (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
    vps_id uuid,
    storage_used_mb bigint NOT NULL DEFAULT 0,
    deleted_at timestamp
);
CREATE INDEX sites_tenant ON sites (tenant_id);
CREATE INDEX sites_live_vps ON sites (vps_id) WHERE deleted_at IS NULL;   -- scatter-gather's best case

-- node-local outbox: one row per (statement, VPS) with a nonzero net change; xid is the writing transaction's
CREATE TABLE vps_delta (
    seq bigserial PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    vps_id uuid NOT NULL,
    delta integer NOT NULL
);
CREATE INDEX vps_delta_xid ON vps_delta (xid);

-- one statement's changes: (tenant, vps, storage, +1/-1) per counted (live) row
CREATE FUNCTION sim_apply(t uuid[], v uuid[], mb bigint[], sg integer[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF t IS NULL THEN RETURN; END IF;
    -- tenant aggregates: shard-local, locked in id order, one UPDATE
    PERFORM 1 FROM tenants WHERE id IN (SELECT DISTINCT x FROM unnest(t) x) ORDER BY id FOR NO KEY UPDATE;
    UPDATE tenants tt SET cached_sites_count = tt.cached_sites_count + d.n,
                          cached_storage_mb  = tt.cached_storage_mb + d.s
      FROM (SELECT c.tid, sum(c.sg)::int AS n, sum(c.sg * c.mb)::bigint AS s
              FROM unnest(t, mb, sg) AS c(tid, mb, sg) GROUP BY c.tid) d
     WHERE tt.id = d.tid AND (d.n <> 0 OR d.s <> 0);
    -- per-VPS counts: not shard-local, so one net delta per VPS goes to the outbox
    INSERT INTO vps_delta (vps_id, delta)
    SELECT c.vid, sum(c.sg)::int FROM unnest(v, sg) AS c(vid, sg)
     WHERE c.vid IS NOT NULL GROUP BY c.vid HAVING sum(c.sg) <> 0 ORDER BY c.vid;
END $$;

CREATE FUNCTION sites_ins() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE t uuid[]; v uuid[]; mb bigint[]; sg integer[];
BEGIN
    SELECT array_agg(tenant_id), array_agg(vps_id), array_agg(storage_used_mb), array_agg(1)
      INTO t, v, mb, sg FROM new_rows WHERE deleted_at IS NULL;
    PERFORM sim_apply(t, v, mb, sg);
    RETURN NULL;
END $$;
CREATE FUNCTION sites_del() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE t uuid[]; v uuid[]; mb bigint[]; sg integer[];
BEGIN
    SELECT array_agg(tenant_id), array_agg(vps_id), array_agg(storage_used_mb), array_agg(-1)
      INTO t, v, mb, sg FROM old_rows WHERE deleted_at IS NULL;
    PERFORM sim_apply(t, v, mb, sg);
    RETURN NULL;
END $$;
CREATE FUNCTION sites_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE t uuid[]; v uuid[]; mb bigint[]; sg integer[];
BEGIN
    SELECT array_agg(tenant_id), array_agg(vps_id), array_agg(storage_used_mb), array_agg(s)
      INTO t, v, mb, sg
      FROM (SELECT tenant_id, vps_id, storage_used_mb, -1 AS s FROM old_rows WHERE deleted_at IS NULL
            UNION ALL
            SELECT tenant_id, vps_id, storage_used_mb, 1 FROM new_rows WHERE deleted_at IS NULL) c;
    PERFORM sim_apply(t, v, mb, sg);
    RETURN NULL;
END $$;
CREATE TRIGGER sites_ins AFTER INSERT ON sites REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sites_ins();
CREATE TRIGGER sites_del AFTER DELETE ON sites REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sites_del();
CREATE TRIGGER sites_upd AFTER UPDATE ON sites REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sites_upd();
"""

COORD_DDL = r"""
CREATE TABLE vps_servers (
    id uuid PRIMARY KEY, hostname text NOT NULL, status text NOT NULL, allocation_type text NOT NULL,
    health_status text NOT NULL, spec_memory_mb integer NOT NULL, spec_disk_gb integer NOT NULL,
    region text NOT NULL, provider text NOT NULL
);
CREATE TABLE vps_load (vps_id uuid PRIMARY KEY, live_sites integer NOT NULL DEFAULT 0);
CREATE INDEX vps_load_least_loaded ON vps_load (live_sites, vps_id);
CREATE TABLE shard_watermark (shard integer PRIMARY KEY, applied_xmin xid8 NOT NULL);
"""

PICK = """
SELECT l.vps_id FROM vps_load l JOIN vps_servers v ON v.id = l.vps_id
 WHERE v.status = 'active' AND v.allocation_type = 'shared' AND v.health_status = ANY ('{healthy,unknown}')
 ORDER BY l.live_sites, l.vps_id LIMIT 1 FOR NO KEY UPDATE OF l SKIP LOCKED
"""


# ----------------------------------------------------------------------------------------------------------------

class Sim:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.N = args.shards

    # -- setup --------------------------------------------------------------------------------------------------
    def setup(self, sock, port):
        admin = Session(sock, port, "postgres")
        for i in range(self.N):
            admin.q(f"CREATE DATABASE shard_{i}")
        admin.q("CREATE DATABASE coord")
        admin.close()
        self.shards = [Session(sock, port, f"shard_{i}") for i in range(self.N)]
        self.coord = Session(sock, port, "coord")
        for s in self.shards:
            s.q(SHARD_DDL)
        self.coord.q(COORD_DDL)

        a, rng = self.args, self.rng
        self.vps = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(a.vps)]
        rows = []
        for i, v in enumerate(self.vps):
            status = "active" if rng.random() < 0.95 else "maintenance"
            health = rng.choice(["healthy"] * 8 + ["unknown", "degraded"])
            rows.append(f"('{v}','vps{i}.example','{status}','shared','{health}',{rng.choice([2048, 4096, 8192])},"
                        f"{rng.choice([40, 80, 160])},'{rng.choice(['eu', 'us'])}','{rng.choice(['hetzner', 'ovh'])}')")
        self.coord.q("INSERT INTO vps_servers VALUES " + ",".join(rows))
        self.coord.q("INSERT INTO vps_load (vps_id) SELECT id FROM vps_servers")
        self.coord.q("INSERT INTO shard_watermark SELECT g, '0'::xid8 FROM generate_series(0, %d) g" % (self.N - 1))
        self.eligible = set(self.coord.q(
            "SELECT id FROM vps_servers WHERE status = 'active' AND allocation_type = 'shared' "
            "AND health_status IN ('healthy','unknown')"))

        self.tenants = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(a.tenants)]
        by_shard = [[] for _ in range(self.N)]
        for t in self.tenants:
            by_shard[self.shard_of(t)].append(t)
        for i, ts in enumerate(by_shard):
            if ts:
                self.shards[i].q("INSERT INTO tenants (id) VALUES " + ",".join(f"('{t}')" for t in ts))
        # initial sites: bulk INSERT ... SELECT per shard (the trigger folds each statement)
        per = [0] * self.N
        for _ in range(a.sites):
            per[self.shard_of(rng.choice(self.tenants))] += 1
        for i, n in enumerate(per):
            if n and by_shard[i]:
                self.shards[i].q(f"""
                    INSERT INTO sites (id, tenant_id, vps_id, storage_used_mb, deleted_at)
                    SELECT gen_random_uuid(), t.ids[1 + (random() * (cardinality(t.ids) - 1))::int],
                           v.ids[1 + (random() * (cardinality(v.ids) - 1))::int], (random() * 5000)::bigint,
                           CASE WHEN random() < 0.1 THEN now()::timestamp END
                      FROM generate_series(1, {n}),
                           (SELECT ARRAY['{"','".join(by_shard[i])}']::uuid[] AS ids) t,
                           (SELECT ARRAY['{"','".join(self.vps)}']::uuid[] AS ids) v""")
        self.propagate()
        for s in self.shards:
            s.q("VACUUM ANALYZE")
        self.coord.q("VACUUM ANALYZE")

    def shard_of(self, tenant):
        return uuid.UUID(tenant).int % self.N

    # -- the propagator -----------------------------------------------------------------------------------------
    def propagate(self):
        """Exactly-once: rows of finished transactions only (xid < snapshot xmin), applied with the watermark in one
        coordinator transaction, then pruned on the shard. Returns (delta rows moved, VPS rows touched)."""
        moved = touched = 0
        marks = dict(r.split("|") for r in self.coord.q("SELECT shard, applied_xmin FROM shard_watermark"))
        for i, s in enumerate(self.shards):
            lo = marks[str(i)]
            rows = s.q(f"""
                WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS hi)
                SELECT 'H', (SELECT hi FROM snap), NULL, NULL
                UNION ALL
                SELECT 'D', NULL, vps_id::text, sum(delta) FROM vps_delta, snap
                 WHERE xid >= '{lo}'::xid8 AND xid < snap.hi GROUP BY vps_id
                UNION ALL
                SELECT 'C', NULL, NULL, count(*) FROM vps_delta, snap WHERE xid >= '{lo}'::xid8 AND xid < snap.hi""")
            hi = next(r.split("|")[1] for r in rows if r.startswith("H|"))
            deltas = [r.split("|")[2:] for r in rows if r.startswith("D|")]
            moved += int(next(r.split("|")[3] for r in rows if r.startswith("C|")))
            deltas = [(v, int(d)) for v, d in deltas if int(d) != 0]
            touched += len(deltas)
            ids = ",".join(v for v, _ in deltas)
            ds = ",".join(str(d) for _, d in deltas)
            self.coord.q(f"""
                BEGIN;
                SELECT 1 FROM shard_watermark WHERE shard = {i} AND applied_xmin = '{lo}'::xid8 FOR UPDATE;
                INSERT INTO vps_load AS l (vps_id, live_sites)
                SELECT d.id, d.n FROM unnest('{{{ids}}}'::uuid[], '{{{ds}}}'::int[]) AS d(id, n) ORDER BY d.id
                    ON CONFLICT (vps_id) DO UPDATE SET live_sites = l.live_sites + excluded.live_sites;
                UPDATE shard_watermark SET applied_xmin = '{hi}'::xid8 WHERE shard = {i};
                COMMIT""")
            s.q(f"DELETE FROM vps_delta WHERE xid < '{hi}'::xid8")
        return moved, touched

    # -- truth ----------------------------------------------------------------------------------------------------
    def recount(self):
        """The drift check as a distributed query: count live sites per VPS on every shard, in parallel, and sum."""
        for s in self.shards:
            s.send("SELECT vps_id, count(*) FROM sites WHERE deleted_at IS NULL AND vps_id IS NOT NULL GROUP BY vps_id")
        total = {}
        for s in self.shards:
            for r in s.recv():
                v, n = r.split("|")
                total[v] = total.get(v, 0) + int(n)
        return total

    def coord_counts(self):
        return {v: int(n) for v, n in (r.split("|") for r in self.coord.q("SELECT vps_id, live_sites FROM vps_load"))}

    def drift(self):
        truth, cached = self.recount(), self.coord_counts()
        errs = [abs(cached.get(v, 0) - truth.get(v, 0)) for v in set(truth) | set(cached)]
        return sum(1 for e in errs if e), sum(errs), max(errs, default=0)

    def tenant_drift(self):
        n = 0
        for s in self.shards:
            n += int(s.one("""
                SELECT count(*) FROM tenants t
                  LEFT JOIN (SELECT tenant_id, count(*) c, sum(storage_used_mb) mb FROM sites
                              WHERE deleted_at IS NULL GROUP BY tenant_id) l ON l.tenant_id = t.id
                 WHERE (t.cached_sites_count, t.cached_storage_mb) IS DISTINCT FROM
                       (coalesce(l.c, 0), coalesce(l.mb, 0))"""))
        return n

    # -- workload ---------------------------------------------------------------------------------------------------
    def pick(self):
        return self.coord.q(f"BEGIN; {PICK}; ROLLBACK")[0]

    def random_site(self, shard, live=True):
        cond = "deleted_at IS NULL" if live else "deleted_at IS NOT NULL"
        return self.shards[shard].one(
            f"SELECT id, tenant_id, vps_id, storage_used_mb FROM sites TABLESAMPLE SYSTEM (2) WHERE {cond} LIMIT 1")

    def step(self, counts):
        rng = self.rng
        op = rng.choices(["insert", "soft_delete", "restore", "delete", "vps_move", "tenant_move", "evacuate"],
                         weights=[40, 15, 8, 10, 15, 10, 2])[0]
        counts[op] = counts.get(op, 0) + 1
        if op == "insert":
            tenant = rng.choice(self.tenants)
            vps = self.pick()                                   # placed by the (possibly stale) coordinator count
            self.placed[vps] = self.placed.get(vps, 0) + 1
            n = rng.choice([1, 1, 1, 3])                        # multi-row INSERT now and then
            vals = ",".join(f"(gen_random_uuid(), '{tenant}', '{vps}', {rng.randint(0, 5000)})" for _ in range(n))
            self.shards[self.shard_of(tenant)].q(
                f"INSERT INTO sites (id, tenant_id, vps_id, storage_used_mb) VALUES {vals}")
            return
        shard = rng.randrange(self.N)
        s = self.shards[shard]
        if op == "evacuate":                                    # one statement on every shard: VPS a -> VPS b
            a, b = rng.sample(self.vps, 2)
            for t in self.shards:
                t.send(f"UPDATE sites SET vps_id = '{b}' WHERE vps_id = '{a}'")
            for t in self.shards:
                t.recv()
            return
        row = self.random_site(shard, live=(op != "restore"))
        if not row:
            return
        sid, tenant, vps, mb = row.split("|")
        if op == "soft_delete":
            s.q(f"UPDATE sites SET deleted_at = now() WHERE id = '{sid}'")
        elif op == "restore":
            s.q(f"UPDATE sites SET deleted_at = NULL WHERE id = '{sid}'")
        elif op == "delete":
            s.q(f"DELETE FROM sites WHERE id = '{sid}'")
        elif op == "vps_move":
            s.q(f"UPDATE sites SET vps_id = '{rng.choice(self.vps)}' WHERE id = '{sid}'")
        elif op == "tenant_move":                               # distribution key change = delete + insert
            new_tenant = rng.choice(self.tenants)
            dst = self.shards[self.shard_of(new_tenant)]
            s.q(f"DELETE FROM sites WHERE id = '{sid}'")
            dst.q(f"INSERT INTO sites (id, tenant_id, vps_id, storage_used_mb) "
                  f"VALUES ('{sid}', '{new_tenant}', {'NULL' if not vps else repr(vps)}, {mb or 0})")

    # -- latency ------------------------------------------------------------------------------------------------------
    def scatter_pick(self):
        for s in self.shards:
            s.send("SELECT vps_id, count(*) FROM sites WHERE deleted_at IS NULL AND vps_id IS NOT NULL GROUP BY vps_id")
        total = dict.fromkeys(self.eligible, 0)
        for s in self.shards:
            for r in s.recv():
                v, n = r.split("|")
                if v in total:
                    total[v] += int(n)
        return min(total, key=lambda v: (total[v], v))

    def latency(self, reps):
        for _ in range(20):                                     # warm-up (plans, caches)
            self.pick(); self.scatter_pick()
        pick, scatter = [], []
        for _ in range(reps):
            t0 = time.perf_counter(); self.pick(); pick.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); self.scatter_pick(); scatter.append(time.perf_counter() - t0)
        # server-side time of one pick, without the client round trip
        ex = self.coord.q(f"BEGIN; EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) {PICK}; ROLLBACK")
        srv = next((l for l in ex if "Execution Time" in l), "").split(":")[-1].strip()
        shard_srv = []
        for s in self.shards:
            ex = s.q("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT vps_id, count(*) FROM sites "
                     "WHERE deleted_at IS NULL AND vps_id IS NOT NULL GROUP BY vps_id")
            shard_srv.append(float(next(l for l in ex if "Execution Time" in l).split(":")[-1].split()[0]))
        return pick, scatter, srv, max(shard_srv)

    # -- the outbox commit-order hazard ----------------------------------------------------------------------------
    def interleaving(self, sock, port):
        """A takes an outbox sequence number first but commits last. A sequence watermark read between B's and
        A's commit skips A's delta for good; the xid < xmin watermark waits for A."""
        # two tenants of shard 0: the same tenant would make B wait for A's tenant row lock
        tenant, tenant_b = [t for t in self.tenants if self.shard_of(t) == 0][:2]
        v = self.vps[0]
        a, b = Session(sock, port, "shard_0"), Session(sock, port, "shard_0")
        s0 = self.shards[0]
        seq_mark = int(s0.one("SELECT coalesce(max(seq), 0) FROM vps_delta"))
        before = self.coord_counts().get(v, 0)
        a.q(f"BEGIN; INSERT INTO sites (id, tenant_id, vps_id) VALUES (gen_random_uuid(), '{tenant}', '{v}')")
        b.q(f"BEGIN; INSERT INTO sites (id, tenant_id, vps_id) VALUES (gen_random_uuid(), '{tenant_b}', '{v}'); COMMIT")
        # naive propagator: everything visible above the last sequence number, then watermark = max(seq) seen
        seen = s0.q(f"SELECT seq, delta FROM vps_delta WHERE seq > {seq_mark} AND vps_id = '{v}'")
        naive_applied = sum(int(r.split("|")[1]) for r in seen)
        seq_mark = max([seq_mark] + [int(r.split("|")[0]) for r in seen])
        moved_mid, _ = self.propagate()                         # xid watermark: B is finished, A is not
        mid = self.coord_counts().get(v, 0) - before
        a.q("COMMIT")
        late = s0.q(f"SELECT seq, delta FROM vps_delta WHERE seq > {seq_mark} AND vps_id = '{v}'")
        naive_applied += sum(int(r.split("|")[1]) for r in late)
        self.propagate()
        after = self.coord_counts().get(v, 0) - before
        a.close(); b.close()
        return naive_applied, mid, after, moved_mid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small scale (a few seconds)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--vps", type=int, default=500)
    ap.add_argument("--tenants", type=int, default=5000)
    ap.add_argument("--sites", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--ops", type=int, default=100, help="writes per round, between two propagations")
    ap.add_argument("--reps", type=int, default=200, help="pick latency samples")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    a = ap.parse_args()
    if a.quick:
        a.vps, a.tenants, a.sites, a.rounds, a.ops, a.reps = 100, 1000, 20000, 6, 50, 60
    a.rounds, a.ops, a.reps = min(a.rounds, 1000), min(a.ops, 10000), min(a.reps, 10000)   # bounded loops

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))     # so that the finally clause stops the server
    base, data, sock, port = start_server()
    sim = Sim(a)
    ok = True
    try:
        t0 = time.perf_counter()
        sim.setup(sock, port)
        print(f"setup: {a.shards} shard databases + coordinator on one Postgres 15 (unix socket {sock}, port {port}); "
              f"{a.vps} VPSes ({len(sim.eligible)} eligible), {a.tenants} tenants, {a.sites} sites "
              f"[{time.perf_counter() - t0:.1f}s]")
        rows = [s.one("SELECT count(*) FROM sites") for s in sim.shards]
        print(f"sites per shard: {', '.join(rows)}")
        d = sim.drift()
        print(f"after initial load + propagation: {d[0]} VPS counts differ from the recount; "
              f"{sim.tenant_drift()} tenant aggregates differ")

        print(f"\n== workload: {a.rounds} rounds x {a.ops} writes, propagation after each round ==")
        counts, stale, prop_ms, moved_rows, exact_rounds, herd = {}, [], [], [], 0, []
        for r in range(a.rounds):
            sim.placed = {}
            for _ in range(a.ops):
                sim.step(counts)
            stale.append(sim.drift())                            # before propagation: how stale is the coordinator
            herd.append((max(sim.placed.values(), default=0), sum(sim.placed.values()), len(sim.placed)))
            t0 = time.perf_counter()
            moved, touched = sim.propagate()
            prop_ms.append((time.perf_counter() - t0) * 1000)
            moved_rows.append(moved)
            if sim.drift() == (0, 0, 0):
                exact_rounds += 1
        print("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(f"before propagation (staleness): VPS rows off by >0: median {statistics.median(x[0] for x in stale)}, "
              f"max {max(x[0] for x in stale)}; largest error on one VPS: {max(x[2] for x in stale)} sites; "
              f"total abs error median {statistics.median(x[1] for x in stale)}")
        print(f"propagation: median {statistics.median(prop_ms):.1f} ms per round for {a.shards} shards, "
              f"{statistics.median(moved_rows):.0f} outbox rows per round (median)")
        print(f"placement between propagations (autocommit picks, no reservation): per round median "
              f"{statistics.median(h[1] for h in herd):.0f} inserts went to median {statistics.median(h[2] for h in herd):.0f} "
              f"distinct VPS(es), at most {max(h[0] for h in herd)} to one VPS")
        print(f"after propagation: coordinator counts == recount across shards in {exact_rounds}/{a.rounds} rounds")
        td = sim.tenant_drift()
        print(f"tenant aggregates (shard-local, synchronous): {td} tenants differ from a recount")
        ok = ok and exact_rounds == a.rounds and td == 0

        print("\n== outbox commit order: A writes first, B second, B commits, propagate, A commits, propagate ==")
        naive, mid, after, _ = sim.interleaving(sock, port)
        print(f"expected +2 on the VPS; sequence watermark applied +{naive} "
              f"({'LOST a delta' if naive != 2 else 'ok'}); xid<xmin watermark: +{mid} while A was open, "
              f"+{after} after A committed ({'exact' if after == 2 else 'WRONG'})")
        ok = ok and after == 2 and sim.drift() == (0, 0, 0)

        print(f"\n== pick latency ({a.reps} samples each, client round trip over the unix socket) ==")
        pick, scatter, srv, shard_srv = sim.latency(a.reps)
        live = sum(sim.recount().values())
        pm, sm = statistics.median(pick) * 1000, statistics.median(scatter) * 1000
        p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000
        print(f"coordinator pick (index walk, FOR NO KEY UPDATE SKIP LOCKED): median {pm:.3f} ms, p95 {p95(pick):.3f} ms"
              f" (server execution {srv})")
        print(f"scatter-gather count(*) GROUP BY vps_id on {a.shards} shards in parallel ({live} live sites): "
              f"median {sm:.3f} ms, p95 {p95(scatter):.3f} ms (server execution on the slowest shard {shard_srv:.3f} ms)")
        print(f"ratio scatter/pick: {sm / pm:.1f}x (median), {p95(scatter) / p95(pick):.1f}x (p95)")
        print(f"\nresult: {'OK' if ok else 'FAILED'}")
    finally:
        for s in getattr(sim, "shards", []) + ([sim.coord] if hasattr(sim, "coord") else []):
            try:
                s.close()
            except Exception:
                pass
        stop_server(base, data, a.keep)
        if a.keep:
            print(f"data kept in {base}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

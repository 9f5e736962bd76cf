-- bench/sql/report.sql: loads run.sh's raw runs (:res, tab separated) into the results database and defines the
-- views run.sh prints: term_* (terminal tables) and md_* (markdown lines). Figures are medians over the runs;
-- ratios are paired: the median over the runs of each run's own ratio, whose two sides run.sh measured back to back
-- (a minute apart at most), so that a slow spell of the shared machine weighs on both sides of a ratio alike.
-- Deadlock failures (the multi-statement transaction tests) are summed over the runs.
-- psql variables: res (the TSV), bulk (rows of the bulk insert), sites (this run's scale), full (the scale the
-- targets are set for: below it, the targets whose baseline grows with the data get no verdict).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP TABLE IF EXISTS res CASCADE;
CREATE TABLE res (phase text, config text, test text, clients int, rep int, tps numeric, lat_ms numeric, deadlocks int,
                  seq bigserial);
COPY res (phase, config, test, clients, rep, tps, lat_ms, deadlocks) FROM :'res' WITH (FORMAT csv, DELIMITER E'\t');

CREATE VIEW med AS
SELECT phase, config, test, clients, count(*) AS runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)::numeric AS tps,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lat_ms)::numeric AS lat,
       sum(deadlocks) AS deadlocks
  FROM res GROUP BY 1, 2, 3, 4;

CREATE FUNCTION m(p text, c text, t text, n int, what text) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE what WHEN 'tps' THEN tps ELSE lat END FROM med
     WHERE phase = p AND config = c AND test = t AND clients = n
$$;
-- the paired ratio of config a's test ta to config b's test tb (phase p, n clients): the median over the runs of
-- a's value / b's value in the same run; what: 'tps', 'lat' or 'v' (throughput, or the time of a bulk insert)
CREATE FUNCTION pr(p text, a text, ta text, b text, tb text, n int, what text) RETURNS numeric LANGUAGE sql STABLE AS $$
    WITH runs AS (SELECT config, test, rep,
                         CASE what WHEN 'tps' THEN tps WHEN 'lat' THEN lat_ms ELSE coalesce(tps, lat_ms) END AS v
                    FROM res WHERE phase = p AND clients = n)
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.v / y.v)::numeric
      FROM runs x JOIN runs y USING (rep)
     WHERE x.config = a AND x.test = ta AND y.config = b AND y.test = tb AND y.v > 0
$$;
-- the same for one write test: config a against config b
CREATE FUNCTION wr(a text, b text, t text, n int) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT pr('write', a, t, b, t, n, 'v')
$$;
CREATE FUNCTION f(x numeric, digits int DEFAULT 1) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(to_char(round(x, digits), 'FM999999990' || CASE WHEN digits > 0 THEN '.' || repeat('0', digits) ELSE '' END), '-')
$$;
CREATE FUNCTION ratio(a numeric, b numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN b > 0 THEN a / b END
$$;
-- deadlock failures none / seed / chom ('' where pgbench did not count them)
CREATE FUNCTION dl(n numeric, s numeric, c numeric) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(n, s, c) IS NOT NULL
                THEN concat_ws(' / ', coalesce(n::text, '-'), coalesce(s::text, '-'), coalesce(c::text, '-')) ELSE '' END
$$;
CREATE FUNCTION fx(r numeric) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r IS NULL THEN '-' ELSE f(r, 2) || 'x' END
$$;

CREATE VIEW reads AS
SELECT o.ord, o.test,
       m('read', 'before', o.test, 1, 'tps') AS b_tps, m('read', 'before', o.test, 1, 'lat') AS b_lat,
       m('read', 'seed', o.test, 1, 'tps') AS s_tps, m('read', 'seed', o.test, 1, 'lat') AS s_lat,
       m('read', 'chom', o.test, 1, 'tps') AS c_tps, m('read', 'chom', o.test, 1, 'lat') AS c_lat,
       pr('read', 'chom', o.test, 'chom', 'pk read, biggest', 1, 'tps') AS c_pk
  FROM (VALUES (1, 'pk read, biggest'), (2, 'pk read, random'), (3, 'tenant stats, biggest'),
               (4, 'tenant stats, random'), (5, 'pick vps'), (6, 'list sites, random'),
               (7, 'tenant quota, random'), (8, 'live COUNT/SUM, biggest')) o(ord, test);

-- the write tests and their targets against no trigger (goal: minimum throughput ratio; bulk: maximum time ratio)
CREATE VIEW write_tests AS
SELECT * FROM (VALUES (1, 'single%', 0.85), (2, 'insert%', 0.80), (3, '3-tenant tx%', 0.75), (4, '20-update tx%', 0.85),
                      (5, 'bulk%', 1.05)) v(grp, pattern, goal);

CREATE VIEW writes AS
SELECT row_number() OVER (ORDER BY min(t.grp), m.test, m.clients) AS ord,
       m.test, m.clients, m.test || ', ' || m.clients || ' client' || CASE WHEN m.clients > 1 THEN 's' ELSE '' END AS label,
       m.test LIKE 'bulk%' AS is_bulk, min(t.goal) AS goal,
       max(CASE config WHEN 'none' THEN coalesce(tps, lat) END) AS n_v,
       max(CASE config WHEN 'seed' THEN coalesce(tps, lat) END) AS s_v,
       max(CASE config WHEN 'chom' THEN coalesce(tps, lat) END) AS c_v,
       max(CASE config WHEN 'floor' THEN coalesce(tps, lat) END) AS f_v,
       wr('chom', 'none', m.test, m.clients) AS c_n, wr('chom', 'floor', m.test, m.clients) AS c_f,
       wr('floor', 'none', m.test, m.clients) AS f_n, wr('journal', 'none', m.test, m.clients) AS j_n,
       max(CASE config WHEN 'none' THEN deadlocks END) AS n_dl,
       max(CASE config WHEN 'seed' THEN deadlocks END) AS s_dl,
       max(CASE config WHEN 'chom' THEN deadlocks END) AS c_dl
  FROM med m LEFT JOIN write_tests t ON m.test LIKE t.pattern
 WHERE phase = 'write' GROUP BY m.test, m.clients;

-- scaled: the baseline grows with the data (live COUNT/SUM, withCount, the seed's recount of the biggest tenant),
-- so the goal is set for :full sites and a smaller run shows the ratio without a verdict ('1M only'). op '= 0':
-- cnt (deadlock failures of chom, summed over the runs) must be 0.
CREATE VIEW targets AS
WITH r AS (SELECT * FROM reads), w AS (SELECT * FROM writes), pk AS (SELECT c_lat FROM r WHERE ord = 1)
SELECT t.ord, t.target, t.baseline, t.measured, t.ratio, g.goal, t.scaled,
       CASE WHEN t.op = '= 0' THEN CASE WHEN t.cnt IS NULL THEN 'n/a' WHEN t.cnt = 0 THEN 'PASS' ELSE 'MISS' END
            WHEN t.op = 'stated' THEN CASE WHEN t.measured IS NULL THEN 'n/a' ELSE 'stated' END
            WHEN t.ratio IS NULL THEN 'n/a' WHEN t.op IN ('info', 'bound', 'floor', 'journal') THEN 'reference'
            WHEN t.scaled AND :sites < :full THEN '1M only'
            WHEN (t.op = '>=' AND t.ratio >= t.limit_) OR (t.op = '<=' AND t.ratio <= t.limit_) THEN 'PASS'
            ELSE 'MISS' END AS result
  FROM (
    -- the seed's live COUNT/SUM is run again in chom's phase, beside chom's read, for a paired ratio
    SELECT 1, 'tenant stats, biggest tenant: chom vs live COUNT/SUM (the seed''s query)', f(live.c_tps) || ' tps',
           f(r.c_tps) || ' tps', pr('read', 'chom', r.test, 'chom', live.test, 1, 'tps'), '>=', 20.0, true, NULL::numeric
      FROM r, r live WHERE r.ord = 3 AND live.ord = 8
    UNION ALL
    SELECT 2, 'tenant stats, biggest tenant: chom latency vs PK read', f(pk.c_lat, 3) || ' ms', f(r.c_lat, 3) || ' ms',
           pr('read', 'chom', r.test, 'chom', 'pk read, biggest', 1, 'lat'), '<=', 2.0, false, NULL FROM r, pk WHERE ord = 3
    UNION ALL
    SELECT 3, 'pick VPS: chom_pick_vps() vs withCount query (seed)', f(s_tps) || ' tps', f(c_tps) || ' tps',
           ratio(c_tps, s_tps), '>=', 50.0, true, NULL FROM r WHERE ord = 5
    UNION ALL
    SELECT 4, 'pick VPS: chom latency vs PK read', f(pk.c_lat, 3) || ' ms', f(r.c_lat, 3) || ' ms',
           pr('read', 'chom', r.test, 'chom', 'pk read, biggest', 1, 'lat'), '<=', 1.2, false, NULL FROM r, pk WHERE ord = 5
    UNION ALL
    SELECT 4.5, 'tenant quota (random tenant): chom_tenant_quota() latency vs PK read', f(pkr.c_lat, 3) || ' ms',
           f(q.c_lat, 3) || ' ms', pr('read', 'chom', q.test, 'chom', pkr.test, 1, 'lat'), '<=', 2.0, false, NULL
      FROM r q, r pkr WHERE q.ord = 7 AND pkr.ord = 2
    UNION ALL
    SELECT 5, 'bulk insert (' || :'bulk' || ' rows): chom time vs no trigger', f(n_v) || ' ms', f(c_v) || ' ms',
           c_n, '<=', goal, false, NULL FROM w WHERE is_bulk
    UNION ALL
    SELECT 19, 'bulk insert, tenants packed at fillfactor 100: chom time vs no trigger', f(n) || ' ms', f(c) || ' ms',
           cn, 'info', 1.25, false, NULL
      FROM (SELECT m('write', 'none-ff100', test, 1, 'lat') AS n, m('write', 'chom-ff100', test, 1, 'lat') AS c,
                   wr('chom-ff100', 'none-ff100', test, 1) AS cn
              FROM w WHERE is_bulk) ff WHERE c IS NOT NULL
    UNION ALL
    SELECT 5 + ord, label || ': chom vs no trigger',
           f(n_v) || ' tps', f(c_v) || ' tps', c_n, '>=', coalesce(goal, 0.70), false, NULL FROM w WHERE NOT is_bulk
    UNION ALL
    SELECT 5.25 + ord, label || ': chom vs the same maintenance by hand (floor)',
           f(f_v) || ' tps', f(c_v) || ' tps', c_f, '>=', 0.90, false, NULL FROM w WHERE f_v IS NOT NULL
    UNION ALL
    -- the floor's own ratio: what chom's design reaches at most (the busy tenant's floor spills every commit)
    SELECT 5.3 + ord, label || ': the floor vs no trigger',
           f(n_v) || ' tps', f(f_v) || ' tps', f_n,
           CASE WHEN test LIKE 'insert, biggest%' AND clients > 1 THEN 'bound' ELSE 'floor' END, goal, false, NULL
      FROM w WHERE f_v IS NOT NULL
    UNION ALL
    -- one unindexed journal row per writing commit (bench/pgbench/journal_*.sql): what a design that writes no
    -- aggregate at commit, and folds a journal later, reaches at most
    SELECT 5.35 + ord, label || ': a journal row per commit by hand vs no trigger',
           f(n_v) || ' tps', f(j) || ' tps', j_n, 'journal', goal, false, NULL
      FROM (SELECT w.*, m('write', 'journal', w.test, w.clients, 'tps') AS j FROM w) wj WHERE j IS NOT NULL
    UNION ALL
    SELECT 5.5 + ord, label || ': deadlock failures with chom',
           concat_ws(', ', 'none ' || n_dl, 'seed ' || s_dl), coalesce(c_dl::text, '-'), NULL, '= 0', 0, false, c_dl
      FROM w WHERE test LIKE '3-tenant tx%'
    UNION ALL
    -- the busy tenant (issue 23): the quota on with the tenant far from its limit; its stats read beside 16 writers
    -- against a PK read beside them; the lag of tenants.cached_sites_count read directly
    SELECT 5.75 + ord, test || ', ' || clients || ' clients, quota on (far from the limit): chom vs no trigger',
           f(n_v) || ' tps', f(q) || ' tps', wr('chom-quota', 'none', test, clients), '>=', 0.80, false, NULL
      FROM (SELECT w.*, m('write', 'chom-quota', w.test, w.clients, 'tps') AS q FROM w) wq WHERE q IS NOT NULL
    UNION ALL
    -- the same against its floor: a delta row, the VPS's count and the headroom read a spill must do, by hand,
    -- with the fold running (bench/pgbench/floor_busy_insert_quota.sql); the floor's own ratio to no trigger
    -- bounds what any design that spills and sums the deltas can reach
    SELECT 5.8 + ord, test || ', ' || clients || ' clients, quota on (far from the limit): chom vs the same by hand (floor)',
           f(fq) || ' tps', f(q) || ' tps', wr('chom-quota', 'floor-quota', test, clients), '>=', 0.90, false, NULL
      FROM (SELECT w.*, m('write', 'chom-quota', w.test, w.clients, 'tps') AS q,
                   m('write', 'floor-quota', w.test, w.clients, 'tps') AS fq FROM w) wq
     WHERE q IS NOT NULL AND fq IS NOT NULL
    UNION ALL
    SELECT 5.85 + ord, test || ', ' || clients || ' clients, quota on (far from the limit): the floor vs no trigger',
           f(n_v) || ' tps', f(fq) || ' tps', wr('floor-quota', 'none', test, clients), 'bound', 0.80, false, NULL
      FROM (SELECT w.*, m('write', 'floor-quota', w.test, w.clients, 'tps') AS fq FROM w) wq WHERE fq IS NOT NULL
    UNION ALL
    SELECT 18, 'tenant stats of the busy tenant beside 16 writers: chom latency vs PK read beside them',
           f(pk, 3) || ' ms', f(st, 3) || ' ms',
           pr('busy', 'chom', 'tenant stats, biggest, beside 16 writers', 'chom', 'pk read, biggest, beside 16 writers', 1, 'lat'),
           '<=', 2.0, false, NULL
      FROM (SELECT m('busy', 'chom', 'pk read, biggest, beside 16 writers', 1, 'lat') AS pk,
                   m('busy', 'chom', 'tenant stats, biggest, beside 16 writers', 1, 'lat') AS st) b WHERE st IS NOT NULL
    UNION ALL
    SELECT 18.5, 'lag of tenants.cached_sites_count read directly, 16 writers: oldest unfolded delta, p50 / p99',
           '-', f(p50) || ' / ' || f(p99) || ' ms', NULL, 'stated', NULL, false, NULL
      FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)::numeric AS p50,
                   max(lat_ms) AS p99 FROM res WHERE phase = 'lag') l WHERE p99 IS NOT NULL
    UNION ALL
    SELECT 20 + ord, label || ': chom vs seed recount trigger',
           f(s_v) || ' tps', f(c_v) || ' tps', ratio(c_v, s_v), '>=', 3.0, true, NULL FROM w WHERE test LIKE 'insert, biggest%'
  ) t(ord, target, baseline, measured, ratio, op, limit_, scaled, cnt)
  CROSS JOIN LATERAL (SELECT CASE t.op WHEN 'info' THEN 'none (what the fillfactor buys)'
                                       WHEN 'bound' THEN 'none (what any spilling design reaches at most)'
                                       WHEN 'floor' THEN 'none (what exact aggregates written by each commit reach at most)'
                                       WHEN 'journal' THEN 'none (what one journal row per commit reaches at most)'
                                       WHEN '= 0' THEN '0 deadlocks'
                                       WHEN 'stated' THEN 'measured and stated'
                                       ELSE t.op || ' ' || t.limit_ || 'x' END AS goal) g;

CREATE VIEW term_reads AS
SELECT test AS "read (1 client)", f(b_tps) AS "before tps", f(b_lat, 3) AS "before ms", f(s_tps) AS "seed tps",
       f(s_lat, 3) AS "seed ms", f(c_tps) AS "chom tps", f(c_lat, 3) AS "chom ms",
       fx(ratio(c_tps, s_tps)) AS "chom/seed", fx(ratio(c_tps, b_tps)) AS "chom/before",
       fx(c_pk) AS "chom/pk"
  FROM reads ORDER BY ord;

CREATE VIEW term_writes AS
SELECT test AS "write", clients AS "clients", CASE WHEN is_bulk THEN 'ms' ELSE 'tps' END AS unit,
       f(n_v) AS "none", f(s_v) AS "seed", f(f_v) AS "floor", f(c_v) AS "chom",
       fx(c_n) AS "chom/none", fx(ratio(c_v, s_v)) AS "chom/seed", fx(c_f) AS "chom/floor",
       dl(n_dl, s_dl, c_dl) AS "deadlocks none / seed / chom"
  FROM writes ORDER BY ord;

CREATE VIEW term_targets AS
SELECT target, baseline, measured, fx(ratio) AS ratio, goal, result FROM targets ORDER BY ord;

CREATE VIEW md_targets AS
SELECT 0 AS ord, '| target | baseline | chom | ratio | goal | result |' AS line
UNION ALL SELECT 1, '|---|---:|---:|---:|---|---|'
UNION ALL SELECT 10 + row_number() OVER (ORDER BY ord),
       format('| %s | %s | %s | %s | %s | **%s** |', target, baseline, measured, fx(ratio), goal, result)
  FROM targets;

CREATE VIEW md_reads AS
SELECT 0 AS ord, '| read | before tps | before ms | seed tps | seed ms | chom tps | chom ms | chom/seed | chom/before | chom/PK read |' AS line
UNION ALL SELECT 1, '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
UNION ALL SELECT 10 + ord, format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |', test, f(b_tps), f(b_lat, 3), f(s_tps), f(s_lat, 3),
       f(c_tps), f(c_lat, 3), fx(ratio(c_tps, s_tps)), fx(ratio(c_tps, b_tps)),
       fx(c_pk))
  FROM reads;

CREATE VIEW md_writes AS
SELECT 0 AS ord, '| write | clients | unit | none | seed | floor | chom | chom/none | chom/seed | chom/floor | deadlocks none / seed / chom |' AS line
UNION ALL SELECT 1, '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|'
UNION ALL SELECT 10 + ord, format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |', test, clients, CASE WHEN is_bulk THEN 'ms' ELSE 'tps' END,
       f(n_v), f(s_v), f(f_v), f(c_v), fx(c_n), fx(ratio(c_v, s_v)), fx(c_f), dl(n_dl, s_dl, c_dl))
  FROM writes;

-- the other seed-index query shapes (phase 'shape'), in the order run.sh ran them
CREATE VIEW shapes AS
SELECT row_number() OVER (ORDER BY min(first_seq)) AS ord, test,
       max(CASE config WHEN 'before' THEN tps END) AS b_tps, max(CASE config WHEN 'before' THEN lat END) AS b_lat,
       max(CASE config WHEN 'seed' THEN tps END) AS s_tps, max(CASE config WHEN 'seed' THEN lat END) AS s_lat,
       max(CASE config WHEN 'chom' THEN tps END) AS c_tps, max(CASE config WHEN 'chom' THEN lat END) AS c_lat
  FROM (SELECT m.*, (SELECT min(r.seq) FROM res r WHERE r.phase = m.phase AND r.test = m.test) AS first_seq
          FROM med m WHERE phase = 'shape') x
 GROUP BY test;

CREATE VIEW term_shapes AS
SELECT test AS "seed-index shape (1 client)", f(b_tps) AS "before tps", f(b_lat, 3) AS "before ms", f(s_tps) AS "seed tps",
       f(s_lat, 3) AS "seed ms", f(c_tps) AS "chom tps", f(c_lat, 3) AS "chom ms",
       fx(ratio(s_tps, b_tps)) AS "seed/before", fx(ratio(c_tps, s_tps)) AS "chom/seed"
  FROM shapes ORDER BY ord;

CREATE VIEW md_shapes AS
SELECT 0 AS ord, '| query shape | before tps | before ms | seed tps | seed ms | chom tps | chom ms | seed/before | chom/seed |' AS line
UNION ALL SELECT 1, '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
UNION ALL SELECT 10 + ord, format('| %s | %s | %s | %s | %s | %s | %s | %s | %s |', test, f(b_tps), f(b_lat, 3), f(s_tps), f(s_lat, 3),
       f(c_tps), f(c_lat, 3), fx(ratio(s_tps, b_tps)), fx(ratio(c_tps, s_tps)))
  FROM shapes;

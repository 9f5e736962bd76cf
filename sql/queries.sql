-- The statements chom runs against CHOM's tables, one per "-- name:" block, loaded by src/schema/queries.rs,
-- and the rules several of them share, one per "-- fragment:" block.
-- Placeholders, replaced with quoted names when chom runs them: {tenants}, {sites}, {vps_servers} (CHOM's
-- tables in the schema chom was installed on), {tenants.cached_at} and the like (the columns chom uses, under
-- their current names: chom follows the application's renames), {chom} (chom's own schema), {live_sites} (the
-- block of that name, inlined), {vps_rows}, {recount_tenants}, {settled_vps} and {unfolded} (likewise), and
-- {eligible} (the fragment of that name). Each "-- name:" block has a variant of queries::Query; a placeholder
-- left after rendering is an error. "$1::uuid[] IS NULL OR " (and "$1::uuid IS NULL OR ") reads a NULL first
-- argument as "every row": called with one, a statement is prepared without that alternative
-- (src/pg/plans.rs), since a generic plan cannot use an index under it.
-- A tenant's stored aggregates are its cached columns plus its rows of chom.tenant_deltas not yet folded
-- ({unfolded}, src/maintain/deltas.rs): every read below adds them.
-- Counted sites are those with deleted_at IS NULL; storage is the sum of their storage_used_mb.
-- The read queries lay the calling transaction's pending changes (src/maintain/pending.rs) over the stored values, so
-- that a transaction sees its own writes: pending ids with their changes as parallel arrays, a boolean for
-- "the stored counts restart from zero at commit" (sites or vps_servers truncated in this transaction), and
-- the ids recounted at commit, whose value is a recount.

-- fragment: eligible
-- chom_pick_vps()'s eligibility rule for a VPS v of {vps_servers}, $1 the healthy states (chom.eligible_health):
-- active, shared and healthy. chom.vps_load_pick's predicate and src/api/placement.rs's walk apply the same rule.
v.{vps_servers.status} = 'active' AND v.{vps_servers.allocation_type} = 'shared' AND v.{vps_servers.health_status} = ANY ($1::text[])

-- name: live_sites
-- Live sites and storage per tenant, for the tenants in $1 (every tenant when $1 is NULL).
SELECT s.{sites.tenant_id} AS tenant_id, count(*) AS sites_count, coalesce(sum(s.{sites.storage_used_mb}), 0) AS storage_mb
  FROM {sites} s
 WHERE s.{sites.deleted_at} IS NULL AND ($1::uuid[] IS NULL OR s.{sites.tenant_id} = ANY ($1::uuid[]))
 GROUP BY s.{sites.tenant_id}

-- name: unfolded
-- The unfolded deltas of tenant t (joined LATERAL to a row of {tenants} named t): zero when there are none.
SELECT coalesce(sum(d.sites), 0) AS sites, coalesce(sum(d.storage_mb), 0) AS storage_mb
  FROM {chom}.tenant_deltas d
 WHERE d.tenant_id = t.{tenants.id}

-- name: recount_tenants
-- Recomputes the cached aggregates of the tenants in $1 (every tenant when NULL) and stamps cached_at.
-- Callers lock those tenant rows first, in id order, so that no concurrent trigger delta is lost.
WITH live AS ({live_sites})
UPDATE {tenants} t
   SET {tenants.cached_sites_count} = coalesce(l.sites_count, 0),
       {tenants.cached_storage_mb}  = coalesce(l.storage_mb, 0),
       {tenants.cached_at}          = localtimestamp(0)
  FROM {tenants} t0
  LEFT JOIN live l ON l.tenant_id = t0.{tenants.id}
 WHERE t.{tenants.id} = t0.{tenants.id} AND ($1::uuid[] IS NULL OR t0.{tenants.id} = ANY ($1::uuid[]))

-- name: tenant_drift
-- Tenants (those in $1, every one when NULL) whose stored aggregates differ from a recount of their live
-- sites, with the calling transaction's pending changes laid over the cached values: $2, $3, $4 the pending
-- tenant ids, site and storage changes; $5 true when sites was truncated in it (the cached values restart
-- from zero at commit); $6 the tenants it recounts at commit (exact by then, so never drift).
WITH live AS ({live_sites}),
pending AS (SELECT * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) AS p(id, sites, storage)),
cached AS (
    SELECT t.{tenants.id} AS id,
           CASE WHEN $5::boolean THEN 0 ELSE t.{tenants.cached_sites_count} + u.sites END + coalesce(p.sites, 0) AS sites_count,
           CASE WHEN $5::boolean THEN 0 ELSE t.{tenants.cached_storage_mb} + u.storage_mb END + coalesce(p.storage, 0) AS storage_mb
      FROM {tenants} t
      CROSS JOIN LATERAL ({unfolded}) u
      LEFT JOIN pending p ON p.id = t.{tenants.id}
     WHERE ($1::uuid[] IS NULL OR t.{tenants.id} = ANY ($1::uuid[])) AND t.{tenants.id} <> ALL ($6::uuid[])
)
SELECT c.id, c.sites_count::integer, coalesce(l.sites_count, 0)::bigint,
       c.storage_mb::bigint, coalesce(l.storage_mb, 0)::bigint
  FROM cached c
  LEFT JOIN live l ON l.tenant_id = c.id
 WHERE (c.sites_count, c.storage_mb) IS DISTINCT FROM (coalesce(l.sites_count, 0), coalesce(l.storage_mb, 0))
 ORDER BY c.id

-- name: lock_tenants
-- Row locks on tenants, always taken in id order (the commit's lock order, see src/maintain/commit.rs).
-- Returns the ctid of each locked row version (the latest one: a row updated concurrently is followed to its
-- new version before it is locked), which nobody else can change until the transaction ends.
SELECT t.{tenants.id}, t.ctid
  FROM {tenants} t
 WHERE t.{tenants.id} = ANY ($1::uuid[])
 ORDER BY t.{tenants.id}
   FOR NO KEY UPDATE OF t

-- name: lock_all_tenants
-- Row locks on every tenant, in id order: the commit of a transaction that changed more tenants than a fold
-- keeps (src/maintain/pending.rs) recounts them all.
SELECT t.{tenants.id} FROM {tenants} t ORDER BY t.{tenants.id} FOR NO KEY UPDATE OF t

-- name: recount_all_tenants
-- Recomputes every tenant's aggregates ($1 NULL: every tenant; rows locked by lock_all_tenants) and returns the
-- tenants whose live sites that raised, whose quota the commit checks.
-- "Before" counts the unfolded deltas, which the caller deletes next (the gates are closed: none can appear).
WITH recounted AS ({recount_tenants}
RETURNING t.{tenants.id} AS id, t0.{tenants.cached_sites_count} AS before, t.{tenants.cached_sites_count} AS after)
SELECT r.id
  FROM recounted r
  CROSS JOIN LATERAL (SELECT coalesce(sum(d.sites), 0) AS sites FROM {chom}.tenant_deltas d WHERE d.tenant_id = r.id) u
 WHERE r.after > r.before + u.sites
 ORDER BY r.id

-- name: tenant_ids
-- Every tenant, in id order (the Citus coordinator recounts them one by one).
SELECT t.{tenants.id} FROM {tenants} t ORDER BY t.{tenants.id}

-- name: apply_locked_tenant_deltas
-- A transaction's net change per tenant, for the rows lock_tenants locked, reached by ctid (a TID scan each).
UPDATE {tenants} t
   SET {tenants.cached_sites_count} = t.{tenants.cached_sites_count} + d.sites,
       {tenants.cached_storage_mb}  = t.{tenants.cached_storage_mb} + d.storage
  FROM unnest($1::tid[], $2::integer[], $3::bigint[]) AS d(ctid, sites, storage)
 WHERE t.ctid = d.ctid

-- name: apply_tenant_delta
-- The same change for a transaction that touched one tenant (most single-row writes): no lock order to keep.
UPDATE {tenants} t
   SET {tenants.cached_sites_count} = t.{tenants.cached_sites_count} + $2,
       {tenants.cached_storage_mb}  = t.{tenants.cached_storage_mb} + $3
 WHERE t.{tenants.id} = $1

-- name: try_apply_tenant_delta
-- apply_tenant_delta without waiting: only when no other transaction holds the tenant's row (a committing
-- writer of the same tenant holds it until its commit record is flushed). No row back: the caller spills the
-- change to chom.tenant_deltas instead (src/maintain/deltas.rs).
UPDATE {tenants} t
   SET {tenants.cached_sites_count} = t.{tenants.cached_sites_count} + $2,
       {tenants.cached_storage_mb}  = t.{tenants.cached_storage_mb} + $3
 WHERE t.ctid = (SELECT l.ctid FROM {tenants} l WHERE l.{tenants.id} = $1 FOR NO KEY UPDATE OF l SKIP LOCKED)
RETURNING t.{tenants.id}

-- name: try_lock_tenants
-- lock_tenants without waiting: the rows no other transaction holds; the caller spills the others' changes.
SELECT t.{tenants.id}, t.ctid
  FROM {tenants} t
 WHERE t.{tenants.id} = ANY ($1::uuid[])
 ORDER BY t.{tenants.id}
   FOR NO KEY UPDATE OF t SKIP LOCKED

-- name: existing_tenants
-- The tenants of $1 that exist (a change of a tenant without a row is not spilled, as it is not applied).
SELECT t.{tenants.id} FROM {tenants} t WHERE t.{tenants.id} = ANY ($1::uuid[])

-- name: tenant_headroom
-- How many live sites tenant $1 may still gain under its tier's max_sites, its unfolded deltas counted; NULL
-- when it is unlimited (-1) or its tier has no limits row; no row when the tenant has none.
SELECT l.max_sites - (t.{tenants.cached_sites_count} + u.sites)
  FROM {tenants} t
  CROSS JOIN LATERAL ({unfolded}) u
  LEFT JOIN {tier_limits} l ON l.tier = t.tier AND l.max_sites >= 0
 WHERE t.{tenants.id} = $1

-- name: spill_tenant_delta
-- One tenant's change, whose row another commit held, as an insert-only row (run as chom).
INSERT INTO {chom}.tenant_deltas (tenant_id, sites, storage_mb) VALUES ($1, $2, $3)

-- name: spill_tenant_deltas
-- Changes of tenants whose rows other commits held, as insert-only rows (run as chom).
INSERT INTO {chom}.tenant_deltas (tenant_id, sites, storage_mb)
SELECT d.id, d.sites, d.storage FROM unnest($1::uuid[], $2::integer[], $3::bigint[]) AS d(id, sites, storage)

-- name: delta_tenants
-- The first $1 tenants with unfolded deltas, in id order (a fold's batch).
SELECT DISTINCT d.tenant_id FROM {chom}.tenant_deltas d ORDER BY d.tenant_id LIMIT $1

-- name: take_tenant_deltas
-- Deletes the unfolded deltas of the tenants in $1 (every tenant when NULL) and returns their sums and their
-- number per tenant, in id order. Callers hold those tenants' rows locked (a fold) or their gates closed (a
-- recount), so that nobody else takes them meanwhile.
WITH taken AS (DELETE FROM {chom}.tenant_deltas d
                WHERE $1::uuid[] IS NULL OR d.tenant_id = ANY ($1::uuid[])
            RETURNING d.tenant_id, d.sites, d.storage_mb)
SELECT tenant_id, sum(sites)::bigint, sum(storage_mb)::bigint, count(*) FROM taken GROUP BY tenant_id ORDER BY tenant_id

-- name: unfolded_depth
-- How many deltas wait to be folded, and when the oldest was written (chom_metrics()).
SELECT count(*), min(d.spilled_at) FROM {chom}.tenant_deltas d

-- name: apply_vps_deltas
-- A transaction's net change of live sites per VPS, on rows lock_vps locked. Every VPS has a row
-- (chom_vps_registry adds them); a VPS without one is recounted instead.
UPDATE {chom}.vps_load l
   SET live_sites = l.live_sites + d.sites
  FROM unnest($1::uuid[], $2::integer[]) AS d(id, sites)
 WHERE l.vps_id = d.id
RETURNING l.vps_id

-- name: apply_vps_delta
-- The same for a transaction that changed one VPS's count.
UPDATE {chom}.vps_load SET live_sites = live_sites + $2 WHERE vps_id = $1 RETURNING vps_id

-- name: zero_tenants
-- TRUNCATE sites: no tenant has a live site left (rows locked in id order, as every commit does).
UPDATE {tenants} t SET {tenants.cached_sites_count} = 0, {tenants.cached_storage_mb} = 0
  FROM (SELECT z.{tenants.id} AS id FROM {tenants} z
         WHERE z.{tenants.cached_sites_count} <> 0 OR z.{tenants.cached_storage_mb} <> 0
         ORDER BY z.{tenants.id} FOR NO KEY UPDATE OF z) nonzero
 WHERE t.{tenants.id} = nonzero.id

-- name: zero_vps
UPDATE {chom}.vps_load l SET live_sites = 0
  FROM (SELECT z.vps_id FROM {chom}.vps_load z WHERE z.live_sites <> 0
         ORDER BY z.vps_id FOR NO KEY UPDATE OF z) nonzero
 WHERE l.vps_id = nonzero.vps_id

-- name: vps_rows
-- The VPSes in $1 with no sites and the attributes chom_pick_vps() filters on, as rows of chom.vps_load.
SELECT v.{vps_servers.id}, 0, v.{vps_servers.status}, v.{vps_servers.allocation_type}, v.{vps_servers.health_status},
       v.{vps_servers.spec_memory_mb}, v.{vps_servers.spec_disk_gb}, v.{vps_servers.region}, v.{vps_servers.provider}
  FROM {vps_servers} v
 WHERE v.{vps_servers.id} = ANY ($1::uuid[])
 ORDER BY v.{vps_servers.id}

-- name: register_vps
-- New or changed VPSes: copy the attributes chom_pick_vps() filters on (rows that did not change are not
-- rewritten, so a health-check timestamp update costs nothing here). New VPSes start with no sites.
INSERT INTO {chom}.vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
{vps_rows}
    ON CONFLICT (vps_id) DO UPDATE
   SET status = excluded.status, allocation_type = excluded.allocation_type, health_status = excluded.health_status,
       spec_memory_mb = excluded.spec_memory_mb, spec_disk_gb = excluded.spec_disk_gb,
       region = excluded.region, provider = excluded.provider
 WHERE (l.status, l.allocation_type, l.health_status, l.spec_memory_mb, l.spec_disk_gb, l.region, l.provider)
       IS DISTINCT FROM (excluded.status, excluded.allocation_type, excluded.health_status,
                         excluded.spec_memory_mb, excluded.spec_disk_gb, excluded.region, excluded.provider)

-- name: forget_all_vps
DELETE FROM {chom}.vps_load

-- name: ensure_vps_rows
-- A row for each VPS in $1 that has none (its count is set by recount_vps next, after the row is locked).
INSERT INTO {chom}.vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
{vps_rows}
    ON CONFLICT (vps_id) DO NOTHING

-- name: recount_vps
-- Recomputes chom.vps_load (count and attributes) for the VPSes in $1 (every VPS when NULL).
WITH live AS (
    SELECT s.{sites.vps_id} AS vps_id, count(*) AS sites_count
      FROM {sites} s
     WHERE s.{sites.deleted_at} IS NULL AND s.{sites.vps_id} IS NOT NULL AND ($1::uuid[] IS NULL OR s.{sites.vps_id} = ANY ($1::uuid[]))
     GROUP BY s.{sites.vps_id}
)
INSERT INTO {chom}.vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
SELECT v.{vps_servers.id}, coalesce(live.sites_count, 0), v.{vps_servers.status}, v.{vps_servers.allocation_type}, v.{vps_servers.health_status},
       v.{vps_servers.spec_memory_mb}, v.{vps_servers.spec_disk_gb}, v.{vps_servers.region}, v.{vps_servers.provider}
  FROM {vps_servers} v
  LEFT JOIN live ON live.vps_id = v.{vps_servers.id}
 WHERE $1::uuid[] IS NULL OR v.{vps_servers.id} = ANY ($1::uuid[])
 ORDER BY v.{vps_servers.id}
    ON CONFLICT (vps_id) DO UPDATE
   SET live_sites = excluded.live_sites, status = excluded.status, allocation_type = excluded.allocation_type,
       health_status = excluded.health_status, spec_memory_mb = excluded.spec_memory_mb,
       spec_disk_gb = excluded.spec_disk_gb, region = excluded.region, provider = excluded.provider

-- name: forget_gone_vps
-- Rows of VPSes that no longer exist, among those in $1 (all when NULL).
DELETE FROM {chom}.vps_load l
 WHERE ($1::uuid[] IS NULL OR l.vps_id = ANY ($1::uuid[]))
   AND NOT EXISTS (SELECT FROM {vps_servers} v WHERE v.{vps_servers.id} = l.vps_id)

-- name: vps_drift
-- VPSes (those in $1, every one when NULL) whose maintained live-site count differs from a recount (a missing
-- row counts as drift; so does a stale copy of the attributes chom_pick_vps() filters on, reported with the
-- count unchanged), with the calling transaction's pending changes laid over the rows: $2, $3 pending VPS ids
-- and live-site changes, $4 counts restart from zero, $5 the VPSes whose row is refreshed from vps_servers at
-- commit ($6: all of them, vps_servers was truncated), $7 the VPSes recounted at commit (never drift).
WITH pending AS (SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS p(id, sites)),
vps AS (
    SELECT v.{vps_servers.id} AS id,
           l.vps_id IS NOT NULL OR $6::boolean OR v.{vps_servers.id} = ANY ($5::uuid[]) AS has_row,
           $6::boolean OR v.{vps_servers.id} = ANY ($5::uuid[]) AS refreshed,
           CASE WHEN $4::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0) AS live_sites,
           (l.status, l.allocation_type, l.health_status, l.spec_memory_mb, l.spec_disk_gb, l.region, l.provider)
             IS DISTINCT FROM (v.{vps_servers.status}::text, v.{vps_servers.allocation_type}::text, v.{vps_servers.health_status}::text, v.{vps_servers.spec_memory_mb},
                               v.{vps_servers.spec_disk_gb}, v.{vps_servers.region}::text, v.{vps_servers.provider}::text) AS stale_attributes
      FROM {vps_servers} v
      LEFT JOIN {chom}.vps_load l ON l.vps_id = v.{vps_servers.id}
      LEFT JOIN pending p ON p.id = v.{vps_servers.id}
     WHERE ($1::uuid[] IS NULL OR v.{vps_servers.id} = ANY ($1::uuid[])) AND v.{vps_servers.id} <> ALL ($7::uuid[])
)
SELECT vps.id, CASE WHEN vps.has_row THEN vps.live_sites END::bigint, live.sites_count
  FROM vps
 CROSS JOIN LATERAL (SELECT count(*) AS sites_count FROM {sites} s
                      WHERE s.{sites.vps_id} = vps.id AND s.{sites.deleted_at} IS NULL) live
 WHERE CASE WHEN vps.has_row THEN vps.live_sites END IS DISTINCT FROM live.sites_count
    OR (vps.stale_attributes AND NOT vps.refreshed)
 ORDER BY vps.id

-- name: quota_violation
-- The first of the tenants in $1 (those whose live sites this transaction raises, already updated and locked
-- by it) whose count is now above its tier's max_sites (-1: unlimited; no tier_limits row: not limited).
-- Their unfolded deltas count: the caller closed their gates (src/maintain/deltas.rs), so every spilled change of theirs
-- has committed and none is in flight.
SELECT t.{tenants.id}, (t.{tenants.cached_sites_count} + u.sites)::integer, l.max_sites
  FROM {tenants} t
  CROSS JOIN LATERAL ({unfolded}) u
  JOIN {tier_limits} l ON l.tier = t.tier
 WHERE t.{tenants.id} = ANY ($1::uuid[]) AND l.max_sites >= 0 AND t.{tenants.cached_sites_count} + u.sites > l.max_sites
 ORDER BY t.{tenants.id}
 LIMIT 1

-- name: tenant_quota
-- One tenant's stored aggregates beside its tier's limits (primary-key reads; no tier_limits row: NULLs).
SELECT (t.{tenants.cached_sites_count} + u.sites)::integer, l.max_sites,
       (t.{tenants.cached_storage_mb} + u.storage_mb)::bigint, l.max_storage_gb::bigint * 1024
  FROM {tenants} t
  CROSS JOIN LATERAL ({unfolded}) u
  LEFT JOIN {tier_limits} l ON l.tier = t.tier
 WHERE t.{tenants.id} = $1

-- name: tenant_batch
-- The next $2 tenant ids after $1 (from the first when NULL), for chom_refresh_all().
SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}')
  FROM (SELECT t.{tenants.id} AS id FROM {tenants} t
         WHERE $1::uuid IS NULL OR t.{tenants.id} > $1::uuid
         ORDER BY t.{tenants.id} LIMIT $2) b

-- name: lock_vps
-- Row locks on chom.vps_load, in id order (after the tenants, in the commit's lock order).
SELECT l.vps_id FROM {chom}.vps_load l WHERE l.vps_id = ANY ($1::uuid[]) ORDER BY l.vps_id FOR NO KEY UPDATE

-- name: tenant_stats
SELECT (t.{tenants.cached_sites_count} + u.sites)::integer, (t.{tenants.cached_storage_mb} + u.storage_mb)::bigint,
       t.{tenants.cached_at},
       t.{tenants.cached_at} IS NULL OR t.{tenants.cached_at} < localtimestamp(0) - make_interval(secs => $2) AS stale
  FROM {tenants} t
  CROSS JOIN LATERAL ({unfolded}) u
 WHERE t.{tenants.id} = $1

-- name: tenant_live_stats
-- One tenant's aggregates recounted, and the cached_at a recount in this transaction stores.
WITH live AS ({live_sites})
SELECT coalesce((SELECT sites_count FROM live), 0)::integer, coalesce((SELECT storage_mb FROM live), 0)::bigint,
       localtimestamp(0)

-- name: pick_vps_overlay
-- chom_pick_vps() for a transaction with pending VPS changes (without any, it walks chom.vps_load_pick
-- itself: src/api/placement.rs): eligible VPSes by its rule, attributes from vps_servers itself (its own writes
-- included), loads from chom.vps_load with the pending changes laid over them ($6, $7 pending ids and changes,
-- $8 counts restart from zero, $9 VPSes recounted at commit), every eligible VPS, least loaded first.
WITH pending AS (SELECT * FROM unnest($6::uuid[], $7::bigint[]) AS p(id, sites))
SELECT v.{vps_servers.id}
  FROM {vps_servers} v
  LEFT JOIN {chom}.vps_load l ON l.vps_id = v.{vps_servers.id}
  LEFT JOIN pending p ON p.id = v.{vps_servers.id}
 WHERE {eligible}
   AND ($2::integer IS NULL OR v.{vps_servers.spec_memory_mb} >= $2::integer)
   AND ($3::integer IS NULL OR v.{vps_servers.spec_disk_gb} >= $3::integer)
   AND ($4::text IS NULL OR v.{vps_servers.region} = $4::text)
   AND ($5::text IS NULL OR v.{vps_servers.provider} = $5::text)
 ORDER BY CASE WHEN v.{vps_servers.id} = ANY ($9::uuid[])
               THEN (SELECT count(*) FROM {sites} s WHERE s.{sites.vps_id} = v.{vps_servers.id} AND s.{sites.deleted_at} IS NULL)
               ELSE CASE WHEN $8::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0) END,
          v.{vps_servers.id}

-- name: vps_load
-- Every VPS with its live sites, the calling transaction's pending changes laid over them ($2, $3 pending ids
-- and changes, $4 counts restart from zero, $5 VPSes recounted at commit), least loaded first.
WITH pending AS (SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS p(id, sites)),
vps AS (
    SELECT v.{vps_servers.id} AS id, v.{vps_servers.hostname}::text AS hostname,
           CASE WHEN $4::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0) AS live_sites,
           {eligible} AS eligible
      FROM {vps_servers} v
      LEFT JOIN {chom}.vps_load l ON l.vps_id = v.{vps_servers.id}
      LEFT JOIN pending p ON p.id = v.{vps_servers.id}
     WHERE v.{vps_servers.id} <> ALL ($5::uuid[])
    UNION ALL
    SELECT v.{vps_servers.id}, v.{vps_servers.hostname}::text,
           (SELECT count(*) FROM {sites} s WHERE s.{sites.vps_id} = v.{vps_servers.id} AND s.{sites.deleted_at} IS NULL),
           {eligible}
      FROM {vps_servers} v
     WHERE v.{vps_servers.id} = ANY ($5::uuid[])
)
SELECT id, hostname, live_sites::bigint, eligible FROM vps ORDER BY live_sites, id

-- name: index_usage
-- The indexes serving chom's catalogue ($2: for each catalogue index in $3, chom's own or the equivalent it
-- reuses) with their usage, then the other indexes of CHOM's schema ($1) that a serving index makes redundant:
-- non-unique, key columns a strict left prefix of the catalogue's.
WITH serving AS (
    SELECT u.index_name, m.table_name, m.key_columns
      FROM unnest($2::text[], $3::text[]) AS u(index_name, catalogue_name)
      JOIN {chom}.managed_index m ON m.name = u.catalogue_name
),
indexes AS (
    SELECT c.relname::text AS index_name, t.relname::text AS table_name,
           coalesce(s.idx_scan, 0) AS scans, coalesce(s.idx_tup_read, 0) AS tuples_read,
           pg_catalog.pg_relation_size(c.oid) AS size_bytes, x.indisunique,
           {chom}.index_key_columns(c.oid) AS keys
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
      JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
      LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = c.oid
     WHERE n.nspname = $1
)
SELECT i.index_name, i.table_name, i.scans, i.tuples_read, i.size_bytes, i.scans = 0, NULL::text
  FROM indexes i
  JOIN serving s ON s.index_name = i.index_name AND s.table_name = i.table_name
UNION ALL
SELECT i.index_name, i.table_name, i.scans, i.tuples_read, i.size_bytes, i.scans = 0, min(s.index_name)
  FROM indexes i
  JOIN serving s ON s.table_name = i.table_name
 WHERE NOT i.indisunique
   AND i.index_name NOT IN (SELECT index_name FROM serving)
   AND cardinality(i.keys) < cardinality(s.key_columns)
   AND s.key_columns[1:cardinality(i.keys)] = i.keys
 GROUP BY 1, 2, 3, 4, 5, 6
 ORDER BY 7 NULLS FIRST, 2, 1

-- name: count_tenants
-- Rows in tenants (chom_metrics()'s tenants tracked, chom_refresh_all()'s total, the tenants a repair examines).
SELECT count(*) FROM {tenants}

-- name: sample_estimate
-- The rows of the table $1 as the planner knows them, never below what its size holds at 30 rows a page (a
-- table never analyzed has reltuples -1), and its pages: the probe's sampling percentage is taken from them.
SELECT greatest(c.reltuples::float8, p.pages * 30), p.pages
  FROM pg_catalog.pg_class c
 CROSS JOIN LATERAL (SELECT (pg_catalog.pg_relation_size(c.oid)
                             / pg_catalog.current_setting('block_size')::bigint)::float8 AS pages) p
 WHERE c.oid = $1::text::regclass

-- name: tenant_sample
-- At most $2 tenant ids at random: the rows of a random $1 percent of tenants' pages (TABLESAMPLE SYSTEM reads
-- only those pages), shuffled.
SELECT coalesce(array_agg(s.id), '{}')
  FROM (SELECT t.{tenants.id} AS id FROM {tenants} t TABLESAMPLE SYSTEM (($1::float8)::real)
         ORDER BY random() LIMIT $2) s

-- name: vps_sample
-- The same for vps_servers.
SELECT coalesce(array_agg(s.id), '{}')
  FROM (SELECT v.{vps_servers.id} AS id FROM {vps_servers} v TABLESAMPLE SYSTEM (($1::float8)::real)
         ORDER BY random() LIMIT $2) s

-- name: record_run
-- A run of chom's (chom.record_run(), as chom's owner): kind, start, and what it examined, found and fixed.
INSERT INTO {chom}.runs (kind, started_at, finished_at, tenants_examined, tenants_drifted, tenants_fixed,
                         vps_examined, vps_drifted, vps_fixed)
VALUES ($1, least($2::timestamptz, clock_timestamp()), clock_timestamp(), $3, $4, $5, $6, $7, $8)

-- name: prune_runs
-- Keeps the newest $2 runs of kind $1.
DELETE FROM {chom}.runs r
 WHERE r.kind = $1
   AND r.id < (SELECT k.id FROM {chom}.runs k WHERE k.kind = $1 ORDER BY k.id DESC OFFSET $2 - 1 LIMIT 1)

-- name: metrics_runs
-- chom_metrics()'s figures beside the inspection's: chom's version, the HOT share of tenants' row updates ($1
-- updates, $2 of them HOT; NULL before any), the last drift check (probe or repair), repair and refresh.
SELECT (SELECT e.extversion::text FROM pg_catalog.pg_extension e WHERE e.extname = 'chom'),
       CASE WHEN $1::bigint > 0 THEN round($2::bigint::numeric / $1::bigint, 4) END,
       c.finished_at, c.kind, c.tenants_examined, c.tenants_drifted, c.vps_examined, c.vps_drifted,
       r.finished_at, r.tenants_fixed, r.vps_fixed,
       f.finished_at, f.tenants_examined
  FROM (SELECT) one
  LEFT JOIN LATERAL (SELECT * FROM {chom}.runs k WHERE k.kind IN ('probe', 'repair')
                      ORDER BY k.finished_at DESC, k.id DESC LIMIT 1) c ON true
  LEFT JOIN LATERAL (SELECT * FROM {chom}.runs k WHERE k.kind = 'repair' ORDER BY k.id DESC LIMIT 1) r ON true
  LEFT JOIN LATERAL (SELECT * FROM {chom}.runs k WHERE k.kind = 'refresh' ORDER BY k.id DESC LIMIT 1) f ON true

-- Citus (src/maintain/outbox.rs, docs/scaling.md). A block named "<name>.citus" replaces block <name> when CHOM's tables
-- are distributed: Citus refuses row locks across shards, correlated subqueries beside reference tables and
-- writes to chom's local tables that read distributed ones in the same query, so those reads become
-- MATERIALIZED CTEs (intermediate results) and recounts run one tenant at a time.

-- name: settled_vps
-- Per VPS in $1 (all when NULL), what chom.vps_load holds from the shards: each shard's live sites minus the
-- changes still in its outbox, computed on the shard in one snapshot (both tables carry tenant_id: Citus pushes
-- the UNION ALL down whole, one task per shard), summed on the coordinator.
SELECT u.vps_id, sum(u.sites)::bigint AS sites_count
  FROM (SELECT s.{sites.tenant_id} AS tenant_id, s.{sites.vps_id} AS vps_id, count(*) AS sites
          FROM {sites} s
         WHERE s.{sites.deleted_at} IS NULL AND s.{sites.vps_id} IS NOT NULL
           AND ($1::uuid[] IS NULL OR s.{sites.vps_id} = ANY ($1::uuid[]))
         GROUP BY 1, 2
        UNION ALL
        SELECT o.tenant_id, o.vps_id, -sum(o.delta)
          FROM {vps_delta} o
         WHERE $1::uuid[] IS NULL OR o.vps_id = ANY ($1::uuid[])
         GROUP BY 1, 2) u
 GROUP BY u.vps_id

-- name: recount_tenant
-- One tenant recounted and stamped (a router UPDATE: tenant and sites pruned to the tenant's shard by $1);
-- the UPDATE takes the row lock itself. Returns the tenant's id when it exists.
UPDATE {tenants} t
   SET {tenants.cached_sites_count} = l.sites_count,
       {tenants.cached_storage_mb}  = l.storage_mb,
       {tenants.cached_at}          = localtimestamp(0)
  FROM (SELECT count(*)::integer AS sites_count, coalesce(sum(s.{sites.storage_used_mb}), 0)::bigint AS storage_mb
          FROM {sites} s
         WHERE s.{sites.tenant_id} = $1 AND s.{sites.deleted_at} IS NULL) l
 WHERE t.{tenants.id} = $1
RETURNING t.{tenants.id}

-- name: unfolded.citus
-- No busy-tenant deltas on Citus (src/maintain/deltas.rs: changes are applied during the statement there): nothing to add,
-- and no join of a distributed table with chom's local one.
SELECT 0::bigint AS sites, 0::numeric AS storage_mb

-- name: zero_tenants.citus
-- TRUNCATE sites through the coordinator: a multi-shard UPDATE (each shard locks its own rows).
UPDATE {tenants} t SET {tenants.cached_sites_count} = 0, {tenants.cached_storage_mb} = 0
 WHERE t.{tenants.cached_sites_count} <> 0 OR t.{tenants.cached_storage_mb} <> 0

-- name: recount_vps.citus
WITH live AS MATERIALIZED ({settled_vps}),
vps AS MATERIALIZED (
    SELECT v.{vps_servers.id} AS id, v.{vps_servers.status}::text AS status, v.{vps_servers.allocation_type}::text AS allocation_type,
           v.{vps_servers.health_status}::text AS health_status, v.{vps_servers.spec_memory_mb} AS spec_memory_mb,
           v.{vps_servers.spec_disk_gb} AS spec_disk_gb, v.{vps_servers.region}::text AS region, v.{vps_servers.provider}::text AS provider
      FROM {vps_servers} v
     WHERE $1::uuid[] IS NULL OR v.{vps_servers.id} = ANY ($1::uuid[])
)
INSERT INTO {chom}.vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
SELECT v.id, coalesce(live.sites_count, 0), v.status, v.allocation_type, v.health_status, v.spec_memory_mb,
       v.spec_disk_gb, v.region, v.provider
  FROM vps v
  LEFT JOIN live ON live.vps_id = v.id
 ORDER BY v.id
    ON CONFLICT (vps_id) DO UPDATE
   SET live_sites = excluded.live_sites, status = excluded.status, allocation_type = excluded.allocation_type,
       health_status = excluded.health_status, spec_memory_mb = excluded.spec_memory_mb,
       spec_disk_gb = excluded.spec_disk_gb, region = excluded.region, provider = excluded.provider

-- name: forget_gone_vps.citus
WITH v AS MATERIALIZED (SELECT v.{vps_servers.id} AS id FROM {vps_servers} v)
DELETE FROM {chom}.vps_load l
 WHERE ($1::uuid[] IS NULL OR l.vps_id = ANY ($1::uuid[]))
   AND NOT EXISTS (SELECT FROM v WHERE v.id = l.vps_id)

-- name: vps_drift.citus
-- As vps_drift, against the settled counts: exact whatever the workers are committing, as long as no drain of
-- the outbox is committing at the same moment (chom_repair_drift() holds drains off: citus::hold_off_drains).
WITH pending AS (SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS p(id, sites)),
live AS MATERIALIZED ({settled_vps}),
servers AS MATERIALIZED (
    SELECT v.{vps_servers.id} AS id, v.{vps_servers.status}::text AS status, v.{vps_servers.allocation_type}::text AS allocation_type,
           v.{vps_servers.health_status}::text AS health_status, v.{vps_servers.spec_memory_mb} AS spec_memory_mb,
           v.{vps_servers.spec_disk_gb} AS spec_disk_gb, v.{vps_servers.region}::text AS region, v.{vps_servers.provider}::text AS provider
      FROM {vps_servers} v
     WHERE ($1::uuid[] IS NULL OR v.{vps_servers.id} = ANY ($1::uuid[])) AND v.{vps_servers.id} <> ALL ($7::uuid[])
),
vps AS (
    SELECT v.id,
           l.vps_id IS NOT NULL OR $6::boolean OR v.id = ANY ($5::uuid[]) AS has_row,
           $6::boolean OR v.id = ANY ($5::uuid[]) AS refreshed,
           CASE WHEN $4::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0) AS live_sites,
           (l.status, l.allocation_type, l.health_status, l.spec_memory_mb, l.spec_disk_gb, l.region, l.provider)
             IS DISTINCT FROM (v.status, v.allocation_type, v.health_status, v.spec_memory_mb, v.spec_disk_gb, v.region,
                               v.provider) AS stale_attributes
      FROM servers v
      LEFT JOIN {chom}.vps_load l ON l.vps_id = v.id
      LEFT JOIN pending p ON p.id = v.id
)
SELECT vps.id, CASE WHEN vps.has_row THEN vps.live_sites END::bigint, coalesce(live.sites_count, 0)
  FROM vps
  LEFT JOIN live ON live.vps_id = vps.id
 WHERE CASE WHEN vps.has_row THEN vps.live_sites END IS DISTINCT FROM coalesce(live.sites_count, 0)
    OR (vps.stale_attributes AND NOT vps.refreshed)
 ORDER BY vps.id

-- name: vps_load.citus
-- As vps_load, without the recount of VPSes recounted at commit ($5; their stored count is shown).
WITH pending AS (SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS p(id, sites)),
servers AS MATERIALIZED (
    SELECT v.{vps_servers.id} AS id, v.{vps_servers.hostname}::text AS hostname,
           {eligible} AS eligible
      FROM {vps_servers} v
)
SELECT v.id, v.hostname,
       (CASE WHEN $4::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0))::bigint AS live_sites,
       v.eligible
  FROM servers v
  LEFT JOIN {chom}.vps_load l ON l.vps_id = v.id
  LEFT JOIN pending p ON p.id = v.id
 ORDER BY 3, 1

-- name: pick_vps_overlay.citus
-- As pick_vps_overlay, without the recount of VPSes recounted at commit ($9; their stored count is used).
WITH pending AS (SELECT * FROM unnest($6::uuid[], $7::bigint[]) AS p(id, sites)),
servers AS MATERIALIZED (
    SELECT v.{vps_servers.id} AS id
      FROM {vps_servers} v
     WHERE {eligible}
       AND ($2::integer IS NULL OR v.{vps_servers.spec_memory_mb} >= $2::integer)
       AND ($3::integer IS NULL OR v.{vps_servers.spec_disk_gb} >= $3::integer)
       AND ($4::text IS NULL OR v.{vps_servers.region} = $4::text)
       AND ($5::text IS NULL OR v.{vps_servers.provider} = $5::text)
)
SELECT v.id
  FROM servers v
  LEFT JOIN {chom}.vps_load l ON l.vps_id = v.id
  LEFT JOIN pending p ON p.id = v.id
 ORDER BY CASE WHEN $8::boolean THEN 0 ELSE coalesce(l.live_sites, 0) END + coalesce(p.sites, 0), v.id

-- name: colocated_shards
-- On a Citus node: for shard $1 of CHOM's sites, the colocated shards (same hash range) of tenants ($2) and
-- of chom's outbox ($3), and the shard of the reference table tier_limits ($4; NULL when it is not one).
SELECT t.shardid, o.shardid,
       (SELECT min(r.shardid) FROM pg_catalog.pg_dist_shard r WHERE r.logicalrelid = pg_catalog.to_regclass($4))
  FROM pg_catalog.pg_dist_shard s
  LEFT JOIN pg_catalog.pg_dist_shard t ON t.logicalrelid = pg_catalog.to_regclass($2) AND t.shardminvalue = s.shardminvalue
  LEFT JOIN pg_catalog.pg_dist_shard o ON o.logicalrelid = pg_catalog.to_regclass($3) AND o.shardminvalue = s.shardminvalue
 WHERE s.shardid = $1

-- name: citus_layout_problems
-- What keeps chom from keeping a Citus layout exact (NULL: nothing): sites ($1) distributed by its tenant
-- column ($4), tenants ($2) by its id ($5), colocated; vps_servers ($3) a reference table.
SELECT nullif(concat_ws('; ',
         CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                                WHERE p.logicalrelid = pg_catalog.to_regclass($1) AND p.partmethod = 'h'
                                  AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = $4)
              THEN $1 || ' is not distributed by ' || $4 END,
         CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                                WHERE p.logicalrelid = pg_catalog.to_regclass($2) AND p.partmethod = 'h'
                                  AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = $5)
              THEN $2 || ' is not distributed by ' || $5 END,
         CASE WHEN (SELECT count(DISTINCT p.colocationid) FROM pg_catalog.pg_dist_partition p
                     WHERE p.logicalrelid IN (pg_catalog.to_regclass($1), pg_catalog.to_regclass($2))) <> 1
              THEN $1 || ' and ' || $2 || ' are not colocated' END,
         CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                                WHERE p.logicalrelid = pg_catalog.to_regclass($3) AND p.partmethod = 'n' AND p.repmodel = 't')
              THEN $3 || ' is not a reference table' END), '')

-- name: create_outbox
-- chom's outbox on Citus (see src/maintain/outbox.rs): one row per VPS and committing shard transaction, with a tenant of
-- that shard as its distribution value.
CREATE TABLE {vps_delta} (tenant_id uuid NOT NULL, vps_id uuid NOT NULL, delta integer NOT NULL)

-- name: outbox_identity
-- A shard move copies a shard by logical replication, which needs a replica identity to carry the drains'
-- deletes: the whole row (the outbox has no key, and needs none).
ALTER TABLE {vps_delta} REPLICA IDENTITY FULL

-- name: distribute_outbox
SELECT pg_catalog.create_distributed_table('{vps_delta}', 'tenant_id', colocate_with => $1)
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = '{vps_delta}'::regclass)

-- name: drop_outbox
DROP TABLE IF EXISTS {vps_delta}

-- name: append_vps_deltas
-- On a worker, at commit: the shard transaction's net change per VPS, into the outbox shard colocated with the
-- sites shard ($1: a tenant of that shard, the row's distribution value).
INSERT INTO {vps_delta} (tenant_id, vps_id, delta)
SELECT $1, d.id, d.sites FROM unnest($2::uuid[], $3::integer[]) AS d(id, sites)

-- name: drain_vps_deltas
-- The outbox moved into chom.vps_load: deleted on the workers and added here in one distributed transaction.
-- Changes for a VPS without a row (deleted since) are dropped with it.
WITH drained AS (DELETE FROM {vps_delta} RETURNING vps_id, delta),
net AS (SELECT d.vps_id, sum(d.delta)::integer AS sites FROM drained d GROUP BY d.vps_id)
UPDATE {chom}.vps_load l SET live_sites = l.live_sites + n.sites
  FROM net n
 WHERE l.vps_id = n.vps_id AND n.sites <> 0
RETURNING l.vps_id

-- name: outbox_queued
-- A row when any change is queued (a read of every outbox shard: no distributed write when there is none).
SELECT 1 FROM {vps_delta} LIMIT 1

-- name: hold_off_drains
LOCK TABLE {vps_delta} IN SHARE UPDATE EXCLUSIVE MODE

-- name: clear_vps_deltas
-- TRUNCATE sites through the coordinator: the queued changes count sites that are gone.
DELETE FROM {vps_delta}

-- name: drop_shard_trigger_copies
-- chom_uninstall() on Citus: copies of chom's TRUNCATE trigger (tgtype bit 32) on shards of CHOM's sites ($1),
-- which dropping the distributed table's trigger does not reach: Citus never propagates TRUNCATE triggers, but
-- a shard move re-creates the shard with every trigger of the table. Citus formats the command with the
-- shard's name: %% is a literal %.
SELECT r.shardid FROM pg_catalog.run_command_on_shards($1::text::regclass,
         $c$DO $d$DECLARE t record; BEGIN
              FOR t IN SELECT tgname, tgrelid FROM pg_catalog.pg_trigger
                        WHERE tgrelid = '%s'::regclass AND starts_with(tgname::text, 'chom_')
                          AND (tgtype::integer & 32) <> 0 LOOP
                  EXECUTE pg_catalog.format('DROP TRIGGER %%I ON %%s', t.tgname, t.tgrelid::regclass);
              END LOOP; END $d$$c$) r
 WHERE NOT r.success

-- name: shards_missing_triggers
-- For CHOM's distributed sites ($1), each of chom's triggers ($2) missing or disabled on a shard, with the
-- shard (Citus names a shard's copy of trigger t "t_<shardid>"; a shard that cannot be asked counts as
-- missing them all).
SELECT w.trigger, r.shardid
  FROM pg_catalog.run_command_on_shards($1::text::regclass,
         $c$SELECT coalesce(string_agg(tgname::text, ','), '') FROM pg_catalog.pg_trigger
             WHERE tgrelid = '%s'::regclass AND tgenabled <> 'D' AND starts_with(tgname::text, 'chom_')$c$) r
 CROSS JOIN unnest($2::text[]) AS w(trigger)
 WHERE NOT r.success OR NOT (w.trigger || '_' || r.shardid) = ANY (string_to_array(r.result, ','))
 ORDER BY 1, 2

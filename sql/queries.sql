-- The statements chom runs against CHOM's tables, one per "-- name:" block, loaded by src/queries.rs.
-- Placeholders, replaced with quoted names when chom runs them: {tenants}, {sites}, {vps_servers} (CHOM's
-- tables in the schema chom was installed on), {chom} (chom's own schema), {live_sites} (the block of that
-- name, inlined), {lock} (a row-locking clause or nothing).
-- Counted sites are those with deleted_at IS NULL; storage is the sum of their storage_used_mb.

-- name: live_sites
-- Live sites and storage per tenant, for the tenants in $1 (every tenant when $1 is NULL).
SELECT s.tenant_id, count(*) AS sites_count, coalesce(sum(s.storage_used_mb), 0) AS storage_mb
  FROM {sites} s
 WHERE s.deleted_at IS NULL AND ($1::uuid[] IS NULL OR s.tenant_id = ANY ($1::uuid[]))
 GROUP BY s.tenant_id

-- name: recount_tenants
-- Recomputes the cached aggregates of the tenants in $1 (every tenant when NULL) and stamps cached_at.
-- Callers lock those tenant rows first, in id order, so that no concurrent trigger delta is lost.
WITH live AS ({live_sites})
UPDATE {tenants} t
   SET cached_sites_count = coalesce(l.sites_count, 0),
       cached_storage_mb  = coalesce(l.storage_mb, 0),
       cached_at          = localtimestamp(0)
  FROM {tenants} t0
  LEFT JOIN live l ON l.tenant_id = t0.id
 WHERE t.id = t0.id AND ($1::uuid[] IS NULL OR t0.id = ANY ($1::uuid[]))

-- name: tenant_drift
-- Tenants whose cached aggregates differ from a recount of their live sites.
WITH live AS ({live_sites})
SELECT t.id, t.cached_sites_count, coalesce(l.sites_count, 0)::bigint,
       t.cached_storage_mb, coalesce(l.storage_mb, 0)::bigint
  FROM {tenants} t
  LEFT JOIN live l ON l.tenant_id = t.id
 WHERE ($1::uuid[] IS NULL OR t.id = ANY ($1::uuid[]))
   AND (t.cached_sites_count, t.cached_storage_mb)
       IS DISTINCT FROM (coalesce(l.sites_count, 0), coalesce(l.storage_mb, 0))
 ORDER BY t.id

-- name: lock_tenants
-- Row locks on tenants, always taken in id order: two statements touching the same tenants cannot deadlock.
-- Returns the ctid of each locked row version (the latest one: a row updated concurrently is followed to its
-- new version before it is locked), which nobody else can change until the transaction ends.
SELECT t.id, t.ctid FROM {tenants} t WHERE t.id = ANY ($1::uuid[]) ORDER BY t.id FOR NO KEY UPDATE OF t

-- name: apply_locked_tenant_deltas
-- One statement's net change per tenant, for the rows lock_tenants locked, reached by ctid (a TID scan each).
UPDATE {tenants} t
   SET cached_sites_count = t.cached_sites_count + d.sites,
       cached_storage_mb  = t.cached_storage_mb + d.storage
  FROM unnest($1::tid[], $2::integer[], $3::bigint[]) AS d(ctid, sites, storage)
 WHERE t.ctid = d.ctid

-- name: apply_tenant_delta
-- The same change for a statement that touched one tenant (most single-row writes): no lock order to keep.
UPDATE {tenants}
   SET cached_sites_count = cached_sites_count + $2, cached_storage_mb = cached_storage_mb + $3
 WHERE id = $1

-- name: apply_vps_deltas
-- One statement's net change of live sites per VPS; rows go in id order, so their locks do too. Every VPS has
-- a row (chom_vps_registry adds them); a VPS without one is counted by upsert_vps_deltas instead.
UPDATE {chom}.chom_vps_load l
   SET live_sites = l.live_sites + d.sites
  FROM (SELECT * FROM unnest($1::uuid[], $2::integer[]) AS u(id, sites) ORDER BY u.id) d
 WHERE l.vps_id = d.id
RETURNING l.vps_id

-- name: apply_vps_delta
-- The same for a statement that changed one VPS's count.
UPDATE {chom}.chom_vps_load SET live_sites = live_sites + $2 WHERE vps_id = $1 RETURNING vps_id

-- name: upsert_vps_deltas
INSERT INTO {chom}.chom_vps_load AS l (vps_id, live_sites)
SELECT d.id, d.sites FROM unnest($1::uuid[], $2::integer[]) AS d(id, sites) ORDER BY d.id
    ON CONFLICT (vps_id) DO UPDATE SET live_sites = l.live_sites + excluded.live_sites

-- name: zero_tenants
-- TRUNCATE sites: no tenant has a live site left.
UPDATE {tenants} SET cached_sites_count = 0, cached_storage_mb = 0
 WHERE cached_sites_count <> 0 OR cached_storage_mb <> 0

-- name: zero_vps
UPDATE {chom}.chom_vps_load SET live_sites = 0 WHERE live_sites <> 0

-- name: register_vps
-- New or changed VPSes: copy the attributes chom_pick_vps() filters on (rows that did not change are not
-- rewritten, so a health-check timestamp update costs nothing here). New VPSes start with no sites.
INSERT INTO {chom}.chom_vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
SELECT v.id, 0, v.status, v.allocation_type, v.health_status, v.spec_memory_mb, v.spec_disk_gb, v.region, v.provider
  FROM {vps_servers} v
 WHERE v.id = ANY ($1::uuid[])
 ORDER BY v.id
    ON CONFLICT (vps_id) DO UPDATE
   SET status = excluded.status, allocation_type = excluded.allocation_type, health_status = excluded.health_status,
       spec_memory_mb = excluded.spec_memory_mb, spec_disk_gb = excluded.spec_disk_gb,
       region = excluded.region, provider = excluded.provider
 WHERE (l.status, l.allocation_type, l.health_status, l.spec_memory_mb, l.spec_disk_gb, l.region, l.provider)
       IS DISTINCT FROM (excluded.status, excluded.allocation_type, excluded.health_status,
                         excluded.spec_memory_mb, excluded.spec_disk_gb, excluded.region, excluded.provider)

-- name: forget_vps
DELETE FROM {chom}.chom_vps_load WHERE vps_id = ANY ($1::uuid[])

-- name: forget_all_vps
DELETE FROM {chom}.chom_vps_load

-- name: recount_vps
-- Recomputes chom_vps_load (count and attributes) for the VPSes in $1 (every VPS when NULL).
WITH live AS (
    SELECT s.vps_id, count(*) AS sites_count
      FROM {sites} s
     WHERE s.deleted_at IS NULL AND s.vps_id IS NOT NULL AND ($1::uuid[] IS NULL OR s.vps_id = ANY ($1::uuid[]))
     GROUP BY s.vps_id
)
INSERT INTO {chom}.chom_vps_load AS l
       (vps_id, live_sites, status, allocation_type, health_status, spec_memory_mb, spec_disk_gb, region, provider)
SELECT v.id, coalesce(live.sites_count, 0), v.status, v.allocation_type, v.health_status,
       v.spec_memory_mb, v.spec_disk_gb, v.region, v.provider
  FROM {vps_servers} v
  LEFT JOIN live ON live.vps_id = v.id
 WHERE $1::uuid[] IS NULL OR v.id = ANY ($1::uuid[])
 ORDER BY v.id
    ON CONFLICT (vps_id) DO UPDATE
   SET live_sites = excluded.live_sites, status = excluded.status, allocation_type = excluded.allocation_type,
       health_status = excluded.health_status, spec_memory_mb = excluded.spec_memory_mb,
       spec_disk_gb = excluded.spec_disk_gb, region = excluded.region, provider = excluded.provider

-- name: forget_gone_vps
DELETE FROM {chom}.chom_vps_load l WHERE NOT EXISTS (SELECT FROM {vps_servers} v WHERE v.id = l.vps_id)

-- name: vps_drift
-- VPSes whose maintained live-site count differs from a recount (a missing row counts as drift; so does a
-- stale copy of the attributes chom_pick_vps() filters on, reported with the count unchanged).
SELECT v.id, l.live_sites::bigint, count(s.id) FILTER (WHERE s.deleted_at IS NULL)
  FROM {vps_servers} v
  LEFT JOIN {chom}.chom_vps_load l ON l.vps_id = v.id
  LEFT JOIN {sites} s ON s.vps_id = v.id
 WHERE $1::uuid[] IS NULL OR v.id = ANY ($1::uuid[])
 GROUP BY v.id, l.vps_id
HAVING l.live_sites IS DISTINCT FROM count(s.id) FILTER (WHERE s.deleted_at IS NULL)
    OR (l.status, l.allocation_type, l.health_status, l.spec_memory_mb, l.spec_disk_gb, l.region, l.provider)
       IS DISTINCT FROM (v.status::text, v.allocation_type::text, v.health_status::text, v.spec_memory_mb,
                         v.spec_disk_gb, v.region::text, v.provider::text)
 ORDER BY v.id

-- name: tenant_batch
-- The next $2 tenant ids after $1 (from the first when NULL), for chom_refresh_all().
SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}')
  FROM (SELECT t.id FROM {tenants} t WHERE $1::uuid IS NULL OR t.id > $1::uuid ORDER BY t.id LIMIT $2) b

-- name: lock_vps
SELECT l.vps_id FROM {chom}.chom_vps_load l WHERE l.vps_id = ANY ($1::uuid[]) ORDER BY l.vps_id FOR NO KEY UPDATE

-- name: tenant_stats
SELECT t.cached_sites_count, t.cached_storage_mb, t.cached_at,
       t.cached_at IS NULL OR t.cached_at < localtimestamp(0) - make_interval(secs => $2) AS stale
  FROM {tenants} t
 WHERE t.id = $1

-- name: tenant_live_stats
WITH live AS ({live_sites})
SELECT coalesce((SELECT sites_count FROM live), 0)::integer, coalesce((SELECT storage_mb FROM live), 0)::bigint

-- name: pick_vps
-- The least-loaded eligible VPS: a walk along chom_vps_load_pick (active, shared VPSes by load) that stops at
-- the first row passing the other filters. Ties on load go to the smallest id.
SELECT l.vps_id
  FROM {chom}.chom_vps_load l
 WHERE l.status = 'active' AND l.allocation_type = 'shared' AND l.health_status = ANY ($1::text[])
   AND ($2::integer IS NULL OR l.spec_memory_mb >= $2::integer)
   AND ($3::integer IS NULL OR l.spec_disk_gb >= $3::integer)
   AND ($4::text IS NULL OR l.region = $4::text)
   AND ($5::text IS NULL OR l.provider = $5::text)
 ORDER BY l.live_sites, l.vps_id
 LIMIT 1
{lock}

-- name: vps_load
SELECT v.id, v.hostname::text, coalesce(l.live_sites, 0)::bigint,
       v.status = 'active' AND v.allocation_type = 'shared' AND v.health_status = ANY ($1::text[])
  FROM {vps_servers} v
  LEFT JOIN {chom}.chom_vps_load l ON l.vps_id = v.id
 ORDER BY coalesce(l.live_sites, 0), v.id

-- name: index_usage
-- The indexes serving chom's catalogue (chom's own, or the equivalent it reused) with their usage, then the
-- other indexes a chom index makes redundant: non-unique, key columns a strict left prefix of a chom index's.
WITH serving AS (
    SELECT coalesce(i.reused_index, m.name) AS index_name, m.table_name, m.key_columns
      FROM {chom}.chom_managed_index m
      JOIN {chom}.chom_installed i ON i.kind = 'index' AND i.name = m.name
),
indexes AS (
    SELECT c.relname::text AS index_name, t.relname::text AS table_name,
           coalesce(s.idx_scan, 0) AS scans, coalesce(s.idx_tup_read, 0) AS tuples_read,
           pg_catalog.pg_relation_size(c.oid) AS size_bytes, x.indisunique,
           {chom}.chom_index_key_columns(c.oid) AS keys
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
      JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
      JOIN {chom}.chom_installed target ON target.kind = 'schema' AND target.name = n.nspname
      LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = c.oid
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

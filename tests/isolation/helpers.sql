-- Helpers for the isolation specs, loaded by scripts/isolation.sh into chom_template after CREATE EXTENSION chom
-- and tests/fixtures/recount.sql (the independent recount all tests share: recount_tenants, recount_vps).

-- Per tenant: the stored aggregates (the cached columns plus the unfolded deltas of busy_tenant_spill.spec) and
-- whether they equal a recount of the tenant's live sites.
CREATE VIEW iso_tenants AS
SELECT t.slug,
       t.cached_sites_count + u.sites AS sites,
       t.cached_storage_mb + u.storage_mb AS storage_mb,
       (t.cached_sites_count + u.sites, t.cached_storage_mb + u.storage_mb) IS NOT DISTINCT FROM (r.sites, r.storage_mb) AS exact
  FROM tenants t
  CROSS JOIN LATERAL (SELECT coalesce(sum(d.sites), 0) AS sites, coalesce(sum(d.storage_mb), 0) AS storage_mb
                        FROM chom.tenant_deltas d WHERE d.tenant_id = t.id) u
  JOIN recount_tenants r ON r.tenant_id = t.id;

-- Per VPS: chom's maintained live-site count and whether it equals a recount.
CREATE VIEW iso_vps AS
SELECT v.hostname,
       l.live_sites,
       l.live_sites IS NOT DISTINCT FROM r.sites AS exact
  FROM vps_servers v
  LEFT JOIN chom.vps_load l ON l.vps_id = v.id
  JOIN recount_vps r ON r.vps_id = v.id;

-- Every cached value (tenants and VPSes) equals a recount.
CREATE VIEW iso_all_exact AS
SELECT (SELECT bool_and(exact) FROM iso_tenants) AND (SELECT bool_and(exact) FROM iso_vps) AS all_exact;

-- Puts the base data back: TRUNCATE (at commit chom zeroes every aggregate, which also wipes any drift a
-- previous permutation left), then the base sites again through chom's insert trigger. Every spec's setup
-- calls it, so each permutation starts from the same state. The TRUNCATE's cascade NOTICE is not wanted in the
-- expected output. chom applies a transaction's changes when it commits, so a spec that makes drift behind
-- chom's back must do so in a setup block of its own, after the one calling iso_reset(): made in the same
-- transaction, the drift would be wiped by the TRUNCATE's zeroing at commit.
CREATE PROCEDURE iso_reset()
LANGUAGE sql
SET client_min_messages = warning
AS $$
    TRUNCATE sites CASCADE;
    INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at)
    SELECT id, tenant_id, vps_id, domain, storage_used_mb, deleted_at FROM iso_base_sites;
    DELETE FROM iso_picks;
$$;

-- Data for the isolation specs (tests/isolation/specs/*.spec), loaded by scripts/isolation.sh into the
-- template database chom_template after tests/fixtures/chom_schema.sql and before CREATE EXTENSION chom.
-- Fixed ids, chosen so that tenant alpha < bravo < charlie < delta and vps1 < vps2 < vps3 < vps4 in uuid order.
--
--   tenant   live sites  storage_mb     VPS    kind / health            live sites  chom_pick_vps()
--   alpha    3           600            vps1   shared, healthy          2           eligible, least loaded
--   bravo    2           30             vps2   shared, unknown          4           eligible
--   charlie  2           12             vps3   dedicated, healthy       0           not eligible (dedicated)
--   delta    0           0              vps4   shared, unhealthy        0           not eligible (unhealthy)
--
-- plus one soft-deleted site each for alpha and bravo, and one alpha site without a VPS.
INSERT INTO organizations (id, name, slug, billing_email)
VALUES ('00000000-0000-0000-0000-0000000000a1', 'Iso Org', 'iso-org', 'billing@iso.test');

INSERT INTO tenants (id, organization_id, name, slug) VALUES
  ('a0000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', 'Alpha',   'alpha'),
  ('a0000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1', 'Bravo',   'bravo'),
  ('a0000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-0000000000a1', 'Charlie', 'charlie'),
  ('a0000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-0000000000a1', 'Delta',   'delta');

INSERT INTO vps_servers (id, hostname, ip_address, provider, region, spec_cpu, spec_memory_mb, spec_disk_gb,
                         status, allocation_type, health_status) VALUES
  ('b0000000-0000-0000-0000-000000000001', 'vps1', '192.0.2.1', 'hetzner', 'eu', 4, 8192, 160, 'active', 'shared', 'healthy'),
  ('b0000000-0000-0000-0000-000000000002', 'vps2', '192.0.2.2', 'hetzner', 'eu', 4, 8192, 160, 'active', 'shared', 'unknown'),
  ('b0000000-0000-0000-0000-000000000003', 'vps3', '192.0.2.3', 'vultr',   'eu', 8, 16384, 320, 'active', 'dedicated', 'healthy'),
  ('b0000000-0000-0000-0000-000000000004', 'vps4', '192.0.2.4', 'vultr',   'eu', 8, 16384, 320, 'active', 'shared', 'unhealthy');

-- The base sites, kept in a plain table so that iso_reset() (below, created after the extension) can put them
-- back before every permutation.
CREATE TABLE iso_base_sites (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    vps_id uuid,
    domain text NOT NULL,
    storage_used_mb bigint NOT NULL,
    deleted_at timestamp(0)
);
INSERT INTO iso_base_sites VALUES
  ('c0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000001', 'alpha-1.test', 100, NULL),
  ('c0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000002', 'alpha-2.test', 200, NULL),
  ('c0000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-000000000001', NULL,                                   'alpha-3.test', 300, NULL),
  ('c0000000-0000-0000-0000-000000000004', 'a0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000001', 'alpha-old.test', 50, '2025-06-01'),
  ('c0000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000002', 'b0000000-0000-0000-0000-000000000001', 'bravo-1.test', 10, NULL),
  ('c0000000-0000-0000-0000-000000000006', 'a0000000-0000-0000-0000-000000000002', 'b0000000-0000-0000-0000-000000000002', 'bravo-2.test', 20, NULL),
  ('c0000000-0000-0000-0000-000000000007', 'a0000000-0000-0000-0000-000000000002', 'b0000000-0000-0000-0000-000000000002', 'bravo-old.test', 40, '2025-06-01'),
  ('c0000000-0000-0000-0000-000000000008', 'a0000000-0000-0000-0000-000000000003', 'b0000000-0000-0000-0000-000000000002', 'charlie-1.test', 5, NULL),
  ('c0000000-0000-0000-0000-000000000009', 'a0000000-0000-0000-0000-000000000003', 'b0000000-0000-0000-0000-000000000002', 'charlie-2.test', 7, NULL);
INSERT INTO sites (id, tenant_id, vps_id, domain, storage_used_mb, deleted_at)
SELECT id, tenant_id, vps_id, domain, storage_used_mb, deleted_at FROM iso_base_sites;

-- What the specs' sessions write down for a later step to compare (chom_pick_vps() results).
CREATE TABLE iso_picks (session text PRIMARY KEY, vps_id uuid);

-- bench/sql/dataset.sql: a synthetic CHOM dataset on the real schema (tests/fixtures/chom_schema.sql).
-- psql variables (set by run.sh): sites, tenants, orgs, vps, vps_used, big, pool.
--
-- Every id is derived from a counter: md5('<kind>' || n)::uuid. The pgbench scripts compute the same ids from a
-- random counter, so no id table has to be read while measuring.
--   tenant n = 1 is the biggest tenant (:big sites); tenants 2..50 follow a power law; the others get an
--   exponential number of sites (mean ~5). Sites are numbered g = 1..:sites in created_at order, so a tenant's
--   sites are scattered over the heap as in a real table, and sites 1..:pool are a random sample for updates.
--   VPS 1..:vps_used hold the sites; the last ones (newly provisioning) hold none.
-- Foreign-key triggers are skipped during the load (session_replication_role = replica): the data is
-- consistent by construction.
\set ON_ERROR_STOP 1
SET session_replication_role = replica;
SELECT setseed(0.4242) \gset

\echo '  [load] organizations, tenants'
INSERT INTO organizations (id, name, slug, billing_email, stripe_customer_id, created_at, updated_at)
SELECT md5('org' || o)::uuid, 'Organization ' || o, 'org-' || o, 'billing' || o || '@example.com', 'cus_' || o,
       timestamp '2023-06-01' + (o % 500) * interval '1 day', timestamp '2024-01-01'
  FROM generate_series(1, :orgs) o;

-- sites per tenant
CREATE UNLOGGED TABLE bench_tsize AS
SELECT n, CASE WHEN n = 1 THEN :big
               WHEN n <= 50 THEN greatest(2, floor(:big * power(n, -0.7)))::int
               ELSE 0 END AS size
  FROM generate_series(1, :tenants) n;
SELECT (:sites - sum(size)) / (:tenants - 50.0) AS rest_mean FROM bench_tsize \gset
UPDATE bench_tsize SET size = 1 + floor(-ln(1 - random()) * (:rest_mean - 1))::int WHERE n > 50;
-- make the total exactly :sites
SELECT :sites - sum(size) AS diff FROM bench_tsize \gset
UPDATE bench_tsize SET size = size + 1 WHERE :diff > 0 AND n > :tenants - :diff;
UPDATE bench_tsize t SET size = size - 1
  FROM (SELECT n FROM bench_tsize WHERE n > 50 AND size >= 2 ORDER BY n DESC LIMIT greatest(-:diff, 0)) d
 WHERE d.n = t.n;

INSERT INTO tenants (id, organization_id, name, slug, tier, status, metrics_retention_days, created_at, updated_at)
SELECT md5('tenant' || n)::uuid, md5('org' || (1 + (n - 1) % :orgs))::uuid, 'Tenant ' || n, 'tenant-' || n,
       CASE WHEN n <= 50 THEN 'enterprise' WHEN n % 4 = 0 THEN 'pro' ELSE 'starter' END,
       CASE WHEN n % 97 = 0 THEN 'suspended' WHEN n % 193 = 0 THEN 'cancelled' ELSE 'active' END,
       15, timestamp '2023-06-01' + (n % 600) * interval '1 day', timestamp '2024-01-01'
  FROM generate_series(1, :tenants) n;
UPDATE organizations SET default_tenant_id = md5('tenant' || substr(slug, 5))::uuid;

\echo '  [load] users, vps_servers'
INSERT INTO users (id, name, email, password, created_at, updated_at, organization_id, role)
SELECT md5('user' || u)::uuid, 'User ' || u, 'user' || u || '@example.com', '$2y$12$benchbenchbenchbenchbe',
       timestamp '2023-06-01' + (u % 600) * interval '1 day', timestamp '2024-01-01',
       md5('org' || (1 + (u - 1) % :orgs))::uuid,
       (ARRAY['owner', 'admin', 'member', 'viewer'])[1 + (u / :orgs) % 4]
  FROM generate_series(1, 2 * :orgs) u;

INSERT INTO vps_servers (id, hostname, ip_address, provider, provider_id, region, spec_cpu, spec_memory_mb, spec_disk_gb,
                         status, allocation_type, vpsmanager_version, observability_configured,
                         last_health_check_at, health_status, created_at, updated_at)
SELECT md5('vps' || v)::uuid, 'vps-' || v || '.chom.test',
       '10.' || (v / 65536) % 256 || '.' || (v / 256) % 256 || '.' || v % 256,
       (ARRAY['hetzner', 'digitalocean', 'vultr', 'linode'])[1 + v % 4], 'p-' || v,
       (ARRAY['eu-central', 'eu-west', 'us-east', 'us-west', 'ap-south'])[1 + (v / 4) % 5],
       (ARRAY[2, 4, 8, 16])[1 + v % 4], (ARRAY[2048, 4096, 8192, 16384])[1 + v % 4], (ARRAY[40, 80, 160, 320])[1 + v % 4],
       CASE WHEN v > :vps_used THEN 'provisioning' WHEN v % 50 = 0 THEN 'maintenance' WHEN v % 67 = 0 THEN 'failed'
            WHEN v % 101 = 0 THEN 'decommissioned' ELSE 'active' END,
       CASE WHEN v % 10 = 0 THEN 'dedicated' ELSE 'shared' END, '1.4.2', v % 3 = 0,
       timestamp '2025-01-01', (ARRAY['healthy', 'healthy', 'healthy', 'healthy', 'healthy', 'healthy', 'healthy',
                                      'unknown', 'degraded', 'unhealthy'])[1 + floor(random() * 10)::int],
       timestamp '2023-01-01' + (v % 700) * interval '1 day', timestamp '2025-01-01'
  FROM generate_series(1, :vps) v;

INSERT INTO vps_allocations (id, vps_id, tenant_id, sites_allocated, storage_mb_allocated, memory_mb_allocated, created_at, updated_at)
SELECT md5('alloc' || n)::uuid, md5('vps' || (1 + (n * 7) % :vps_used))::uuid, md5('tenant' || n)::uuid,
       size, size * 500, size * 256, timestamp '2024-01-01', timestamp '2024-01-01'
  FROM bench_tsize;

\echo '  [load] sites:' :sites 'rows'
INSERT INTO sites (id, tenant_id, vps_id, domain, site_type, php_version, ssl_enabled, ssl_expires_at, status,
                   document_root, db_name, db_user, storage_used_mb, settings, created_at, updated_at, deleted_at)
SELECT md5('site' || g)::uuid, md5('tenant' || s.n)::uuid, md5('vps' || s.v)::uuid,
       's' || g || '.example.com',
       (ARRAY['wordpress', 'wordpress', 'wordpress', 'laravel', 'html'])[1 + g % 5],
       (ARRAY['8.1', '8.2', '8.3'])[1 + g % 3], g % 5 <> 0, s.c + interval '90 days',
       CASE WHEN s.del THEN 'disabled' WHEN g % 53 = 0 THEN 'failed' WHEN g % 31 = 0 THEN 'creating' ELSE 'active' END,
       '/var/www/s' || g || '/public', 'db_s' || g, 'u_s' || g, s.mb,
       '{"cache": true}', s.c, s.c + interval '30 days', CASE WHEN s.del THEN s.c + interval '60 days' END
  FROM (SELECT row_number() OVER (ORDER BY c) AS g, n, v, c, mb, del
          FROM (SELECT t.n, 1 + floor(random() * :vps_used)::int AS v,
                       timestamp '2023-01-01' + random() * interval '730 days' AS c,
                       floor(random() * random() * 5000)::bigint AS mb, random() < 0.05 AS del
                  FROM bench_tsize t, generate_series(1, t.size) k) x) s
 ORDER BY s.g;

\echo '  [load] site_backups, subscriptions, invoices, usage_records'
INSERT INTO site_backups (id, site_id, filename, backup_type, status, storage_path, size_bytes, size_mb, retention_days,
                          expires_at, completed_at, created_at, updated_at)
SELECT md5('backup' || b)::uuid, md5('site' || (1 + (b * 7919) % :sites))::uuid, 'b' || b || '.tar.gz',
       (ARRAY['full', 'files', 'database', 'config', 'manual', 'scheduled'])[1 + b % 6],
       (ARRAY['completed', 'completed', 'completed', 'failed', 'pending', 'in_progress'])[1 + (b / 7) % 6],
       '/backups/b' || b, b * 1024, b % 2000, 30,
       timestamp '2025-01-01' + (b % 400) * interval '1 hour', timestamp '2024-06-01', timestamp '2024-06-01' + (b % 10000) * interval '1 minute',
       timestamp '2024-06-01'
  FROM generate_series(1::bigint, :sites / 4) b;

INSERT INTO subscriptions (id, organization_id, stripe_subscription_id, stripe_price_id, tier, status,
                           current_period_start, current_period_end, created_at, updated_at)
SELECT md5('sub' || o)::uuid, md5('org' || o)::uuid, 'sub_' || o, 'price_' || o % 3,
       (ARRAY['starter', 'pro', 'enterprise'])[1 + o % 3], CASE WHEN o % 20 = 0 THEN 'canceled' ELSE 'active' END,
       timestamp '2025-01-01' + (o % 28) * interval '1 day', timestamp '2025-02-01' + (o % 28) * interval '1 day',
       timestamp '2024-01-01', timestamp '2025-01-01'
  FROM generate_series(1, :orgs) o;

INSERT INTO invoices (id, organization_id, stripe_invoice_id, amount_cents, currency, status, paid_at, period_start, period_end, created_at, updated_at)
SELECT md5('inv' || i)::uuid, md5('org' || (1 + (i - 1) % :orgs))::uuid, 'in_' || i, 2900 + (i % 5) * 1000, 'usd',
       (ARRAY['paid', 'paid', 'paid', 'open', 'void'])[1 + i % 5], timestamp '2024-06-01',
       date '2024-01-01' + ((i - 1) / :orgs) * 30, date '2024-01-31' + ((i - 1) / :orgs) * 30,
       timestamp '2024-06-01', timestamp '2024-06-01'
  FROM generate_series(1, 3 * :orgs) i;

INSERT INTO usage_records (id, tenant_id, metric_type, quantity, unit_price, period_start, period_end, created_at, updated_at)
SELECT md5('usage' || u)::uuid, md5('tenant' || (1 + (u - 1) % :tenants))::uuid,
       (ARRAY['storage_gb', 'bandwidth_gb', 'sites'])[1 + ((u - 1) / :tenants) % 3], (u % 1000) / 10.0, 0.01,
       date '2024-01-01' + ((u - 1) / :tenants) * 30, date '2024-01-31' + ((u - 1) / :tenants) * 30,
       timestamp '2024-06-01', timestamp '2024-06-01'
  FROM generate_series(1, 3 * :tenants) u;

\echo '  [load] operations, audit_logs'
INSERT INTO operations (id, tenant_id, user_id, operation_type, target_type, target_id, status, input_data,
                        started_at, completed_at, created_at, updated_at)
SELECT md5('op' || p)::uuid, md5('tenant' || (1 + (p * 31) % :tenants))::uuid, md5('user' || (1 + (p * 17) % (2 * :orgs)))::uuid,
       (ARRAY['site.create', 'site.delete', 'site.backup', 'ssl.renew', 'vps.health'])[1 + p % 5], 'site',
       md5('site' || (1 + (p * 7919) % :sites))::uuid,
       (ARRAY['completed', 'completed', 'completed', 'failed', 'pending', 'running', 'cancelled'])[1 + p % 7], '{}',
       timestamp '2024-01-01' + p * interval '20 seconds', timestamp '2024-01-01' + p * interval '20 seconds' + interval '5 seconds',
       timestamp '2024-01-01' + p * interval '20 seconds', timestamp '2024-01-01' + p * interval '20 seconds'
  FROM generate_series(1::bigint, :sites / 2) p;

INSERT INTO audit_logs (id, organization_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata, created_at, updated_at)
SELECT md5('audit' || a)::uuid, md5('org' || (1 + (a * 13) % :orgs))::uuid, md5('user' || (1 + (a * 17) % (2 * :orgs)))::uuid,
       (ARRAY['login', 'site.created', 'site.deleted', 'backup.restored', 'member.invited', 'settings.updated'])[1 + a % 6],
       'site', md5('site' || (1 + (a * 104729) % :sites))::uuid, '192.0.2.' || a % 250, 'Mozilla/5.0', '{}',
       timestamp '2024-01-01' + a * interval '20 seconds', timestamp '2024-01-01' + a * interval '20 seconds'
  FROM generate_series(1::bigint, :sites / 2) a;

RESET session_replication_role;
DROP TABLE bench_tsize;

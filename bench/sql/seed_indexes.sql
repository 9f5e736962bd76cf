-- bench/sql/seed_indexes.sql: the 20 composite indexes of CHOM's own migration
-- 2025_01_01_000000_add_critical_performance_indexes (Laravel $table->index([...]), ascending), i.e. chom's
-- catalogue (sql/managed_indexes.sql) minus idx_tenants_cached_at. chom_install() reuses them when present.
CREATE INDEX idx_sites_tenant_status        ON sites (tenant_id, status);
CREATE INDEX idx_sites_tenant_created       ON sites (tenant_id, created_at);
CREATE INDEX idx_sites_vps_status           ON sites (vps_id, status);
CREATE INDEX idx_operations_tenant_status   ON operations (tenant_id, status);
CREATE INDEX idx_operations_tenant_created  ON operations (tenant_id, created_at);
CREATE INDEX idx_operations_user_status     ON operations (user_id, status);
CREATE INDEX idx_usage_tenant_metric_period ON usage_records (tenant_id, metric_type, period_start, period_end);
CREATE INDEX idx_audit_org_created          ON audit_logs (organization_id, created_at);
CREATE INDEX idx_audit_user_action          ON audit_logs (user_id, action);
CREATE INDEX idx_audit_resource_lookup      ON audit_logs (resource_type, resource_id);
CREATE INDEX idx_vps_alloc_vps_tenant       ON vps_allocations (vps_id, tenant_id);
CREATE INDEX idx_backups_site_created       ON site_backups (site_id, created_at);
CREATE INDEX idx_backups_expires_type       ON site_backups (expires_at, backup_type);
CREATE INDEX idx_subscriptions_org_status   ON subscriptions (organization_id, status);
CREATE INDEX idx_subscriptions_period       ON subscriptions (current_period_end);
CREATE INDEX idx_invoices_org_status        ON invoices (organization_id, status);
CREATE INDEX idx_invoices_org_period        ON invoices (organization_id, period_start, period_end);
CREATE INDEX idx_vps_status_type_health     ON vps_servers (status, allocation_type, health_status);
CREATE INDEX idx_vps_provider_region        ON vps_servers (provider, region);
CREATE INDEX idx_users_org_role             ON users (organization_id, role);

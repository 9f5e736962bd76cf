-- The indexes CHOM's queries need: the 20 composite indexes of CHOM's performance migration
-- (2025_01_01_000000_add_critical_performance_indexes) and idx_tenants_cached_at of its cached-aggregates
-- migration. chom_install() creates each one unless an equivalent index already exists: a valid, non-partial
-- b-tree on the same table whose leading key columns are these (direction aside: a b-tree is read both ways).
INSERT INTO chom.managed_index (name, table_name, key_columns, descending, query_shape) VALUES
  ('idx_sites_tenant_status',        'sites',           '{tenant_id,status}',                        '{}',           'WHERE tenant_id = ? AND status = ?'),
  ('idx_sites_tenant_created',       'sites',           '{tenant_id,created_at}',                    '{created_at}', 'WHERE tenant_id = ? ORDER BY created_at DESC'),
  ('idx_sites_vps_status',           'sites',           '{vps_id,status}',                           '{}',           'WHERE vps_id = ? AND status = ?'),
  ('idx_operations_tenant_status',   'operations',      '{tenant_id,status}',                        '{}',           'WHERE tenant_id = ? AND status = ?'),
  ('idx_operations_tenant_created',  'operations',      '{tenant_id,created_at}',                    '{created_at}', 'WHERE tenant_id = ? ORDER BY created_at DESC'),
  ('idx_operations_user_status',     'operations',      '{user_id,status}',                          '{}',           'WHERE user_id = ? AND status = ?'),
  ('idx_usage_tenant_metric_period', 'usage_records',   '{tenant_id,metric_type,period_start,period_end}', '{}',     'WHERE tenant_id = ? AND metric_type = ? AND period_start >= ? AND period_end <= ?'),
  ('idx_audit_org_created',          'audit_logs',      '{organization_id,created_at}',              '{created_at}', 'WHERE organization_id = ? ORDER BY created_at DESC'),
  ('idx_audit_user_action',          'audit_logs',      '{user_id,action}',                          '{}',           'WHERE user_id = ? AND action = ?'),
  ('idx_audit_resource_lookup',      'audit_logs',      '{resource_type,resource_id}',               '{}',           'WHERE resource_type = ? AND resource_id = ?'),
  ('idx_vps_alloc_vps_tenant',       'vps_allocations', '{vps_id,tenant_id}',                        '{}',           'WHERE vps_id = ? AND tenant_id = ?'),
  ('idx_backups_site_created',       'site_backups',    '{site_id,created_at}',                      '{created_at}', 'WHERE site_id = ? ORDER BY created_at DESC'),
  ('idx_backups_expires_type',       'site_backups',    '{expires_at,backup_type}',                  '{}',           'WHERE expires_at < ? AND backup_type = ?'),
  ('idx_subscriptions_org_status',   'subscriptions',   '{organization_id,status}',                  '{}',           'WHERE organization_id = ? AND status = ?'),
  ('idx_subscriptions_period',       'subscriptions',   '{current_period_end}',                      '{}',           'WHERE current_period_end < ?'),
  ('idx_invoices_org_status',        'invoices',        '{organization_id,status}',                  '{}',           'WHERE organization_id = ? AND status = ?'),
  ('idx_invoices_org_period',        'invoices',        '{organization_id,period_start,period_end}', '{}',           'WHERE organization_id = ? AND period_start >= ? AND period_end <= ?'),
  ('idx_vps_status_type_health',     'vps_servers',     '{status,allocation_type,health_status}',    '{}',           'WHERE status = ? AND allocation_type = ? AND health_status = ?'),
  ('idx_vps_provider_region',        'vps_servers',     '{provider,region}',                         '{}',           'WHERE provider = ? AND region = ?'),
  ('idx_users_org_role',             'users',           '{organization_id,role}',                    '{}',           'WHERE organization_id = ? AND role = ?'),
  ('idx_tenants_cached_at',          'tenants',         '{cached_at}',                               '{}',           'WHERE cached_at < ? (stale cache refresh)');

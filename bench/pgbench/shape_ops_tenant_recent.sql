-- seed index idx_operations_tenant_created (tenant_id, created_at): a tenant's 20 newest operations
\set n random(1, :tenants)
SELECT * FROM operations WHERE tenant_id = md5('tenant' || :n)::uuid ORDER BY created_at DESC LIMIT 20;

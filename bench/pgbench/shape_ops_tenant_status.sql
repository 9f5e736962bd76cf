-- seed index idx_operations_tenant_status (tenant_id, status): a tenant's operations in one status
-- (operations of tenant n: 1 + (p * 31) % :tenants, ~2.5 per tenant; status as in dataset.sql)
\set n random(1, :tenants)
\set s random(1, 5)
SELECT * FROM operations
 WHERE tenant_id = md5('tenant' || :n)::uuid
   AND status = (ARRAY['completed', 'failed', 'pending', 'running', 'cancelled'])[:s];

-- seed index idx_usage_tenant_metric_period (tenant_id, metric_type, period_start, period_end): a tenant's usage
-- of one metric within a billing window (each tenant has one record per metric, periods from 2024-01-01)
\set n random(1, :tenants)
\set m random(1, 3)
SELECT * FROM usage_records
 WHERE tenant_id = md5('tenant' || :n)::uuid
   AND metric_type = (ARRAY['storage_gb', 'bandwidth_gb', 'sites'])[:m]
   AND period_start >= date '2024-01-01' AND period_end <= date '2024-12-31';

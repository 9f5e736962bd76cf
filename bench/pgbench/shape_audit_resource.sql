-- seed index idx_audit_resource_lookup (resource_type, resource_id): the audit trail of one site
-- (resource_id = site 1 + (a * 104729) % :sites, so about half of the random sites have entries)
\set g random(1, :sites)
SELECT * FROM audit_logs WHERE resource_type = 'site' AND resource_id = md5('site' || :g)::uuid;

-- seed index idx_audit_org_created (organization_id, created_at): an organization's 20 newest audit entries
-- (audit_logs: :sites / 2 rows, organization 1 + (a * 13) % :orgs)
\set o random(1, :orgs)
SELECT * FROM audit_logs WHERE organization_id = md5('org' || :o)::uuid ORDER BY created_at DESC LIMIT 20;

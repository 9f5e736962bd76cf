-- seed index idx_invoices_org_status (organization_id, status): an organization's invoices in one status
-- (3 invoices per organization, status paid / open / void)
\set o random(1, :orgs)
\set s random(1, 3)
SELECT * FROM invoices
 WHERE organization_id = md5('org' || :o)::uuid AND status = (ARRAY['paid', 'open', 'void'])[:s];

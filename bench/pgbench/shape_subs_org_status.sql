-- seed index idx_subscriptions_org_status (organization_id, status): an organization's active subscription
\set o random(1, :orgs)
SELECT * FROM subscriptions WHERE organization_id = md5('org' || :o)::uuid AND status = 'active';

-- seed index idx_users_org_role (organization_id, role): an organization's members with one role
-- (2 users per organization: an owner and an admin)
\set o random(1, :orgs)
\set r random(1, 2)
SELECT * FROM users
 WHERE organization_id = md5('org' || :o)::uuid AND role = (ARRAY['owner', 'admin'])[:r];

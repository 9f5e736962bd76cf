-- seed index idx_backups_site_created (site_id, created_at): a site's 10 newest backups
-- (site_backups: :sites / 4 rows on site 1 + (b * 7919) % :sites)
\set g random(1, :sites)
SELECT * FROM site_backups WHERE site_id = md5('site' || :g)::uuid ORDER BY created_at DESC LIMIT 10;

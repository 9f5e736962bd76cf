-- seed index idx_sites_vps_status (vps_id, status): the sites of one VPS in one status
-- (~:sites / :vps_used sites per VPS; statuses active ~91%, creating ~3%, failed ~2%, disabled 5%)
\set v random(1, :vps_used)
\set s random(1, 4)
SELECT * FROM sites
 WHERE vps_id = md5('vps' || :v)::uuid
   AND status = (ARRAY['active', 'creating', 'failed', 'disabled'])[:s];

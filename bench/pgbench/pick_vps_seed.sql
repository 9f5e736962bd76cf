-- before / seed: VpsServer::active()->shared()->healthy()->withCount('sites')->orderBy('sites_count')->first()
-- (Site uses SoftDeletes, so withCount counts sites with deleted_at IS NULL)
SELECT vps_servers.*,
       (SELECT count(*) FROM sites WHERE vps_servers.id = sites.vps_id AND sites.deleted_at IS NULL) AS sites_count
  FROM vps_servers
 WHERE status = 'active' AND allocation_type = 'shared' AND health_status IN ('healthy', 'unknown')
 ORDER BY sites_count ASC
 LIMIT 1;

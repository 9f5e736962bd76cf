-- seed index idx_vps_provider_region (provider, region): the VPSes of one provider in one region
-- (:vps / 20 rows per pair)
\set p random(1, 4)
\set r random(1, 5)
SELECT * FROM vps_servers
 WHERE provider = (ARRAY['hetzner', 'digitalocean', 'vultr', 'linode'])[:p]
   AND region = (ARRAY['eu-central', 'eu-west', 'us-east', 'us-west', 'ap-south'])[:r];

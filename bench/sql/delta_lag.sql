-- bench/sql/delta_lag.sql: samples, every 20 ms for :secs seconds, how far tenants.cached_sites_count (read
-- directly) is behind: the age of the oldest delta chom has not folded yet (0 when there is none) and how many
-- wait. Prints "LAG <p50 ms> <p99 ms> <max depth>". Run beside the busy-tenant writers (bench/run.sh).
\set ON_ERROR_STOP 1
CREATE TEMP TABLE lag_samples (age_ms double precision, depth bigint);
-- psql does not interpolate inside the DO block's body: the duration goes through a setting of the session
SELECT set_config('chom_bench.lag_secs', :'secs', false);
-- one transaction per sample (COMMIT in the loop): a sampler holding one snapshot for the whole run would keep
-- every folded delta's dead row and index entry visible to it, slowing the writers, the fold and the reads it
-- samples beside
DO $$
DECLARE
    until timestamptz := clock_timestamp() + make_interval(secs => current_setting('chom_bench.lag_secs')::double precision);
BEGIN
    WHILE clock_timestamp() < until LOOP
        INSERT INTO lag_samples
        SELECT coalesce(extract(epoch FROM clock_timestamp() - min(spilled_at)) * 1000, 0), count(*)
          FROM chom.tenant_deltas;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
SELECT 'LAG ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY age_ms)::numeric, 1)
       || ' ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY age_ms)::numeric, 1)
       || ' ' || max(depth)
  FROM lag_samples;

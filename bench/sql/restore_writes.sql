-- bench/sql/restore_writes.sql: undo the pgbench writes so that every configuration sees the same data:
-- drop the inserted sites (db_name = 'bench') and put the sampled sites (1..:pool) back as they were.
DELETE FROM sites WHERE db_name = 'bench';
UPDATE sites s SET storage_used_mb = o.storage_used_mb, deleted_at = o.deleted_at, status = o.status,
                   updated_at = o.updated_at
  FROM bench_pool_orig o
 WHERE s.id = o.id
   AND (s.storage_used_mb, s.deleted_at, s.status, s.updated_at)
       IS DISTINCT FROM (o.storage_used_mb, o.deleted_at, o.status, o.updated_at);

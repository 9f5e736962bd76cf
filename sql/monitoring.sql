-- CALL chom_refresh_all_batched(): chom_refresh_all() as a procedure that commits after each batch, so each
-- batch's row locks on tenants are held only while that batch is recounted (writers of a tenant wait at most
-- one batch, never the whole run), with a NOTICE per committed batch. A procedure, not a function: only a
-- CALL may commit. It refuses to run inside a transaction block (25001), where it could not commit; there,
-- SELECT chom_refresh_all() does the same work in the caller's transaction. No SET clause (a procedure with
-- one cannot commit), so its body is resolved in the caller's search_path, which need not start with pg_catalog
-- (ALTER DATABASE ... SET search_path is the database owner's): every function, operator and type it names is
-- schema-qualified. Interrupted, it keeps the batches it committed; running it again starts over. The run is
-- recorded in chom.runs ('refresh') when it ends.
CREATE PROCEDURE chom_refresh_all_batched(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    started_at pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    after pg_catalog.uuid;
    batch pg_catalog.record;
    done bigint := 0;
    total bigint;
    batches integer := 0;
BEGIN
    PERFORM chom.refuse_transaction_block('chom_refresh_all_batched()');
    LOOP
        SELECT b.last_id, b.refreshed, b.total INTO batch
          FROM chom.refresh_batch(after, batch_size, started_at, done) b;
        total := coalesce(total, batch.total);
        EXIT WHEN batch.last_id IS NULL;
        done := done OPERATOR(pg_catalog.+) batch.refreshed;
        batches := batches OPERATOR(pg_catalog.+) 1;
        after := batch.last_id;
        COMMIT;
        RAISE NOTICE 'chom_refresh_all_batched: % of % tenants refreshed (% batches committed)', done, total, batches;
    END LOOP;
END
$$;

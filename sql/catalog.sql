-- Catalogue helpers shared by chom's inspection (inspect.sql) and chom_index_usage().

-- The key column names of an index, in order; NULL elements for expression columns. INCLUDE columns are not
-- key columns and are left out.
CREATE FUNCTION chom.index_key_columns(index_oid oid) RETURNS text[]
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(a.attname::text ORDER BY k.position)
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
      LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
     WHERE i.indexrelid = index_oid AND k.position <= i.indnkeyatts
$$;
COMMENT ON FUNCTION chom.index_key_columns(oid) IS
    'chom internal: key column names of an index in order (NULL for expressions)';

-- chom 0.1.0 -> 0.2.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION chom UPDATE TO '0.2.0'" to load this file. \quit

-- chom_index_usage(): usage of chom's indexes and the indexes they make redundant.
CREATE FUNCTION chom_index_usage() RETURNS TABLE (
    index_name text,
    table_name text,
    scans bigint,
    tuples_read bigint,
    size_bytes bigint,
    unused boolean,
    redundant_with text
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'chom_index_usage_wrapper';

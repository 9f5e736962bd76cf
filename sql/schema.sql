-- chom's own tables. They live in the extension's schema and belong to the extension.

-- The catalogue of indexes chom manages: one row per index, read by chom_install(), chom_status(),
-- chom_index_ddl() and chom_uninstall(). Its rows ship with the extension (managed_indexes.sql), so it is not
-- dumped: CREATE EXTENSION recreates it.
CREATE TABLE chom_managed_index (
    name        text PRIMARY KEY,
    table_name  text NOT NULL,
    key_columns text[] NOT NULL CHECK (cardinality(key_columns) > 0),
    -- columns of key_columns sorted descending (the chronological listings ask for newest first)
    descending  text[] NOT NULL DEFAULT '{}' CHECK (descending <@ key_columns),
    query_shape text NOT NULL
);

-- What chom_install() did to CHOM's schema, so that chom_uninstall() undoes exactly that and nothing else.
--   kind 'schema'  : the schema that holds CHOM's tables (one row)
--   kind 'storage' : a storage parameter of a CHOM table (tenants' fillfactor)
--   origin 'created': chom made it and removes it; 'reused': it was there (an equivalent index, a column the
--   application's migration added) and chom leaves it alone.
CREATE TABLE chom_installed (
    kind         text NOT NULL CHECK (kind IN ('schema', 'column', 'index', 'trigger', 'storage')),
    name         text NOT NULL,
    table_name   text,
    origin       text NOT NULL CHECK (origin IN ('created', 'reused')),
    reused_index text,
    installed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);
-- dumped with the database, so that a restored database still knows what chom owns there
SELECT pg_catalog.pg_extension_config_dump('chom_installed', '');

-- Live (not soft-deleted) sites per VPS, kept exact by the same statement-level trigger pass as the tenant
-- aggregates, beside a copy of the VPS attributes chom_pick_vps() filters on (kept by triggers on
-- vps_servers), so that "least loaded eligible VPS" is one walk along one index, with no join.
CREATE TABLE chom_vps_load (
    vps_id          uuid PRIMARY KEY,
    live_sites      integer NOT NULL DEFAULT 0,
    status          text,
    allocation_type text,
    health_status   text,
    spec_memory_mb  integer,
    spec_disk_gb    integer,
    region          text,
    provider        text
);
-- CHOM's active()->shared() scopes; health, size, region and provider are checked on the row.
CREATE INDEX chom_vps_load_pick ON chom_vps_load (live_sites, vps_id)
    WHERE status = 'active' AND allocation_type = 'shared';
SELECT pg_catalog.pg_extension_config_dump('chom_vps_load', '');

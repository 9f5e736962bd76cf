-- distribute.sql: turns CHOM's schema into the Citus layout of docs/scaling.md, on the coordinator.
--
--   psql -X -v ON_ERROR_STOP=1 -d chom -f sql/citus/distribute.sql
--
-- Run it on the coordinator of a CHOM database (empty or populated) where `CREATE EXTENSION citus` has been done
-- and the workers are added. It works on the schema that holds `tenants` (the first in search_path), or on
-- chom.target_schema when that is set. The whole conversion is ONE transaction (Citus allows it: its DDL and the
-- data copies run over one connection per node, citus.multi_shard_modify_mode = sequential): it either leaves the
-- layout below or nothing at all.
--
--   reference tables (a copy on every node)     tier_limits, organizations, users, vps_servers, subscriptions,
--                                               invoices
--   distributed by tenant, colocated            tenants (id); sites, vps_allocations, usage_records, operations,
--                                               site_backups (tenant_id)
--   Citus local table (stays on the coordinator) audit_logs
--
-- Schema changes, each the least Citus needs (docs/scaling.md, "What distribute.sql changes", says what the
-- application must accept for each):
--   1. organizations.default_tenant_id loses its foreign key to tenants (a reference table cannot point at a
--      distributed one); the column stays.
--   2. tenants' unique (organization_id, slug) becomes a plain index tenants_organization_id_slug_index (a unique
--      constraint on a distributed table must contain the distribution column).
--   3. The primary keys of sites, vps_allocations, usage_records and operations become (id, tenant_id) (same
--      reason); operations.tenant_id thereby becomes NOT NULL (Citus cannot place a row without a tenant anyway).
--   4. site_backups gets a tenant_id column (filled from its site), primary key (id, tenant_id), and its foreign key
--      to sites becomes (site_id, tenant_id) -> sites (id, tenant_id), ON DELETE CASCADE as before.
--   Every other foreign key is dropped for the conversion (Citus refuses to distribute a table that others still
--   reference) and re-created as it was, with the same name, once both sides are in place.
--
-- Run twice: the second run finds the layout in place, says so in a NOTICE and changes nothing. A schema that is
-- neither CHOM's plain schema nor this layout (some tables already converted, another table referencing CHOM's,
-- triggers on CHOM's tables, operations without a tenant, ...) is refused before anything changes, with every
-- problem named in one error.
--
-- citus.shard_count (default 32) decides how many shards each distributed table gets: set it before running this
-- (PGOPTIONS='-c citus.shard_count=64', or SET in the same session).
--
-- Run by a superuser in a database whose schemas others may own: the database owner can put functions and
-- operators in public, and set the database's search_path. Every function and operator below is therefore
-- schema-qualified (Citus's live in pg_catalog), IN, NOT IN, NULLIF and CASE x WHEN (which look "=" up in the
-- search_path) are written out with OPERATOR(pg_catalog.=), and pg_catalog comes first in the search_path for
-- the whole transaction, for the type names and for the tables found by their bare names (CHOM's).

BEGIN;

-- pg_catalog first, the session's path after it (where tenants is looked for); reset when the transaction ends
DO $pin$
DECLARE
  session_path pg_catalog.text := pg_catalog.current_setting('search_path');
BEGIN
  PERFORM pg_catalog.set_config('search_path',
    CASE WHEN session_path OPERATOR(pg_catalog.=) '' THEN 'pg_catalog'
         ELSE 'pg_catalog, ' OPERATOR(pg_catalog.||) session_path END, true);
END
$pin$;

DO $distribute$
DECLARE
  -- what each table becomes: r = reference, d = distributed by tenant (the column), l = Citus local table
  layout CONSTANT jsonb := '{
    "tier_limits": ["r"], "organizations": ["r"], "users": ["r"], "vps_servers": ["r"],
    "subscriptions": ["r"], "invoices": ["r"],
    "tenants": ["d", "id"], "sites": ["d", "tenant_id"], "vps_allocations": ["d", "tenant_id"],
    "usage_records": ["d", "tenant_id"], "operations": ["d", "tenant_id"], "site_backups": ["d", "tenant_id"],
    "audit_logs": ["l"]}';
  -- the order of the conversion (reference tables first, then tenants, then the tables colocated with it)
  conversion_order CONSTANT text[] := ARRAY['tier_limits', 'organizations', 'users', 'vps_servers', 'subscriptions',
    'invoices', 'tenants', 'sites', 'vps_allocations', 'usage_records', 'operations', 'site_backups', 'audit_logs'];
  pk_changes CONSTANT text[] := ARRAY['sites', 'vps_allocations', 'usage_records', 'operations', 'site_backups'];
  sch text;
  t text;
  kind text;
  col text;
  current_kind text;
  problems text[] := '{}';
  in_layout int := 0;
  untouched int := 0;
  states text[] := '{}';
  r record;
  n bigint;
  prev_min_messages text := pg_catalog.current_setting('client_min_messages');
  changes text[] := '{}';
BEGIN
  -- 0. where, and on what
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
    RAISE EXCEPTION 'distribute.sql: the citus extension is not installed in this database'
      USING HINT = 'CREATE EXTENSION citus (with citus in shared_preload_libraries), on the coordinator and on every worker.';
  END IF;
  IF NOT pg_catalog.citus_is_coordinator() THEN
    RAISE EXCEPTION 'distribute.sql: this is not the coordinator'
      USING HINT = 'Run it on the coordinator, after citus_set_coordinator_host() and citus_add_node() for the workers.';
  END IF;
  sch := pg_catalog.current_setting('chom.target_schema', true);
  IF sch OPERATOR(pg_catalog.=) '' THEN
    sch := NULL;
  END IF;
  IF sch IS NULL THEN
    SELECT c.relnamespace::regnamespace::text INTO sch
      FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('tenants');
  END IF;
  IF sch IS NULL OR pg_catalog.to_regclass(pg_catalog.format('%I.tenants', sch)) IS NULL THEN
    RAISE EXCEPTION 'distribute.sql: no tenants table (in search_path%)',
      CASE WHEN pg_catalog.current_setting('chom.target_schema', true) OPERATOR(pg_catalog.<>) ''
           THEN ', nor in chom.target_schema '
                OPERATOR(pg_catalog.||) pg_catalog.current_setting('chom.target_schema', true)
           ELSE '' END
      USING ERRCODE = '42P01';
  END IF;

  -- 1. the state of each table: untouched (plain Postgres), already in the layout, or something else
  FOREACH t IN ARRAY conversion_order LOOP
    kind := layout OPERATOR(pg_catalog.->) t OPERATOR(pg_catalog.->>) 0;
    col := layout OPERATOR(pg_catalog.->) t OPERATOR(pg_catalog.->>) 1;
    IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', sch, t)) IS NULL THEN
      problems := problems OPERATOR(pg_catalog.||) pg_catalog.format('table %I.%I is missing', sch, t);
      CONTINUE;
    END IF;
    SELECT CASE
             WHEN p.logicalrelid IS NULL THEN 'plain'
             WHEN p.partmethod OPERATOR(pg_catalog.=) 'h'
               THEN 'distributed by '
                    OPERATOR(pg_catalog.||) pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
             WHEN p.partmethod OPERATOR(pg_catalog.=) 'n' AND p.repmodel OPERATOR(pg_catalog.=) 't' THEN 'reference'
             WHEN p.partmethod OPERATOR(pg_catalog.=) 'n' AND p.colocationid OPERATOR(pg_catalog.=) 0 THEN
               CASE WHEN p.autoconverted THEN 'local (converted automatically)' ELSE 'local' END
             ELSE pg_catalog.format('Citus table (partmethod %s, repmodel %s)', p.partmethod, p.repmodel)
           END
      INTO current_kind
      FROM (SELECT pg_catalog.format('%I.%I', sch, t)::regclass AS relid) x
      LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) x.relid;
    states := states OPERATOR(pg_catalog.||) pg_catalog.format('%s: %s', t, current_kind);
    IF current_kind OPERATOR(pg_catalog.=) 'plain' THEN
      untouched := untouched OPERATOR(pg_catalog.+) 1;
    ELSIF current_kind OPERATOR(pg_catalog.=) (CASE WHEN kind OPERATOR(pg_catalog.=) 'r' THEN 'reference'
                                                    WHEN kind OPERATOR(pg_catalog.=) 'd'
                                                      THEN 'distributed by ' OPERATOR(pg_catalog.||) col
                                                    ELSE 'local' END) THEN
      in_layout := in_layout OPERATOR(pg_catalog.+) 1;
    END IF;
  END LOOP;
  IF pg_catalog.cardinality(problems) OPERATOR(pg_catalog.>) 0 THEN
    RAISE EXCEPTION 'distribute.sql: not CHOM''s schema in %: %', sch, pg_catalog.array_to_string(problems, '; ')
      USING ERRCODE = '42P01';
  END IF;
  IF in_layout OPERATOR(pg_catalog.=) pg_catalog.cardinality(conversion_order) THEN
    -- every table in place: also check the colocation (all distributed tables with tenants)
    SELECT pg_catalog.count(*) INTO n
      FROM pg_catalog.pg_dist_partition p
     WHERE p.partmethod OPERATOR(pg_catalog.=) 'h'
       AND p.logicalrelid OPERATOR(pg_catalog.=) ANY (
             SELECT pg_catalog.format('%I.%I', sch, x)::regclass FROM pg_catalog.unnest(conversion_order) x)
       AND p.colocationid OPERATOR(pg_catalog.<>) (
             SELECT colocationid FROM pg_catalog.pg_dist_partition
              WHERE logicalrelid OPERATOR(pg_catalog.=) pg_catalog.format('%I.tenants', sch)::regclass);
    IF n OPERATOR(pg_catalog.=) 0 THEN
      RAISE NOTICE 'distribute.sql: % is already in the Citus layout (% tables); nothing to do', sch, in_layout;
      RETURN;
    END IF;
    RAISE EXCEPTION 'distribute.sql: % table(s) of % are distributed by tenant but not colocated with tenants', n, sch
      USING HINT = 'update_distributed_table_colocation(''<table>'', colocate_with => ''tenants'') fixes that.';
  END IF;
  IF untouched OPERATOR(pg_catalog.<>) pg_catalog.cardinality(conversion_order) THEN
    RAISE EXCEPTION 'distribute.sql: % is partly converted already; refusing to guess', sch
      USING DETAIL = 'tables now: ' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(states, ', '),
            HINT = 'Start from CHOM''s plain schema (undistribute_table() / a dump restored without Citus), or finish the layout by hand.';
  END IF;

  -- 2. what would stop the conversion half-way: refuse up front, naming everything
  FOR r IN
    SELECT c.conrelid::regclass::text AS tbl, c.conname, c.confrelid::regclass::text AS ref
      FROM pg_catalog.pg_constraint c
     WHERE c.contype OPERATOR(pg_catalog.=) 'f'
       AND c.confrelid OPERATOR(pg_catalog.=) ANY (
             SELECT pg_catalog.format('%I.%I', sch, x)::regclass FROM pg_catalog.unnest(conversion_order) x)
       AND c.conrelid OPERATOR(pg_catalog.<>) ALL (
             SELECT pg_catalog.format('%I.%I', sch, x)::regclass FROM pg_catalog.unnest(conversion_order) x)
  LOOP
    problems := problems OPERATOR(pg_catalog.||) pg_catalog.format('%s (constraint %I) references %s and is not one of CHOM''s tables: drop the constraint or distribute that table yourself', r.tbl, r.conname, r.ref);
  END LOOP;
  FOR r IN
    SELECT tg.tgrelid::regclass::text AS tbl, pg_catalog.string_agg(pg_catalog.quote_ident(tg.tgname), ', ') AS names
      FROM pg_catalog.pg_trigger tg
     WHERE NOT tg.tgisinternal
       AND tg.tgrelid OPERATOR(pg_catalog.=) ANY (
             SELECT pg_catalog.format('%I.%I', sch, x)::regclass FROM pg_catalog.unnest(conversion_order) x)
     GROUP BY 1
  LOOP
    problems := problems OPERATOR(pg_catalog.||) pg_catalog.format('%s has triggers (%s): Citus refuses them on distributed and reference tables; if they are chom''s, run SELECT * FROM chom_uninstall() and DROP EXTENSION chom first', r.tbl, r.names);
  END LOOP;
  EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %I.operations WHERE tenant_id IS NULL', sch) INTO n;
  IF n OPERATOR(pg_catalog.>) 0 THEN
    problems := problems OPERATOR(pg_catalog.||) pg_catalog.format('%s operations have no tenant_id: a distributed row needs its tenant (give them one or delete them)', n);
  END IF;
  -- any other unique constraint or index of a table to be distributed that lacks the distribution column
  FOR r IN
    SELECT i.indexrelid::regclass::text AS idx, i.indrelid::regclass::text AS tbl, x.t
      FROM pg_catalog.unnest(conversion_order) x(t)
      JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) pg_catalog.format('%I.%I', sch, x.t)::regclass
     WHERE (layout OPERATOR(pg_catalog.->) x.t OPERATOR(pg_catalog.->>) 0) OPERATOR(pg_catalog.=) 'd' AND i.indisunique
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                          AND a.attname OPERATOR(pg_catalog.=)
                              (layout OPERATOR(pg_catalog.->) x.t OPERATOR(pg_catalog.->>) 1)
                          AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::int2[]))
       AND NOT (i.indisprimary AND x.t OPERATOR(pg_catalog.=) ANY (pk_changes))
       AND i.indexrelid::regclass::text OPERATOR(pg_catalog.<>) ALL (
             ARRAY[pg_catalog.format('%I.tenants_organization_id_slug_unique', sch),
                   'tenants_organization_id_slug_unique'])
  LOOP
    problems := problems OPERATOR(pg_catalog.||) pg_catalog.format('unique index %s on %s does not contain %s: Citus cannot enforce it; drop it or add the column',
                                   r.idx, r.tbl, layout OPERATOR(pg_catalog.->) r.t OPERATOR(pg_catalog.->>) 1);
  END LOOP;
  IF pg_catalog.cardinality(problems) OPERATOR(pg_catalog.>) 0 THEN
    RAISE EXCEPTION 'distribute.sql: cannot convert %: %', sch, pg_catalog.array_to_string(problems, '; ');
  END IF;

  -- 3. the conversion, in this transaction, over one connection per node (foreign keys to reference tables
  --    require it once a distributed table has been written in the same transaction)
  PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
  PERFORM pg_catalog.set_config('search_path', pg_catalog.format('pg_catalog, %I', sch), true);

  -- 3a. drop every foreign key between CHOM's tables, remembering them (names, not oids: converting a table
  --     renames its relation)
  CREATE TEMP TABLE chom_distribute_fk ON COMMIT DROP AS
  SELECT c.conrelid::regclass::text AS tbl, c.conname, pg_catalog.pg_get_constraintdef(c.oid) AS def
    FROM pg_catalog.pg_constraint c
   WHERE c.contype OPERATOR(pg_catalog.=) 'f'
     AND c.conrelid OPERATOR(pg_catalog.=) ANY (
           SELECT pg_catalog.format('%I.%I', sch, x)::regclass FROM pg_catalog.unnest(conversion_order) x);
  FOR r IN SELECT * FROM pg_temp.chom_distribute_fk LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
  END LOOP;

  -- 3b. the schema changes
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid OPERATOR(pg_catalog.=) 'tenants'::regclass
                AND conname OPERATOR(pg_catalog.=) 'tenants_organization_id_slug_unique') THEN
    ALTER TABLE tenants DROP CONSTRAINT tenants_organization_id_slug_unique;
    CREATE INDEX IF NOT EXISTS tenants_organization_id_slug_index ON tenants (organization_id, slug);
    changes := changes
      OPERATOR(pg_catalog.||) 'tenants: unique (organization_id, slug) -> index tenants_organization_id_slug_index'::text;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                  WHERE attrelid OPERATOR(pg_catalog.=) 'site_backups'::regclass
                    AND attname OPERATOR(pg_catalog.=) 'tenant_id' AND NOT attisdropped) THEN
    ALTER TABLE site_backups ADD COLUMN tenant_id uuid;
    changes := changes OPERATOR(pg_catalog.||) 'site_backups: new column tenant_id, filled from sites'::text;
  END IF;
  UPDATE site_backups b SET tenant_id = s.tenant_id FROM sites s
   WHERE s.id OPERATOR(pg_catalog.=) b.site_id AND b.tenant_id IS NULL;
  FOREACH t IN ARRAY pk_changes LOOP
    -- primary key (id) -> (id, tenant_id), under the same name
    SELECT c.conname INTO col FROM pg_catalog.pg_constraint c
     WHERE c.conrelid OPERATOR(pg_catalog.=) t::regclass AND c.contype OPERATOR(pg_catalog.=) 'p'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) c.conrelid
                          AND a.attname OPERATOR(pg_catalog.=) 'tenant_id'
                          AND a.attnum OPERATOR(pg_catalog.=) ANY (c.conkey));
    IF FOUND THEN
      EXECUTE pg_catalog.format('ALTER TABLE %I DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY (id, tenant_id)',
                                t, col, col);
      changes := changes OPERATOR(pg_catalog.||) pg_catalog.format('%s: primary key (id) -> (id, tenant_id)', t);
    END IF;
  END LOOP;

  -- 3c. the Citus tables (the data moves to the shards; the coordinator's local copy is truncated at the end)
  PERFORM pg_catalog.set_config('client_min_messages', 'warning', true);
  FOREACH t IN ARRAY conversion_order LOOP
    kind := layout OPERATOR(pg_catalog.->) t OPERATOR(pg_catalog.->>) 0;
    col := layout OPERATOR(pg_catalog.->) t OPERATOR(pg_catalog.->>) 1;
    IF kind OPERATOR(pg_catalog.=) 'r' THEN
      PERFORM pg_catalog.create_reference_table(t::regclass);
    ELSIF kind OPERATOR(pg_catalog.=) 'd' AND t OPERATOR(pg_catalog.=) 'tenants' THEN
      PERFORM pg_catalog.create_distributed_table(t::regclass, col);
    ELSIF kind OPERATOR(pg_catalog.=) 'd' THEN
      PERFORM pg_catalog.create_distributed_table(t::regclass, col, colocate_with => 'tenants');
    ELSE
      PERFORM pg_catalog.citus_add_local_table_to_metadata(t::regclass);
    END IF;
  END LOOP;

  -- 3d. the foreign keys back, as they were, except the two Citus cannot have as they were
  FOR r IN SELECT * FROM pg_temp.chom_distribute_fk ORDER BY tbl, conname LOOP
    IF r.def OPERATOR(pg_catalog.~) ('REFERENCES (' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(sch)
                                     OPERATOR(pg_catalog.||) '\.)?tenants\(')
       AND r.tbl OPERATOR(pg_catalog.=) ANY (ARRAY['organizations', pg_catalog.format('%I.organizations', sch)]) THEN
      changes := changes
        OPERATOR(pg_catalog.||) pg_catalog.format('organizations: foreign key %s (%s) dropped', r.conname, r.def);
      CONTINUE;
    END IF;
    IF r.tbl OPERATOR(pg_catalog.=) ANY (ARRAY['site_backups', pg_catalog.format('%I.site_backups', sch)])
       AND r.def OPERATOR(pg_catalog.~) '^FOREIGN KEY \(site_id\) REFERENCES' THEN
      r.def := pg_catalog.regexp_replace(r.def, '^FOREIGN KEY \(site_id\) REFERENCES (\S+)\(id\)',
                                         'FOREIGN KEY (site_id, tenant_id) REFERENCES \1(id, tenant_id)');
      changes := changes
        OPERATOR(pg_catalog.||) pg_catalog.format('site_backups: foreign key %s -> %s', r.conname, r.def);
    END IF;
    EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.tbl, r.conname, r.def);
  END LOOP;

  -- 3e. the coordinator's copies of the rows now on the shards (hidden, still on disk)
  FOREACH t IN ARRAY conversion_order LOOP
    IF (layout OPERATOR(pg_catalog.->) t OPERATOR(pg_catalog.->>) 0) OPERATOR(pg_catalog.<>) 'l' THEN
      PERFORM pg_catalog.truncate_local_data_after_distributing_table(t::regclass);
    END IF;
  END LOOP;
  PERFORM pg_catalog.set_config('client_min_messages', prev_min_messages, true);

  SELECT pg_catalog.count(*) INTO n FROM pg_catalog.pg_dist_node
   WHERE groupid OPERATOR(pg_catalog.<>) 0 AND isactive AND noderole OPERATOR(pg_catalog.=) 'primary';
  RAISE NOTICE 'distribute.sql: % converted (% worker node(s), citus.shard_count %): %', sch, n,
    pg_catalog.current_setting('citus.shard_count'), pg_catalog.array_to_string(changes, '; ');
END
$distribute$;

COMMIT;

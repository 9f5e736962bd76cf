-- chom's inspection of CHOM's schema: every fact about every object chom manages, in one statement, read by
-- src/control/inspect.rs into typed facts (each row's jsonb decoded by name, never by position) and classified
-- by src/control/decide.rs; chom_install(), chom_status(), chom_metrics(), chom_index_ddl() and chom_uninstall()
-- all decide from these rows. Placeholders: {chom} (chom's own schema).
-- $1 the schema of CHOM's tables; $2 the cached columns chom maintains on tenants (their current names); $3, $4
-- chom's triggers and their tables; $5 the comment on chom's indexes; $6 the comment on the columns chom added;
-- $7, $8 the comments on chom's sites INSERT trigger (chom left tenants' fillfactor alone / chom set it); $9 the
-- arguments chom's triggers carry (the current names of the columns chom uses, as pg_trigger.tgargs stores them).
-- One row per object: kind, name, and its facts as a jsonb object whose keys are the fields of its kind:
--   index    present (a relation has its name), valid (valid and ready), marked (carries chom's comment),
--            matches (an index on the catalogue's table with its key columns, not partial), equivalent (another
--            valid, non-partial b-tree of the table whose leading key columns are the catalogue's, direction
--            aside: a b-tree is read both ways; the shortest first), missing ('table' or the first missing key
--            column), tied (it depends on the extension: ALTER INDEX ... DEPENDS ON EXTENSION)
--   column   (named by the position of its name in $2) type_name, marked
--   trigger  present, enabled, marked, fillfactor_by_chom (its comment says chom set tenants' fillfactor),
--            current (it carries the arguments chom's triggers carry now, $9)
--   storage  plain_table (tenants takes storage parameters), fillfactor (when set), updates, hot_updates (row
--            updates of tenants since statistics were reset, and how many were HOT)
--   load     vps_rows (the rows of chom.vps_load)
WITH tables AS (
    SELECT c.oid, c.relname::text AS relname, c.relkind
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1
),
catalogue AS (
    SELECT m.name, m.table_name, m.key_columns, t.oid AS table_oid
      FROM {chom}.managed_index m
      LEFT JOIN tables t ON t.relname = m.table_name AND t.relkind IN ('r', 'p')
),
named AS (
    SELECT m.name, c.oid, c.relkind, i.indrelid = m.table_oid AS on_table,
           i.indisvalid AND i.indisready AS valid,
           coalesce(pg_catalog.obj_description(c.oid, 'pg_class') = $5, false) AS marked,
           i.indpred IS NULL AND {chom}.index_key_columns(c.oid) = m.key_columns AS same_keys
      FROM catalogue m
      JOIN tables c ON c.relname = m.name
      LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
)
SELECT 'index'::text AS kind, m.name,
       pg_catalog.jsonb_build_object(
           'present', n.oid IS NOT NULL,
           'valid', coalesce(n.valid, false),
           'marked', coalesce(n.marked, false),
           'matches', coalesce(n.relkind = 'i' AND n.on_table AND n.same_keys, false),
           'equivalent',
           (SELECT ic.relname::text
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam
             WHERE i.indrelid = m.table_oid AND ic.relname::text <> m.name
               AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND am.amname = 'btree'
               AND ({chom}.index_key_columns(i.indexrelid))[1:pg_catalog.cardinality(m.key_columns)] = m.key_columns
             ORDER BY i.indnkeyatts, ic.relname
             LIMIT 1),
           'missing',
           CASE WHEN m.table_oid IS NULL THEN 'table'
                ELSE (SELECT k.column_name FROM unnest(m.key_columns) WITH ORDINALITY AS k(column_name, position)
                       WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                          WHERE a.attrelid = m.table_oid AND a.attname = k.column_name
                                            AND a.attnum > 0 AND NOT a.attisdropped)
                       ORDER BY k.position LIMIT 1)
           END,
           'tied',
           EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = n.oid AND d.deptype = 'x'
                      AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                      AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'chom'))
       ) AS facts
  FROM catalogue m
  LEFT JOIN named n ON n.name = m.name
UNION ALL
SELECT 'column', c.position::text,
       pg_catalog.jsonb_build_object(
           'type_name', a.atttypid::pg_catalog.regtype::text,
           'marked', coalesce(pg_catalog.col_description(a.attrelid, a.attnum) = $6, false))
  FROM unnest($2::text[]) WITH ORDINALITY AS c(column_name, position)
  LEFT JOIN tables t ON t.relname = 'tenants' AND t.relkind IN ('r', 'p')
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = t.oid AND a.attname = c.column_name AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'trigger', g.trigger_name,
       pg_catalog.jsonb_build_object(
           'present', tg.oid IS NOT NULL,
           'enabled', coalesce(tg.tgenabled <> 'D', false),
           'marked', coalesce(pg_catalog.obj_description(tg.oid, 'pg_trigger') IN ($7, $8), false),
           'fillfactor_by_chom', coalesce(pg_catalog.obj_description(tg.oid, 'pg_trigger') = $8, false),
           'current', coalesce(tg.tgargs = $9, false))
  FROM unnest($3::text[], $4::text[]) AS g(trigger_name, table_name)
  LEFT JOIN tables t ON t.relname = g.table_name AND t.relkind IN ('r', 'p')
  LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = t.oid AND tg.tgname = g.trigger_name
UNION ALL
SELECT 'storage', 'fillfactor',
       pg_catalog.jsonb_build_object(
           'plain_table', coalesce(t.relkind = 'r', false),
           'fillfactor', (SELECT o.option_value::integer FROM pg_catalog.pg_options_to_table(c.reloptions) o
                           WHERE o.option_name = 'fillfactor'),
           'updates', s.n_tup_upd,
           'hot_updates', s.n_tup_hot_upd)
  FROM (SELECT 1) one
  LEFT JOIN tables t ON t.relname = 'tenants' AND t.relkind IN ('r', 'p')
  LEFT JOIN pg_catalog.pg_class c ON c.oid = t.oid
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = t.oid
UNION ALL
SELECT 'load', 'vps_load', pg_catalog.jsonb_build_object('vps_rows', (SELECT count(*) FROM {chom}.vps_load))

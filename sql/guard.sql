-- chom follows the application's schema: two event triggers watch DDL on CHOM's tables.
--
-- chom_sql_drop (sql_drop): a column chom reads or writes, dropped from a table chom is installed on, is
--   refused before the drop takes effect (2BP01, with what of chom needs it and the supported way); and when
--   CHOM's tables (or chom's triggers) go, as with Laravel's migrate:fresh, chom's per-VPS loads go with them,
--   so that chom_pick_vps() never answers a VPS that no longer exists.
-- chom_ddl_command_end (ddl_command_end, ALTER TABLE): a renamed column chom uses is followed (chom's triggers
--   carry the new name); a type change chom cannot work with, or a renamed table chom needs, is refused (42P16).
-- The checks themselves are chom.guard_*() (src/control/guard.rs), which know what chom needs.

CREATE FUNCTION chom.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    columns text[];
BEGIN
    SELECT array_agg(o.objid), array_agg(o.address_names[3])
      INTO tables, columns
      FROM pg_catalog.pg_event_trigger_dropped_objects() o
     WHERE o.object_type = 'table column' AND o.original;
    IF tables IS NOT NULL THEN
        PERFORM chom.guard_dropped_columns(tables, columns);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() o WHERE o.object_type IN ('table', 'trigger'))
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                        WHERE p.proname = 'chom_vps_registry'
                          AND p.pronamespace = (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                                 WHERE e.extname = 'chom'))
    THEN
        DELETE FROM chom.vps_load;
    END IF;
END
$$;

CREATE FUNCTION chom.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    attnums integer[];
BEGIN
    SELECT array_agg(c.objid), array_agg(c.objsubid) INTO tables, attnums
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
     WHERE c.object_type IN ('table', 'table column') AND c.classid = 'pg_catalog.pg_class'::regclass;
    IF tables IS NOT NULL THEN
        PERFORM chom.guard_altered_tables(tables, attnums);
    END IF;
END
$$;

CREATE EVENT TRIGGER chom_sql_drop ON sql_drop EXECUTE FUNCTION chom.on_sql_drop();
CREATE EVENT TRIGGER chom_ddl_command_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION chom.on_ddl_command_end();

-- Print every object of the installed extension `stream` in a canonical text form, one
-- object per line, sorted: two installs are the same when this output is the same.
-- test/shell/050_upgrade.sh compares an upgraded install with a fresh one.
WITH ext AS (
    SELECT oid, extconfig, extcondition FROM pg_catalog.pg_extension WHERE extname = 'stream'
), members AS (
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
)
SELECT line FROM (
    -- every member, by identity
    SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, objsubid) AS line FROM members
    UNION ALL
    -- functions: full definition (language, volatility, strictness, SET search_path, body), owner-free ACL, comment
    SELECT 'function ' || p.oid::regprocedure::text || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
           || E'\nacl ' || coalesce(p.proacl::text, 'default')
           || E'\ncomment ' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
    FROM members m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
    WHERE p.prokind <> 'a'
    UNION ALL
    -- relations: kind, options, ACL, comment, view definition
    SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text
           || ' options ' || coalesce(c.reloptions::text, '') || ' acl ' || coalesce(c.relacl::text, 'default')
           || ' comment ' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
           || CASE WHEN c.relkind = 'v' THEN E'\n' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
    FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    -- columns of tables and views, in order, with types, defaults, NOT NULL, comments
    SELECT 'column ' || c.oid::regclass::text || '.' || a.attnum || ' ' || a.attname || ' '
           || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
           || coalesce(' comment ' || pg_catalog.col_description(c.oid, a.attnum), '')
    FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    -- constraints, indexes and triggers of the extension's tables
    SELECT 'constraint ' || con.conrelid::regclass::text || ' ' || con.conname || ' ' || pg_catalog.pg_get_constraintdef(con.oid)
    FROM members m JOIN pg_catalog.pg_constraint con ON m.classid = 'pg_catalog.pg_class'::regclass AND con.conrelid = m.objid
    UNION ALL
    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
    FROM members m JOIN pg_catalog.pg_index i ON m.classid = 'pg_catalog.pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
    FROM members m JOIN pg_catalog.pg_trigger t ON m.classid = 'pg_catalog.pg_class'::regclass AND t.tgrelid = m.objid
    WHERE NOT t.tgisinternal
    UNION ALL
    -- schemas' ACLs
    SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, 'default')
    FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('stream', 'stream_data')
    UNION ALL
    -- what pg_dump keeps (pg_extension_config_dump)
    SELECT 'config_dump ' || cfg.rel::regclass::text || ' ' || quote_literal(cond)
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS cfg(rel, cond)
) AS all_objects
ORDER BY line;

-- 010_catalog.sql: the SQL surface DESIGN.md promises exists with its exact
-- signatures and labels, pg_dump keeps the catalog, and PUBLIC cannot touch
-- the catalog or the data.  Runs in one transaction and rolls everything back.
BEGIN;
SELECT plan(97);

------------------------------------------------------------------------------
-- Schemas and functions (DESIGN.md "SQL surface")
------------------------------------------------------------------------------

SELECT has_schema('stream', 'tap_ schema stream exists');
SELECT has_schema('stream_data', 'tap_ schema stream_data exists');

SELECT has_function('stream', 'create_topic',
    ARRAY['text', 'integer', 'interval', 'bigint', 'integer', 'regtype', 'bigint'],
    'tap_ stream.create_topic(text, integer, interval, bigint, integer, regtype, bigint) exists');
SELECT has_function('stream', 'alter_topic',
    ARRAY['text', 'integer', 'interval', 'bigint', 'integer', 'bigint'],
    'tap_ stream.alter_topic(text, integer, interval, bigint, integer, bigint) exists');
SELECT has_function('stream', 'drop_topic', ARRAY['text', 'boolean'],
    'tap_ stream.drop_topic(text, boolean) exists');
SELECT has_function('stream', 'publish', ARRAY['text', 'jsonb', 'text', 'jsonb', 'integer'],
    'tap_ stream.publish(text, jsonb, text, jsonb, integer) exists');
SELECT has_function('stream', 'publish', ARRAY['text', 'text', 'text', 'jsonb', 'integer'],
    'tap_ stream.publish(text, text, text, jsonb, integer) exists');
SELECT has_function('stream', 'publish', ARRAY['text', 'bytea', 'text', 'jsonb', 'integer'],
    'tap_ stream.publish(text, bytea, text, jsonb, integer) exists');
SELECT has_function('stream', 'publish_batch', ARRAY['text', 'jsonb[]', 'text[]', 'jsonb[]'],
    'tap_ stream.publish_batch(text, jsonb[], text[], jsonb[]) exists');
SELECT has_function('stream', 'publish_batch', ARRAY['text', 'text[]', 'text[]', 'jsonb[]'],
    'tap_ stream.publish_batch(text, text[], text[], jsonb[]) exists');
SELECT has_function('stream', 'publish_batch', ARRAY['text', 'bytea[]', 'text[]', 'jsonb[]'],
    'tap_ stream.publish_batch(text, bytea[], text[], jsonb[]) exists');
SELECT has_function('stream', 'read', ARRAY['text', 'integer', 'bigint', 'integer'],
    'tap_ stream.read(text, integer, bigint, integer) exists');
SELECT has_function('stream', 'read_text', ARRAY['text', 'integer', 'bigint', 'integer'],
    'tap_ stream.read_text(text, integer, bigint, integer) exists');
SELECT has_function('stream', 'read_bytea', ARRAY['text', 'integer', 'bigint', 'integer'],
    'tap_ stream.read_bytea(text, integer, bigint, integer) exists');
SELECT has_function('stream', 'murmur2', ARRAY['text'],
    'tap_ stream.murmur2(text) exists');
SELECT has_function('stream', 'partition_for', ARRAY['text', 'integer'],
    'tap_ stream.partition_for(text, integer) exists');

-- Argument names, order and defaults: DESIGN.md's calls (including named
-- notation) must keep working.  Extra trailing parameters with defaults are
-- an extension, so the administration functions are compared by prefix.
SELECT matches(pg_get_function_arguments('stream.create_topic(text,integer,interval,bigint,integer,regtype,bigint)'::regprocedure),
    '^topic text, partitions integer DEFAULT 1, retention interval DEFAULT NULL::interval, '
    'retention_bytes bigint DEFAULT NULL::bigint, max_message_bytes integer DEFAULT 1048576, '
    'value_type regtype DEFAULT ''jsonb''::regtype(, [a-z_]+ [a-z ]+ DEFAULT [^,]+)*$',
    'tap_ create_topic takes DESIGN.md''s arguments and defaults, extras defaulted');
SELECT matches(pg_get_function_arguments('stream.alter_topic(text,integer,interval,bigint,integer,bigint)'::regprocedure),
    '^topic text, partitions integer DEFAULT NULL::integer, retention interval DEFAULT NULL::interval, '
    'retention_bytes bigint DEFAULT NULL::bigint, max_message_bytes integer DEFAULT NULL::integer'
    '(, [a-z_]+ [a-z ]+ DEFAULT NULL::[a-z ]+)*$',
    'tap_ alter_topic takes DESIGN.md''s arguments, every setting defaulting to NULL (keep)');
SELECT is(pg_get_function_arguments('stream.drop_topic(text,boolean)'::regprocedure),
    'topic text, if_exists boolean DEFAULT false',
    'tap_ drop_topic takes (topic, if_exists DEFAULT false)');

SELECT is(pg_get_function_arguments(('stream.publish(text,' || t || ',text,jsonb,integer)')::regprocedure),
    'topic text, value ' || t || ', key text DEFAULT NULL::text, headers jsonb DEFAULT NULL::jsonb, '
    'partition integer DEFAULT NULL::integer',
    'tap_ publish(' || t || ') takes (topic, value, key, headers, partition) with NULL defaults')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;
SELECT is(pg_get_function_result(('stream.publish(text,' || t || ',text,jsonb,integer)')::regprocedure),
    'TABLE(partition integer, "offset" bigint)',
    'tap_ publish(' || t || ') returns TABLE(partition integer, "offset" bigint)')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;
SELECT is(pg_get_function_arguments(('stream.publish_batch(text,' || t || '[],text[],jsonb[])')::regprocedure),
    'topic text, "values" ' || t || '[], keys text[] DEFAULT NULL::text[], headers jsonb[] DEFAULT NULL::jsonb[]',
    'tap_ publish_batch(' || t || '[]) takes (topic, values, keys, headers)')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;
SELECT is(pg_get_function_result(('stream.publish_batch(text,' || t || '[],text[],jsonb[])')::regprocedure),
    'TABLE(partition integer, "offset" bigint)',
    'tap_ publish_batch(' || t || '[]) returns TABLE(partition integer, "offset" bigint)')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;

SELECT is(pg_get_function_arguments(('stream.' || f || '(text,integer,bigint,integer)')::regprocedure),
    'topic text, partition integer, "offset" bigint DEFAULT 0, max_messages integer DEFAULT 100',
    'tap_ ' || f || ' takes (topic, partition, offset DEFAULT 0, max_messages DEFAULT 100)')
FROM unnest(ARRAY['read', 'read_text', 'read_bytea']) f ORDER BY f;
SELECT is(pg_get_function_result(('stream.' || f || '(text,integer,bigint,integer)')::regprocedure),
    'TABLE(topic text, partition integer, "offset" bigint, key text, value ' || t
    || ', headers jsonb, published_at timestamp with time zone)',
    'tap_ ' || f || ' returns (topic, partition, offset, key, value ' || t || ', headers, published_at)')
FROM (VALUES ('read', 'jsonb'), ('read_text', 'text'), ('read_bytea', 'bytea')) v(f, t) ORDER BY f;

------------------------------------------------------------------------------
-- Volatility and parallel safety
------------------------------------------------------------------------------

-- publish writes and read depends on shared state: both VOLATILE, PARALLEL UNSAFE.
SELECT volatility_is('stream', 'publish', ARRAY['text', t, 'text', 'jsonb', 'integer'], 'volatile',
    'tap_ publish(' || t || ') is VOLATILE')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;
SELECT volatility_is('stream', 'publish_batch', ARRAY['text', t || '[]', 'text[]', 'jsonb[]'], 'volatile',
    'tap_ publish_batch(' || t || '[]) is VOLATILE')
FROM unnest(ARRAY['jsonb', 'text', 'bytea']) t ORDER BY t;
SELECT volatility_is('stream', f, ARRAY['text', 'integer', 'bigint', 'integer'], 'volatile',
    'tap_ ' || f || ' is VOLATILE')
FROM unnest(ARRAY['read', 'read_text', 'read_bytea']) f ORDER BY f;

SELECT is(p.proparallel, 'u', 'tap_ ' || p.oid::regprocedure::text || ' is PARALLEL UNSAFE')
FROM pg_proc p
WHERE p.pronamespace = 'stream'::regnamespace
  AND p.proname IN ('publish', 'publish_batch', 'read', 'read_text', 'read_bytea')
ORDER BY p.oid::regprocedure::text;
SELECT is(count(*), 9::bigint, 'tap_ exactly 9 publish/publish_batch/read functions were checked for PARALLEL UNSAFE')
FROM pg_proc p
WHERE p.pronamespace = 'stream'::regnamespace
  AND p.proname IN ('publish', 'publish_batch', 'read', 'read_text', 'read_bytea');

SELECT volatility_is('stream', 'create_topic',
    ARRAY['text', 'integer', 'interval', 'bigint', 'integer', 'regtype', 'bigint'], 'volatile',
    'tap_ create_topic is VOLATILE');
SELECT volatility_is('stream', 'alter_topic',
    ARRAY['text', 'integer', 'interval', 'bigint', 'integer', 'bigint'], 'volatile',
    'tap_ alter_topic is VOLATILE');
SELECT volatility_is('stream', 'drop_topic', ARRAY['text', 'boolean'], 'volatile',
    'tap_ drop_topic is VOLATILE');
-- the partitioner is a pure function: usable in indexes and parallel queries
SELECT volatility_is('stream', 'murmur2', ARRAY['text'], 'immutable', 'tap_ murmur2 is IMMUTABLE');
SELECT volatility_is('stream', 'partition_for', ARRAY['text', 'integer'], 'immutable',
    'tap_ partition_for is IMMUTABLE');

------------------------------------------------------------------------------
-- Views (DESIGN.md: "at least these columns, these names")
------------------------------------------------------------------------------

SELECT has_view('stream', 'topics', 'tap_ view stream.topics exists');
SELECT has_view('stream', 'partitions', 'tap_ view stream.partitions exists');

SELECT col_type_is('stream', 'topics', c, t, 'tap_ stream.topics.' || c || ' is ' || t)
FROM (VALUES (1, 'topic', 'text'), (2, 'partitions', 'integer'), (3, 'value_type', 'regtype'),
             (4, 'retention', 'interval'), (5, 'retention_bytes', 'bigint'),
             (6, 'max_message_bytes', 'integer'), (7, 'created_at', 'timestamp with time zone')) v(n, c, t)
ORDER BY n;
SELECT col_type_is('stream', 'partitions', c, t, 'tap_ stream.partitions.' || c || ' is ' || t)
FROM (VALUES (1, 'topic', 'text'), (2, 'partition', 'integer'), (3, 'log_start_offset', 'bigint'),
             (4, 'end_offset', 'bigint'), (5, 'last_stable_offset', 'bigint'), (6, 'messages', 'bigint'),
             (7, 'bytes', 'bigint'), (8, 'oldest_at', 'timestamp with time zone'),
             (9, 'newest_at', 'timestamp with time zone')) v(n, c, t)
ORDER BY n;

------------------------------------------------------------------------------
-- pg_dump keeps the catalog (pg_extension_config_dump)
------------------------------------------------------------------------------

SELECT ok(c::regclass::oid = ANY (e.extconfig),
          'tap_ ' || c || ' is registered with pg_extension_config_dump')
FROM pg_extension e,
     unnest(ARRAY['stream._topics', 'stream._partitions', 'stream._segments',
                  'stream._topic_id_seq', 'stream._segment_id_seq']) WITH ORDINALITY AS u(c, n)
WHERE e.extname = 'stream'
ORDER BY n;

-- Every catalog table and sequence the extension owns is dumped: a new one
-- (offsets, ACLs) that is forgotten would be lost by pg_dump.
SELECT is(ARRAY(
    SELECT c.oid::regclass::text
    FROM pg_class c
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
    WHERE c.relkind IN ('r', 'p', 'S')
      AND NOT c.oid = ANY (e.extconfig)
    ORDER BY 1), '{}'::text[],
    'tap_ every table and sequence of the extension is registered for pg_dump');

-- The sequences are dumped too, so ids continue after a restore.
SELECT is(array_agg(c::regclass::text ORDER BY c::regclass::text),
          ARRAY['stream._retention_run_id_seq', 'stream._segment_id_seq', 'stream._topic_id_seq'],
          'tap_ the id sequences are in extconfig')
FROM pg_extension e, unnest(e.extconfig) c
WHERE e.extname = 'stream' AND (SELECT relkind FROM pg_class WHERE oid = c) = 'S';

------------------------------------------------------------------------------
-- PUBLIC has no access to the catalog or the data
------------------------------------------------------------------------------

CREATE ROLE tap_catalog_nobody NOLOGIN;
DO $$ BEGIN PERFORM stream.create_topic('tap_catalog_priv', 1); END $$;
SELECT segment_id AS tap_seg FROM stream._segments
WHERE topic_id = (SELECT topic_id FROM stream._topics WHERE topic = 'tap_catalog_priv') \gset

SELECT ok(NOT has_table_privilege('tap_catalog_nobody', t,
              'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'tap_ an ordinary role has no privilege on ' || t)
FROM unnest(ARRAY['stream._topics', 'stream._partitions', 'stream._segments']) WITH ORDINALITY u(t, n)
ORDER BY n;
SELECT ok(NOT has_sequence_privilege('tap_catalog_nobody', s, 'USAGE, SELECT, UPDATE'),
          'tap_ an ordinary role has no privilege on ' || s)
FROM unnest(ARRAY['stream._topic_id_seq', 'stream._segment_id_seq']) WITH ORDINALITY u(s, n)
ORDER BY n;
SELECT ok(NOT has_schema_privilege('tap_catalog_nobody', 'stream_data', 'USAGE, CREATE'),
          'tap_ an ordinary role has no privilege on schema stream_data');
SELECT ok(NOT has_table_privilege('tap_catalog_nobody', 'stream_data.seg_' || :tap_seg,
              'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'tap_ an ordinary role has no privilege on a segment table');
SELECT is(ARRAY(SELECT a.grantee::regrole::text
                FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = ('stream_data.seg_' || :tap_seg)::regclass
                  AND a.grantee <> c.relowner),
          '{}'::text[],
          'tap_ a segment table''s ACL grants nothing to anybody but its owner');
SELECT ok(NOT has_function_privilege('tap_catalog_nobody',
              'stream._create_segment(integer, integer, bigint)', 'EXECUTE'),
          'tap_ an ordinary role cannot execute the SECURITY DEFINER stream._create_segment');

-- SECURITY DEFINER code pins search_path (DESIGN.md "Security").
SELECT is(ARRAY(
    SELECT p.oid::regprocedure::text
    FROM pg_proc p
    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
    WHERE p.prosecdef
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
    ORDER BY 1), '{}'::text[],
    'tap_ every SECURITY DEFINER function of the extension sets search_path');

-- Every public function is documented (STYLE.md: COMMENT ON FUNCTION).
SELECT is(ARRAY(
    SELECT p.oid::regprocedure::text
    FROM pg_proc p
    WHERE p.pronamespace = 'stream'::regnamespace
      AND p.proname NOT LIKE '\_%'
      AND obj_description(p.oid, 'pg_proc') IS NULL
    ORDER BY 1), '{}'::text[],
    'tap_ every public function in schema stream has a comment');

SELECT * FROM finish();
ROLLBACK;

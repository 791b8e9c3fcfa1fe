-- Every error of the core log with its SQLSTATE, and proof that a failed
-- call wrote nothing: pg_temp.try() runs a statement, and when it fails
-- returns "SQLSTATE: message", followed by STATE CHANGED if the catalog
-- (stream._topics, _partitions, _segments), the relations of stream_data or
-- any partition's end offset, last stable offset or message count differ
-- from before the call.  A statement that unexpectedly succeeds shows "ok".

-- PL/pgSQL context lines carry line numbers of the extension script
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.stream_state() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT format('topics=%s partitions=%s segments=%s relations=%s logs=[%s]',
        (SELECT count(*) FROM stream._topics),
        (SELECT count(*) FROM stream._partitions),
        (SELECT count(*) FROM stream._segments),
        (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'stream_data'),
        (SELECT string_agg(format('%s/%s:end=%s,lso=%s,n=%s', topic, partition, end_offset,
                                  last_stable_offset, messages), ' ' ORDER BY topic, partition)
         FROM stream.partitions))
$$;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.stream_state();
    after text;
    msg text;
BEGIN
    BEGIN
        EXECUTE cmd;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        after := pg_temp.stream_state();
        RETURN SQLSTATE || ': ' || msg ||
            CASE WHEN after = before THEN ''
                 ELSE E'\n  STATE CHANGED from ' || before || E'\n                  to ' || after END;
    END;
    RETURN 'ok';
END
$$;

-- how a name is shown below
CREATE FUNCTION pg_temp.label(n text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN n IS NULL THEN 'NULL'
                WHEN length(n) > 40 THEN left(n, 3) || '... (' || length(n) || ' characters)'
                ELSE '''' || n || '''' END
$$;

-- a table an injection would drop
CREATE TABLE y (id int);

SELECT stream.create_topic('err_json', 2, max_message_bytes => 100);
SELECT stream.create_topic('err_text', value_type => 'text', max_message_bytes => 100);
SELECT stream.create_topic('err_bytea', value_type => 'bytea', max_message_bytes => 100);
SELECT partition, "offset" FROM stream.publish('err_json', '{"seed": 1}', partition => 0);
SELECT pg_temp.stream_state() AS initial_state;

-- the harness itself: a statement that publishes and then fails leaves a
-- gap in the offsets, and try() reports it
SELECT pg_temp.try($$SELECT (SELECT partition FROM stream.publish('err_json', '{}', partition => 1)) / 0$$);

------------------------------------------------------------------------------
-- unknown topic: 42704
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.publish('err_nope', '{}'::jsonb)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_nope', 'x'::text)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_nope', '\x01'::bytea)$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_nope', ARRAY['{}'::jsonb])$$);
SELECT pg_temp.try($$SELECT stream.read('err_nope', 0)$$);
SELECT pg_temp.try($$SELECT stream.read_text('err_nope', 0)$$);
SELECT pg_temp.try($$SELECT stream.read_bytea('err_nope', 0)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_nope', 2)$$);
SELECT pg_temp.try($$SELECT stream.drop_topic('err_nope')$$);
-- names are case-sensitive
SELECT pg_temp.try($$SELECT stream.publish('ERR_JSON', '{}'::jsonb)$$);

------------------------------------------------------------------------------
-- bad and injection-shaped names: 22023, NULL: 22004
------------------------------------------------------------------------------
SELECT pg_temp.label(n) AS name, pg_temp.try(format('SELECT stream.create_topic(%L)', n)) AS create_topic
FROM unnest(ARRAY['x; DROP TABLE y', 'a"b', 'a''b', '', repeat('a', 201), 'naïve',
                  'a b', 'a/b', E'back\\slash', NULL]) WITH ORDINALITY u(n, i)
ORDER BY i;
SELECT to_regclass('y') IS NOT NULL AS table_y_survived;

SELECT pg_temp.label(n) AS name,
       pg_temp.try(format('SELECT stream.publish(%L, %L::jsonb)', n, '{}')) AS publish,
       pg_temp.try(format('SELECT stream.read(%L, 0)', n)) AS read
FROM unnest(ARRAY['x; DROP TABLE y', 'a"b', 'a''b', '', repeat('a', 201), 'naïve', NULL])
     WITH ORDINALITY u(n, i)
ORDER BY i;

SELECT pg_temp.label(n) AS name,
       pg_temp.try(format('SELECT stream.publish_batch(%L, ARRAY[%L::jsonb])', n, '{}')) AS publish_batch,
       pg_temp.try(format('SELECT stream.alter_topic(%L, 2)', n)) AS alter_topic
FROM unnest(ARRAY['x; DROP TABLE y', 'a"b', '', repeat('a', 201), NULL])
     WITH ORDINALITY u(n, i)
ORDER BY i;

-- drop_topic rejects bad names like every other entry point
SELECT pg_temp.label(n) AS name, pg_temp.try(format('SELECT stream.drop_topic(%L)', n)) AS drop_topic
FROM unnest(ARRAY['x; DROP TABLE y', 'a''b', '', NULL]) WITH ORDINALITY u(n, i)
ORDER BY i;
SELECT to_regclass('y') IS NOT NULL AS table_y_survived;

-- the longest valid name (200 characters) is fine
SELECT pg_temp.try(format('SELECT stream.create_topic(%L)', repeat('z', 200)));
SELECT length(topic) FROM stream.topics WHERE topic LIKE 'zzz%';
SELECT stream.drop_topic(repeat('z', 200));

------------------------------------------------------------------------------
-- partitions: at least 1, never decreasing
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', 0)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', -1)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', 10001)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', 0)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', -1)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', 1)$$);
SELECT pg_temp.try($$SELECT stream.partition_for('k', 0)$$);
SELECT pg_temp.try($$SELECT stream.partition_for('k', -3)$$);

------------------------------------------------------------------------------
-- duplicate topic: 42710
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.create_topic('err_json')$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_json', 5, value_type => 'text')$$);

------------------------------------------------------------------------------
-- other bad arguments of create_topic and alter_topic: 22023
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', value_type => 'int4')$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', value_type => 'json')$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', value_type => 'nosuchtype')$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', max_message_bytes => 0)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', max_message_bytes => -1)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', segment_bytes => 8191)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', retention => '0')$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', retention_bytes => 0)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', max_message_bytes => 0)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', segment_bytes => 100)$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', retention => '0')$$);
SELECT pg_temp.try($$SELECT stream.alter_topic('err_json', retention_bytes => 0)$$);
SELECT max_message_bytes, segment_bytes, retention, retention_bytes
FROM stream.topics WHERE topic = 'err_json';

-- NULL where a value is required: 22004, naming the argument
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', NULL)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', max_message_bytes => NULL)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', segment_bytes => NULL)$$);
SELECT pg_temp.try($$SELECT stream.create_topic('err_new', value_type => NULL)$$);

------------------------------------------------------------------------------
-- max_message_bytes (100 on the err_ topics) counts key + value + headers
-- in stored bytes: text and bytea their length, a key its UTF-8 length,
-- jsonb its binary size.  Exactly at the limit succeeds, one more byte: 54000.
------------------------------------------------------------------------------
SELECT pg_column_size(to_jsonb(repeat('x', 92))) - 4 AS jsonb_string_92_bytes,
       pg_column_size(to_jsonb(repeat('x', 87))) - 4 AS jsonb_string_87_bytes,
       pg_column_size('{}'::jsonb) - 4 AS empty_object_bytes,
       octet_length('é') AS e_acute_bytes;

-- text
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 100))$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 101))$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 99), key => 'k')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 99), key => 'kk')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 98), key => 'é')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 99), key => 'é')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 95), key => 'k', headers => '{}')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', repeat('x', 96), key => 'k', headers => '{}')$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_text', ARRAY['ok', repeat('x', 101), 'ok'])$$);

-- bytea
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', decode(repeat('ab', 100), 'hex'))$$);
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', decode(repeat('ab', 101), 'hex'))$$);
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', decode(repeat('ab', 97), 'hex'), key => 'key')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', decode(repeat('ab', 98), 'hex'), key => 'key')$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_bytea', ARRAY['\x01'::bytea, decode(repeat('ab', 101), 'hex')])$$);

-- jsonb
SELECT pg_temp.try($$SELECT stream.publish('err_json', to_jsonb(repeat('x', 92)), partition => 1)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', to_jsonb(repeat('x', 93)), partition => 1)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', to_jsonb(repeat('x', 87)), key => 'k', headers => '{}', partition => 1)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', to_jsonb(repeat('x', 88)), key => 'k', headers => '{}', partition => 1)$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb, to_jsonb(repeat('x', 93))])$$);
SELECT topic, partition, end_offset, messages FROM stream.partitions
WHERE topic LIKE 'err\_%' ORDER BY topic, partition;

------------------------------------------------------------------------------
-- headers must be a JSON object: 22023
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, headers => '[1]')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, headers => '1')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, headers => '"s"')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, headers => 'null')$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb, '{}'], headers => ARRAY['{}'::jsonb, '[]'])$$);

------------------------------------------------------------------------------
-- values that do not fit the topic: 22P02 (bad jsonb text), 22023 (wrong
-- type, bad bytea text)
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{bad')$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{bad'::text)$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}', '{bad'])$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '\x01'::bytea)$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['\x01'::bytea])$$);
SELECT pg_temp.try($$SELECT stream.publish('err_text', '\x01'::bytea)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', '{}'::jsonb)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_bytea', '\xZZ')$$);

------------------------------------------------------------------------------
-- partitions that do not exist: 22023
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, partition => 2)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, partition => -1)$$);
SELECT pg_temp.try($$SELECT stream.publish('err_json', '{}'::jsonb, key => 'k', partition => 2)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 2)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', -1)$$);
SELECT pg_temp.try($$SELECT stream.read_text('err_text', 1)$$);
SELECT pg_temp.try($$SELECT stream.read_bytea('err_bytea', 1)$$);

------------------------------------------------------------------------------
-- read: offsets and max_messages
------------------------------------------------------------------------------
SELECT end_offset FROM stream.partitions WHERE topic = 'err_json' AND partition = 0;
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, -1)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 2)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 9223372036854775807)$$);
-- at the end offset: no error, nothing to read
SELECT count(*) AS at_end FROM stream.read('err_json', 0, 1);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, 0)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, -1)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, 100001)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, 2147483647)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, 100000)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', NULL)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, NULL)$$);
SELECT pg_temp.try($$SELECT stream.read('err_json', 0, 0, NULL)$$);

-- a read function that does not match the topic's value type: 42804
SELECT pg_temp.try($$SELECT stream.read('err_text', 0)$$);
SELECT pg_temp.try($$SELECT stream.read('err_bytea', 0)$$);
SELECT pg_temp.try($$SELECT stream.read_bytea('err_json', 0)$$);
SELECT pg_temp.try($$SELECT stream.read_bytea('err_text', 0)$$);

------------------------------------------------------------------------------
-- publish_batch arrays
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb, '{}'], keys => ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb], keys => ARRAY['a', 'b'])$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb, '{}'], headers => ARRAY['{}'::jsonb])$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', '{{"{}"},{"{}"}}'::jsonb[])$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', ARRAY['{}'::jsonb], keys => '{{a}}')$$);
SELECT pg_temp.try($$SELECT stream.publish_batch('err_json', NULL::jsonb[])$$);
-- an empty batch publishes nothing
SELECT count(*) AS published FROM stream.publish_batch('err_json', ARRAY[]::jsonb[]);

------------------------------------------------------------------------------
-- errors at top level (the whole transaction aborts)
------------------------------------------------------------------------------
SELECT pg_temp.stream_state() AS before \gset
SELECT stream.create_topic('err_json');
\echo :LAST_ERROR_SQLSTATE
SELECT partition, "offset" FROM stream.publish('err_text', repeat('x', 101));
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.stream_state() = :'before' AS unchanged;
BEGIN;
SELECT partition, "offset" FROM stream.publish('err_json', '{"in": "aborted"}', partition => 1);
SELECT partition, "offset" FROM stream.publish('err_json', '{}', partition => 7);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- the aborted transaction's offset is a gap: end offset moved, nothing is held
SELECT partition, end_offset = last_stable_offset AS nothing_held, messages
FROM stream.partitions WHERE topic = 'err_json' ORDER BY partition;
SELECT count(*) AS aborted_visible FROM stream.read('err_json', 1) WHERE value ? 'in';

------------------------------------------------------------------------------
-- PREPARE TRANSACTION after a publish: 0A000
------------------------------------------------------------------------------
SELECT end_offset AS end_before, messages AS messages_before
FROM stream.partitions WHERE topic = 'err_json' AND partition = 0 \gset
BEGIN;
SELECT partition, "offset" - :end_before AS offset_delta
FROM stream.publish('err_json', '{"prepared": true}', partition => 0);
PREPARE TRANSACTION 'err_prepare_1';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'err\_prepare%';
SELECT end_offset = last_stable_offset AS nothing_held, messages - :messages_before AS new_messages
FROM stream.partitions WHERE topic = 'err_json' AND partition = 0;
SELECT count(*) AS prepared_visible FROM stream.read('err_json', 0) WHERE value ? 'prepared';

-- a publish rolled back to a savepoint holds nothing: PREPARE works
BEGIN;
SAVEPOINT s;
SELECT partition FROM stream.publish('err_json', '{"savepoint": true}', partition => 0);
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'err_prepare_2';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'err\_prepare%';
ROLLBACK PREPARED 'err_prepare_2';

-- a transaction that did not publish prepares as usual
BEGIN;
SELECT count(*) FROM stream.read('err_json', 0);
PREPARE TRANSACTION 'err_prepare_3';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'err\_prepare%';
ROLLBACK PREPARED 'err_prepare_3';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'err\_prepare%';

------------------------------------------------------------------------------
-- read-only transactions: 25006 for writers, reads work
------------------------------------------------------------------------------
BEGIN READ ONLY;
SELECT partition FROM stream.publish('err_json', '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT partition FROM stream.publish_batch('err_json', ARRAY['{}'::jsonb]);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT stream.create_topic('err_ro');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT count(*) > 0 AS readable FROM stream.read('err_json', 0);
SELECT count(*) AS partitions FROM stream.partitions WHERE topic = 'err_json';
COMMIT;
SET default_transaction_read_only = on;
SELECT partition FROM stream.publish('err_text', 'x');
\echo :LAST_ERROR_SQLSTATE
RESET default_transaction_read_only;

------------------------------------------------------------------------------
-- after all of this: the catalog and the logs hold only what succeeded
------------------------------------------------------------------------------
SELECT topic, partition, end_offset = last_stable_offset AS nothing_held, messages
FROM stream.partitions WHERE topic LIKE 'err\_%' ORDER BY topic, partition;
SELECT topic FROM stream.topics ORDER BY topic;

SELECT stream.drop_topic('err_json');
SELECT stream.drop_topic('err_text');
SELECT stream.drop_topic('err_bytea');
DROP TABLE y;
SELECT count(*) AS topics_left FROM stream.topics;
SELECT count(*) AS stream_data_relations_left
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'stream_data';

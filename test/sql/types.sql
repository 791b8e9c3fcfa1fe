-- Value types: jsonb, text and bytea topics, the publish overloads, an
-- untyped literal on each topic type, NULL values (tombstones), keys and
-- headers round-tripping, read/read_text/read_bytea, publish_batch with
-- jsonb[], text[] and bytea[], and per-key order within a transaction.

SELECT stream.create_topic('types_json', 3);
SELECT stream.create_topic('types_text', value_type => 'text');
SELECT stream.create_topic('types_bytea', value_type => 'bytea');
SELECT topic, partitions, value_type FROM stream.topics WHERE topic LIKE 'types\_%' ORDER BY topic;

------------------------------------------------------------------------------
-- jsonb topic
------------------------------------------------------------------------------
SELECT partition, "offset" FROM stream.publish('types_json', '{"via": "jsonb"}'::jsonb, partition => 0);
SELECT partition, "offset" FROM stream.publish('types_json', '{"via":   "text"}'::text, partition => 0);
SELECT partition, "offset" FROM stream.publish('types_json', '{"via": "untyped"}', partition => 0);
-- SQL NULL is a tombstone; JSON null is a value
SELECT partition, "offset" FROM stream.publish('types_json', NULL, key => 'gone', partition => 0);
SELECT partition, "offset" FROM stream.publish('types_json', 'null', partition => 0);
-- scalars and arrays are values too
SELECT partition, "offset" FROM stream.publish('types_json', '42', partition => 0);
SELECT partition, "offset" FROM stream.publish('types_json', '"a string"', partition => 0);
SELECT partition, "offset" FROM stream.publish('types_json', '[1, "two", {"three": 3}]', partition => 0);

SELECT topic, partition, "offset", key, value, value IS NULL AS tombstone,
       jsonb_typeof(value) AS json_type, headers
FROM stream.read('types_json', 0) ORDER BY "offset";
SELECT DISTINCT pg_typeof(value) FROM stream.read('types_json', 0);
-- the text form, whatever the topic's type
SELECT "offset", value, pg_typeof(value) FROM stream.read_text('types_json', 0) ORDER BY "offset";

------------------------------------------------------------------------------
-- text topic
------------------------------------------------------------------------------
SELECT partition, "offset" FROM stream.publish('types_text', 'plain text'::text);
SELECT partition, "offset" FROM stream.publish('types_text', 'untyped');
-- a jsonb value is stored as its text form
SELECT partition, "offset" FROM stream.publish('types_text', '{"j":[1,2]}'::jsonb);
SELECT partition, "offset" FROM stream.publish('types_text', NULL, key => 'gone');
SELECT partition, "offset" FROM stream.publish('types_text', '');
SELECT partition, "offset" FROM stream.publish('types_text', E'multi\nline, tab\tand ünïcödé');

SELECT "offset", key, value, value IS NULL AS tombstone, length(value) AS length
FROM stream.read_text('types_text', 0) ORDER BY "offset";

------------------------------------------------------------------------------
-- bytea topic
------------------------------------------------------------------------------
SELECT partition, "offset" FROM stream.publish('types_bytea', '\x0102'::bytea);
-- untyped and text literals are parsed by bytea's input function
SELECT partition, "offset" FROM stream.publish('types_bytea', '\x0102');
SELECT partition, "offset" FROM stream.publish('types_bytea', 'abc'::text);
SELECT partition, "offset" FROM stream.publish('types_bytea', NULL, key => 'gone');
SELECT partition, "offset" FROM stream.publish('types_bytea', '\x'::bytea);
SELECT partition, "offset" FROM stream.publish('types_bytea', '\x00ff00'::bytea);

SELECT "offset", key, value, value IS NULL AS tombstone, length(value) AS length, pg_typeof(value)
FROM stream.read_bytea('types_bytea', 0) ORDER BY "offset";
SELECT "offset", value AS text_form, pg_typeof(value) FROM stream.read_text('types_bytea', 0) ORDER BY "offset";

------------------------------------------------------------------------------
-- keys and headers round-trip on every type
------------------------------------------------------------------------------
CREATE TEMP TABLE types_sent AS
SELECT t.topic, k.key, h.headers, p.partition, p."offset"
FROM (VALUES ('types_json', 1), ('types_text', 2), ('types_bytea', 3)) t(topic, tn)
CROSS JOIN (VALUES ('', 1), ('plain', 2), ('ünïcödé 日本', 3), (repeat('k', 300), 4)) k(key, kn)
CROSS JOIN (VALUES (NULL::jsonb, 1), ('{}'::jsonb, 2),
                   ('{"trace-id": "abc", "n": 1, "nested": {"x": [true, null, 1.5]}}'::jsonb, 3)) h(headers, hn)
CROSS JOIN LATERAL stream.publish(t.topic, '"v"'::text, key => k.key, headers => h.headers,
                                  partition => 0) p
ORDER BY tn, kn, hn;

SELECT s.topic, count(*) AS sent,
       count(*) FILTER (WHERE r.key = s.key) AS same_key,
       count(*) FILTER (WHERE r.headers IS NOT DISTINCT FROM s.headers) AS same_headers
FROM types_sent s
CROSS JOIN LATERAL stream.read_text(s.topic, s.partition, s."offset", 1) r
GROUP BY s.topic ORDER BY s.topic;

SELECT key, headers FROM stream.read('types_json', 0)
WHERE "offset" >= (SELECT min("offset") FROM types_sent WHERE topic = 'types_json') AND length(key) < 100
ORDER BY "offset";

-- large values, keys and headers (stored out of line) come back whole
SELECT partition, "offset" FROM stream.publish('types_text', repeat('large text ', 20000),
    key => repeat('K', 5000), headers => jsonb_build_object('big', repeat('h', 10000)));
SELECT partition, "offset" FROM stream.publish('types_bytea', convert_to(repeat('large bytea ', 20000), 'UTF8'));
SELECT partition, "offset" FROM stream.publish('types_json', jsonb_build_object('big', repeat('j', 100000)), partition => 2);
SELECT length(value) = length(repeat('large text ', 20000)) AS same_length,
       md5(value) = md5(repeat('large text ', 20000)) AS same_value,
       key = repeat('K', 5000) AS same_key, headers->>'big' = repeat('h', 10000) AS same_headers
FROM stream.read_text('types_text', 0) WHERE length(value) > 1000;
SELECT md5(value) = md5(convert_to(repeat('large bytea ', 20000), 'UTF8')) AS same_value
FROM stream.read_bytea('types_bytea', 0) WHERE length(value) > 1000;
SELECT value = jsonb_build_object('big', repeat('j', 100000)) AS same_value
FROM stream.read('types_json', 2);

------------------------------------------------------------------------------
-- publish_batch: one (partition, offset) per element, in input order
------------------------------------------------------------------------------
-- jsonb[] with keys: each element goes where its key says
CREATE TEMP TABLE types_batch AS
SELECT b.ordinality AS i, u.k, b.partition, b."offset"
FROM stream.publish_batch('types_json',
        ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}', '{"i": 5}', '{"i": 6}', '{"i": 7}', '{"i": 8}']::jsonb[],
        keys => ARRAY['a', 'b', 'c', 'a', 'b', 'c', 'a', 'd']) WITH ORDINALITY b
JOIN unnest(ARRAY['a', 'b', 'c', 'a', 'b', 'c', 'a', 'd']) WITH ORDINALITY u(k, ord) ON u.ord = b.ordinality;

SELECT i, k, partition, partition = stream.partition_for(k, 3) AS routed_by_key
FROM types_batch ORDER BY i;
-- offsets increase with input order within each partition, without gaps
SELECT partition, count(*) AS messages,
       bool_and("offset" = first_offset + rank - 1) AS consecutive_in_input_order
FROM (SELECT partition, "offset", min("offset") OVER w AS first_offset,
             row_number() OVER (PARTITION BY partition ORDER BY i) AS rank
      FROM types_batch WINDOW w AS (PARTITION BY partition)) x
GROUP BY partition ORDER BY partition;
-- each element is at the offset returned for it
SELECT b.i, r.key = b.k AS same_key, r.value
FROM types_batch b CROSS JOIN LATERAL stream.read('types_json', b.partition, b."offset", 1) r
ORDER BY b.i;

-- Reads stop at the last stable offset, which this very statement's open
-- transaction holds: publish in one statement, read back in the next.
-- text[] (an ARRAY of untyped literals) on a jsonb topic is parsed
CREATE TEMP TABLE types_b1 AS
SELECT * FROM stream.publish_batch('types_json', ARRAY['{"a":1}', '[2]', '"three"']) WITH ORDINALITY;
SELECT b.ordinality, b."offset" - min(b."offset") OVER () AS rel_offset, r.value
FROM types_b1 b CROSS JOIN LATERAL stream.read('types_json', b.partition, b."offset", 1) r
ORDER BY b.ordinality;
-- NULL-keyed elements of one batch share a partition
SELECT count(DISTINCT partition) AS partitions_used FROM types_b1;

-- text[] on a text topic, with NULL elements (tombstones) and headers
CREATE TEMP TABLE types_b2 AS
SELECT * FROM stream.publish_batch('types_text', ARRAY['one', NULL, 'three'],
         keys => ARRAY['k1', 'k2', NULL],
         headers => ARRAY['{"h": 1}'::jsonb, NULL, '{"h": 3}']) WITH ORDINALITY;
SELECT b.ordinality, b."offset" - min(b."offset") OVER () AS rel_offset, r.key, r.value,
       r.value IS NULL AS tombstone, r.headers
FROM types_b2 b CROSS JOIN LATERAL stream.read_text('types_text', b.partition, b."offset", 1) r
ORDER BY b.ordinality;

-- bytea[] on a bytea topic; text[] on a bytea topic is parsed
CREATE TEMP TABLE types_b3 AS
SELECT * FROM stream.publish_batch('types_bytea', ARRAY['\xdead'::bytea, '\xbeef', NULL]) WITH ORDINALITY;
SELECT b.ordinality, b."offset" - min(b."offset") OVER () AS rel_offset, r.value,
       r.value IS NULL AS tombstone
FROM types_b3 b CROSS JOIN LATERAL stream.read_bytea('types_bytea', b.partition, b."offset", 1) r
ORDER BY b.ordinality;
CREATE TEMP TABLE types_b4 AS
SELECT * FROM stream.publish_batch('types_bytea', ARRAY['\x0a0b', 'xyz']::text[]) WITH ORDINALITY;
SELECT b.ordinality, r.value
FROM types_b4 b CROSS JOIN LATERAL stream.read_bytea('types_bytea', b.partition, b."offset", 1) r
ORDER BY b.ordinality;

-- jsonb[] on a text topic stores the text forms
CREATE TEMP TABLE types_b5 AS
SELECT * FROM stream.publish_batch('types_text', ARRAY['{"x": [1,2]}'::jsonb, '"s"']);
SELECT r.value
FROM types_b5 b CROSS JOIN LATERAL stream.read_text('types_text', b.partition, b."offset", 1) r
ORDER BY b."offset";

-- a large batch of NULL-keyed messages: one row per element, offsets unique
SELECT count(*) AS rows, count(DISTINCT (partition, "offset")) AS distinct_positions
FROM stream.publish_batch('types_json', (SELECT array_agg(jsonb_build_object('n', g)) FROM generate_series(1, 2500) g));

------------------------------------------------------------------------------
-- per-key order: one transaction, several calls, call order = offset order
------------------------------------------------------------------------------
BEGIN;
SELECT partition = stream.partition_for('order-key', 3) AS routed FROM stream.publish('types_json', '{"step": 1}', key => 'order-key');
SELECT partition = stream.partition_for('order-key', 3) AS routed FROM stream.publish('types_json', '{"step": 2}', key => 'order-key');
SELECT count(*) FROM stream.publish_batch('types_json', ARRAY['{"step": 3}', '{"step": 4}']::jsonb[],
                                          keys => ARRAY['order-key', 'order-key']);
SELECT partition = stream.partition_for('order-key', 3) AS routed FROM stream.publish('types_json', '{"step": 5}', key => 'order-key');
DO $$
BEGIN
    FOR i IN 6..10 LOOP
        PERFORM stream.publish('types_json', jsonb_build_object('step', i), key => 'order-key');
    END LOOP;
END
$$;
COMMIT;

SELECT array_agg((value->>'step')::int ORDER BY "offset") AS steps_in_offset_order,
       count(DISTINCT "offset") AS distinct_offsets
FROM stream.read('types_json', stream.partition_for('order-key', 3), 0, 10000)
WHERE key = 'order-key';

------------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------------
SELECT stream.drop_topic('types_json');
SELECT stream.drop_topic('types_text');
SELECT stream.drop_topic('types_bytea');
SELECT count(*) AS topics_left FROM stream.topics WHERE topic LIKE 'types\_%';

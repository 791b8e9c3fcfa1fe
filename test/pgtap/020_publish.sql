-- 020_publish.sql: atomic publish, per-key order, routing, batches and offsets.
--
-- Reads return only offsets below the last stable offset, which excludes this
-- session's own open transaction, so this file commits (psql autocommit) and is
-- not wrapped in one transaction.  Test results are recorded only outside
-- transactions that roll back (pgTAP keeps them in temp tables); values from
-- rolled-back transactions travel in psql variables (\gset).  Topics are
-- tap_pub_*, dropped at the start (leftovers of an interrupted run) and end.
SET client_min_messages = warning;
DO $$
BEGIN
    PERFORM stream.drop_topic(t, if_exists => true)
    FROM unnest(ARRAY['tap_pub_atomic', 'tap_pub_gap', 'tap_pub_keys', 'tap_pub_route', 'tap_pub_batch',
                      'tap_pub_payload', 'tap_pub_bytes']) t;
    PERFORM stream.create_topic('tap_pub_atomic');
    PERFORM stream.create_topic('tap_pub_gap');
    PERFORM stream.create_topic('tap_pub_keys', partitions => 4);
    PERFORM stream.create_topic('tap_pub_route', partitions => 7);
    PERFORM stream.create_topic('tap_pub_batch', partitions => 4);
    PERFORM stream.create_topic('tap_pub_payload');
    PERFORM stream.create_topic('tap_pub_bytes', value_type => 'bytea');
END $$;

SELECT plan(60);

------------------------------------------------------------------------------
-- Atomic publish (invariant 2)
------------------------------------------------------------------------------

BEGIN;
SELECT "offset" AS atomic_rb FROM stream.publish('tap_pub_atomic', '{"n": "rolled back"}') \gset
SELECT count(*) AS atomic_rb_batch FROM stream.publish_batch('tap_pub_atomic',
    ARRAY['{"n": "rolled back batch 1"}', '{"n": "rolled back batch 2"}']::jsonb[]) \gset
ROLLBACK;
-- a statement that fails after publishing takes its message with it
DO $$
BEGIN
    PERFORM stream.publish('tap_pub_atomic', '{"n": "failed statement"}');
    RAISE EXCEPTION 'tap: abort after publish';
EXCEPTION WHEN raise_exception THEN
    NULL;
END $$;
SELECT "offset" AS atomic_c FROM stream.publish('tap_pub_atomic', '{"n": "committed"}') \gset

SELECT is(:atomic_rb_batch::bigint, 2::bigint, 'tap_ the rolled-back batch had published 2 messages');
SELECT is(ARRAY(SELECT value->>'n' FROM stream.read('tap_pub_atomic', 0, 0, 1000) ORDER BY "offset"),
          ARRAY['committed'],
          'tap_ rolled-back publishes (transaction, batch, failed statement) are never readable; the committed one is');
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_pub_atomic', 0, 0, 1000)),
          ARRAY[:atomic_c]::bigint[],
          'tap_ the committed message is read at the offset publish returned');
SELECT cmp_ok(:atomic_c::bigint, '>', :atomic_rb::bigint,
          'tap_ the committed publish got an offset after the rolled-back one');

------------------------------------------------------------------------------
-- Rolled-back offsets leave gaps, never reorderings (invariant 3)
------------------------------------------------------------------------------

SELECT "offset" AS gap_a FROM stream.publish('tap_pub_gap', '{"n": "a"}') \gset
BEGIN;
SELECT "offset" AS gap_b FROM stream.publish('tap_pub_gap', '{"n": "b"}') \gset
ROLLBACK;
SELECT "offset" AS gap_c FROM stream.publish('tap_pub_gap', '{"n": "c"}') \gset
-- the same with a savepoint inside one committed transaction
BEGIN;
SELECT "offset" AS gap_d FROM stream.publish('tap_pub_gap', '{"n": "d"}') \gset
SAVEPOINT s1;
SELECT "offset" AS gap_e FROM stream.publish('tap_pub_gap', '{"n": "e"}') \gset
ROLLBACK TO SAVEPOINT s1;
SELECT "offset" AS gap_f FROM stream.publish('tap_pub_gap', '{"n": "f"}') \gset
COMMIT;

SELECT is(ARRAY[:gap_a, :gap_b, :gap_c, :gap_d, :gap_e, :gap_f]::bigint[],
          ARRAY[:gap_a, :gap_a + 1, :gap_a + 2, :gap_a + 3, :gap_a + 4, :gap_a + 5]::bigint[],
          'tap_ offsets are handed out in call order and a rolled-back offset is not handed out again');
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_pub_gap', 0, 0, 1000)),
          ARRAY[:gap_a, :gap_a + 2, :gap_a + 3, :gap_a + 5]::bigint[],
          'tap_ reading shows the gaps of the rolled-back offsets: [x, x+2, x+3, x+5]');
SELECT is(ARRAY(SELECT value->>'n' FROM stream.read('tap_pub_gap', 0, 0, 1000)),
          ARRAY['a', 'c', 'd', 'f'],
          'tap_ the committed messages come back in publish order, rolled-back ones absent');

------------------------------------------------------------------------------
-- Per-key order with publish and publish_batch (invariant 3)
------------------------------------------------------------------------------

CREATE TEMP TABLE tap_sent (seq int, key text, value jsonb, partition int, "offset" bigint, via text);
CREATE TEMP TABLE tap_keys (key text);
INSERT INTO tap_keys VALUES ('alice'), ('bob'), ('carol'), ('dave'), ('eve'), ('frank'), ('grace'), ('heidi');

-- seq 1-30: one transaction, interleaving the keys
DO $$
DECLARE
    r record;
    k text;
    v jsonb;
BEGIN
    FOR i IN 1..30 LOOP
        FOR k IN SELECT key FROM tap_keys ORDER BY key LOOP
            v := jsonb_build_object('key', k, 'seq', i);
            SELECT * INTO r FROM stream.publish('tap_pub_keys', v, key => k);
            INSERT INTO tap_sent VALUES (i, k, v, r.partition, r."offset", 'publish');
        END LOOP;
    END LOOP;
END $$;
-- seq 31-40: one transaction per message
DO $$
DECLARE
    r record;
    k text;
    v jsonb;
BEGIN
    FOR i IN 31..40 LOOP
        FOR k IN SELECT key FROM tap_keys ORDER BY key LOOP
            v := jsonb_build_object('key', k, 'seq', i);
            SELECT * INTO r FROM stream.publish('tap_pub_keys', v, key => k);
            INSERT INTO tap_sent VALUES (i, k, v, r.partition, r."offset", 'publish');
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
-- seq 41-60: one batch, interleaving the keys; result row n belongs to input n
WITH input AS (
    SELECT array_agg(k.key ORDER BY i, k.key) AS keys,
           array_agg(jsonb_build_object('key', k.key, 'seq', i) ORDER BY i, k.key) AS vals
    FROM generate_series(41, 60) i, tap_keys k
)
INSERT INTO tap_sent
SELECT (input.vals[b.n]->>'seq')::int, input.keys[b.n], input.vals[b.n], b.partition, b."offset", 'batch'
FROM input, stream.publish_batch('tap_pub_keys', input.vals, input.keys) WITH ORDINALITY b(partition, "offset", n);

CREATE TEMP TABLE tap_read AS
SELECT r.*, (r.value->>'seq')::int AS seq
FROM generate_series(0, 3) p, stream.read('tap_pub_keys', p, 0, 100000) r;

SELECT is(count(*), 480::bigint, 'tap_ 8 keys x 60 messages were published') FROM tap_sent;
SELECT is(count(DISTINCT partition), 4::bigint, 'tap_ the keys cover all 4 partitions (test is not vacuous)')
FROM tap_sent;
SELECT is(ARRAY(SELECT key FROM tap_sent GROUP BY key HAVING count(DISTINCT partition) > 1 ORDER BY key),
          '{}'::text[],
          'tap_ every key always went to one partition, with publish and publish_batch');
SELECT is(ARRAY(SELECT key || '/' || seq FROM tap_sent
                WHERE partition <> stream.partition_for(key, 4) ORDER BY key, seq),
          '{}'::text[],
          'tap_ keyed publish routes to stream.partition_for(key, partitions)');
SELECT is(ARRAY(SELECT key || '/' || seq
                FROM (SELECT key, seq, "offset", lag("offset") OVER (PARTITION BY key ORDER BY seq) AS prev
                      FROM tap_sent) s
                WHERE "offset" <= prev ORDER BY key, seq),
          '{}'::text[],
          'tap_ per key, offsets returned by publish and publish_batch increase in call order');
SELECT is(ARRAY(SELECT seq FROM tap_read r WHERE r.key = k.key ORDER BY r."offset"),
          ARRAY(SELECT generate_series(1, 60)),
          'tap_ key ' || k.key || ': a reader sees its 60 messages in publish order')
FROM tap_keys k ORDER BY k.key;
SELECT bag_eq(
    $$SELECT partition, "offset", key, value FROM tap_read$$,
    $$SELECT partition, "offset", key, value FROM tap_sent$$,
    'tap_ every published message is read exactly once, at the partition and offset publish returned');
SELECT is(ARRAY(SELECT "offset" FROM tap_read r WHERE r.partition = p ORDER BY 1),
          ARRAY(SELECT generate_series(0::bigint, (SELECT count(*) FROM tap_sent s WHERE s.partition = p) - 1)),
          'tap_ partition ' || p || ' without rollbacks has dense offsets 0 .. n-1')
FROM generate_series(0, 3) p ORDER BY p;
SELECT is(ARRAY(SELECT end_offset FROM stream.partitions WHERE topic = 'tap_pub_keys' ORDER BY partition),
          ARRAY(SELECT count(s.*) FROM generate_series(0, 3) p LEFT JOIN tap_sent s ON s.partition = p
                GROUP BY p ORDER BY p),
          'tap_ end_offset of each partition is its message count when nothing rolled back');

------------------------------------------------------------------------------
-- Routing: Kafka's partitioner, explicit partitions
------------------------------------------------------------------------------

-- Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java)
SELECT is(ARRAY(SELECT stream.murmur2(k) FROM unnest(ARRAY['21', 'foobar', 'a-little-bit-long-string',
              'a-little-bit-longer-string', 'lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', 'abc']) k),
          ARRAY[-973932308, -790332482, -985981536, -1486304829, -58897971, 479470107],
          'tap_ stream.murmur2 matches Kafka''s murmur2 test vectors');
SELECT is(ARRAY(SELECT stream.partition_for(k, n)
                FROM unnest(ARRAY['21', 'foobar', 'abc', 'ключ', '鍵🎉', '']) k, unnest(ARRAY[1, 3, 7, 100]) n),
          ARRAY(SELECT (stream.murmur2(k) & 2147483647) % n
                FROM unnest(ARRAY['21', 'foobar', 'abc', 'ключ', '鍵🎉', '']) k, unnest(ARRAY[1, 3, 7, 100]) n),
          'tap_ partition_for(key, n) = toPositive(murmur2(key)) % n');

CREATE TEMP TABLE tap_route (key text, partition int, "offset" bigint, via text);
DO $$
DECLARE
    r record;
    k text;
BEGIN
    FOR k IN SELECT 'user-' || i FROM generate_series(1, 100) i
             UNION ALL SELECT unnest(ARRAY['ключ', '鍵🎉', '', ' ', 'Ünïcödé'])
    LOOP
        SELECT * INTO r FROM stream.publish('tap_pub_route', jsonb_build_object('k', k), key => k);
        INSERT INTO tap_route VALUES (k, r.partition, r."offset", 'publish');
    END LOOP;
END $$;
WITH input AS (
    SELECT array_agg(k ORDER BY i) AS keys, array_agg(to_jsonb(k) ORDER BY i) AS vals
    FROM unnest(ARRAY(SELECT 'order-' || i FROM generate_series(1, 100) i) || ARRAY['ключ', '', 'Ünïcödé'])
         WITH ORDINALITY u(k, i)
)
INSERT INTO tap_route
SELECT input.keys[b.n], b.partition, b."offset", 'batch'
FROM input, stream.publish_batch('tap_pub_route', input.vals, input.keys) WITH ORDINALITY b(partition, "offset", n);

SELECT is(count(DISTINCT partition), 7::bigint, 'tap_ the routed keys cover all 7 partitions (test is not vacuous)')
FROM tap_route;
SELECT is(ARRAY(SELECT via || ':' || key FROM tap_route WHERE partition <> stream.partition_for(key, 7) ORDER BY 1),
          '{}'::text[],
          'tap_ publish and publish_batch route every key (unicode, empty, blank) to stream.partition_for(key, 7)');

SELECT stream.partition_for('override-key', 7) AS natural,
       (stream.partition_for('override-key', 7) + 3) % 7 AS target \gset
SELECT partition AS ov_part, "offset" AS ov_off
FROM stream.publish('tap_pub_route', '{"n": "override"}', key => 'override-key', partition => :target) \gset
SELECT is(:ov_part, :target, 'tap_ an explicit partition overrides the key''s partition');
SELECT is(ARRAY(SELECT key FROM stream.read('tap_pub_route', :target, :ov_off, 1)),
          ARRAY['override-key'],
          'tap_ the overridden message is in the explicit partition, with its key');
SELECT is((SELECT count(*) FROM stream.read('tap_pub_route', :natural, 0, 100000) WHERE value->>'n' = 'override'),
          0::bigint, 'tap_ and not in the key''s own partition');
SELECT is(ARRAY(SELECT r.partition
                FROM generate_series(0, 6) p, stream.publish('tap_pub_route', '{"n": "null key"}', partition => p) r
                ORDER BY p),
          ARRAY[0, 1, 2, 3, 4, 5, 6],
          'tap_ a NULL-keyed message goes to the explicit partition, for every partition');
SELECT is(ARRAY(SELECT partition FROM stream.publish('tap_pub_route', '"plain text"'::text, 'k', NULL, 2)
                UNION ALL
                SELECT partition FROM stream.publish('tap_pub_route', '"json text"'::text, key => 'k', partition => 5)),
          ARRAY[2, 5],
          'tap_ the text overload honours the explicit partition too');
SELECT throws_ok($$SELECT stream.publish('tap_pub_route', '{}', partition => 7)$$, '22023', NULL,
                 'tap_ partition = partitions is out of range (22023)');
SELECT throws_ok($$SELECT stream.publish('tap_pub_route', '{}', partition => -1)$$, '22023', NULL,
                 'tap_ a negative partition is out of range (22023)');

------------------------------------------------------------------------------
-- Batches: input order, empty, sticky NULL keys
------------------------------------------------------------------------------

CREATE TEMP TABLE tap_batch AS
WITH input AS (
    SELECT ARRAY['k01', 'k02', 'k03', 'k04', 'k05', 'k06', 'k07', 'k08', 'k09', 'k10', 'k11', 'k12'] AS keys
)
SELECT b.n, input.keys[b.n] AS key, jsonb_build_object('n', b.n) AS value, b.partition, b."offset"
FROM input,
     stream.publish_batch('tap_pub_batch',
         ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 12) i), input.keys)
     WITH ORDINALITY b(partition, "offset", n);

SELECT is(count(*), 12::bigint, 'tap_ publish_batch returns one row per input value') FROM tap_batch;
SELECT ok(count(DISTINCT partition) > 1, 'tap_ the batch spans several partitions (test is not vacuous)')
FROM tap_batch;
SELECT is(ARRAY(SELECT n FROM tap_batch WHERE partition <> stream.partition_for(key, 4) ORDER BY n),
          '{}'::bigint[],
          'tap_ result row n has the partition of input n''s key');
SELECT is(ARRAY(SELECT b.n FROM tap_batch b
                LEFT JOIN LATERAL stream.read('tap_pub_batch', b.partition, b."offset", 1) r ON true
                WHERE r."offset" IS DISTINCT FROM b."offset" OR r.value IS DISTINCT FROM b.value
                   OR r.key IS DISTINCT FROM b.key
                ORDER BY b.n),
          '{}'::bigint[],
          'tap_ result row n names the partition and offset where input n is stored (input order)');

SELECT sum(end_offset) AS batch_end_before FROM stream.partitions WHERE topic = 'tap_pub_batch' \gset
SELECT is((SELECT count(*) FROM stream.publish_batch('tap_pub_batch', ARRAY[]::jsonb[])), 0::bigint,
          'tap_ an empty jsonb[] batch returns no rows');
SELECT is((SELECT count(*) FROM stream.publish_batch('tap_pub_batch', '{}'::text[], '{}'::text[], '{}'::jsonb[])),
          0::bigint, 'tap_ an empty text[] batch with empty keys and headers returns no rows');
SELECT is((SELECT count(*) FROM stream.publish_batch('tap_pub_batch', '{}'::bytea[])), 0::bigint,
          'tap_ an empty bytea[] batch returns no rows');
SELECT is((SELECT sum(end_offset) FROM stream.partitions WHERE topic = 'tap_pub_batch'),
          :batch_end_before::numeric, 'tap_ empty batches published nothing (end offsets unchanged)');

CREATE TEMP TABLE tap_sticky AS
SELECT 'no keys'::text AS via, b.*
FROM stream.publish_batch('tap_pub_batch', ARRAY(SELECT jsonb_build_object('s', i) FROM generate_series(1, 25) i))
     WITH ORDINALITY b(partition, "offset", n)
UNION ALL
SELECT 'NULL keys', b.*
FROM stream.publish_batch('tap_pub_batch', ARRAY(SELECT jsonb_build_object('s', i) FROM generate_series(1, 25) i),
                          array_fill(NULL::text, ARRAY[25]))
     WITH ORDINALITY b(partition, "offset", n);

SELECT is(count(DISTINCT partition), 1::bigint, 'tap_ a batch without keys sticks to one partition')
FROM tap_sticky WHERE via = 'no keys';
SELECT is(count(DISTINCT partition), 1::bigint, 'tap_ a batch of NULL keys sticks to one partition')
FROM tap_sticky WHERE via = 'NULL keys';
SELECT is(ARRAY(SELECT "offset" - n FROM tap_sticky WHERE via = v GROUP BY "offset" - n),
          ARRAY(SELECT min("offset") - 1 FROM tap_sticky WHERE via = v),
          'tap_ sticky batch (' || v || '): consecutive offsets in input order')
FROM unnest(ARRAY['no keys', 'NULL keys']) v ORDER BY v DESC;

CREATE TEMP TABLE tap_mixed AS
SELECT b.n, k.key, b.partition, b."offset"
FROM stream.publish_batch('tap_pub_batch',
         ARRAY(SELECT jsonb_build_object('m', i) FROM generate_series(1, 8) i),
         ARRAY['x', NULL, 'y', NULL, NULL, 'z', NULL, 'x'])
     WITH ORDINALITY b(partition, "offset", n)
JOIN unnest(ARRAY['x', NULL, 'y', NULL, NULL, 'z', NULL, 'x']) WITH ORDINALITY k(key, n) USING (n);
SELECT is(count(DISTINCT partition), 1::bigint, 'tap_ in a mixed batch the NULL-keyed messages share one partition')
FROM tap_mixed WHERE key IS NULL;
SELECT is(ARRAY(SELECT n FROM tap_mixed WHERE key IS NOT NULL AND partition <> stream.partition_for(key, 4)),
          '{}'::bigint[], 'tap_ in a mixed batch the keyed messages follow their keys');
SELECT is(ARRAY(SELECT n FROM tap_mixed m WHERE "offset" <= (SELECT max("offset") FROM tap_mixed p
                                                             WHERE p.partition = m.partition AND p.n < m.n)),
          '{}'::bigint[], 'tap_ in a mixed batch offsets grow in input order within each partition');

-- a batch larger than one insert chunk (1000 rows) keeps order and density
CREATE TEMP TABLE tap_long AS
SELECT b.* FROM stream.publish_batch('tap_pub_batch', ARRAY(SELECT jsonb_build_object('l', i) FROM generate_series(1, 2500) i))
                WITH ORDINALITY b(partition, "offset", n);
SELECT is(count(DISTINCT partition), 1::bigint, 'tap_ a 2500-message NULL-keyed batch sticks to one partition')
FROM tap_long;
SELECT is(ARRAY(SELECT "offset" - n FROM tap_long GROUP BY "offset" - n),
          ARRAY(SELECT min("offset") - 1 FROM tap_long),
          'tap_ the 2500 messages have consecutive offsets in input order');
SELECT is(ARRAY(SELECT (r.value->>'l')::int
                FROM stream.read('tap_pub_batch', (SELECT min(partition) FROM tap_long),
                                 (SELECT min("offset") FROM tap_long), 2500) r),
          ARRAY(SELECT generate_series(1, 2500)),
          'tap_ and read back in input order, across insert chunks');

------------------------------------------------------------------------------
-- Payloads: large (TOASTed) values, keys and headers come back intact
------------------------------------------------------------------------------

CREATE TEMP TABLE tap_big AS SELECT string_agg(md5(i::text), '' ORDER BY i) AS s FROM generate_series(1, 6000) i;
SELECT FROM stream.publish('tap_pub_payload', (SELECT to_jsonb(s) FROM tap_big), key => 'big-key',
                           headers => '{"trace-id": "abc", "n": 1}');
SELECT FROM stream.publish_batch('tap_pub_payload',
    ARRAY[(SELECT to_jsonb(s) FROM tap_big), (SELECT to_jsonb(reverse(s)) FROM tap_big)],
    ARRAY['b1', NULL], ARRAY['{"i": 1}', NULL]::jsonb[]);
SELECT is(ARRAY(SELECT md5(value #>> '{}') FROM stream.read('tap_pub_payload', 0)),
          ARRAY(SELECT md5(x) FROM tap_big, unnest(ARRAY[s, s, reverse(s)]) WITH ORDINALITY u(x, i) ORDER BY i),
          'tap_ 192 kB jsonb values from publish and publish_batch read back intact');
SELECT is(ARRAY(SELECT coalesce(key, '<null>') || ' ' || coalesce(headers::text, '<null>')
                FROM stream.read('tap_pub_payload', 0)),
          ARRAY['big-key {"n": 1, "trace-id": "abc"}', 'b1 {"i": 1}', '<null> <null>'],
          'tap_ keys and headers read back as published, NULLs included');

CREATE TEMP TABLE tap_bin AS
SELECT decode(string_agg(md5(i::text), '' ORDER BY i), 'hex') AS b FROM generate_series(1, 10000) i;
SELECT FROM stream.publish('tap_pub_bytes', (SELECT b FROM tap_bin));
SELECT FROM stream.publish_batch('tap_pub_bytes', ARRAY[(SELECT b FROM tap_bin), '\x00ff'::bytea, ''::bytea]);
SELECT is(ARRAY(SELECT md5(value) FROM stream.read_bytea('tap_pub_bytes', 0)),
          ARRAY(SELECT md5(x) FROM tap_bin, unnest(ARRAY[b, b, '\x00ff'::bytea, ''::bytea]) WITH ORDINALITY u(x, i)
                ORDER BY i),
          'tap_ bytea values (160 kB, two bytes, empty) read back byte for byte');

------------------------------------------------------------------------------
-- Cleanup
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT stream.drop_topic(t)
                  FROM unnest(ARRAY['tap_pub_atomic', 'tap_pub_gap', 'tap_pub_keys', 'tap_pub_route', 'tap_pub_batch',
                                    'tap_pub_payload', 'tap_pub_bytes']) t$$,
                'tap_ the test topics are dropped');
SELECT is(count(*), 0::bigint, 'tap_ no tap_pub_ topic is left') FROM stream.topics WHERE topic LIKE 'tap\_pub\_%';

SELECT * FROM finish();

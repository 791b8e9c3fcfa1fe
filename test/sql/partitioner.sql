-- Kafka's default partitioner: murmur2 of the key's UTF-8 bytes, sign bit
-- cleared, modulo the partition count; an explicit partition overrides the
-- key; NULL keys are spread over all partitions.
-- Expected values: Kafka's own unit-test vectors (Utils.murmur2 and the
-- default partitioner), and for the non-ASCII keys an independent port of
-- Kafka's Java murmur2 applied to the UTF-8 bytes.

-- murmur2: Kafka's vectors
SELECT k, stream.murmur2(k) AS murmur2
FROM (VALUES ('21', 1), ('foobar', 2), ('a-little-bit-long-string', 3),
             ('a-little-bit-longer-string', 4),
             ('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', 5), ('abc', 6)) v(k, n)
ORDER BY n;

-- key -> partition with 1000 partitions (the empty key is hashed too)
SELECT k, stream.partition_for(k, 1000) AS partition
FROM (VALUES ('', 1), ('a', 2), ('ab', 3), ('abc', 4), ('123456789', 5)) v(k, n)
ORDER BY n;

-- non-ASCII keys hash their UTF-8 bytes (2, 3 and 4 byte sequences;
-- lengths leaving tails of 0, 1, 2 and 3 bytes after the 4-byte blocks)
SELECT k, octet_length(k) AS utf8_bytes, stream.murmur2(k) AS murmur2,
       stream.partition_for(k, 1000) AS partition
FROM (VALUES ('naïve', 1), ('日本', 2), ('ключ', 3), ('é', 4), ('€uro', 5),
             ('über', 6), ('ñandú', 7), ('🎉', 8)) v(k, n)
ORDER BY n;

-- one partition: everything goes to 0; NULL in, NULL out (STRICT)
SELECT stream.partition_for('anything', 1) AS p1,
       stream.partition_for(NULL, 3) IS NULL AS null_key,
       stream.partition_for('a', NULL) IS NULL AS null_partitions,
       stream.murmur2(NULL) IS NULL AS null_hash;

------------------------------------------------------------------------------
-- publish routes like the partitioner
------------------------------------------------------------------------------
SELECT stream.create_topic('part_keys', 7);

-- expected partitions for 7 partitions, from the reference implementation
CREATE TEMP TABLE part_expect (n int, k text, p int);
INSERT INTO part_expect VALUES
    (1, '21', 3), (2, 'foobar', 0), (3, 'abc', 4), (4, '', 2), (5, 'a', 5),
    (6, 'naïve', 5), (7, '日本', 1), (8, 'ключ', 4), (9, 'é', 4), (10, '€uro', 5);

CREATE TEMP TABLE part_got AS
SELECT e.n, e.k, e.p AS expected, r.partition, r."offset"
FROM part_expect e
CROSS JOIN LATERAL stream.publish('part_keys', jsonb_build_object('n', e.n), key => e.k) r;

SELECT n, k, expected, partition, partition = stream.partition_for(k, 7) AS matches_partition_for
FROM part_got ORDER BY n;

-- each message is where publish said it is
SELECT g.n, m.key = g.k AS same_key, m.value
FROM part_got g
CROSS JOIN LATERAL stream.read('part_keys', g.partition, g."offset", 1) m
ORDER BY g.n;

-- the same key always goes to the same partition
SELECT count(DISTINCT r.partition) AS partitions_used, min(r.partition) AS partition
FROM generate_series(1, 20) i
CROSS JOIN LATERAL stream.publish('part_keys', to_jsonb(i), key => 'same-key') r;
SELECT stream.partition_for('same-key', 7) AS expected;

-- publish_batch routes each keyed element the same way
SELECT b.ordinality, k, b.partition, b.partition = stream.partition_for(k, 7) AS matches
FROM stream.publish_batch('part_keys',
         ARRAY['{"b":1}', '{"b":2}', '{"b":3}', '{"b":4}']::jsonb[],
         keys => ARRAY['21', 'foobar', 'naïve', '']) WITH ORDINALITY b
JOIN unnest(ARRAY['21', 'foobar', 'naïve', '']) WITH ORDINALITY u(k, ord) ON u.ord = b.ordinality
ORDER BY b.ordinality;

-- an explicit partition overrides the key
SELECT stream.partition_for('abc', 7) AS key_partition;
SELECT partition FROM stream.publish('part_keys', '{"override":true}', key => 'abc', partition => 6);
SELECT key, value FROM stream.read('part_keys', 6) WHERE value ? 'override';

SELECT stream.drop_topic('part_keys');

------------------------------------------------------------------------------
-- NULL keys spread over every partition
------------------------------------------------------------------------------
SELECT stream.create_topic('part_spread', 4);

-- 40 messages, one publish call each
DO $$
BEGIN
    FOR i IN 1..40 LOOP
        PERFORM stream.publish('part_spread', to_jsonb(i));
    END LOOP;
END
$$;

SELECT partition, messages > 0 AS got_some
FROM stream.partitions WHERE topic = 'part_spread' ORDER BY partition;
SELECT sum(messages) AS total FROM stream.partitions WHERE topic = 'part_spread';

-- every message came back exactly once
SELECT count(*) AS read, count(DISTINCT value) AS distinct_values,
       min(value::text::int) AS lo, max(value::text::int) AS hi
FROM generate_series(0, 3) p
CROSS JOIN LATERAL stream.read('part_spread', p) m;

SELECT stream.drop_topic('part_spread');
SELECT count(*) AS topics_left FROM stream.topics WHERE topic LIKE 'part\_%';

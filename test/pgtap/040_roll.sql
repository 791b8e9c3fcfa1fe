-- 040_roll.sql: segment rolling with segment_bytes => 8192.  A partition
-- becomes a chain of segments; reading from 0 returns every offset once, in
-- order, across the segment boundaries; base offsets increase; nothing is
-- deleted (log_start_offset stays 0); drop_topic removes every segment.
--
-- Rolls are done asynchronously by a background worker and the tests read
-- back what they published, so this file commits between statements (psql
-- autocommit, COMMIT inside DO) and waits for rolls with bounded loops over
-- the catalog, never a bare sleep.  Topics: tap_roll_*.
--
-- Sizes: every message carries a 1000-character value, counted by the roll
-- trigger as a little over 1000 bytes, so an active segment is full (and asks
-- for a roll) once it holds 8 messages, and is not while it holds 7 or fewer.
SET client_min_messages = warning;
DO $$
BEGIN
    PERFORM stream.drop_topic(t, if_exists => true) FROM unnest(ARRAY['tap_roll_a', 'tap_roll_b']) t;
    PERFORM stream.create_topic('tap_roll_a', segment_bytes => 8192);
    PERFORM stream.create_topic('tap_roll_b', partitions => 2, segment_bytes => 8192);
END $$;

-- Segments of a partition, oldest first.
CREATE FUNCTION pg_temp.segments(p_topic text, p_partition int)
RETURNS TABLE (segment_id bigint, base_offset bigint)
LANGUAGE sql AS $$
    SELECT s.segment_id, s.base_offset FROM stream._segments s JOIN stream._topics t USING (topic_id)
    WHERE t.topic = p_topic AND s.partition = p_partition ORDER BY s.segment_id
$$;

-- Wait (at most 60 s) until the partition has at least min_segments segments,
-- every base offset is recorded, and the newest segment is not full, so that
-- no roll is still asked for: afterwards the catalog does not change under the
-- tests.  Returns whether that state was reached.
CREATE FUNCTION pg_temp.wait_rolled(p_topic text, p_partition int, p_min_segments int) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
    v_segments int;
    v_null_bases int;
    v_newest_base bigint;
    v_end bigint;
BEGIN
    LOOP
        SELECT count(*), count(*) FILTER (WHERE base_offset IS NULL), max(base_offset)
        INTO v_segments, v_null_bases, v_newest_base
        FROM pg_temp.segments(p_topic, p_partition);
        SELECT end_offset INTO v_end FROM stream.partitions WHERE topic = p_topic AND partition = p_partition;
        IF v_segments >= p_min_segments AND v_null_bases = 0 AND v_end - v_newest_base < 8 THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE WARNING 'tap: % partition %: % segments, % without base offset, newest base %, end offset %',
                p_topic, p_partition, v_segments, v_null_bases, v_newest_base, v_end;
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;

-- Read a whole partition page by page, max_messages at a time.
CREATE FUNCTION pg_temp.read_paged(p_topic text, p_partition int, p_page int)
RETURNS TABLE ("offset" bigint, n int)
LANGUAGE plpgsql AS $$
DECLARE
    v_next bigint := 0;
    v_got int;
    r record;
BEGIN
    LOOP
        v_got := 0;
        FOR r IN SELECT * FROM stream.read(p_topic, p_partition, v_next, p_page) LOOP
            "offset" := r."offset";
            n := (r.value->>'n')::int;
            RETURN NEXT;
            v_got := v_got + 1;
            v_next := r."offset" + 1;
        END LOOP;
        EXIT WHEN v_got = 0;
    END LOOP;
END $$;

SELECT plan(24);

------------------------------------------------------------------------------
-- Roll a one-partition topic at least twice
------------------------------------------------------------------------------

-- 30 single publishes, one transaction each
DO $$
BEGIN
    FOR i IN 1..30 LOOP
        PERFORM stream.publish('tap_roll_a', jsonb_build_object('n', i, 'pad', repeat('x', 1000)));
        COMMIT;
    END LOOP;
END $$;
SELECT ok(pg_temp.wait_rolled('tap_roll_a', 0, 2),
          'tap_ after 30 KB of publishes the partition rolled (segments > 1, base offsets recorded)');
SELECT cmp_ok(segments, '>', 1, 'tap_ stream.partitions.segments > 1')
FROM stream.partitions WHERE topic = 'tap_roll_a' AND partition = 0;

-- 30 more in batches of 5 (the multi-insert path), all into the new segment,
-- which fills it and rolls it again
DO $$
BEGIN
    FOR b IN 0..5 LOOP
        PERFORM stream.publish_batch('tap_roll_a',
            ARRAY(SELECT jsonb_build_object('n', 30 + 5 * b + i, 'pad', repeat('x', 1000))
                  FROM generate_series(1, 5) i ORDER BY i));
        COMMIT;
    END LOOP;
END $$;
SELECT ok(pg_temp.wait_rolled('tap_roll_a', 0, 3),
          'tap_ 30 KB more, published in batches, rolled the partition again (segments >= 3)');

SELECT results_eq(
    $$SELECT log_start_offset, end_offset, last_stable_offset, messages FROM stream.partitions
      WHERE topic = 'tap_roll_a'$$,
    $$VALUES (0::bigint, 60::bigint, 60::bigint, 60::bigint)$$,
    'tap_ after the rolls: log_start_offset 0, end_offset 60, LSO 60, 60 messages');
SELECT is(segments, (SELECT count(*)::int FROM pg_temp.segments('tap_roll_a', 0)),
          'tap_ stream.partitions.segments counts the catalog''s segments')
FROM stream.partitions WHERE topic = 'tap_roll_a';
SELECT is(ARRAY(SELECT to_regclass('stream_data.seg_' || segment_id) IS NOT NULL FROM pg_temp.segments('tap_roll_a', 0)),
          array_fill(true, ARRAY[(SELECT count(*)::int FROM pg_temp.segments('tap_roll_a', 0))]),
          'tap_ every segment has its table');

-- base offsets
SELECT is((SELECT base_offset FROM pg_temp.segments('tap_roll_a', 0) LIMIT 1), 0::bigint,
          'tap_ the first segment starts at offset 0');
SELECT is(ARRAY(SELECT base_offset FROM pg_temp.segments('tap_roll_a', 0)),
          ARRAY(SELECT DISTINCT base_offset FROM pg_temp.segments('tap_roll_a', 0) ORDER BY 1),
          'tap_ base_offset strictly increases with segment_id');
-- each segment holds exactly the offsets from its base to the next one's
CREATE TEMP TABLE tap_seg_range AS
SELECT segment_id, base_offset, lead(base_offset) OVER (ORDER BY segment_id) AS next_base
FROM pg_temp.segments('tap_roll_a', 0);
CREATE TEMP TABLE tap_seg_rows (segment_id bigint, "offset" bigint);
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT segment_id FROM tap_seg_range LOOP
        EXECUTE format('INSERT INTO tap_seg_rows SELECT %s, "offset" FROM stream_data.%I',
                       s.segment_id, 'seg_' || s.segment_id);
    END LOOP;
END $$;
SELECT is(ARRAY(SELECT r.segment_id || ':' || r."offset" FROM tap_seg_rows r JOIN tap_seg_range g USING (segment_id)
                WHERE r."offset" < g.base_offset OR r."offset" >= g.next_base ORDER BY 1),
          '{}'::text[],
          'tap_ every segment holds only offsets in [base_offset, next base_offset): segments do not overlap');
SELECT is(ARRAY(SELECT "offset" FROM tap_seg_rows ORDER BY 1), ARRAY(SELECT generate_series(0::bigint, 59)),
          'tap_ the segment tables hold offsets 0 .. 59 once each');

-- reading across segments
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_roll_a', 0, 0, 100000)),
          ARRAY(SELECT generate_series(0::bigint, 59)),
          'tap_ reading from 0 returns offsets 0 .. 59 in order, each exactly once');
SELECT is(ARRAY(SELECT (value->>'n')::int FROM stream.read('tap_roll_a', 0, 0, 100000)),
          ARRAY(SELECT generate_series(1, 60)),
          'tap_ and the messages in publish order');
SELECT is(ARRAY(SELECT "offset" FROM pg_temp.read_paged('tap_roll_a', 0, 7)),
          ARRAY(SELECT generate_series(0::bigint, 59)),
          'tap_ reading 7 at a time crosses the segment boundaries without gap or repeat');
SELECT is(ARRAY(SELECT n FROM pg_temp.read_paged('tap_roll_a', 0, 1)),
          ARRAY(SELECT generate_series(1, 60)),
          'tap_ reading 1 at a time too');
SELECT is(ARRAY(SELECT g.base_offset || '->' || coalesce(r."offset"::text, 'none')
                FROM tap_seg_range g
                LEFT JOIN LATERAL stream.read('tap_roll_a', 0, g.base_offset, 1) r ON true
                WHERE g.base_offset < 60 AND r."offset" IS DISTINCT FROM g.base_offset
                ORDER BY g.segment_id),
          '{}'::text[],
          'tap_ a read starting at the base offset of any non-empty segment begins exactly there');
SELECT is(ARRAY(SELECT g.base_offset || ': '
                       || array_to_string(ARRAY(SELECT r."offset"
                                                FROM stream.read('tap_roll_a', 0, g.base_offset - 2, 4) r), ',')
                FROM tap_seg_range g WHERE g.base_offset BETWEEN 2 AND 58 ORDER BY g.segment_id),
          ARRAY(SELECT g.base_offset || ': '
                       || array_to_string(ARRAY[g.base_offset - 2, g.base_offset - 1, g.base_offset,
                                                g.base_offset + 1], ',')
                FROM tap_seg_range g WHERE g.base_offset BETWEEN 2 AND 58 ORDER BY g.segment_id),
          'tap_ a read straddling each boundary returns the 4 offsets around it');

------------------------------------------------------------------------------
-- Partitions roll independently
------------------------------------------------------------------------------

DO $$
BEGIN
    FOR i IN 1..30 LOOP
        PERFORM stream.publish('tap_roll_b', jsonb_build_object('n', i, 'pad', repeat('x', 1000)), partition => 1);
        COMMIT;
    END LOOP;
END $$;
SELECT ok(pg_temp.wait_rolled('tap_roll_b', 1, 2), 'tap_ partition 1 of a 2-partition topic rolled');
SELECT cmp_ok(segments, '>', 1, 'tap_ partition 1 has more than one segment')
FROM stream.partitions WHERE topic = 'tap_roll_b' AND partition = 1;
SELECT is(segments, 1, 'tap_ partition 0, never published to, still has one segment')
FROM stream.partitions WHERE topic = 'tap_roll_b' AND partition = 0;
SELECT is(ARRAY(SELECT (value->>'n')::int FROM stream.read('tap_roll_b', 1, 0, 100000)),
          ARRAY(SELECT generate_series(1, 30)),
          'tap_ partition 1 reads back all its messages in order across its segments');
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_roll_b', 0, 0, 100000)), '{}'::bigint[],
          'tap_ partition 0 reads back nothing');

------------------------------------------------------------------------------
-- drop_topic removes every segment
------------------------------------------------------------------------------

CREATE TEMP TABLE tap_roll_segs AS
SELECT s.segment_id FROM stream._segments s JOIN stream._topics t USING (topic_id)
WHERE t.topic IN ('tap_roll_a', 'tap_roll_b');
SELECT lives_ok($$SELECT stream.drop_topic(t) FROM unnest(ARRAY['tap_roll_a', 'tap_roll_b']) t$$,
                'tap_ the rolled topics are dropped');
SELECT is(ARRAY(SELECT 'seg_' || segment_id FROM tap_roll_segs
                WHERE to_regclass('stream_data.seg_' || segment_id) IS NOT NULL ORDER BY 1),
          '{}'::text[], 'tap_ drop_topic dropped every segment table of the rolled topics');
SELECT is((SELECT count(*) FROM stream._segments WHERE segment_id IN (SELECT segment_id FROM tap_roll_segs)),
          0::bigint, 'tap_ and their catalog rows');

SELECT * FROM finish();

-- Segments: a partition is a chain of tables in stream_data; the active one
-- rolls (asynchronously, in a background worker) once segment_bytes of
-- messages went into it, and reads cross segment boundaries transparently.
-- Where a segment boundary falls depends on the roller's timing, so only
-- invariants are printed: every offset exactly once, in order, whatever the
-- boundaries.

SELECT stream.create_topic('segs', segment_bytes => 8192);
SELECT topic_id AS segs_id FROM stream.topics WHERE topic = 'segs' \gset

-- Wait (at most ~10 s) until a segment with a base offset of at least
-- `base` exists and the roller has recorded the base offset of every
-- segment.  (Not a count of segments: a roll may switch in the middle of a
-- statement of single publishes, and then roll again.)
CREATE FUNCTION pg_temp.wait_roll(base bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
    unset int;
BEGIN
    FOR i IN 1..200 LOOP
        SELECT max(base_offset), count(*) FILTER (WHERE base_offset IS NULL) INTO top, unset
        FROM stream._segments s JOIN stream._topics t USING (topic_id)
        WHERE t.topic = 'segs' AND s.partition = 0;
        IF top >= base AND unset = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RAISE WARNING 'no roll after 10 s: highest base offset %, % without base offset', top, unset;
    RETURN false;
END
$$;

CREATE FUNCTION pg_temp.bases() RETURNS bigint[]
LANGUAGE sql VOLATILE AS $$
    SELECT array_agg(s.base_offset ORDER BY s.segment_id)
    FROM stream._segments s JOIN stream._topics t USING (topic_id)
    WHERE t.topic = 'segs' AND s.partition = 0
$$;

-- Wait (at most ~10 s) until no segment roller works in this database.
CREATE FUNCTION pg_temp.wait_rollers_done() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..200 LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_stat_activity
                       WHERE backend_type = 'stream segment roller'
                         AND datname = current_database()) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;

CREATE FUNCTION pg_temp.segment_count() RETURNS int
LANGUAGE sql VOLATILE AS $$
    SELECT segments FROM stream.partitions WHERE topic = 'segs' AND partition = 0
$$;

SELECT pg_temp.segment_count() AS segments_at_start;

------------------------------------------------------------------------------
-- three statements of 100 messages of ~300 bytes, each more than a segment
------------------------------------------------------------------------------
-- 1: one batch (one offset reservation: the roll comes after it, at 100)
SELECT count(*) AS published
FROM stream.publish_batch('segs',
        (SELECT array_agg(jsonb_build_object('i', g, 'pad', repeat('x', 300)) ORDER BY g)
         FROM generate_series(0, 99) g));
SELECT pg_temp.wait_roll(100) AS rolled;
SELECT pg_temp.bases() AS base_offsets, pg_temp.segment_count() AS segments;

-- 2: 100 single publishes (a roll switches segments somewhere in the middle)
DO $$
BEGIN
    FOR g IN 100..199 LOOP
        PERFORM stream.publish('segs', jsonb_build_object('i', g, 'pad', repeat('x', 300)));
    END LOOP;
END
$$;
SELECT pg_temp.wait_roll(101) AS rolled;
SELECT pg_temp.segment_count() >= 3 AS segments_grew;

-- 3: another batch; in the end the active segment is a new, empty one at 300
SELECT count(*) AS published
FROM stream.publish_batch('segs',
        (SELECT array_agg(jsonb_build_object('i', g, 'pad', repeat('x', 300)) ORDER BY g)
         FROM generate_series(200, 299) g));
SELECT pg_temp.wait_roll(300) AS rolled;
SELECT pg_temp.wait_rollers_done() AS rollers_done;
SELECT (pg_temp.bases())[1:2] AS first_bases,
       (pg_temp.bases())[cardinality(pg_temp.bases())] AS last_base;

SELECT log_start_offset, end_offset, last_stable_offset, messages, segments >= 4 AS at_least_4_segments
FROM stream.partitions WHERE topic = 'segs';

------------------------------------------------------------------------------
-- the chain: increasing base offsets, each segment's rows inside its range
------------------------------------------------------------------------------
CREATE TEMP TABLE chain AS
SELECT s.segment_id, s.base_offset,
       lead(s.base_offset) OVER (ORDER BY s.segment_id) AS next_base,
       to_regclass('stream_data.seg_' || s.segment_id) AS rel
FROM stream._segments s WHERE s.topic_id = :segs_id AND s.partition = 0;

SELECT min(base_offset) AS first_base,
       bool_and(next_base > base_offset) AS bases_increasing,
       bool_and(rel IS NOT NULL) AS all_tables_exist
FROM chain;

CREATE FUNCTION pg_temp.segment_rows(rel regclass, OUT n bigint, OUT lo bigint, OUT hi bigint)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT count(*), min("offset"), max("offset") FROM %s', rel) INTO n, lo, hi;
END
$$;

SELECT sum(r.n) AS rows_in_segments,
       count(*) FILTER (WHERE r.n > 0) >= 3 AS at_least_3_segments_hold_data,
       bool_and(r.n = 0 OR (r.lo >= c.base_offset AND (c.next_base IS NULL OR r.hi < c.next_base)))
           AS rows_within_their_segment
FROM chain c CROSS JOIN LATERAL pg_temp.segment_rows(c.rel) r;

-- every segment table has the same layout and a primary key on "offset"
SELECT count(DISTINCT (SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
                       FROM pg_attribute WHERE attrelid = c.rel AND attnum > 0)) AS layouts,
       bool_and(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.rel AND i.indisprimary)) AS all_have_pk
FROM chain c;

------------------------------------------------------------------------------
-- reads across segment boundaries
------------------------------------------------------------------------------
-- everything from offset 0: each offset once, in order, with its own value
SELECT count(*) AS rows, bool_and("offset" = ordinality - 1) AS in_order,
       bool_and((value->>'i')::bigint = "offset") AS right_values
FROM stream.read('segs', 0, 0, 100000) WITH ORDINALITY;

-- from offsets in the middle: min(max_messages, what is left), in order
SELECT o AS from_offset, count(r."offset") AS rows,
       bool_and(r."offset" = o + r.ordinality - 1) AS consecutive
FROM unnest(ARRAY[1, 50, 99, 100, 101, 150, 199, 200, 250, 299]) o
CROSS JOIN LATERAL stream.read('segs', 0, o, 100) WITH ORDINALITY r
GROUP BY o ORDER BY o;

-- around every boundary: reads that end just before it, start on it, and
-- straddle it
SELECT count(*) >= 2 AS boundaries_at_least_2,
       bool_and((SELECT array_agg("offset" ORDER BY "offset") FROM stream.read('segs', 0, base_offset - 3, 3))
                = ARRAY[base_offset - 3, base_offset - 2, base_offset - 1]) AS end_before,
       bool_and((SELECT array_agg("offset") FROM stream.read('segs', 0, base_offset, 1))
                = ARRAY[base_offset]) AS start_on,
       bool_and((SELECT array_agg("offset" ORDER BY "offset") FROM stream.read('segs', 0, base_offset - 2, 4))
                = ARRAY[base_offset - 2, base_offset - 1, base_offset, base_offset + 1]) AS straddle
FROM chain WHERE base_offset > 2 AND base_offset < 298;

-- a consumer loop with max_messages 7: follows its offset to the end and
-- sees each message once
CREATE FUNCTION pg_temp.follow(step int, OUT reads int, OUT got bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    pos bigint := 0;
    batch bigint[];
BEGIN
    reads := 0;
    got := '{}';
    LOOP
        SELECT array_agg("offset" ORDER BY ord) INTO batch
        FROM stream.read('segs', 0, pos, step) WITH ORDINALITY AS r(topic, partition, "offset", key, value, headers, published_at, ord);
        EXIT WHEN batch IS NULL;
        reads := reads + 1;
        IF cardinality(batch) > step THEN
            RAISE EXCEPTION 'read returned % rows for max_messages %', cardinality(batch), step;
        END IF;
        got := got || batch;
        pos := batch[cardinality(batch)] + 1;
        EXIT WHEN reads > 1000;
    END LOOP;
END
$$;
SELECT reads, cardinality(got) AS messages,
       got = ARRAY(SELECT generate_series(0, 299)::bigint) AS each_once_in_order
FROM pg_temp.follow(7);
SELECT reads, got = ARRAY(SELECT generate_series(0, 299)::bigint) AS each_once_in_order
FROM pg_temp.follow(100);
SELECT reads, got = ARRAY(SELECT generate_series(0, 299)::bigint) AS each_once_in_order
FROM pg_temp.follow(1);

-- at the end offset: nothing, no error
SELECT count(*) AS at_end FROM stream.read('segs', 0, 300);

------------------------------------------------------------------------------
-- segment tables are not for ordinary roles
------------------------------------------------------------------------------
SELECT 'regress_stream_nopriv_' || current_database() AS nopriv \gset
SET client_min_messages = warning;
DROP ROLE IF EXISTS :"nopriv";  -- left over by an interrupted run
RESET client_min_messages;
CREATE ROLE :"nopriv";
SELECT 'stream_data.seg_' || max(segment_id) AS seg FROM chain \gset

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'seg_[0-9]+', 'seg_N');
END
$$;

SET ROLE :"nopriv";
SELECT pg_temp.try(format('SELECT count(*) FROM %s', :'seg')) AS select_segment;
SELECT pg_temp.try(format('INSERT INTO %s VALUES (1000, NULL, NULL, NULL, now())', :'seg')) AS insert_segment;
RESET ROLE;

-- even with USAGE on the schema, the tables themselves are closed
GRANT USAGE ON SCHEMA stream_data TO :"nopriv";
SET ROLE :"nopriv";
SELECT pg_temp.try(format('SELECT count(*) FROM %s', :'seg')) AS select_segment;
SELECT pg_temp.try(format('INSERT INTO %s VALUES (1000, NULL, NULL, NULL, now())', :'seg')) AS insert_segment;
SELECT pg_temp.try(format('DELETE FROM %s', :'seg')) AS delete_segment;
RESET ROLE;
REVOKE USAGE ON SCHEMA stream_data FROM :"nopriv";
DROP ROLE :"nopriv";

-- nothing was written by those attempts
SELECT end_offset, messages FROM stream.partitions WHERE topic = 'segs';

------------------------------------------------------------------------------
-- dropping the topic drops the whole chain
------------------------------------------------------------------------------
SELECT pg_temp.wait_rollers_done() AS rollers_done;
SELECT stream.drop_topic('segs');
SELECT count(*) AS tables_left FROM chain WHERE to_regclass('stream_data.seg_' || segment_id) IS NOT NULL;
SELECT count(*) AS segment_rows_left FROM stream._segments WHERE topic_id = :segs_id;

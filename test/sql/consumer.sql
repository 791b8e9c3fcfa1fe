-- Consumer groups from one session: poll, commit, lag, seek, reset, leave,
-- poll variants per value type, and every argument error with its SQLSTATE.
-- pg_temp.try() returns "SQLSTATE: message" for a failing call and adds
-- STATE CHANGED when the committed offsets moved anyway.
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.offsets_state() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(string_agg(format('%s/%s/%s=%s', group_name, topic_id, partition, committed_offset),
                               ' ' ORDER BY group_name, topic_id, partition), '(none)')
    FROM stream._offsets
$$;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.offsets_state();
    after text;
    msg text;
BEGIN
    BEGIN
        EXECUTE cmd;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        after := pg_temp.offsets_state();
        RETURN SQLSTATE || ': ' || msg ||
            CASE WHEN after = before THEN '' ELSE E'\n  STATE CHANGED to ' || after END;
    END;
    RETURN 'ok';
END
$$;

SELECT stream.create_topic('cons_t', 2);
SELECT count(*) FROM stream.publish_batch('cons_t',
    ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 10) i),
    ARRAY(SELECT 'k' || i FROM generate_series(1, 10) i));

-- the only member owns both partitions and reads everything, in offset order per partition
SELECT partition, "offset", value->>'i' AS i FROM stream.poll('cons_g', 'cons_t', 100) ORDER BY partition, "offset";
-- nothing new: empty
SELECT count(*) FROM stream.poll('cons_g', 'cons_t');
-- not committed yet: the lag view shows the partitions with no committed offset, owned by us
SELECT "group", topic, partition, committed_offset, end_offset, lag, owner_pid = pg_backend_pid() AS mine
FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;
SELECT stream.commit('cons_g', 'cons_t') AS partitions_committed;
SELECT "group", partition, committed_offset, end_offset, lag, committed_at IS NOT NULL AS has_time
FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;

-- max_messages limits a poll; the rest comes next time
SELECT count(*) FROM stream.publish_batch('cons_t', ARRAY['{"more":1}','{"more":2}','{"more":3}']::jsonb[], ARRAY['m','m','m']);
SELECT count(*) FROM stream.poll('cons_g', 'cons_t', 2);
SELECT count(*) FROM stream.poll('cons_g', 'cons_t', 2);

-- a rolled-back transaction rewinds to the committed offsets
SELECT stream.commit('cons_g', 'cons_t') AS partitions_committed;
SELECT count(*) FROM stream.publish('cons_t', '{"late": 1}', partition => 0);
SELECT count(*) FROM stream.publish('cons_t', '{"late": 2}', partition => 1);
BEGIN;
SELECT partition, value FROM stream.poll('cons_g', 'cons_t', 100) ORDER BY partition;
ROLLBACK;
SELECT partition, value AS again FROM stream.poll('cons_g', 'cons_t', 100) ORDER BY partition;
SELECT count(*) AS nothing_more FROM stream.poll('cons_g', 'cons_t', 100);

-- seek of an owned partition moves the position; commit stores it
SELECT stream.seek('cons_g', 'cons_t', 0, 0);
SELECT count(*) > 0 AS reread FROM stream.poll('cons_g', 'cons_t', 100);
SELECT stream.commit('cons_g', 'cons_t', 1, 1);
SELECT partition, committed_offset FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;

-- leaving gives the partitions back; a second leave says false
SELECT stream.leave('cons_g', 'cons_t');
SELECT stream.leave('cons_g', 'cons_t');
SELECT partition, owner_pid FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;

-- an idle group can be reset and sought from any session
SELECT stream.reset_offsets('cons_g', 'cons_t', 'earliest');
SELECT partition, committed_offset FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;
SELECT stream.reset_offsets('cons_g', 'cons_t', 'latest');
SELECT bool_and(committed_offset = end_offset) AS at_end FROM stream.consumer_lag WHERE "group" = 'cons_g';
SELECT stream.reset_offsets('cons_g', 'cons_t', now() - interval '1 day');
SELECT partition, committed_offset FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;
SELECT stream.seek('cons_g', 'cons_t', 1, 2);
SELECT partition, committed_offset FROM stream.consumer_lag WHERE "group" = 'cons_g' ORDER BY partition;

-- poll variants per value type
SELECT stream.create_topic('cons_text', value_type => 'text');
SELECT stream.create_topic('cons_bytea', value_type => 'bytea');
SELECT count(*) FROM stream.publish('cons_text', 'plain text');
SELECT count(*) FROM stream.publish('cons_bytea', '\x00ff'::bytea);
SELECT "offset", value FROM stream.poll_text('cons_g2', 'cons_text');
SELECT "offset", value FROM stream.poll_bytea('cons_g2', 'cons_bytea');
SELECT "offset", value FROM stream.poll_text('cons_g3', 'cons_t', 1);

-- errors
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g2', 'cons_text')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll_bytea('cons_g4', 'cons_t')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'no_such_topic')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('bad group', 'cons_t')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('', 'cons_t')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll(NULL, 'cons_t')$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', NULL)$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'cons_t', 0)$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'cons_t', -1)$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'cons_t', 100000000)$$);
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'cons_t', 10, '-1 s')$$);
-- a wait of 100 million years is a long wait, not an overflow: cancelled by the timeout
SELECT stream.create_topic('cons_empty');
SET statement_timeout = '200ms';
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g_forever', 'cons_empty', 10, '100000000 years')$$);
RESET statement_timeout;
SELECT stream.drop_topic('cons_empty');
SELECT pg_temp.try($$SELECT * FROM stream.poll('cons_g', 'cons_t', 10, NULL)$$);
SELECT pg_temp.try($$SELECT stream.seek('no_such_group', 'cons_t', 0, 0)$$);
SELECT pg_temp.try($$SELECT stream.reset_offsets('no_such_group', 'cons_t', 'earliest')$$);
SELECT pg_temp.try($$SELECT stream.reset_offsets('cons_g', 'cons_t', 'middle')$$);
SELECT pg_temp.try($$SELECT stream.seek('cons_g', 'cons_t', 5, 0)$$);
SELECT pg_temp.try($$SELECT stream.seek('cons_g', 'cons_t', 0, -1)$$);
SELECT pg_temp.try($$SELECT stream.seek('cons_g', 'cons_t', 0, 1000000)$$);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t')$$);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t', 0, 1)$$);
SELECT count(*) FROM stream.poll('cons_g', 'cons_t', 1);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t', 0, 1000000)$$);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t', 0, -5)$$);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t', 9, 0)$$);
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t', NULL, 0)$$);
BEGIN;
SELECT count(*) >= 0 AS polled FROM stream.poll('cons_g', 'cons_t', 1);
SELECT pg_temp.try($$SELECT stream.leave('cons_g', 'cons_t')$$);
ROLLBACK;
BEGIN READ ONLY;
SELECT pg_temp.try($$SELECT stream.commit('cons_g', 'cons_t')$$);
ROLLBACK;
SELECT stream.leave('cons_g', 'cons_t');
SELECT stream.leave('cons_g2', 'cons_text');
SELECT stream.leave('cons_g2', 'cons_bytea');
SELECT stream.leave('cons_g3', 'cons_t');

-- dropping a topic drops its committed offsets
SELECT stream.drop_topic('cons_t');
SELECT stream.drop_topic('cons_text');
SELECT stream.drop_topic('cons_bytea');
SELECT count(*) FROM stream._offsets;

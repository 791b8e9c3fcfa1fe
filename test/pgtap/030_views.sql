-- 030_views.sql: the figures of stream.partitions and stream.topics, and the
-- backend's topic cache following catalog changes made in the same session.
--
-- The last stable offset only moves at commit, so this file commits (psql
-- autocommit) instead of running in one transaction; its topics are
-- tap_views_*, dropped at the start and at the end.
SET client_min_messages = warning;
DO $$
BEGIN
    PERFORM stream.drop_topic(t, if_exists => true)
    FROM unnest(ARRAY['tap_views_a', 'tap_views_multi', 'tap_views_settings', 'tap_views_cache',
                      'tap_views_re', 'tap_views_undo']) t;
    PERFORM stream.create_topic('tap_views_a', partitions => 2);
    PERFORM stream.create_topic('tap_views_multi', partitions => 3);
END $$;

-- Figures of one partition as one comparable line.
CREATE FUNCTION pg_temp.figures(p_topic text, p_partition int) RETURNS text
LANGUAGE sql AS $$
    SELECT format('log_start=%s end=%s lso=%s messages=%s', log_start_offset, end_offset,
                  last_stable_offset, messages)
    FROM stream.partitions WHERE topic = p_topic AND partition = p_partition
$$;
-- Publish, returning 'partition/offset' or the error, so that a failure is a
-- failed test and not the end of the script.
CREATE FUNCTION pg_temp.try_publish(p_topic text, p_value jsonb, p_key text DEFAULT NULL,
                                    p_partition int DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM stream.publish(p_topic, p_value, key => p_key, partition => p_partition);
    RETURN r.partition || '/' || r."offset";
EXCEPTION WHEN others THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT plan(64);

------------------------------------------------------------------------------
-- stream.partitions
------------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT partition, log_start_offset, end_offset, last_stable_offset, messages, segments,
             oldest_at IS NULL AND newest_at IS NULL
      FROM stream.partitions WHERE topic = 'tap_views_a' ORDER BY partition$$,
    $$VALUES (0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 1, true),
             (1, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 1, true)$$,
    'tap_ a new topic has one row per partition: offsets 0, no messages, one segment, no times');

SELECT bytes AS bytes_empty, clock_timestamp() AS t0 FROM stream.partitions
WHERE topic = 'tap_views_a' AND partition = 0 \gset

-- offsets 0, 1, 2 committed one by one; 3 rolled back; 4, 5 committed together
SELECT FROM stream.publish('tap_views_a', '{"n": 0}', partition => 0);
SELECT FROM stream.publish('tap_views_a', '{"n": 1}', partition => 0);
SELECT FROM stream.publish('tap_views_a', '{"n": 2}', partition => 0);
BEGIN;
SELECT FROM stream.publish('tap_views_a', '{"n": 3}', partition => 0);
ROLLBACK;
BEGIN;
SELECT FROM stream.publish('tap_views_a', '{"n": 4}', partition => 0);
SELECT FROM stream.publish('tap_views_a', '{"n": 5}', partition => 0);
COMMIT;

SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=6 lso=6 messages=5',
          'tap_ after 6 publishes, one rolled back: end_offset 6, LSO 6, 5 messages, log start 0');
SELECT is(pg_temp.figures('tap_views_a', 1), 'log_start=0 end=0 lso=0 messages=0',
          'tap_ the other partition is untouched');
SELECT cmp_ok(bytes, '>', :bytes_empty::bigint, 'tap_ bytes grew with the messages')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT cmp_ok(bytes, '>', 0::bigint, 'tap_ bytes > 0')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT cmp_ok(segments, '>=', 1, 'tap_ segments >= 1')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT ok(oldest_at IS NOT NULL AND oldest_at <= newest_at,
          'tap_ oldest_at <= newest_at: ' || coalesce(oldest_at::text, 'NULL') || ' <= ' || coalesce(newest_at::text, 'NULL'))
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT ok(oldest_at >= :'t0'::timestamptz AND newest_at <= clock_timestamp(),
          'tap_ oldest_at and newest_at lie between the first publish and now')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT is(oldest_at, (SELECT min(published_at) FROM stream.read('tap_views_a', 0, 0, 1000)),
          'tap_ oldest_at is the first message''s published_at')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;
SELECT is(newest_at, (SELECT max(published_at) FROM stream.read('tap_views_a', 0, 0, 1000)),
          'tap_ newest_at is the last message''s published_at')
FROM stream.partitions WHERE topic = 'tap_views_a' AND partition = 0;

-- An open transaction's own offset holds the LSO (reads stop below it).
BEGIN;
SELECT FROM stream.publish('tap_views_a', '{"n": 6}', partition => 0);
SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=7 lso=6 messages=6',
          'tap_ inside the publishing transaction: end_offset 7, LSO still 6');
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_views_a', 0, 0, 1000)), ARRAY[0, 1, 2, 4, 5]::bigint[],
          'tap_ a read in that transaction stops below the LSO');
COMMIT;
SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=7 lso=7 messages=6',
          'tap_ after commit the LSO reaches end_offset');

-- Savepoints: a rolled-back subtransaction releases its offsets at once,
-- the parent's stay held.
BEGIN;
SAVEPOINT s1;
SELECT FROM stream.publish('tap_views_a', '{"n": 7}', partition => 0);
ROLLBACK TO SAVEPOINT s1;
SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=8 lso=8 messages=6',
          'tap_ after ROLLBACK TO SAVEPOINT of the only publish, the LSO is end_offset again');
SELECT FROM stream.publish('tap_views_a', '{"n": 8}', partition => 0);
SAVEPOINT s2;
SELECT FROM stream.publish('tap_views_a', '{"n": 9}', partition => 0);
ROLLBACK TO SAVEPOINT s2;
SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=10 lso=8 messages=7',
          'tap_ after ROLLBACK TO SAVEPOINT the parent''s publish (offset 8) still holds the LSO');
COMMIT;
SELECT is(pg_temp.figures('tap_views_a', 0), 'log_start=0 end=10 lso=10 messages=7',
          'tap_ after commit: end 10, LSO 10, 7 messages (rolled-back ones not counted)');
SELECT is(ARRAY(SELECT "offset" FROM stream.read('tap_views_a', 0, 0, 1000)), ARRAY[0, 1, 2, 4, 5, 6, 8]::bigint[],
          'tap_ the readable offsets match the figures');

-- A transaction that published to several partitions holds each one's LSO
-- until it ends, and releases all of them whether it commits or rolls back.
BEGIN;
SELECT FROM generate_series(0, 2) p, stream.publish('tap_views_multi', '{"n": "rolled back"}', partition => p);
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['1/0', '1/0', '1/0'], 'tap_ a transaction publishing to 3 partitions holds the 3 LSOs');
ROLLBACK;
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['1/1', '1/1', '1/1'], 'tap_ its rollback releases all 3 (LSO = end_offset)');
BEGIN;
SELECT FROM generate_series(0, 2) p, stream.publish('tap_views_multi', '{"n": "committed"}', partition => p);
COMMIT;
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset || '/' || messages FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['2/2/1', '2/2/1', '2/2/1'], 'tap_ a committed one too, with one message in each partition');
-- savepoints across partitions: a subtransaction's rollback releases only its
-- partitions; a released (merged) subtransaction is undone with its parent
BEGIN;
SELECT FROM stream.publish('tap_views_multi', '{"n": "kept"}', partition => 0);
SAVEPOINT a;
SELECT FROM stream.publish('tap_views_multi', '{"n": "undone"}', partition => 1);
ROLLBACK TO SAVEPOINT a;
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['3/2', '3/3', '2/2'], 'tap_ ROLLBACK TO releases partition 1 and keeps partition 0 held');
SAVEPOINT b;
SAVEPOINT c;
SELECT FROM stream.publish('tap_views_multi', '{"n": "undone with b"}', partition => 2);
RELEASE SAVEPOINT c;
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['3/2', '3/3', '3/2'], 'tap_ RELEASE SAVEPOINT keeps partition 2 held');
ROLLBACK TO SAVEPOINT b;
SELECT is(ARRAY(SELECT end_offset || '/' || last_stable_offset FROM stream.partitions
                WHERE topic = 'tap_views_multi' ORDER BY partition),
          ARRAY['3/2', '3/3', '3/3'], 'tap_ rolling back the outer savepoint releases what the released one published');
COMMIT;
SELECT is(ARRAY(SELECT p || ':' || r."offset" || ':' || (r.value->>'n')
                FROM generate_series(0, 2) p, stream.read('tap_views_multi', p) r ORDER BY p, r."offset"),
          ARRAY['0:1:committed', '0:2:kept', '1:1:committed', '2:1:committed'],
          'tap_ after commit exactly the messages outside rolled-back savepoints are readable');

------------------------------------------------------------------------------
-- stream.topics reflects create_topic and alter_topic
------------------------------------------------------------------------------

DO $$ BEGIN
    PERFORM stream.create_topic('tap_views_settings', partitions => 2, retention => '7 days',
                                retention_bytes => 1000000000, max_message_bytes => 4096,
                                value_type => 'text');
END $$;
SELECT created_at AS settings_created FROM stream.topics WHERE topic = 'tap_views_settings' \gset

SELECT results_eq(
    $$SELECT partitions, value_type, retention, retention_bytes, max_message_bytes
      FROM stream.topics WHERE topic = 'tap_views_settings'$$,
    $$VALUES (2, 'text'::regtype, '7 days'::interval, 1000000000::bigint, 4096)$$,
    'tap_ stream.topics shows the settings given to create_topic');
SELECT ok(:'settings_created'::timestamptz <= now(), 'tap_ created_at is set and not in the future');
SELECT results_eq(
    $$SELECT partitions, value_type, retention, retention_bytes, max_message_bytes
      FROM stream.topics WHERE topic = 'tap_views_a'$$,
    $$VALUES (2, 'jsonb'::regtype, NULL::interval, NULL::bigint, 1048576)$$,
    'tap_ stream.topics shows the defaults: jsonb, unlimited retention, 1 MiB messages');

SELECT lives_ok($$SELECT stream.alter_topic('tap_views_settings', partitions => 3, retention => '1 day',
                                            retention_bytes => 5000000, max_message_bytes => 2048)$$,
                'tap_ alter_topic changes every setting at once');
SELECT results_eq(
    $$SELECT partitions, value_type, retention, retention_bytes, max_message_bytes
      FROM stream.topics WHERE topic = 'tap_views_settings'$$,
    $$VALUES (3, 'text'::regtype, '1 day'::interval, 5000000::bigint, 2048)$$,
    'tap_ stream.topics reflects alter_topic');
SELECT is(ARRAY(SELECT partition FROM stream.partitions WHERE topic = 'tap_views_settings' ORDER BY 1),
          ARRAY[0, 1, 2], 'tap_ stream.partitions has a row for the added partition');
SELECT is(pg_temp.figures('tap_views_settings', 2), 'log_start=0 end=0 lso=0 messages=0',
          'tap_ the added partition starts empty at offset 0');

SELECT lives_ok($$SELECT stream.alter_topic('tap_views_settings', max_message_bytes => 1024)$$,
                'tap_ alter_topic with only max_message_bytes');
SELECT results_eq(
    $$SELECT partitions, retention, retention_bytes, max_message_bytes
      FROM stream.topics WHERE topic = 'tap_views_settings'$$,
    $$VALUES (3, '1 day'::interval, 5000000::bigint, 1024)$$,
    'tap_ settings passed as NULL are kept');
SELECT lives_ok($$SELECT stream.alter_topic('tap_views_settings', retention => '-1 second', retention_bytes => -1)$$,
                'tap_ alter_topic with negative retention and retention_bytes');
SELECT results_eq(
    $$SELECT partitions, retention, retention_bytes, max_message_bytes
      FROM stream.topics WHERE topic = 'tap_views_settings'$$,
    $$VALUES (3, NULL::interval, NULL::bigint, 1024)$$,
    'tap_ negative retention and retention_bytes mean unlimited (NULL)');
SELECT is(created_at, :'settings_created'::timestamptz, 'tap_ created_at does not change with alter_topic')
FROM stream.topics WHERE topic = 'tap_views_settings';

------------------------------------------------------------------------------
-- The topic cache follows changes made in the same session
------------------------------------------------------------------------------

-- max_message_bytes: the limit in force is the new one, both ways.
SELECT lives_ok($$SELECT stream.alter_topic('tap_views_a', max_message_bytes => 2048)$$,
                'tap_ (topic cached) lower max_message_bytes to 2048');
SELECT is(left(pg_temp.try_publish('tap_views_a', to_jsonb(repeat('x', 3000)), NULL, 1), 11), 'ERROR 54000',
          'tap_ a 3000-byte message is refused at once (54000)');
SELECT lives_ok($$SELECT stream.alter_topic('tap_views_a', max_message_bytes => 4096)$$,
                'tap_ ... and raising it again');
SELECT is(pg_temp.try_publish('tap_views_a', to_jsonb(repeat('x', 3000)), NULL, 1), '1/0',
          'tap_ a message between the two limits is accepted after raising it');

-- partitions added by alter_topic, in its own statement
DO $$ BEGIN PERFORM stream.create_topic('tap_views_cache', partitions => 2); END $$;
SELECT is(pg_temp.try_publish('tap_views_cache', '{"n": "warm the cache"}', NULL, 1), '1/0',
          'tap_ publish to partition 1 of 2 (fills the cache)');
SELECT is(left(pg_temp.try_publish('tap_views_cache', '{}', NULL, 4), 11), 'ERROR 22023',
          'tap_ partition 4 of 2 is out of range');
SELECT lives_ok($$SELECT stream.alter_topic('tap_views_cache', partitions => 5)$$,
                'tap_ alter_topic adds 3 partitions');
SELECT is(pg_temp.try_publish('tap_views_cache', '{"n": "new partition"}', NULL, 4), '4/0',
          'tap_ publish to partition 4 works at once after alter_topic');
SELECT 'tap-key-' || i AS cache_key5 FROM generate_series(1, 1000) i
WHERE stream.partition_for('tap-key-' || i, 5) >= 2 ORDER BY i LIMIT 1 \gset
SELECT is(split_part(pg_temp.try_publish('tap_views_cache', '{"n": "keyed"}', :'cache_key5'), '/', 1),
          stream.partition_for(:'cache_key5', 5)::text,
          'tap_ keyed publish uses the new partition count: partition_for(key, 5)');
SELECT is(ARRAY(SELECT key FROM stream.read('tap_views_cache', stream.partition_for(:'cache_key5', 5), 0, 100)),
          ARRAY[:'cache_key5'], 'tap_ and the message is readable there');

-- partitions added by alter_topic in the transaction that publishes
BEGIN;
DO $$ BEGIN PERFORM stream.alter_topic('tap_views_cache', partitions => 7); END $$;
SELECT is(pg_temp.try_publish('tap_views_cache', '{"n": "same transaction"}', NULL, 6), '6/0',
          'tap_ in the altering transaction, publish to a new partition works');
SELECT 'tap-key-' || i AS cache_key7 FROM generate_series(1, 1000) i
WHERE stream.partition_for('tap-key-' || i, 7) >= 5 ORDER BY i LIMIT 1 \gset
SELECT is(split_part(pg_temp.try_publish('tap_views_cache', '{"n": "keyed, same transaction"}', :'cache_key7'), '/', 1),
          stream.partition_for(:'cache_key7', 7)::text,
          'tap_ in the altering transaction, keyed publish uses partition_for(key, 7)');
COMMIT;
SELECT is(ARRAY(SELECT end_offset FROM stream.partitions WHERE topic = 'tap_views_cache' ORDER BY partition),
          ARRAY(SELECT count(x)::bigint
                FROM generate_series(0, 6) p
                LEFT JOIN unnest(ARRAY[1, 4, stream.partition_for(:'cache_key5', 5),
                                       6, stream.partition_for(:'cache_key7', 7)]) x ON x = p
                GROUP BY p ORDER BY p),
          'tap_ end offsets of the 7 partitions count exactly the committed publishes');

-- a rolled-back alter_topic leaves nothing behind, even when the transaction
-- published to the partition it added: adding that partition again works
DO $$ BEGIN PERFORM stream.create_topic('tap_views_undo'); END $$;
BEGIN;
DO $$ BEGIN PERFORM stream.alter_topic('tap_views_undo', partitions => 2); END $$;
SELECT pg_temp.try_publish('tap_views_undo', '{"n": "rolled back"}', NULL, 1) AS undo_rb \gset
ROLLBACK;
SELECT is(:'undo_rb'::text, '1/0', 'tap_ in a transaction, add partition 1 and publish to it (then roll back)');
SELECT is(left(pg_temp.try_publish('tap_views_undo', '{}', NULL, 1), 11), 'ERROR 22023',
          'tap_ after the rollback partition 1 does not exist');
SELECT lives_ok($$SELECT stream.alter_topic('tap_views_undo', partitions => 2)$$,
                'tap_ alter_topic adds partition 1 again');
SELECT is(split_part(pg_temp.try_publish('tap_views_undo', '{"n": "re-added"}', NULL, 1), '/', 1), '1',
          'tap_ publish to the re-added partition works');
SELECT is(ARRAY(SELECT value->>'n' FROM stream.read('tap_views_undo', 1)), ARRAY['re-added'],
          'tap_ and the message is readable there');
SELECT is(end_offset, last_stable_offset, 'tap_ and the re-added partition''s LSO is its end offset')
FROM stream.partitions WHERE topic = 'tap_views_undo' AND partition = 1;

-- a dropped and recreated topic is a new topic, in the same session
DO $$ BEGIN PERFORM stream.create_topic('tap_views_re', partitions => 3); END $$;
SELECT pg_temp.try_publish('tap_views_re', '{"n": 1}', NULL, 2) AS re_1,
       pg_temp.try_publish('tap_views_re', '{"n": 2}', NULL, 2) AS re_2 \gset
SELECT is(ARRAY[:'re_1', :'re_2'], ARRAY['2/0', '2/1'], 'tap_ two messages in partition 2 of the first incarnation');
SELECT lives_ok($q$DO $x$ BEGIN
                      PERFORM stream.drop_topic('tap_views_re');
                      PERFORM stream.create_topic('tap_views_re', value_type => 'text');
                  END $x$$q$,
                'tap_ drop and recreate the topic as a one-partition text topic');
SELECT is(ARRAY(SELECT r.partition || '/' || r."offset" FROM stream.publish('tap_views_re', 'hello'::text) r),
          ARRAY['0/0'], 'tap_ the new topic starts at partition 0, offset 0');
SELECT is(ARRAY(SELECT value FROM stream.read_text('tap_views_re', 0)), ARRAY['hello'],
          'tap_ and reads back its text value');
SELECT is(left(pg_temp.try_publish('tap_views_re', '{}', NULL, 2), 11), 'ERROR 22023',
          'tap_ the old partition 2 is gone');
BEGIN;
DO $$ BEGIN
    PERFORM stream.drop_topic('tap_views_re');
    PERFORM stream.create_topic('tap_views_re', partitions => 2);
END $$;
SELECT is(pg_temp.try_publish('tap_views_re', '{"n": "third"}', NULL, 1), '1/0',
          'tap_ drop and create in the publishing transaction: a fresh partition 1 at offset 0');
COMMIT;
SELECT is(ARRAY(SELECT value->>'n' FROM stream.read('tap_views_re', 1)), ARRAY['third'],
          'tap_ the third incarnation reads back its own message');

------------------------------------------------------------------------------
-- Cleanup
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT stream.drop_topic(t)
                  FROM unnest(ARRAY['tap_views_a', 'tap_views_multi', 'tap_views_settings', 'tap_views_cache',
                                    'tap_views_re', 'tap_views_undo']) t$$,
                'tap_ the test topics are dropped');
SELECT is(count(*), 0::bigint, 'tap_ no tap_views_ topic is left in stream.partitions')
FROM stream.partitions WHERE topic LIKE 'tap\_views\_%';

SELECT * FROM finish();

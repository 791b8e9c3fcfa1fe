-- Topic administration: create_topic, alter_topic, drop_topic and the views
-- stream.topics and stream.partitions.  Only stable columns are printed;
-- times and sizes are shown as booleans.

-- relations in stream_data before this file (other files leave none, but
-- count rather than assume)
SELECT count(*) AS stream_data_relations_before,
       count(*) FILTER (WHERE c.relkind = 'r') AS stream_data_tables_before
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data' \gset

------------------------------------------------------------------------------
-- create_topic with defaults and with every option
------------------------------------------------------------------------------
SELECT stream.create_topic('topics_default');
SELECT stream.create_topic('topics_opts', partitions => 3, retention => '7 days',
                           retention_bytes => 1000000000, max_message_bytes => 1000,
                           value_type => 'text', segment_bytes => 1048576);

SELECT topic, partitions, value_type, retention, retention_bytes, max_message_bytes,
       segment_bytes, created_at <= now() AS created_at_ok, topic_id IS NOT NULL AS has_id
FROM stream.topics WHERE topic LIKE 'topics\_%' ORDER BY topic;

-- a new partition: empty, one segment
SELECT topic, partition, log_start_offset, end_offset, last_stable_offset, messages,
       bytes > 0 AS has_bytes, oldest_at IS NULL AS no_oldest, newest_at IS NULL AS no_newest,
       segments
FROM stream.partitions WHERE topic LIKE 'topics\_%' ORDER BY topic, partition;

-- catalog rows: one per topic, one per partition, one segment per partition
SELECT t.topic, (SELECT count(*) FROM stream._partitions p WHERE p.topic_id = t.topic_id) AS partitions,
       (SELECT count(*) FROM stream._segments s WHERE s.topic_id = t.topic_id) AS segments,
       (SELECT count(*) FROM stream._segments s
        WHERE s.topic_id = t.topic_id AND to_regclass('stream_data.seg_' || s.segment_id) IS NOT NULL) AS tables
FROM stream._topics t WHERE t.topic LIKE 'topics\_%' ORDER BY t.topic;

-- segment tables are named from ids, each with a primary key on "offset"
SELECT count(*) AS segment_tables_with_offset_pk
FROM stream._segments s JOIN stream._topics t USING (topic_id)
JOIN pg_index i ON i.indrelid = to_regclass('stream_data.seg_' || s.segment_id)
WHERE t.topic LIKE 'topics\_%' AND i.indisprimary
  AND i.indkey::text = '1';

-- one new table in stream_data per segment
SELECT count(*) FILTER (WHERE c.relkind = 'r') - :stream_data_tables_before AS new_tables
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data';

------------------------------------------------------------------------------
-- stream.partitions after publishing
------------------------------------------------------------------------------
SELECT partition, "offset" FROM stream.publish('topics_default', '{"n": 1}');
SELECT partition, "offset" FROM stream.publish('topics_default', '{"n": 2}');
SELECT partition, "offset" FROM stream.publish('topics_opts', 'hello', partition => 1);

SELECT topic, partition, log_start_offset, end_offset, last_stable_offset, messages,
       bytes > 0 AS has_bytes, oldest_at <= newest_at AS times_ordered,
       newest_at <= now() AS newest_ok, segments
FROM stream.partitions WHERE topic LIKE 'topics\_%' ORDER BY topic, partition;

-- the view and the catalog agree on the partition count
SELECT t.topic, t.partitions, count(p.partition) AS view_rows
FROM stream.topics t JOIN stream.partitions p USING (topic)
WHERE t.topic LIKE 'topics\_%' GROUP BY t.topic, t.partitions ORDER BY t.topic;

------------------------------------------------------------------------------
-- alter_topic: partitions grow
------------------------------------------------------------------------------
SELECT stream.alter_topic('topics_opts', partitions => 5);
SELECT topic, partitions FROM stream.topics WHERE topic = 'topics_opts';
SELECT partition, end_offset, messages, segments
FROM stream.partitions WHERE topic = 'topics_opts' ORDER BY partition;

-- the new partitions are publishable and readable, old data is intact
SELECT partition, "offset" FROM stream.publish('topics_opts', 'on four', partition => 4);
SELECT partition, "offset" FROM stream.publish('topics_opts', 'on three', partition => 3);
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 4);
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 3);
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 1);

-- keys now route over 5 partitions
SELECT stream.partition_for('k-7', 5) AS expected, stream.partition_for('k-7', 3) AS before_growth;
SELECT partition FROM stream.publish('topics_opts', 'keyed', key => 'k-7');

-- growing the partitions in a transaction that publishes to them
BEGIN;
SELECT stream.alter_topic('topics_opts', partitions => 6);
SELECT partition, "offset" FROM stream.publish('topics_opts', 'same xact', partition => 5);
COMMIT;
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 5);

-- same count: no-op; the catalog has one row per partition, no duplicates
SELECT stream.alter_topic('topics_opts', partitions => 6);
SELECT count(*) AS partition_rows, count(DISTINCT partition) AS distinct_partitions,
       min(partition) AS lo, max(partition) AS hi
FROM stream._partitions WHERE topic_id = (SELECT topic_id FROM stream.topics WHERE topic = 'topics_opts');

-- partitions added by a rolled-back alter_topic leave nothing behind: added
-- again, they are fresh, empty and writable from offset 0
BEGIN;
SELECT stream.alter_topic('topics_opts', partitions => 7);
SELECT partition, "offset" FROM stream.publish('topics_opts', 'rolled back', partition => 6);
ROLLBACK;
SELECT partitions FROM stream.topics WHERE topic = 'topics_opts';
SELECT count(*) AS view_rows FROM stream.partitions WHERE topic = 'topics_opts';
SELECT stream.alter_topic('topics_opts', partitions => 7);
SELECT partition, end_offset, last_stable_offset, messages
FROM stream.partitions WHERE topic = 'topics_opts' AND partition = 6;
SELECT partition, "offset" FROM stream.publish('topics_opts', 'after rollback', partition => 6);
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 6);

-- the same within one transaction, rolled back to a savepoint
BEGIN;
SAVEPOINT s;
SELECT stream.alter_topic('topics_opts', partitions => 8);
SELECT partition, "offset" FROM stream.publish('topics_opts', 'rolled back to savepoint', partition => 7);
ROLLBACK TO SAVEPOINT s;
SELECT stream.alter_topic('topics_opts', partitions => 8);
SELECT partition, "offset" FROM stream.publish('topics_opts', 'after savepoint', partition => 7);
COMMIT;
SELECT partition, "offset", value FROM stream.read_text('topics_opts', 7);

------------------------------------------------------------------------------
-- alter_topic: retention and size settings
------------------------------------------------------------------------------
SELECT stream.alter_topic('topics_default', retention => '1 hour', retention_bytes => 5000000,
                          max_message_bytes => 20, segment_bytes => 1048576);
SELECT topic, partitions, retention, retention_bytes, max_message_bytes, segment_bytes
FROM stream.topics WHERE topic = 'topics_default';

-- the new limit applies at once in this session (cache invalidation) ...
SELECT partition, "offset" FROM stream.publish('topics_default', '"0123456789"');
SELECT partition, "offset" FROM stream.publish('topics_default', '"0123456789abcdef"');
-- ... and raising it again too
SELECT stream.alter_topic('topics_default', max_message_bytes => 100);
SELECT partition, "offset" FROM stream.publish('topics_default', '"0123456789abcdef"');

-- NULL keeps every setting
SELECT stream.alter_topic('topics_default');
SELECT topic, partitions, retention, retention_bytes, max_message_bytes, segment_bytes
FROM stream.topics WHERE topic = 'topics_default';

-- negative retention means unlimited: it clears the setting
SELECT stream.alter_topic('topics_default', retention => '-1 second');
SELECT topic, retention, retention_bytes FROM stream.topics WHERE topic = 'topics_default';
SELECT stream.alter_topic('topics_default', retention_bytes => -1);
SELECT topic, retention, retention_bytes FROM stream.topics WHERE topic = 'topics_default';

-- negative at creation too
SELECT stream.create_topic('topics_unlimited', retention => '-1 day', retention_bytes => -5);
SELECT topic, retention, retention_bytes FROM stream.topics WHERE topic = 'topics_unlimited';
SELECT stream.drop_topic('topics_unlimited');

------------------------------------------------------------------------------
-- drop_topic
------------------------------------------------------------------------------
SELECT topic_id AS opts_id FROM stream.topics WHERE topic = 'topics_opts' \gset
CREATE TEMP TABLE opts_segments AS
SELECT segment_id FROM stream._segments WHERE topic_id = :opts_id;
SELECT count(*) AS opts_segment_tables FROM opts_segments
WHERE to_regclass('stream_data.seg_' || segment_id) IS NOT NULL;

-- dropped in a rolled-back transaction: nothing happens
BEGIN;
SELECT stream.drop_topic('topics_opts');
SELECT count(*) AS during FROM stream.topics WHERE topic = 'topics_opts';
ROLLBACK;
SELECT count(*) AS after_rollback FROM stream.topics WHERE topic = 'topics_opts';
SELECT count(*) AS tables_after_rollback FROM opts_segments
WHERE to_regclass('stream_data.seg_' || segment_id) IS NOT NULL;
SELECT "offset", value FROM stream.read_text('topics_opts', 4);

SELECT count(*) AS rel_before_drop FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data' \gset
SELECT stream.drop_topic('topics_opts');

-- its tables and catalog rows are gone
SELECT :rel_before_drop - count(*) AS relations_dropped
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data';
SELECT count(*) AS tables_left FROM opts_segments
WHERE to_regclass('stream_data.seg_' || segment_id) IS NOT NULL;
SELECT (SELECT count(*) FROM stream._topics WHERE topic_id = :opts_id) AS topics,
       (SELECT count(*) FROM stream._partitions WHERE topic_id = :opts_id) AS partitions,
       (SELECT count(*) FROM stream._segments WHERE topic_id = :opts_id) AS segments;
SELECT count(*) AS view_rows FROM stream.partitions WHERE topic = 'topics_opts';

-- if_exists: a notice instead of an error
SELECT stream.drop_topic('topics_opts', if_exists => true);
SELECT stream.drop_topic('topics_opts', true);

-- a topic created again under the same name starts empty at offset 0
SELECT stream.create_topic('topics_opts', value_type => 'text');
SELECT topic, partitions, value_type, max_message_bytes FROM stream.topics WHERE topic = 'topics_opts';
SELECT partition, end_offset, messages FROM stream.partitions WHERE topic = 'topics_opts';
SELECT partition, "offset" FROM stream.publish('topics_opts', 'reborn');
SELECT "offset", value FROM stream.read_text('topics_opts', 0);

-- a topic created in a rolled-back transaction leaves nothing behind
SELECT count(*) AS rel_before FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data' \gset
BEGIN;
SELECT stream.create_topic('topics_ghost', 2);
SELECT partition, "offset" FROM stream.publish('topics_ghost', '{}', partition => 1);
ROLLBACK;
SELECT count(*) AS ghost FROM stream.topics WHERE topic = 'topics_ghost';
SELECT count(*) - :rel_before AS new_relations FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data';

-- clean up: every stream_data relation this file made is gone
SELECT stream.drop_topic('topics_opts');
SELECT stream.drop_topic('topics_default');
SELECT count(*) AS topics_left FROM stream.topics WHERE topic LIKE 'topics\_%';
SELECT count(*) - :stream_data_relations_before AS stream_data_relations_left
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data';

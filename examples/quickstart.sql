-- examples/quickstart.sql: a first look at stream from psql.
-- Run it with `bash scripts/demo.sh`, which builds and installs the extension, starts a
-- private cluster and creates the extension in database stream_demo.

\echo '== 1. Create topic blog_events with 3 partitions'
SELECT stream.create_topic('blog_events', partitions => 3);
SELECT * FROM stream.topics;

\echo '== 2. Publish 6 events. The key picks the partition (Kafka''s murmur2 partitioner),'
\echo '==    so each author''s events land in one partition, in the order published.'
SELECT * FROM stream.publish('blog_events', '{"title": "Hello"}', key => 'alice');
SELECT * FROM stream.publish('blog_events', '{"title": "Streams in Postgres"}', key => 'bob');
SELECT * FROM stream.publish('blog_events', '{"title": "My first post"}', key => 'carol');
SELECT * FROM stream.publish('blog_events', '{"title": "Hello again"}', key => 'alice');
SELECT * FROM stream.publish('blog_events', '{"title": "Consumer groups"}', key => 'bob');
SELECT * FROM stream.publish('blog_events', '{"title": "Retention"}', key => 'carol');

\echo '== 3. Partitions: offsets, last stable offset and message counts'
SELECT topic, partition, log_start_offset, end_offset, last_stable_offset, messages
FROM stream.partitions
WHERE topic = 'blog_events'
ORDER BY partition;

\echo '== 4. Read each partition from offset 0'
\echo '-- partition 0'
SELECT * FROM stream.read('blog_events', 0, 0, 100);
\echo '-- partition 1'
SELECT * FROM stream.read('blog_events', 1, 0, 100);
\echo '-- partition 2'
SELECT * FROM stream.read('blog_events', 2, 0, 100);

\echo '== 5. Drop the topic'
SELECT stream.drop_topic('blog_events');

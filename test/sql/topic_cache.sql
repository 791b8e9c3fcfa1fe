-- The backend's topic cache stays bounded by stream.topic_cache_size, and topics
-- pushed out of it still work.
SELECT count(stream.create_topic('cache_' || i)) AS created FROM generate_series(1, 150) i;
-- a fresh session: nothing cached yet
\c
SET stream.topic_cache_size = 10;
SELECT count(*) AS published
FROM generate_series(1, 150) i, stream.publish('cache_' || i, '{}');
SELECT total_bytes < 32768 AS small_cache_bounded
FROM pg_backend_memory_contexts WHERE name = 'stream topic cache';
-- the same with the default: every topic stays cached, and the cache is larger
\c
SELECT count(*) AS published
FROM generate_series(1, 150) i, stream.publish('cache_' || i, '{}');
SELECT total_bytes > 150 * 600 AS default_cache_holds_all
FROM pg_backend_memory_contexts WHERE name = 'stream topic cache';
-- evicted topics still resolve, with their current settings
\c
SET stream.topic_cache_size = 1;
SELECT stream.alter_topic('cache_1', partitions => 2);
SELECT partition, "offset" FROM stream.publish('cache_1', '{}', partition => 1);
SELECT partition, "offset" FROM stream.publish('cache_2', '{}');
SELECT partition, "offset" FROM stream.publish('cache_1', '{}', partition => 1);
SET stream.topic_cache_size = 0;   -- out of range
RESET stream.topic_cache_size;
SELECT count(*) FROM (SELECT stream.drop_topic('cache_' || i) FROM generate_series(1, 150) i) d;

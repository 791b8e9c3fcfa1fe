-- Run by bench/run.sh before every measured run (psql -v partitions=N): recreate the
-- topic and the baseline table empty, so that sizes do not drift from run to run, then
-- VACUUM and CHECKPOINT so that every run starts with the same clean state (every run
-- pays the same full-page writes after the checkpoint).
SET client_min_messages = warning;
SELECT stream.drop_topic('bench', if_exists => true);
DROP TABLE IF EXISTS bench_insert;
SELECT stream.create_topic('bench', partitions => :partitions);
-- The baseline: the same columns, the same primary key btree on "offset" and the same
-- storage option as a segment table (see stream._create_segment), the offset coming
-- from an identity sequence, published_at from a default.
CREATE TABLE bench_insert (
    "offset"     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          text,
    value        jsonb,
    headers      jsonb,
    published_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);
VACUUM;
CHECKPOINT;

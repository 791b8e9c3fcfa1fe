-- stream.publish_trigger(): row changes published as {"op", "schema",
-- "table", "new", "old"}, keyed by a column, in the transaction of the
-- change.  Covers commit, rollback (also of a savepoint), each operation,
-- int / text / NULL keys and no key, text and bytea topics, and every error
-- with its SQLSTATE.  pg_temp.try() runs a statement and, when it fails,
-- returns "SQLSTATE: message", followed by STATE CHANGED if any trg_
-- partition's end offset or message count, or the row count of the test
-- tables, differ from before the call.  A statement that unexpectedly
-- succeeds shows "ok".
\set SHOW_CONTEXT never

SELECT stream.create_topic('trg_json', 3);
SELECT stream.create_topic('trg_text', value_type => 'text');
SELECT stream.create_topic('trg_bytea', value_type => 'bytea');
SELECT stream.create_topic('trg_small', max_message_bytes => 200);

CREATE SCHEMA trg_s;
CREATE TABLE trg_blogs (id int PRIMARY KEY, author_id int, title text, published boolean DEFAULT true);
CREATE TABLE trg_tags (tag text PRIMARY KEY, n numeric);
CREATE TABLE trg_bad (id int, author_id int);
CREATE TABLE trg_owned (id int, author_id int);
CREATE TRIGGER trg_blogs_stream AFTER INSERT OR UPDATE OR DELETE ON trg_blogs
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id');

CREATE FUNCTION pg_temp.trg_state() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT format('rows=%s/%s/%s/%s logs=[%s]',
        (SELECT count(*) FROM trg_blogs),
        (SELECT count(*) FROM trg_tags),
        (SELECT count(*) FROM trg_bad),
        (SELECT count(*) FROM trg_owned),
        (SELECT string_agg(format('%s/%s:end=%s,n=%s', topic, partition, end_offset, messages),
                           ' ' ORDER BY topic, partition)
         FROM stream.partitions WHERE topic LIKE 'trg\_%'))
$$;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.trg_state();
    after text;
    msg text;
BEGIN
    BEGIN
        EXECUTE cmd;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        after := pg_temp.trg_state();
        RETURN SQLSTATE || ': ' || msg ||
            CASE WHEN after = before THEN ''
                 ELSE E'\n  STATE CHANGED from ' || before || E'\n                  to ' || after END;
    END;
    RETURN 'ok';
END
$$;

-- try() with cmd run as role r (the state is read as the caller)
CREATE FUNCTION pg_temp.try_as(r name, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.trg_state();
    after text;
    result text := 'ok';
BEGIN
    EXECUTE format('SET ROLE %I', r);
    BEGIN
        EXECUTE cmd;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS result = MESSAGE_TEXT;
        result := SQLSTATE || ': ' || result;
    END;
    RESET ROLE;
    after := pg_temp.trg_state();
    IF result <> 'ok' AND after <> before THEN
        result := result || E'\n  STATE CHANGED from ' || before || E'\n                  to ' || after;
    END IF;
    RETURN result;
END
$$;

-- every message of a jsonb topic from offset "from" on, in partition and offset order
CREATE FUNCTION pg_temp.msgs(t text, "from" bigint DEFAULT 0)
RETURNS TABLE(partition int, "offset" bigint, key text, value jsonb)
LANGUAGE sql VOLATILE AS $$
    SELECT r.partition, r."offset", r.key, r.value
    FROM stream.topics tp, generate_series(0, tp.partitions - 1) p,
         stream.read(t, p, "from", 1000) r
    WHERE tp.topic = t
    ORDER BY r.partition, r."offset"
$$;

------------------------------------------------------------------------------
-- commit: the event exists exactly when the row does
------------------------------------------------------------------------------
BEGIN;
INSERT INTO trg_blogs (id, author_id, title) VALUES (1, 42, 'Hello');
-- not readable before the commit (the LSO stops at it)
SELECT count(*) AS visible_before_commit FROM pg_temp.msgs('trg_json');
COMMIT;
SELECT * FROM pg_temp.msgs('trg_json');
-- keyed by author_id's text form: the partition Kafka's partitioner picks
SELECT key, partition = stream.partition_for('42', 3) AS kafka_partition
FROM pg_temp.msgs('trg_json');

------------------------------------------------------------------------------
-- rollback: no event, only a gap in the offsets
------------------------------------------------------------------------------
BEGIN;
INSERT INTO trg_blogs (id, author_id, title) VALUES (2, 42, 'Never');
ROLLBACK;
-- a rolled-back savepoint takes its event with it; the rest commits
BEGIN;
SAVEPOINT s;
INSERT INTO trg_blogs (id, author_id, title) VALUES (2, 42, 'Never either');
ROLLBACK TO SAVEPOINT s;
INSERT INTO trg_blogs (id, author_id, title) VALUES (3, 42, 'Second');
COMMIT;
SELECT id, title FROM trg_blogs ORDER BY id;
SELECT * FROM pg_temp.msgs('trg_json');
SELECT partition, end_offset, messages FROM stream.partitions WHERE topic = 'trg_json' ORDER BY partition;

------------------------------------------------------------------------------
-- a consumer group reads the committed events; once it has polled past an
-- event rolled back at the end of the partition, it commits the end offset
-- and its lag is 0
------------------------------------------------------------------------------
BEGIN;
SELECT partition, "offset", key, value->>'op' AS op, value->'new'->>'title' AS title
FROM stream.poll('trg_group', 'trg_json', 100);
SELECT stream.commit('trg_group', 'trg_json');
COMMIT;
BEGIN;
INSERT INTO trg_blogs (id, author_id, title) VALUES (9, 42, 'Rolled back at the end');
ROLLBACK;
BEGIN;
SELECT count(*) AS polled FROM stream.poll('trg_group', 'trg_json', 100);
SELECT stream.commit('trg_group', 'trg_json');
COMMIT;
SELECT partition, committed_offset, end_offset, lag FROM stream.consumer_lag
WHERE "group" = 'trg_group' ORDER BY partition;
SELECT stream.leave('trg_group', 'trg_json');

------------------------------------------------------------------------------
-- each operation: UPDATE has new and old, DELETE only old; the key comes
-- from the new row, or the old one for DELETE
------------------------------------------------------------------------------
CREATE TEMP TABLE mark AS
    SELECT partition, end_offset FROM stream.partitions WHERE topic = 'trg_json';
UPDATE trg_blogs SET title = 'Hello, world' WHERE id = 1;
DELETE FROM trg_blogs WHERE id = 3;
-- one statement, several rows: one event per row
INSERT INTO trg_blogs (id, author_id, title) VALUES (4, 7, 'a'), (5, 7, 'b'), (6, 7, 'c');
-- an UPDATE that moves the row to another author is keyed by the new author
UPDATE trg_blogs SET author_id = 8 WHERE id = 6;
SELECT m.partition, m."offset", m.key, m.value->>'op' AS op,
       m.value->'new' AS new, m.value->'old' AS old
FROM pg_temp.msgs('trg_json') m JOIN mark USING (partition)
WHERE m."offset" >= mark.end_offset
ORDER BY m.value->>'op', m.partition, m."offset";
-- the whole value of an UPDATE and of a DELETE
SELECT m.value FROM pg_temp.msgs('trg_json') m JOIN mark USING (partition)
WHERE m."offset" >= mark.end_offset AND m.value->>'op' IN ('UPDATE', 'DELETE')
  AND (m.value->'old'->>'id')::int IN (1, 3)
ORDER BY m.value->>'op';
-- within a key, events are in statement order
SELECT string_agg(m.value->'new'->>'title', ',' ORDER BY m."offset") AS author_7_titles
FROM pg_temp.msgs('trg_json') m WHERE m.key = '7';
-- every event is in the partition its key maps to
SELECT count(*) AS events, count(*) FILTER (WHERE partition = stream.partition_for(key, 3)) AS in_key_partition
FROM pg_temp.msgs('trg_json');

------------------------------------------------------------------------------
-- keys: a NULL key column gives a NULL key; a text key column; no key
-- argument gives unkeyed events; the schema is reported
------------------------------------------------------------------------------
DELETE FROM mark;
INSERT INTO mark SELECT partition, end_offset FROM stream.partitions WHERE topic = 'trg_json';
INSERT INTO trg_blogs (id, author_id, title) VALUES (7, NULL, 'anonymous');
SELECT m.key IS NULL AS key_is_null, m.value->'new'->'author_id' AS author_id
FROM pg_temp.msgs('trg_json') m JOIN mark USING (partition) WHERE m."offset" >= mark.end_offset;

CREATE TRIGGER trg_tags_stream AFTER INSERT OR UPDATE OR DELETE ON trg_tags
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('trg_json', 'tag');
CREATE TABLE trg_s.events (id int, note text);
CREATE TRIGGER trg_events_stream AFTER INSERT ON trg_s.events
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('trg_json');
DELETE FROM mark;
INSERT INTO mark SELECT partition, end_offset FROM stream.partitions WHERE topic = 'trg_json';
INSERT INTO trg_tags VALUES ('postgres', 1.50), ('kafka', NULL);
INSERT INTO trg_s.events VALUES (1, 'no key');
SELECT m.key, m.value->>'schema' AS schema, m.value->>'table' AS "table", m.value->'new' AS new,
       m.key IS NULL OR m.partition = stream.partition_for(m.key, 3) AS in_key_partition
FROM pg_temp.msgs('trg_json') m JOIN mark USING (partition)
WHERE m."offset" >= mark.end_offset
ORDER BY m.value->>'table', m.key;
DROP TRIGGER trg_tags_stream ON trg_tags;

------------------------------------------------------------------------------
-- a text topic stores the JSON text, a bytea topic its UTF-8 bytes
------------------------------------------------------------------------------
CREATE TABLE trg_notes (id int, author text, body text);
CREATE TRIGGER trg_notes_text AFTER INSERT OR DELETE ON trg_notes
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('trg_text', 'author');
CREATE TRIGGER trg_notes_bytea AFTER INSERT OR DELETE ON trg_notes
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('trg_bytea', 'author');
INSERT INTO trg_notes VALUES (1, 'zoë', 'café');
DELETE FROM trg_notes;
SELECT "offset", key, value FROM stream.read_text('trg_text', 0) ORDER BY "offset";
-- the text is jsonb's text form of the event
SELECT "offset", value::jsonb->>'op' AS op, value = (value::jsonb)::text AS canonical_json
FROM stream.read_text('trg_text', 0) ORDER BY "offset";
-- the bytes: 'é' and 'ë' are two UTF-8 bytes each; the bytes are the text topic's text
SELECT b."offset", b.key, convert_from(b.value, 'UTF8') = t.value AS same_as_text,
       position('\xc3a9'::bytea IN b.value) > 0 AS utf8_e_acute,
       octet_length(b.value) = octet_length(t.value) AS same_length
FROM stream.read_bytea('trg_bytea', 0) b
JOIN stream.read_text('trg_text', 0) t USING ("offset")
ORDER BY b."offset";
DROP TABLE trg_notes;

------------------------------------------------------------------------------
-- errors: nothing is written, neither the event nor the row
------------------------------------------------------------------------------

-- a missing topic: 42704 (also when the topic is dropped after CREATE TRIGGER)
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_nope', 'author_id');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;
SELECT stream.create_topic('trg_gone');
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_gone', 'author_id');
SELECT stream.drop_topic('trg_gone');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;

-- a missing key column: 42703
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;
-- a dropped column is missing too
ALTER TABLE trg_bad ADD COLUMN old_key int;
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'old_key');
ALTER TABLE trg_bad DROP COLUMN old_key;
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;
-- system columns are not keys
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'ctid');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;

-- a BEFORE trigger: 39P01
CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;

-- FOR EACH STATEMENT: 39P01 (also for TRUNCATE, which has only statement triggers)
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH STATEMENT
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;
INSERT INTO trg_bad VALUES (1, 1);
CREATE TRIGGER t AFTER TRUNCATE ON trg_bad FOR EACH STATEMENT
    EXECUTE FUNCTION stream.publish_trigger('trg_json');
SELECT pg_temp.try($$TRUNCATE trg_bad$$);
SELECT count(*) AS trg_bad_rows_kept FROM trg_bad;
DROP TRIGGER t ON trg_bad;
DELETE FROM trg_bad;

-- INSTEAD OF on a view: 39P01
CREATE VIEW trg_bad_v AS SELECT * FROM trg_bad;
CREATE TRIGGER t INSTEAD OF INSERT ON trg_bad_v FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id');
SELECT pg_temp.try($$INSERT INTO trg_bad_v VALUES (1, 1)$$);
DROP VIEW trg_bad_v;

-- the wrong number of arguments: 39P01
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger();
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id', 'extra');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
DROP TRIGGER t ON trg_bad;

-- called directly, not as a trigger: 39P01
SELECT pg_temp.try($$SELECT stream.publish_trigger()$$);

-- an event over the topic's max_message_bytes: 54000, the row is not inserted
-- (a small one goes through: "ok")
CREATE TRIGGER t AFTER INSERT ON trg_bad FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_small', 'author_id');
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (1, 1)$$);
ALTER TABLE trg_bad ADD COLUMN body text;
SELECT pg_temp.try($$INSERT INTO trg_bad VALUES (2, 2, repeat('x', 300))$$);
DROP TRIGGER t ON trg_bad;

SELECT id, author_id FROM trg_bad ORDER BY id;

------------------------------------------------------------------------------
-- privileges: the table's owner needs 'publish' on the topic (42501
-- without it); the roles that write the table need no right on the topic
------------------------------------------------------------------------------
CREATE ROLE regress_trg_owner;
CREATE ROLE regress_trg_writer;
CREATE TRIGGER t AFTER INSERT ON trg_owned FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('trg_json', 'author_id');
ALTER TABLE trg_owned OWNER TO regress_trg_owner;
GRANT INSERT ON trg_owned TO regress_trg_writer;
SELECT pg_temp.try_as('regress_trg_writer', $$INSERT INTO trg_owned VALUES (1, 1)$$);
SELECT stream.grant('trg_json', 'regress_trg_owner', 'publish');
SELECT pg_temp.try_as('regress_trg_writer', $$INSERT INTO trg_owned VALUES (2, 2)$$);
-- the writer itself has no right on the topic
SELECT pg_temp.try_as('regress_trg_writer', $$SELECT stream.publish('trg_json', '{}'::jsonb)$$);
SELECT stream.revoke('trg_json', 'regress_trg_owner', 'publish');
SELECT pg_temp.try_as('regress_trg_writer', $$INSERT INTO trg_owned VALUES (3, 3)$$);
SELECT id FROM trg_owned ORDER BY id;
SELECT m.key, m.value->'new' AS new FROM pg_temp.msgs('trg_json') m
WHERE m.value->>'table' = 'trg_owned';
-- (NULL-keyed events are spread over the partitions: totals per topic)
SELECT topic, sum(end_offset) AS end_offsets, sum(messages) AS messages FROM stream.partitions
WHERE topic LIKE 'trg\_%' GROUP BY topic ORDER BY topic;

DROP TABLE trg_bad, trg_blogs, trg_tags, trg_owned, trg_s.events;
DROP ROLE regress_trg_owner, regress_trg_writer;
DROP SCHEMA trg_s;
SELECT stream.drop_topic(t) FROM unnest(ARRAY['trg_json', 'trg_text', 'trg_bytea', 'trg_small']) t;

-- Topic and group names never reach SQL text unquoted.  Names shaped like
-- injections, format specifiers, quotes, dollar quotes, non-ASCII letters,
-- whitespace and over-long names are refused with 22023 by every entry point
-- before anything is written; unusual but legal names ([A-Za-z0-9._-],
-- 1 to 200 characters) work end to end: create, alter, grant, publish,
-- publish_batch, the trigger, read, poll, commit, the views, drop.
--
-- pg_temp.try(cmd) runs a statement and returns its SQLSTATE (or ok), with
-- STATE CHANGED if the catalog (topics, partitions, segments, grants,
-- committed offsets, stream_data relations), any partition's end or stable
-- offset, the group members or the tables an injection would hit changed.
\set SHOW_CONTEXT never

-- what an injection would drop or change
CREATE TABLE x (id int);
INSERT INTO x VALUES (1);
CREATE TABLE names_rows (id int, k text);

CREATE FUNCTION pg_temp.state() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT format('topics=%s partitions=%s segments=%s acl=%s offsets=%s relations=%s members=%s x=%s rows=%s logs=[%s]',
        (SELECT count(*) FROM stream._topics),
        (SELECT count(*) FROM stream._partitions),
        (SELECT count(*) FROM stream._segments),
        (SELECT count(*) FROM stream._acl),
        (SELECT count(*) FROM stream._offsets),
        (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'stream_data'),
        (SELECT count(*) FROM stream._members()),
        (SELECT count(*) FROM x),
        (SELECT count(*) FROM names_rows),
        (SELECT string_agg(format('%s/%s:%s,%s', t.topic, p.partition, st.end_offset, st.last_stable_offset),
                           ' ' ORDER BY t.topic, p.partition)
         FROM stream._topics t JOIN stream._partitions p USING (topic_id)
         CROSS JOIN LATERAL stream._partition_state(t.topic, p.partition) st))
$$;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.state();
    after text;
BEGIN
    BEGIN
        EXECUTE cmd;
    EXCEPTION WHEN OTHERS THEN
        after := pg_temp.state();
        RETURN SQLSTATE || CASE WHEN after = before THEN '' ELSE ' STATE CHANGED' END;
    END;
    RETURN 'ok';
END
$$;

-- the same, with the message
CREATE FUNCTION pg_temp.try_msg(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text;
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
    RETURN SQLSTATE || ': ' || msg;
END
$$;

-- how a name is shown below: non-ASCII and control characters as \uXXXX
CREATE FUNCTION pg_temp.label(n text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN length(n) > 30 THEN left(n, 3) || '... (' || length(n) || ' characters)'
                ELSE '''' || (SELECT coalesce(string_agg(CASE WHEN ascii(c) BETWEEN 32 AND 126 THEN c
                                                      ELSE '\u' || lpad(to_hex(ascii(c)), greatest(4, length(to_hex(ascii(c)))), '0') END,
                                                 '' ORDER BY o), '')
                             FROM regexp_split_to_table(n, '') WITH ORDINALITY s(c, o) WHERE c <> '') || '''' END
$$;

-- a real topic and group for the calls that take both
SELECT stream.create_topic('names_ok', 2);
SELECT stream.create_topic('names_ok_text', value_type => 'text');
SELECT stream.create_topic('names_ok_bytea', value_type => 'bytea');
SELECT count(*) FROM stream.publish('names_ok', '{"seed": 1}', 'k');
SELECT count(*) FROM stream.poll('names_g', 'names_ok');
SELECT stream.commit('names_g', 'names_ok');
SELECT stream.leave('names_g', 'names_ok');

CREATE TEMP TABLE bad_names (i serial, n text);
INSERT INTO bad_names (n) VALUES
    ('t; DROP TABLE x'), ('x''; DROP TABLE x; --'), ('a''b'), ('x"y'), ('"'), ('$$'),
    ('$$; DROP TABLE x; $$'), ('%I'), ('%s'), ('%L%1$s'), ('\'), ('a\b'), ('a b'), (' a'),
    ('a '), (E'a\tb'), (E'a\nb'), ('a;b'), ('a/b'), ('a*'), ('(a)'), ('a,b'), ('a:b'), ('@a'),
    ('тема'), ('naïve'), ('名前'), ('🔥'), (U&'a\00A0b'), (U&'\FEFF'), (U&'a\200Bb'),
    (''), (repeat('a', 201)), (repeat('.', 201)), (repeat('é', 100));

-- every entry point that takes a topic name
SELECT pg_temp.label(n) AS name,
       pg_temp.try(format('SELECT stream.create_topic(%L)', n)) AS create,
       pg_temp.try(format('SELECT stream.alter_topic(%L, 3)', n)) AS alter,
       pg_temp.try(format('SELECT stream.drop_topic(%L)', n)) AS drop,
       pg_temp.try(format('SELECT stream.drop_topic(%L, true)', n)) AS drop_ie,
       pg_temp.try(format('SELECT * FROM stream.publish(%L, %L)', n, '{}')) AS publish,
       pg_temp.try(format('SELECT * FROM stream.publish(%L, %L::bytea)', n, '\x00')) AS pub_bytea,
       pg_temp.try(format('SELECT * FROM stream.publish_batch(%L, ARRAY[%L]::jsonb[])', n, '{}')) AS batch,
       pg_temp.try(format('SELECT * FROM stream.read(%L, 0)', n)) AS read,
       pg_temp.try(format('SELECT * FROM stream.read_text(%L, 0)', n)) AS read_text,
       pg_temp.try(format('SELECT * FROM stream.read_bytea(%L, 0)', n)) AS read_bytea,
       pg_temp.try(format('SELECT * FROM stream.grant(%L, current_user::text::regrole, %L)', n, 'consume')) AS grant,
       pg_temp.try(format('SELECT * FROM stream.revoke(%L, current_user::text::regrole, %L)', n, 'consume')) AS revoke,
       pg_temp.try(format('SELECT stream.has_topic_privilege(%L, %L)', n, 'any')) AS has_priv
FROM bad_names ORDER BY i;

SELECT pg_temp.label(n) AS name,
       pg_temp.try(format('SELECT * FROM stream.poll(%L, %L)', 'names_g', n)) AS poll,
       pg_temp.try(format('SELECT * FROM stream.poll_text(%L, %L)', 'names_g', n)) AS poll_text,
       pg_temp.try(format('SELECT * FROM stream.poll_bytea(%L, %L)', 'names_g', n)) AS poll_bytea,
       pg_temp.try(format('SELECT stream.commit(%L, %L)', 'names_g', n)) AS commit,
       pg_temp.try(format('SELECT stream.commit(%L, %L, 0, 0)', 'names_g', n)) AS commit_one,
       pg_temp.try(format('SELECT stream.seek(%L, %L, 0, 0)', 'names_g', n)) AS seek,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, %L)', 'names_g', n, 'earliest')) AS reset,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, now())', 'names_g', n)) AS reset_time,
       pg_temp.try(format('SELECT stream.leave(%L, %L)', 'names_g', n)) AS leave
FROM bad_names ORDER BY i;

-- every entry point that takes a group name
SELECT pg_temp.label(n) AS "group",
       pg_temp.try(format('SELECT * FROM stream.poll(%L, %L)', n, 'names_ok')) AS poll,
       pg_temp.try(format('SELECT * FROM stream.poll_text(%L, %L)', n, 'names_ok_text')) AS poll_text,
       pg_temp.try(format('SELECT * FROM stream.poll_bytea(%L, %L)', n, 'names_ok_bytea')) AS poll_bytea,
       pg_temp.try(format('SELECT stream.commit(%L, %L)', n, 'names_ok')) AS commit,
       pg_temp.try(format('SELECT stream.commit(%L, %L, 0, 0)', n, 'names_ok')) AS commit_one,
       pg_temp.try(format('SELECT stream.seek(%L, %L, 0, 0)', n, 'names_ok')) AS seek,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, %L)', n, 'names_ok', 'earliest')) AS reset,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, now())', n, 'names_ok')) AS reset_time,
       pg_temp.try(format('SELECT stream.leave(%L, %L)', n, 'names_ok')) AS leave
FROM bad_names ORDER BY i;

-- the trigger refuses a bad topic name when it fires, and the row is not written
SELECT pg_temp.label(n) AS name,
       pg_temp.try(format($f$DO $do$ BEGIN
                              CREATE TRIGGER names_bad AFTER INSERT ON names_rows FOR EACH ROW
                                  EXECUTE FUNCTION stream.publish_trigger(%L, 'k');
                              INSERT INTO names_rows VALUES (1, 'k');
                          END $do$$f$, n)) AS insert
FROM bad_names ORDER BY i;

-- a few messages in full: the name is quoted, or not echoed when too long
SELECT pg_temp.try_msg(format('SELECT stream.create_topic(%L)', n)) AS create_topic
FROM unnest(ARRAY['t; DROP TABLE x', 'a''b', 'x"y', '%I', '', repeat('a', 201)]) n;
SELECT pg_temp.try_msg(format('SELECT * FROM stream.poll(%L, %L)', n, 'names_ok')) AS poll
FROM unnest(ARRAY['t; DROP TABLE x', '$$', repeat('g', 201)]) n;

-- the table is still there, nothing was created, nothing written
SELECT count(*) AS x_rows FROM x;
SELECT count(*) AS names_rows FROM names_rows;
SELECT count(*) AS topics_with_bad_names FROM stream._topics WHERE topic !~ '^[A-Za-z0-9._-]{1,200}$';
SELECT count(*) AS groups_with_bad_names FROM stream._offsets WHERE group_name !~ '^[A-Za-z0-9._-]{1,200}$';

------------------------------------------------------------------------------
-- Unusual but legal names, end to end
------------------------------------------------------------------------------
CREATE TEMP TABLE good_names (i serial, n text);
INSERT INTO good_names (n) VALUES
    ('a.b-c_D.9'), ('...'), ('.'), ('..'), ('-'), ('_'), ('--'), ('-1'), ('0'), ('null'), ('NULL'),
    ('select'), ('DROP'), ('pg_catalog'), ('seg_1'), ('A'), ('a'),
    (repeat('z', 200)), (repeat('.', 200)), (repeat('9', 199) || '-');

-- create (2 partitions), alter to 3, grant and revoke, publish keyed, with
-- an explicit partition and headers, and publish_batch: one transaction
CREATE FUNCTION pg_temp.write(n text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    published bigint;
BEGIN
    PERFORM stream.create_topic(n, 2);
    PERFORM stream.alter_topic(n, partitions => 3, max_message_bytes => 100000);
    PERFORM stream.grant(n, current_user::text::regrole, 'consume');
    PERFORM stream.revoke(n, current_user::text::regrole, 'consume');
    PERFORM stream.publish(n, jsonb_build_object('topic', n), n);
    PERFORM stream.publish(n, jsonb_build_object('topic', n), NULL, jsonb_build_object('h', n), 2);
    SELECT count(*) INTO published
    FROM stream.publish_batch(n, ARRAY[jsonb_build_object('topic', n), jsonb_build_object('topic', n)],
                              ARRAY[n, n || 'x']);
    RETURN format('created, batch of %s', published);
END
$$;
-- read every partition, then poll and commit with a group of the same name:
-- another transaction, after the publishes committed
CREATE FUNCTION pg_temp.consume(n text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    read_back int;
    read_ok boolean;
    polled int;
    polled_ok boolean;
    committed int;
BEGIN
    SELECT count(*), bool_and(r.topic = n AND r.value->>'topic' = n) INTO read_back, read_ok
    FROM generate_series(0, 2) p, stream.read(n, p, 0, 100) r;
    SELECT count(*), bool_and(r.topic = n AND r.value->>'topic' = n) INTO polled, polled_ok
    FROM stream.poll(n, n, 100) r;
    committed := stream.commit(n, n);
    RETURN format('read %s (%s), polled %s (%s), committed %s partitions', read_back,
                  CASE WHEN read_ok THEN 'ok' ELSE 'WRONG' END, polled,
                  CASE WHEN polled_ok THEN 'ok' ELSE 'WRONG' END, committed);
END
$$;
SELECT pg_temp.label(n) AS name, pg_temp.write(n) AS write FROM good_names ORDER BY i;
SELECT pg_temp.label(n) AS name, pg_temp.consume(n) AS consume FROM good_names ORDER BY i;

-- the lag view: every group caught up with its topic
SELECT pg_temp.label(l."group") AS "group", l.topic = l."group" AS same_name, count(*) AS partitions,
       sum(l.committed_offset) AS committed, sum(l.end_offset) AS end_offsets, sum(l.lag) AS lag
FROM stream.consumer_lag l JOIN good_names g ON g.n = l."group"
GROUP BY g.i, l."group", l.topic ORDER BY g.i;

-- the views show them by their exact names
SELECT pg_temp.label(t.topic) AS topic, t.partitions, t.max_message_bytes,
       (SELECT sum(p.messages) FROM stream.partitions p WHERE p.topic = t.topic) AS messages
FROM stream.topics t JOIN good_names g ON g.n = t.topic ORDER BY g.i;

-- the trigger with a legal but odd topic name
SELECT stream.create_topic('--select');
CREATE TRIGGER names_ok AFTER INSERT ON names_rows FOR EACH ROW
    EXECUTE FUNCTION stream.publish_trigger('--select', 'k');
INSERT INTO names_rows VALUES (1, 'key.1');
SELECT "offset", key, value->>'op' AS op, value->'new' AS new FROM stream.read('--select', 0);
DROP TRIGGER names_ok ON names_rows;

-- seek, reset and leave the groups, then drop the topics
SELECT pg_temp.label(n) AS name,
       pg_temp.try(format('SELECT stream.seek(%L, %L, 0, 0)', n, n)) AS seek,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, %L)', n, n, 'latest')) AS reset,
       pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, %L::timestamptz)', n, n, '-infinity')) AS reset_time
FROM good_names ORDER BY i;
SELECT pg_temp.label(n) AS name, stream.leave(n, n) AS left_group FROM good_names ORDER BY i;
SELECT pg_temp.label(n) AS name, pg_temp.try(format('SELECT stream.drop_topic(%L)', n)) AS drop
FROM good_names ORDER BY i;
SELECT stream.drop_topic('--select');
SELECT count(*) AS left_over FROM stream._topics t JOIN good_names g ON g.n = t.topic;
SELECT count(*) AS offsets_left FROM stream._offsets o JOIN good_names g ON g.n = o.group_name;

-- names_ok, names_ok_text, names_ok_bytea
SELECT stream.drop_topic(t) FROM unnest(ARRAY['names_ok', 'names_ok_text', 'names_ok_bytea']) t;
DROP TABLE x, names_rows;
SELECT * FROM stream.verify();

-- Per-topic privileges (publish, consume, admin) and the hardening around
-- them: every entry point refuses a role without the privilege with 42501
-- and neither returns nor writes anything; the right privilege makes each
-- one work; admin implies the others; grants through role membership follow
-- INHERIT; creating topics takes superuser, the database owner or
-- stream_admin; the views show only topics the role holds a privilege on;
-- catalogs, data tables and internal functions are closed to ordinary
-- roles; DROP ROLE and DROP OWNED treat topic grants like ordinary grants;
-- SECURITY DEFINER code pins search_path and objects on the caller's
-- search_path never hijack the extension's own queries.
--
-- pg_temp.try_as(role, cmd) runs cmd (a query) as role in a subtransaction
-- that is always rolled back, and shows "ok (n rows)" or "SQLSTATE:
-- message", followed by STATE CHANGED if a failed call changed anything
-- (topics, grants, partitions' end and stable offsets and message counts,
-- committed offsets, group members).  pg_temp.try(cmd) is the same as the
-- current role, keeping the effects of a successful call.
\set SHOW_CONTEXT never

-- leftovers of an aborted earlier run
SET client_min_messages = warning;
DROP ROLE IF EXISTS priv_nobody, priv_pub, priv_con, priv_adm, priv_creator, priv_dbowner,
    priv_group, priv_member, priv_noinh, priv_owner, priv_writer, priv_grantor,
    priv_grantee, priv_spy, priv_evil;
RESET client_min_messages;

CREATE ROLE priv_nobody;
CREATE ROLE priv_pub;
CREATE ROLE priv_con;
CREATE ROLE priv_adm;
CREATE ROLE priv_creator;
CREATE ROLE priv_dbowner;
CREATE ROLE priv_group NOLOGIN;
CREATE ROLE priv_member IN ROLE priv_group;
CREATE ROLE priv_noinh NOINHERIT IN ROLE priv_group;
CREATE ROLE priv_owner;
CREATE ROLE priv_writer;
CREATE ROLE priv_grantor;
CREATE ROLE priv_grantee;
CREATE ROLE priv_spy;
CREATE ROLE priv_evil;

-- the state a refused call must leave alone, read as the superuser
CREATE FUNCTION pg_temp.state() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    n bigint;
    logs text := '';
BEGIN
    FOR r IN SELECT t.topic, p.partition, st.end_offset, st.last_stable_offset, t.topic_id
             FROM stream._topics t JOIN stream._partitions p USING (topic_id)
             CROSS JOIN LATERAL stream._partition_state(t.topic, p.partition) st
             WHERE t.topic LIKE 'priv\_%' ORDER BY 1, 2
    LOOP
        SELECT sum(c) INTO n FROM stream._segments g,
            LATERAL (SELECT (xpath('/row/c/text()',
                query_to_xml(format('SELECT count(*) AS c FROM stream_data.%I', 'seg_' || g.segment_id),
                             false, true, '')))[1]::text::bigint AS c) x
        WHERE g.topic_id = r.topic_id AND g.partition = r.partition;
        logs := logs || format(' %s/%s:%s,%s,%s', r.topic, r.partition, r.end_offset,
                               r.last_stable_offset, n);
    END LOOP;
    RETURN format('topics=[%s] acl=[%s] logs=[%s] offsets=[%s] members=[%s]',
        (SELECT string_agg(format('%s:%s:%s:%s:%s:%s', topic, partitions, value_type, retention,
                                  retention_bytes, max_message_bytes), ' ' ORDER BY topic)
         FROM stream._topics WHERE topic LIKE 'priv\_%'),
        (SELECT string_agg(format('%s/%s/%s', t.topic, a.role, a.privilege), ' '
                           ORDER BY t.topic, a.role::text, a.privilege)
         FROM stream._acl a JOIN stream._topics t USING (topic_id)),
        logs,
        (SELECT string_agg(format('%s/%s/%s=%s', o.group_name, t.topic, o.partition, o.committed_offset),
                           ' ' ORDER BY 1)
         FROM stream._offsets o JOIN stream._topics t USING (topic_id) WHERE t.topic LIKE 'priv\_%'),
        (SELECT string_agg(format('%s/%s', m."group", t.topic), ' ' ORDER BY 1)
         FROM stream._members() m JOIN stream._topics t USING (topic_id)));
END
$$;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.state();
    after text;
    msg text;
    n bigint;
BEGIN
    BEGIN
        EXECUTE 'WITH q AS MATERIALIZED (' || cmd || ') SELECT count(*) FROM q' INTO n;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        msg := regexp_replace(msg, 'topic \d+', 'topic <id>');
        after := pg_temp.state();
        RETURN SQLSTATE || ': ' || msg ||
            CASE WHEN after = before THEN ''
                 ELSE E'\n  STATE CHANGED from ' || before || E'\n                  to ' || after END;
    END;
    RETURN format('ok (%s rows)', n);
END
$$;

CREATE FUNCTION pg_temp.try_as(r text, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.state();
    after text;
    msg text;
    state text;
    n bigint;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        EXECUTE 'WITH q AS MATERIALIZED (' || cmd || ') SELECT count(*) FROM q' INTO n;
        RAISE EXCEPTION USING ERRCODE = 'SR001', MESSAGE = n;   -- roll back a success
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        IF state = 'SR001' THEN
            RETURN format('ok (%s rows)', msg);
        END IF;
        msg := regexp_replace(msg, 'topic \d+', 'topic <id>');
        after := pg_temp.state();
        RETURN state || ': ' || msg ||
            CASE WHEN after = before THEN ''
                 ELSE E'\n  STATE CHANGED from ' || before || E'\n                  to ' || after END;
    END;
END
$$;

-- a utility statement: its SQLSTATE, message and detail, or ok
CREATE FUNCTION pg_temp.exec(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    detail text;
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || msg || coalesce(E'\n  DETAIL: ' || nullif(detail, ''), '');
END
$$;

-- shorter: the SQLSTATE alone, or ok
CREATE FUNCTION pg_temp.code(result text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN result LIKE 'ok%' THEN 'ok'
                WHEN result LIKE '%STATE CHANGED%' THEN left(result, 5) || ' STATE CHANGED'
                ELSE left(result, 5) END
$$;

------------------------------------------------------------------------------
-- Topics and grants: publish, consume, admin, each to its own role
------------------------------------------------------------------------------
SELECT stream.create_topic('priv_t', 2);
SELECT stream.create_topic('priv_tt', value_type => 'text');
SELECT stream.create_topic('priv_tb', value_type => 'bytea');
SELECT stream.create_topic('priv_hidden');
SELECT count(*) FROM stream.publish_batch('priv_t', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
                                          ARRAY['a', 'b', 'c']);
SELECT count(*) FROM stream.publish('priv_tt', 'text message');
SELECT count(*) FROM stream.publish('priv_tb', '\xdeadbeef'::bytea);
SELECT count(*) FROM stream.publish('priv_hidden', '{"secret": true}');

SELECT stream.grant(t, 'priv_pub', 'publish'), stream.grant(t, 'priv_con', 'consume'),
       stream.grant(t, 'priv_adm', 'admin')
FROM unnest(ARRAY['priv_t', 'priv_tt', 'priv_tb']) t;
-- granting twice is harmless, privilege names are case-insensitive
SELECT stream.grant('priv_t', 'priv_pub', 'PUBLISH');
SELECT topic, role, privilege, granted_by FROM stream.topic_privileges
WHERE topic LIKE 'priv\_%' ORDER BY 1, 2::text, 3;

-- this session is a live member of group priv_g, owning both partitions of
-- priv_t, so that commit, seek and leave below can succeed when allowed
SELECT count(*) FROM stream.poll('priv_g', 'priv_t');
SELECT stream.commit('priv_g', 'priv_t');
SELECT count(*) FROM stream.poll_text('priv_g', 'priv_tt');
SELECT count(*) FROM stream.poll_bytea('priv_g', 'priv_tb');
SELECT pg_temp.state() AS initial_state \gset
SELECT :'initial_state' AS initial_state;
SELECT topic_id AS t_id FROM stream._topics WHERE topic = 'priv_t' \gset

------------------------------------------------------------------------------
-- Every entry point by every role: 42501 with nothing read or written, or ok
-- (each call rolled back afterwards).  'admin' implies publish and consume.
------------------------------------------------------------------------------
CREATE TEMP TABLE calls (i serial, fn text, needs text, cmd text);
INSERT INTO calls (fn, needs, cmd) VALUES
    ('publish jsonb', 'publish', $$SELECT * FROM stream.publish('priv_t', '{"x": 1}'::jsonb, 'k')$$),
    ('publish text', 'publish', $$SELECT * FROM stream.publish('priv_tt', 'x')$$),
    ('publish bytea', 'publish', $$SELECT * FROM stream.publish('priv_tb', '\x00'::bytea)$$),
    ('publish_batch', 'publish', $$SELECT * FROM stream.publish_batch('priv_t', ARRAY['1', '2']::jsonb[], ARRAY['k', 'k'])$$),
    ('publish_batch text', 'publish', $$SELECT * FROM stream.publish_batch('priv_tt', ARRAY['x'])$$),
    ('publish_batch bytea', 'publish', $$SELECT * FROM stream.publish_batch('priv_tb', ARRAY['\x01'::bytea])$$),
    ('read', 'consume', $$SELECT * FROM stream.read('priv_t', 0)$$),
    ('read_text', 'consume', $$SELECT * FROM stream.read_text('priv_tt', 0)$$),
    ('read_bytea', 'consume', $$SELECT * FROM stream.read_bytea('priv_tb', 0)$$),
    ('poll', 'consume', $$SELECT * FROM stream.poll('priv_g', 'priv_t')$$),
    ('poll other group', 'consume', $$SELECT * FROM stream.poll('priv_g2', 'priv_t', 10, '10 ms')$$),
    ('poll_text', 'consume', $$SELECT * FROM stream.poll_text('priv_g', 'priv_tt')$$),
    ('poll_bytea', 'consume', $$SELECT * FROM stream.poll_bytea('priv_g', 'priv_tb')$$),
    ('commit', 'consume', $$SELECT stream.commit('priv_g', 'priv_t')$$),
    ('commit offset', 'consume', $$SELECT stream.commit('priv_g', 'priv_t', 0, 0)$$),
    ('seek', 'consume', $$SELECT stream.seek('priv_g', 'priv_t', 1, 0)$$),
    ('reset_offsets', 'consume', $$SELECT stream.reset_offsets('priv_g', 'priv_t', 'earliest')$$),
    ('reset_offsets time', 'consume', $$SELECT stream.reset_offsets('priv_g', 'priv_t', now())$$),
    ('alter_topic', 'admin', $$SELECT stream.alter_topic('priv_t', partitions => 3)$$),
    ('alter_topic retention', 'admin', $$SELECT stream.alter_topic('priv_t', retention => '1 day')$$),
    ('grant', 'admin', $$SELECT stream.grant('priv_t', 'priv_nobody', 'consume')$$),
    ('revoke', 'admin', $$SELECT stream.revoke('priv_t', 'priv_con', 'consume')$$),
    ('drop_topic', 'admin', $$SELECT stream.drop_topic('priv_t')$$),
    ('drop_topic if_exists', 'admin', $$SELECT stream.drop_topic('priv_t', if_exists => true)$$),
    ('view helper state', 'any', $$SELECT * FROM stream._partition_state('priv_t', 0)$$),
    ('view helper storage', 'any', format('SELECT * FROM stream._partition_storage(%s, 0)', :t_id)),
    ('view helper start', 'any', format('SELECT stream._partition_start(%s, 0)', :t_id)),
    ('leave', 'consume', $$SELECT stream.leave('priv_g', 'priv_t')$$);

-- a role without any privilege: 42501 from each, naming the topic, and
-- nothing read or written (no STATE CHANGED)
SELECT fn, pg_temp.try_as('priv_nobody', cmd) AS nobody FROM calls ORDER BY i;
SELECT pg_temp.state() = :'initial_state' AS state_unchanged;

-- each role: the privilege it holds works, the others are refused
-- (successful calls are rolled back; publishes leave gaps in the offsets)
SELECT fn, needs,
       pg_temp.code(pg_temp.try_as('priv_nobody', cmd)) AS nobody,
       pg_temp.code(pg_temp.try_as('priv_pub', cmd)) AS publish,
       pg_temp.code(pg_temp.try_as('priv_con', cmd)) AS consume,
       pg_temp.code(pg_temp.try_as('priv_adm', cmd)) AS admin
FROM calls ORDER BY i;
SELECT pg_temp.try_as('priv_pub', $$SELECT * FROM stream.read('priv_t', 0)$$) AS publish_reads;
SELECT pg_temp.try_as('priv_con', $$SELECT * FROM stream.publish('priv_t', '1')$$) AS consume_publishes;

-- the view helpers of another topic (by id) give nothing either
SELECT pg_temp.try_as('priv_con', format('SELECT * FROM stream._partition_storage(%s, 0)', topic_id)) AS storage,
       pg_temp.try_as('priv_con', format('SELECT stream._partition_start(%s, 0)', topic_id)) AS start
FROM stream._topics WHERE topic = 'priv_hidden';


------------------------------------------------------------------------------
-- The allowed calls really work (not rolled back)
------------------------------------------------------------------------------
SET ROLE priv_pub;
SELECT partition, "offset" FROM stream.publish('priv_t', '{"by": "priv_pub"}', 'a');
SELECT count(*) FROM stream.publish_batch('priv_t', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[], ARRAY['x', 'y']);
RESET ROLE;
SET ROLE priv_con;
SELECT partition, "offset", key, value FROM stream.read('priv_t', stream.partition_for('a', 2), 0)
ORDER BY "offset";
SELECT partition, "offset", key, value FROM stream.poll('priv_gc', 'priv_t', 100) ORDER BY 1, 2;
SELECT stream.commit('priv_gc', 'priv_t');
SELECT "group", topic, partition, committed_offset, lag FROM stream.consumer_lag
WHERE "group" = 'priv_gc' ORDER BY partition;
SELECT stream.seek('priv_gc', 'priv_t', 0, 0);
SELECT stream.commit('priv_gc', 'priv_t', 0, 1);
SELECT stream.reset_offsets('priv_gc', 'priv_t', 'latest');
SELECT stream.reset_offsets('priv_gc', 'priv_t', '-infinity'::timestamptz);
SELECT stream.leave('priv_gc', 'priv_t');
SELECT "group", partition, committed_offset, owner_pid IS NULL AS idle FROM stream.consumer_lag
WHERE "group" = 'priv_gc' ORDER BY partition;
RESET ROLE;
-- admin alone does everything
SET ROLE priv_adm;
SELECT count(*) FROM stream.publish('priv_tt', 'by admin');
SELECT value FROM stream.read_text('priv_tt', 0) ORDER BY "offset";
SELECT stream.alter_topic('priv_tt', max_message_bytes => 4096);
SELECT stream.grant('priv_tt', 'priv_nobody', 'consume');
SELECT count(*) FROM stream.read_text('priv_tt', 0);
RESET ROLE;
SET ROLE priv_nobody;
SELECT count(*) FROM stream.read_text('priv_tt', 0) AS nobody_reads_after_grant;
RESET ROLE;
SET ROLE priv_adm;
SELECT stream.revoke('priv_tt', 'priv_nobody', 'consume');
RESET ROLE;
SET ROLE priv_nobody;
SELECT pg_temp.try($$SELECT * FROM stream.read_text('priv_tt', 0)$$) AS nobody_reads_after_revoke;
RESET ROLE;

-- a revoke applies at once, also to a session that is already a member
SET ROLE priv_con;
SELECT count(*) FROM stream.poll('priv_gr', 'priv_t');
RESET ROLE;
SELECT stream.revoke('priv_t', 'priv_con', 'consume');
SET ROLE priv_con;
SELECT pg_temp.try($$SELECT stream.commit('priv_gr', 'priv_t')$$) AS commit_after_revoke,
       pg_temp.try($$SELECT * FROM stream.poll('priv_gr', 'priv_t')$$) AS poll_after_revoke;
RESET ROLE;
SELECT stream.leave('priv_gr', 'priv_t');
SELECT stream.grant('priv_t', 'priv_con', 'consume');

------------------------------------------------------------------------------
-- has_topic_privilege, for the current user
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.privs(r text, t text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p text;
    result text := '';
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    FOREACH p IN ARRAY ARRAY['publish', 'consume', 'admin', 'any'] LOOP
        result := result || CASE WHEN stream.has_topic_privilege(t, p) THEN upper(left(p, 1)) ELSE '-' END;
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = 'SR001', MESSAGE = result;   -- undo SET LOCAL ROLE
EXCEPTION WHEN SQLSTATE 'SR001' THEN
    RETURN SQLERRM;
END
$$;
SELECT r AS role, pg_temp.privs(r, 'priv_t') AS priv_t, pg_temp.privs(r, 'priv_hidden') AS priv_hidden
FROM unnest(ARRAY['priv_nobody', 'priv_pub', 'priv_con', 'priv_adm', current_user]) r;
SET ROLE priv_nobody;
SELECT pg_temp.try($$SELECT stream.has_topic_privilege('priv_t', 'read')$$) AS bad_privilege,
       pg_temp.try($$SELECT stream.has_topic_privilege('priv_missing', 'any')$$) AS unknown_topic;
RESET ROLE;
SELECT pg_temp.try($$SELECT stream.grant('priv_t', 'priv_nobody', 'read')$$) AS grant_bad_privilege,
       pg_temp.try($$SELECT stream.grant('priv_t', 'priv_no_such_role', 'consume')$$) AS grant_unknown_role,
       pg_temp.try($$SELECT stream.grant('priv_t', 'public', 'consume')$$) AS grant_public,
       pg_temp.try($$SELECT stream.grant('priv_t', NULL, 'consume')$$) AS grant_null_role,
       pg_temp.try($$SELECT stream.revoke('priv_t', 'priv_nobody', NULL)$$) AS revoke_null;

-- regrole also takes '-' (InvalidOid) and bare numbers without checking them:
-- a grant must still name an existing role (42704), or it would be inherited
-- by whatever role gets that OID later
SELECT pg_temp.code(pg_temp.try($$SELECT stream.grant('priv_t', '-', 'consume')$$)) AS grant_dash,
       pg_temp.code(pg_temp.try($$SELECT stream.grant('priv_t', '4242424', 'consume')$$)) AS grant_unknown_oid;
SELECT count(*) AS grants_to_no_role
FROM stream._acl a WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = a.role);
DELETE FROM stream._acl a WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = a.role);

-- an admin of one topic cannot grant on another
SET ROLE priv_adm;
SELECT pg_temp.try($$SELECT stream.grant('priv_hidden', 'priv_adm', 'consume')$$) AS grant_elsewhere;
-- but may hand out admin on its own, and the new admin may grant in turn
SELECT stream.grant('priv_tb', 'priv_grantor', 'admin');
RESET ROLE;
SET ROLE priv_grantor;
SELECT stream.grant('priv_tb', 'priv_grantee', 'consume');
SELECT count(*) FROM stream.read_bytea('priv_tb', 0);
RESET ROLE;

------------------------------------------------------------------------------
-- Unknown topics are 42704 and bad names 22023 for everybody
------------------------------------------------------------------------------
SET ROLE priv_nobody;
SELECT n AS name,
       pg_temp.code(pg_temp.try(format('SELECT * FROM stream.publish(%L, %L)', n, '1'))) AS publish,
       pg_temp.code(pg_temp.try(format('SELECT * FROM stream.publish_batch(%L, ARRAY[%L]::jsonb[])', n, '1'))) AS batch,
       pg_temp.code(pg_temp.try(format('SELECT * FROM stream.read(%L, 0)', n))) AS read,
       pg_temp.code(pg_temp.try(format('SELECT * FROM stream.poll(%L, %L)', 'priv_g', n))) AS poll,
       pg_temp.code(pg_temp.try(format('SELECT stream.commit(%L, %L)', 'priv_g', n))) AS commit,
       pg_temp.code(pg_temp.try(format('SELECT stream.seek(%L, %L, 0, 0)', 'priv_g', n))) AS seek,
       pg_temp.code(pg_temp.try(format('SELECT stream.reset_offsets(%L, %L, %L)', 'priv_g', n, 'earliest'))) AS reset,
       pg_temp.code(pg_temp.try(format('SELECT stream.leave(%L, %L)', 'priv_g', n))) AS leave,
       pg_temp.code(pg_temp.try(format('SELECT stream.alter_topic(%L, 2)', n))) AS alter,
       pg_temp.code(pg_temp.try(format('SELECT stream.drop_topic(%L)', n))) AS drop,
       pg_temp.code(pg_temp.try(format('SELECT stream.grant(%L, %L, %L)', n, 'priv_nobody', 'admin'))) AS grant,
       pg_temp.code(pg_temp.try(format('SELECT stream.has_topic_privilege(%L, %L)', n, 'any'))) AS has_priv
FROM unnest(ARRAY['priv_missing', 'bad name', 'x''; DROP TABLE calls; --']) n;
SELECT pg_temp.try($$SELECT stream.drop_topic('priv_missing', if_exists => true)$$) AS drop_missing_if_exists;
-- a bad group name is 22023 before anything else, too
SELECT pg_temp.try($$SELECT * FROM stream.poll('bad group', 'priv_t')$$) AS bad_group;
RESET ROLE;

------------------------------------------------------------------------------
-- Privileges through role membership follow INHERIT
------------------------------------------------------------------------------
SELECT stream.grant('priv_t', 'priv_group', 'consume');
SELECT r AS role, pg_temp.privs(r, 'priv_t') AS priv_t,
       pg_temp.code(pg_temp.try_as(r, $$SELECT * FROM stream.read('priv_t', 0)$$)) AS read,
       pg_temp.code(pg_temp.try_as(r, $$SELECT * FROM stream.publish('priv_t', '1')$$)) AS publish
FROM unnest(ARRAY['priv_group', 'priv_member', 'priv_noinh']) r;
-- the NOINHERIT member gets it after SET ROLE to the group
SET SESSION AUTHORIZATION priv_noinh;
SELECT pg_temp.try($$SELECT * FROM stream.read('priv_t', 0)$$) AS noinherit_reads;
SET ROLE priv_group;
SELECT pg_temp.try($$SELECT * FROM stream.read('priv_t', 0)$$) AS after_set_role;
RESET ROLE;
RESET SESSION AUTHORIZATION;
-- leaving the group takes the privilege away
REVOKE priv_group FROM priv_member;
SELECT pg_temp.code(pg_temp.try_as('priv_member', $$SELECT * FROM stream.read('priv_t', 0)$$)) AS after_revoke_membership;
-- admin through a group, too
SELECT stream.grant('priv_tt', 'priv_group', 'admin');
GRANT priv_group TO priv_member;
SELECT pg_temp.privs('priv_member', 'priv_tt') AS member_of_admin_group;
SELECT stream.revoke('priv_tt', 'priv_group', 'admin');

------------------------------------------------------------------------------
-- Creating topics: superuser, database owner or stream_admin; the creator
-- administers what it created
------------------------------------------------------------------------------
SET ROLE priv_creator;
SELECT pg_temp.try($$SELECT stream.create_topic('priv_c1')$$) AS create_without_right;
RESET ROLE;
GRANT stream_admin TO priv_creator;
SET ROLE priv_creator;
SELECT stream.create_topic('priv_c1', 2, value_type => 'text');
-- stream_admin administers every topic, also the ones it did not create
SELECT pg_temp.privs('priv_creator', 'priv_hidden') AS stream_admin_on_hidden;
RESET ROLE;
SELECT topic, role, privilege, granted_by FROM stream.topic_privileges WHERE topic = 'priv_c1';
REVOKE stream_admin FROM priv_creator;
SET ROLE priv_creator;
-- no longer a creator, but still the administrator of its topic
SELECT pg_temp.try($$SELECT stream.create_topic('priv_c2')$$) AS create_after_leaving;
SELECT pg_temp.privs('priv_creator', 'priv_c1') AS own_topic, pg_temp.privs('priv_creator', 'priv_hidden') AS hidden;
SELECT pg_temp.try($$SELECT stream.alter_topic('priv_c1', 3)$$) AS alter_own,
       pg_temp.try($$SELECT * FROM stream.publish('priv_c1', 'hello')$$) AS publish_own;
RESET ROLE;
-- the database owner creates topics and administers all of them
SELECT datdba::regrole AS orig_dba FROM pg_database WHERE datname = current_database() \gset
ALTER DATABASE :"DBNAME" OWNER TO priv_dbowner;
SET ROLE priv_dbowner;
SELECT stream.create_topic('priv_d1');
SELECT pg_temp.privs('priv_dbowner', 'priv_hidden') AS dbowner_on_hidden;
SELECT count(*) FROM stream.read('priv_hidden', 0);
RESET ROLE;
ALTER DATABASE :"DBNAME" OWNER TO :"orig_dba";
SELECT pg_temp.privs('priv_dbowner', 'priv_hidden') AS former_dbowner_on_hidden,
       pg_temp.privs('priv_dbowner', 'priv_d1') AS former_dbowner_on_own;
-- a superuser creator needs no grant row
SELECT count(*) AS superuser_creator_rows FROM stream.topic_privileges WHERE topic = 'priv_hidden';

------------------------------------------------------------------------------
-- The views show only topics the role holds a privilege on
------------------------------------------------------------------------------
SELECT count(*) FROM stream.poll('priv_gh', 'priv_hidden');
SELECT stream.commit('priv_gh', 'priv_hidden');
SELECT stream.grant('priv_hidden', 'priv_adm', 'publish');
SET ROLE priv_con;
SELECT topic, partitions, value_type FROM stream.topics ORDER BY 1;
SELECT topic, partition, end_offset FROM stream.partitions ORDER BY 1, 2;
SELECT DISTINCT "group", topic FROM stream.consumer_lag ORDER BY 1, 2;
SELECT topic, role, privilege FROM stream.topic_privileges ORDER BY 1, 2::text, 3;
RESET ROLE;
SET ROLE priv_nobody;
SELECT (SELECT count(*) FROM stream.topics) AS topics,
       (SELECT count(*) FROM stream.partitions) AS partitions,
       (SELECT count(*) FROM stream.consumer_lag) AS consumer_lag,
       (SELECT count(*) FROM stream.topic_privileges) AS topic_privileges;
RESET ROLE;

-- ... also against a leaky function in the query: a cheap function that
-- sees the rows before the privilege filter would learn hidden topic names,
-- groups and grantees (the views must be security barriers)
CREATE SCHEMA priv_spy AUTHORIZATION priv_spy;
SET ROLE priv_spy;
CREATE FUNCTION priv_spy.leak(text) RETURNS boolean
LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
    RAISE NOTICE 'leaked: %', $1;
    RETURN true;
END
$$;
SELECT count(*) AS topics FROM stream.topics WHERE priv_spy.leak(topic);
SELECT count(*) AS partitions FROM stream.partitions WHERE priv_spy.leak(topic);
SELECT count(*) AS lag_groups FROM stream.consumer_lag WHERE priv_spy.leak("group");
SELECT count(*) AS lag_topics FROM stream.consumer_lag WHERE priv_spy.leak(topic);
SELECT count(*) AS grant_topics FROM stream.topic_privileges WHERE priv_spy.leak(topic);
SELECT count(*) AS grant_roles FROM stream.topic_privileges WHERE priv_spy.leak(role::text);
-- the live members of hidden topics' groups are not listed either
SELECT count(*) AS hidden_members FROM stream._members() m WHERE m."group" = 'priv_gh';
RESET ROLE;

-- a SECURITY DEFINER function of a role with consume reads the views with
-- that role's rights, whoever calls it (as for a table)
CREATE FUNCTION public.priv_monitor() RETURNS TABLE (topic text, messages bigint, lag bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT p.topic, sum(p.messages)::bigint,
           (SELECT sum(l.lag)::bigint FROM stream.consumer_lag l WHERE l.topic = p.topic)
    FROM stream.partitions p GROUP BY p.topic ORDER BY 1
$$;
ALTER FUNCTION public.priv_monitor() OWNER TO priv_con;
SET ROLE priv_nobody;
SELECT pg_temp.try('SELECT * FROM public.priv_monitor()') AS monitor_for_nobody;
RESET ROLE;
SET ROLE priv_con;
SELECT pg_temp.try('SELECT * FROM public.priv_monitor()') AS monitor_for_owner;
RESET ROLE;

------------------------------------------------------------------------------
-- Catalogs, data tables and internal functions are closed to ordinary roles
------------------------------------------------------------------------------
SELECT format('stream_data.seg_%s', min(segment_id)) AS seg
FROM stream._segments JOIN stream._topics USING (topic_id) WHERE topic = 'priv_hidden' \gset
SET ROLE priv_nobody;
SELECT regexp_replace(c, 'seg_\d+', 'seg_N') AS statement, pg_temp.try_as('priv_nobody', c) AS result
FROM unnest(ARRAY[
    format('SELECT * FROM %s', :'seg'),
    format('INSERT INTO %s VALUES (1000, NULL, ''{}'', NULL, now()) RETURNING 1', :'seg'),
    format('DELETE FROM %s RETURNING 1', :'seg'),
    'SELECT * FROM stream._topics',
    'UPDATE stream._topics SET max_message_bytes = 1 RETURNING 1',
    'SELECT * FROM stream._partitions',
    'SELECT * FROM stream._segments',
    'DELETE FROM stream._segments RETURNING 1',
    'SELECT * FROM stream._offsets',
    'INSERT INTO stream._offsets VALUES (''g'', 1, 0, 0, now()) RETURNING 1',
    'SELECT * FROM stream._acl',
    'INSERT INTO stream._acl (topic_id, role, privilege) SELECT topic_id, ''priv_nobody'', ''admin'' FROM stream.topics RETURNING 1',
    'SELECT * FROM stream._retention_runs',
    'SELECT * FROM stream.retention_runs',
    'SELECT nextval(''stream._segment_id_seq'')',
    'SELECT stream._create_segment(1, 0, 0)',
    'SELECT stream._create_topic(''priv_sneaky'')',
    'SELECT stream._alter_topic(''priv_hidden'', 5)',
    'SELECT stream._drop_topic(''priv_hidden'')',
    'SELECT stream._grant(''priv_hidden'', ''priv_nobody'', ''admin'', 10)',
    'SELECT stream._revoke(''priv_hidden'', ''priv_adm'', ''publish'', 10)',
    'SELECT * FROM stream._partition_tail(1, 0)',
    'SELECT * FROM stream._segment_ages(1, 0)',
    'SELECT stream._offset_for_time(1, 0, now())',
    'SELECT * FROM stream.verify()']) c;
RESET ROLE;
-- nor can objects be created in the extension's schemas
CREATE FUNCTION pg_temp.try_ddl(r text, cmd text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    EXECUTE cmd;
    RAISE EXCEPTION USING ERRCODE = 'SR001', MESSAGE = 'ok';   -- undo it all
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
    RETURN CASE WHEN SQLSTATE = 'SR001' THEN msg ELSE SQLSTATE || ': ' || msg END;
END
$$;
SELECT pg_temp.try_ddl('priv_nobody', c) AS result
FROM unnest(ARRAY[
    'CREATE TABLE stream.priv_x (i int)',
    'CREATE FUNCTION stream.priv_f() RETURNS int LANGUAGE sql AS ''SELECT 1''',
    'CREATE TABLE stream_data.seg_999999 (i int)',
    'CREATE TRIGGER priv_trg AFTER INSERT ON stream._topics FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger(''x'')']) c;

-- which functions of the extension an ordinary role may run: the public API
-- and the views' helpers (each of which checks the caller itself)
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
WHERE has_function_privilege('priv_nobody', p.oid, 'EXECUTE')
ORDER BY p.proname, p.oid::regprocedure::text;
-- and which relations: only the four views
SELECT c.oid::regclass AS relation, c.relkind,
       has_table_privilege('priv_nobody', c.oid, 'SELECT') AS sel,
       has_table_privilege('priv_nobody', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS write
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('stream', 'stream_data') AND c.relkind IN ('r', 'v', 'S', 'p', 'm')
  AND (has_table_privilege('priv_nobody', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
       OR has_any_column_privilege('priv_nobody', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
ORDER BY 1::text;
SELECT nspname, has_schema_privilege('priv_nobody', oid, 'USAGE') AS usage,
       has_schema_privilege('priv_nobody', oid, 'CREATE') AS "create"
FROM pg_namespace WHERE nspname IN ('stream', 'stream_data') ORDER BY 1;

------------------------------------------------------------------------------
-- SECURITY DEFINER functions pin search_path (and so does every function of
-- the extension written in SQL or PL/pgSQL)
------------------------------------------------------------------------------
SELECT p.oid::regprocedure AS function, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
WHERE p.prosecdef
ORDER BY 1::text;
SELECT count(*) AS secdef_without_pinned_path
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
WHERE p.prosecdef AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);
SELECT p.oid::regprocedure AS sql_function_without_pinned_path
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
JOIN pg_language l ON l.oid = p.prolang
WHERE l.lanname IN ('sql', 'plpgsql')
  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
ORDER BY 1::text;

------------------------------------------------------------------------------
-- The trigger publishes with the table owner's privilege
------------------------------------------------------------------------------
SELECT stream.create_topic('priv_trg');
CREATE TABLE priv_tab (id int PRIMARY KEY, author text);
ALTER TABLE priv_tab OWNER TO priv_owner;
CREATE TRIGGER priv_tab_stream AFTER INSERT OR UPDATE OR DELETE ON priv_tab
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('priv_trg', 'author');
GRANT INSERT, SELECT ON priv_tab TO priv_writer;
-- the writer's own publish right does not count: the owner has none
SELECT stream.grant('priv_trg', 'priv_writer', 'publish');
SET ROLE priv_writer;
INSERT INTO priv_tab VALUES (1, 'alice');
RESET ROLE;
SELECT count(*) AS rows_after_refusal FROM priv_tab;
SELECT end_offset AS end_after_refusal FROM stream.partitions WHERE topic = 'priv_trg';
-- the owner itself is refused the same way
SET ROLE priv_owner;
INSERT INTO priv_tab VALUES (1, 'alice');
RESET ROLE;
-- with publish granted to the owner, a writer without any grant publishes
SELECT stream.revoke('priv_trg', 'priv_writer', 'publish');
SELECT stream.grant('priv_trg', 'priv_owner', 'publish');
SET ROLE priv_writer;
SELECT pg_temp.privs('priv_writer', 'priv_trg') AS writer_privs;
INSERT INTO priv_tab VALUES (1, 'alice');
-- the writer cannot read what it published
SELECT pg_temp.try($$SELECT * FROM stream.read('priv_trg', 0)$$) AS writer_reads;
RESET ROLE;
SELECT count(*) AS rows_after_grant FROM priv_tab;
SELECT "offset", key, value->>'op' AS op, value->'new' AS new FROM stream.read('priv_trg', 0);
-- revoked again: refused again
SELECT stream.revoke('priv_trg', 'priv_owner', 'publish');
SET ROLE priv_writer;
INSERT INTO priv_tab VALUES (2, 'bob');
RESET ROLE;
SELECT count(*) AS rows_after_revoke FROM priv_tab;

------------------------------------------------------------------------------
-- DROP ROLE of a role holding grants is refused; DROP OWNED BY removes them
------------------------------------------------------------------------------
SELECT pg_temp.exec('DROP ROLE priv_con') AS drop_role;
SELECT pg_temp.exec('DROP ROLE priv_nobody, priv_pub') AS drop_roles;
SELECT pg_temp.exec('DROP USER priv_adm') AS drop_user;
DROP ROLE priv_con;
SELECT count(*) AS grants_of_priv_con FROM stream.topic_privileges WHERE role = 'priv_con'::regrole;
DROP OWNED BY priv_con;
SELECT count(*) AS grants_of_priv_con FROM stream.topic_privileges WHERE role = 'priv_con'::regrole;
DROP ROLE priv_con;
-- a role that granted privileges (and holds none itself any more) leaves no
-- dangling grantor behind, however DROP ROLE treats it
SELECT stream.revoke('priv_tb', 'priv_grantor', 'admin');
SELECT topic, role, privilege, granted_by FROM stream.topic_privileges WHERE granted_by = 'priv_grantor'::regrole;
DO $$ BEGIN DROP ROLE priv_grantor; EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$;
SELECT count(*) AS dangling_grantors
FROM stream._acl a LEFT JOIN pg_roles r ON r.oid = a.granted_by::oid
WHERE a.granted_by IS NOT NULL AND r.oid IS NULL;

------------------------------------------------------------------------------
-- Objects on the caller's search_path never hijack the extension's queries.
-- A fresh session, so that the extension prepares its cached queries under
-- the hostile search_path.  Every decoy counts its calls in a sequence
-- (which a rollback does not undo) and raises a notice.
------------------------------------------------------------------------------
\c
\set SHOW_CONTEXT never
SELECT stream.create_topic('priv_hj', 2);
SELECT stream.grant('priv_hj', 'priv_evil', 'admin');
GRANT stream_admin TO priv_evil;
CREATE SCHEMA priv_evil AUTHORIZATION priv_evil;
SET ROLE priv_evil;
CREATE SEQUENCE priv_evil.calls;
CREATE FUNCTION priv_evil.decoy(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('priv_evil.calls');
    RAISE NOTICE 'decoy % called as %', what, current_user;
END
$$;
CREATE FUNCTION priv_evil.eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('=(text)'); RETURN pg_catalog.texteq(a, b); END $$;
CREATE OPERATOR priv_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = priv_evil.eq);
CREATE FUNCTION priv_evil.eq4(a int, b int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('=(int4)'); RETURN pg_catalog.int4eq(a, b); END $$;
CREATE OPERATOR priv_evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = priv_evil.eq4);
CREATE FUNCTION priv_evil.eq8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('=(int8)'); RETURN pg_catalog.int8eq(a, b); END $$;
CREATE OPERATOR priv_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = priv_evil.eq8);
CREATE FUNCTION priv_evil.lt8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('<(int8)'); RETURN pg_catalog.int8lt(a, b); END $$;
CREATE OPERATOR priv_evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = priv_evil.lt8);
CREATE FUNCTION priv_evil.cat(a text, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('||(text)'); RETURN pg_catalog.textcat(a, b); END $$;
CREATE OPERATOR priv_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = priv_evil.cat);
CREATE FUNCTION priv_evil.cat8(a text, b bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('||(text, int8)'); RETURN pg_catalog.textcat(a, b::text); END $$;
CREATE OPERATOR priv_evil.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = priv_evil.cat8);
CREATE FUNCTION priv_evil.format(f text, a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('format'); RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION priv_evil.to_regclass(a text) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('to_regclass'); RETURN pg_catalog.to_regclass(a); END $$;
CREATE FUNCTION priv_evil.lower(a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('lower'); RETURN pg_catalog.lower(a); END $$;
CREATE FUNCTION priv_evil.nextval(a regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('nextval'); RETURN pg_catalog.nextval(a); END $$;
CREATE FUNCTION priv_evil.pg_relation_size(a regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('pg_relation_size'); RETURN pg_catalog.pg_relation_size(a); END $$;
CREATE FUNCTION priv_evil.generate_series(a int, b int) RETURNS SETOF int LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('generate_series'); RETURN QUERY SELECT pg_catalog.generate_series(a, b); END $$;
CREATE FUNCTION priv_evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION priv_evil.max_step(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM priv_evil.decoy('max/min(int8)'); RETURN pg_catalog.int8larger(s, v); END $$;
CREATE AGGREGATE priv_evil.max(bigint) (SFUNC = priv_evil.max_step, STYPE = bigint);
CREATE AGGREGATE priv_evil.min(bigint) (SFUNC = priv_evil.max_step, STYPE = bigint);
-- the hostile path: the role's own schema before pg_catalog
SET search_path = priv_evil, pg_catalog, public;
-- the decoys are live: this role's own query calls one
SELECT 'a'::text = 'a'::text AS decoys_work;
SELECT last_value AS decoy_calls FROM priv_evil.calls;
-- now the extension, through every kind of entry point
SELECT stream.create_topic('priv_hj2', 2, value_type => 'text');
SELECT stream.alter_topic('priv_hj', partitions => 3, retention => '7 days', max_message_bytes => 10000);
SELECT partition, "offset" FROM stream.publish('priv_hj', '{"a": 1}', 'k1');
SELECT count(*) FROM stream.publish_batch('priv_hj', ARRAY['1', '2', '3']::jsonb[], ARRAY['x', 'y', 'z'],
                                         ARRAY['{"h": 1}', NULL, NULL]::jsonb[]);
SELECT count(*) FROM stream.publish('priv_hj2', 'text value', partition => 1);
SELECT count(*) FROM stream.read('priv_hj', stream.partition_for('k1', 3), 0);
SELECT count(*) FROM stream.read_text('priv_hj2', 1, 0);
SELECT count(*) FROM stream.poll('priv_hjg', 'priv_hj');
SELECT stream.commit('priv_hjg', 'priv_hj');
SELECT stream.seek('priv_hjg', 'priv_hj', 0, 0);
SELECT stream.commit('priv_hjg', 'priv_hj', 0, 0);
SELECT stream.reset_offsets('priv_hjg', 'priv_hj', 'latest');
SELECT stream.reset_offsets('priv_hjg', 'priv_hj', now() - interval '1 hour');
SELECT stream.leave('priv_hjg', 'priv_hj');
SELECT count(*) FROM stream.poll_text('priv_hjg', 'priv_hj2');
SELECT stream.commit('priv_hjg', 'priv_hj2');
SELECT stream.grant('priv_hj2', 'priv_spy', 'consume');
SELECT stream.revoke('priv_hj2', 'priv_spy', 'consume');
SELECT stream.has_topic_privilege('priv_hj', 'publish');
SELECT count(*) FROM stream.topics WHERE topic LIKE 'priv\_hj%';
SELECT count(*) FROM stream.partitions WHERE topic LIKE 'priv\_hj%';
SELECT count(*) FROM stream.consumer_lag WHERE topic LIKE 'priv\_hj%';
SELECT count(*) FROM stream.topic_privileges WHERE topic LIKE 'priv\_hj%';
CREATE TABLE priv_evil.t (id int, k text);
CREATE TRIGGER t_stream AFTER INSERT ON priv_evil.t
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('priv_hj', 'k');
INSERT INTO priv_evil.t VALUES (1, 'k1');
SELECT stream.drop_topic('priv_hj2');
-- none of that called a decoy
SELECT last_value AS decoy_calls FROM priv_evil.calls;
RESET search_path;
RESET ROLE;
SELECT topic, partition, end_offset, messages FROM stream.partitions WHERE topic = 'priv_hj' ORDER BY 2;
SELECT stream.drop_topic('priv_hj');
REVOKE stream_admin FROM priv_evil;

------------------------------------------------------------------------------
-- Cleanup, and the catalog is consistent
------------------------------------------------------------------------------
SELECT stream.drop_topic(t) FROM unnest(ARRAY['priv_t', 'priv_tt', 'priv_tb', 'priv_hidden', 'priv_c1',
                                               'priv_d1', 'priv_trg']) t;
DROP OWNED BY priv_nobody, priv_pub, priv_adm, priv_creator, priv_dbowner, priv_group, priv_member,
    priv_noinh, priv_owner, priv_writer, priv_grantee, priv_spy, priv_evil;
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'priv_grantor') THEN
        DROP OWNED BY priv_grantor;
        DROP ROLE priv_grantor;
    END IF;
END $$;
DROP ROLE priv_nobody, priv_pub, priv_adm, priv_creator, priv_dbowner, priv_member, priv_noinh,
    priv_group, priv_owner, priv_writer, priv_grantee, priv_spy, priv_evil;
SELECT count(*) AS priv_roles_left FROM pg_roles
WHERE rolname IN ('priv_nobody', 'priv_pub', 'priv_con', 'priv_adm', 'priv_creator', 'priv_dbowner',
                  'priv_group', 'priv_member', 'priv_noinh', 'priv_owner', 'priv_writer', 'priv_grantor',
                  'priv_grantee', 'priv_spy', 'priv_evil');
SELECT * FROM stream.verify();

-- stream 0.1.0 -> 0.2.0
\echo Use "ALTER EXTENSION stream UPDATE TO '0.2.0'" to load this file. \quit

-- The catalog loses its foreign keys: pg_restore -j loads the tables in any
-- order (see stream._partitions in stream.sql).  drop_topic deletes the
-- children itself, _grant and commit lock the parent row as the keys did, and
-- verify() reports orphans.
ALTER TABLE stream._partitions DROP CONSTRAINT _partitions_topic_id_fkey;
ALTER TABLE stream._segments DROP CONSTRAINT _segments_topic_id_partition_fkey;
ALTER TABLE stream._acl DROP CONSTRAINT _acl_topic_id_fkey;
ALTER TABLE stream._offsets DROP CONSTRAINT _offsets_topic_id_partition_fkey;

CREATE OR REPLACE FUNCTION stream._drop_topic(topic text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t stream._topics;
    s record;
BEGIN
    PERFORM stream._check_topic_args(topic, NULL, NULL, NULL, NULL, NULL);
    SELECT * INTO t FROM stream._topics x WHERE x.topic = _drop_topic.topic FOR UPDATE;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RAISE NOTICE 'topic "%" does not exist, skipping', topic;
            RETURN;
        END IF;
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object';
    END IF;
    -- lock the partitions too: a segment roller holds them while it works
    PERFORM 1 FROM stream._partitions p WHERE p.topic_id = t.topic_id FOR UPDATE;
    FOR s IN SELECT g.segment_id FROM stream._segments g WHERE g.topic_id = t.topic_id LOOP
        EXECUTE format('DROP TABLE IF EXISTS stream_data.%I', 'seg_' || s.segment_id);
    END LOOP;
    -- no foreign keys (see stream._partitions): delete the children here
    DELETE FROM stream._acl a WHERE a.topic_id = t.topic_id;
    DELETE FROM stream._offsets o WHERE o.topic_id = t.topic_id;
    DELETE FROM stream._segments g WHERE g.topic_id = t.topic_id;
    DELETE FROM stream._partitions p WHERE p.topic_id = t.topic_id;
    DELETE FROM stream._topics x WHERE x.topic_id = t.topic_id;
END
$$;

CREATE OR REPLACE FUNCTION stream._grant(topic text, role regrole, privilege text, grantor oid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id integer;
BEGIN
    -- KEY SHARE: the lock a foreign key would take, so drop_topic waits for us
    SELECT t.topic_id INTO STRICT v_id FROM stream._topics t WHERE t.topic = _grant.topic FOR KEY SHARE;
    IF (SELECT count(DISTINCT a.role) FROM stream._acl a
        WHERE a.topic_id = v_id AND a.role <> _grant.role) >= 64 THEN
        RAISE EXCEPTION 'topic "%" already has grants for 64 roles', topic
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Grant to a group role and make the others members of it.';
    END IF;
    INSERT INTO stream._acl (topic_id, role, privilege, granted_by)
    VALUES (v_id, _grant.role, lower(_grant.privilege), grantor::regrole)
    ON CONFLICT DO NOTHING;
END
$$;

CREATE OR REPLACE FUNCTION stream.verify(OUT problem text, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    s record;
    v_prev_base bigint;
    v_min bigint;
    v_max bigint;
    v_end bigint;
    v_lso bigint;
    v_max_all bigint;
BEGIN
    -- partitions: rows 0..n-1 for every topic, each with at least one segment
    FOR r IN SELECT t.topic, t.topic_id, t.partitions,
                    (SELECT count(*) FROM stream._partitions p WHERE p.topic_id = t.topic_id) AS n,
                    (SELECT max(p.partition) FROM stream._partitions p WHERE p.topic_id = t.topic_id) AS maxp
             FROM stream._topics t
    LOOP
        IF r.n <> r.partitions OR r.maxp <> r.partitions - 1 THEN
            problem := 'partition rows do not match the partition count';
            detail := format('topic %s: %s partitions, %s rows, highest %s', r.topic, r.partitions, r.n, r.maxp);
            RETURN NEXT;
        END IF;
    END LOOP;
    FOR r IN SELECT t.topic, p.partition FROM stream._partitions p JOIN stream._topics t USING (topic_id)
             WHERE NOT EXISTS (SELECT 1 FROM stream._segments g
                               WHERE g.topic_id = p.topic_id AND g.partition = p.partition)
    LOOP
        problem := 'partition without a segment';
        detail := format('topic %s partition %s', r.topic, r.partition);
        RETURN NEXT;
    END LOOP;
    -- rows whose parent is gone (there are no foreign keys, see stream._partitions)
    FOR r IN SELECT 'partition' AS kind, format('topic id %s partition %s', p.topic_id, p.partition) AS what
             FROM stream._partitions p WHERE NOT EXISTS (SELECT 1 FROM stream._topics t WHERE t.topic_id = p.topic_id)
             UNION ALL
             SELECT 'grant', format('topic id %s role oid %s', a.topic_id, a.role::oid)
             FROM stream._acl a WHERE NOT EXISTS (SELECT 1 FROM stream._topics t WHERE t.topic_id = a.topic_id)
             UNION ALL
             SELECT 'segment', format('segment %s of topic id %s partition %s', g.segment_id, g.topic_id, g.partition)
             FROM stream._segments g WHERE NOT EXISTS (SELECT 1 FROM stream._partitions p
                                                       WHERE p.topic_id = g.topic_id AND p.partition = g.partition)
             UNION ALL
             SELECT 'committed offset', format('group %s topic id %s partition %s', o.group_name, o.topic_id, o.partition)
             FROM stream._offsets o WHERE NOT EXISTS (SELECT 1 FROM stream._partitions p
                                                      WHERE p.topic_id = o.topic_id AND p.partition = o.partition)
    LOOP
        problem := r.kind || ' row without its parent';
        detail := r.what;
        RETURN NEXT;
    END LOOP;
    -- every segment row has its table with the offset primary key, and back
    FOR r IN SELECT g.segment_id FROM stream._segments g
             WHERE to_regclass('stream_data.seg_' || g.segment_id) IS NULL
                OR to_regclass('stream_data.seg_' || g.segment_id || '_pkey') IS NULL
    LOOP
        problem := 'segment table or its offset index is missing';
        detail := format('segment %s', r.segment_id);
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'stream_data' AND c.relkind = 'r'
               AND NOT EXISTS (SELECT 1 FROM stream._segments g WHERE 'seg_' || g.segment_id = c.relname)
    LOOP
        problem := 'table in stream_data without a segment row';
        detail := r.relname;
        RETURN NEXT;
    END LOOP;
    -- per partition: bases increase, offsets stay within their segment,
    -- and the shared state is ahead of everything stored
    FOR r IN SELECT t.topic, t.topic_id, p.partition
             FROM stream._partitions p JOIN stream._topics t USING (topic_id)
    LOOP
        v_prev_base := NULL;
        v_max_all := NULL;
        FOR s IN SELECT g.segment_id, g.base_offset,
                        lead(g.base_offset) OVER (ORDER BY g.segment_id) AS next_base,
                        to_regclass('stream_data.seg_' || g.segment_id) AS rel
                 FROM stream._segments g
                 WHERE g.topic_id = r.topic_id AND g.partition = r.partition
                 ORDER BY g.segment_id
        LOOP
            CONTINUE WHEN s.rel IS NULL;
            IF s.base_offset IS NOT NULL AND v_prev_base IS NOT NULL AND s.base_offset < v_prev_base THEN
                problem := 'segment base offsets decrease';
                detail := format('topic %s partition %s segment %s base %s after %s',
                                 r.topic, r.partition, s.segment_id, s.base_offset, v_prev_base);
                RETURN NEXT;
            END IF;
            v_prev_base := coalesce(s.base_offset, v_prev_base);
            EXECUTE format('SELECT min("offset"), max("offset") FROM stream_data.%I', 'seg_' || s.segment_id)
                INTO v_min, v_max;
            IF v_min IS NOT NULL AND (v_min < coalesce(s.base_offset, v_min)
                                      OR v_max >= coalesce(s.next_base, v_max + 1)) THEN
                problem := 'offsets outside their segment';
                detail := format('topic %s partition %s segment %s holds %s..%s, range [%s, %s)',
                                 r.topic, r.partition, s.segment_id, v_min, v_max, s.base_offset, s.next_base);
                RETURN NEXT;
            END IF;
            IF v_max_all IS NOT NULL AND v_min IS NOT NULL AND v_min <= v_max_all THEN
                problem := 'segments overlap';
                detail := format('topic %s partition %s segment %s starts at %s, before %s',
                                 r.topic, r.partition, s.segment_id, v_min, v_max_all);
                RETURN NEXT;
            END IF;
            v_max_all := greatest(v_max_all, v_max);
        END LOOP;
        BEGIN
            SELECT st.end_offset, st.last_stable_offset INTO v_end, v_lso
            FROM stream._partition_state(r.topic, r.partition) st;
        EXCEPTION WHEN undefined_object THEN
            CONTINUE;           -- no segment: reported above
        END;
        IF v_lso > v_end OR (v_max_all IS NOT NULL AND v_end <= v_max_all) THEN
            problem := 'shared state behind the stored messages';
            detail := format('topic %s partition %s: end %s, stable %s, highest stored %s',
                             r.topic, r.partition, v_end, v_lso, v_max_all);
            RETURN NEXT;
        END IF;
        FOR s IN SELECT o.group_name, o.committed_offset FROM stream._offsets o
                 WHERE o.topic_id = r.topic_id AND o.partition = r.partition
                   AND o.committed_offset > v_end
        LOOP
            problem := 'committed offset beyond the end';
            detail := format('group %s topic %s partition %s: %s > %s',
                             s.group_name, r.topic, r.partition, s.committed_offset, v_end);
            RETURN NEXT;
        END LOOP;
    END LOOP;
    -- grants name live roles, grantee and grantor
    FOR r IN SELECT a.role::oid AS roleid, t.topic FROM stream._acl a JOIN stream._topics t USING (topic_id)
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles x WHERE x.oid = a.role::oid)
                OR (a.granted_by IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM pg_roles x WHERE x.oid = a.granted_by::oid))
    LOOP
        problem := 'grant to a role that no longer exists';
        detail := format('topic %s role oid %s', r.topic, r.roleid);
        RETURN NEXT;
    END LOOP;
END
$$;


-- consumer_lag: the owner by a hash join, not a subquery scanning every lock per row
CREATE OR REPLACE VIEW stream.consumer_lag WITH (security_barrier) AS
WITH locks AS MATERIALIZED (
    SELECT DISTINCT ON (l.classid, l.objid) l.classid, l.objid, l.pid
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 21332 AND l.granted
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
), live AS (
    SELECT DISTINCT m."group", m.topic_id FROM stream._members() m
), visible AS MATERIALIZED (
    SELECT t.topic_id FROM stream._topics t WHERE stream.has_topic_privilege(t.topic, 'any')
), keys AS (
    SELECT o.group_name, o.topic_id, o.partition
    FROM stream._offsets o JOIN visible v ON v.topic_id = o.topic_id
    UNION
    SELECT l."group", l.topic_id, p.partition
    FROM live l JOIN visible v ON v.topic_id = l.topic_id
    JOIN stream._partitions p ON p.topic_id = l.topic_id
), owned AS MATERIALIZED (
    -- a hash join of the lock keys, not a scan of every lock per row
    SELECT k.group_name, k.topic_id, k.partition, own.pid
    FROM keys k
    CROSS JOIN LATERAL stream._owner_lock_key(k.group_name, k.topic_id, k.partition) x
    LEFT JOIN locks own ON own.classid = x.classid AND own.objid = x.objid
)
SELECT k.group_name AS "group", t.topic, k.partition, o.committed_offset, st.end_offset,
       st.end_offset - o.committed_offset AS lag,
       k.pid AS owner_pid,
       o.committed_at,
       ls.log_start_offset,
       o.committed_offset < ls.log_start_offset AS below_log_start
FROM owned k
JOIN stream._topics t ON t.topic_id = k.topic_id
CROSS JOIN LATERAL (SELECT stream._partition_start(k.topic_id, k.partition) AS log_start_offset) ls
LEFT JOIN stream._offsets o
       ON o.group_name = k.group_name AND o.topic_id = k.topic_id AND o.partition = k.partition
CROSS JOIN LATERAL stream._partition_state(t.topic, k.partition) st;

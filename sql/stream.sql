-- stream: Kafka-style streams inside PostgreSQL
\echo Use "CREATE EXTENSION stream" to load this file. \quit

-- Refuse to install without the preload: nothing would work.
CREATE FUNCTION stream._assert_preloaded() RETURNS void
    AS 'MODULE_PATHNAME', 'stream_assert_preloaded' LANGUAGE C VOLATILE;
SELECT stream._assert_preloaded();

CREATE SCHEMA stream_data;
COMMENT ON SCHEMA stream_data IS 'segment tables of stream topics; managed by the stream extension';
REVOKE ALL ON SCHEMA stream_data FROM PUBLIC;

------------------------------------------------------------------------------
-- Catalog
------------------------------------------------------------------------------

CREATE SEQUENCE stream._topic_id_seq AS integer;
CREATE SEQUENCE stream._segment_id_seq AS bigint;

CREATE TABLE stream._topics (
    topic_id          integer PRIMARY KEY DEFAULT nextval('stream._topic_id_seq'),
    topic             text NOT NULL CONSTRAINT _topics_topic_key UNIQUE
                      CHECK (topic ~ '^[A-Za-z0-9._-]{1,200}$'),
    partitions        integer NOT NULL CHECK (partitions >= 1),
    value_type        regtype NOT NULL CHECK (value_type IN ('jsonb'::regtype, 'text'::regtype, 'bytea'::regtype)),
    retention         interval CHECK (retention > '0'::interval),
    retention_bytes   bigint CHECK (retention_bytes > 0),
    max_message_bytes integer NOT NULL CHECK (max_message_bytes > 0),
    segment_bytes     bigint NOT NULL CHECK (segment_bytes >= 8192),
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE stream._topic_id_seq OWNED BY stream._topics.topic_id;

-- The catalog tables have no foreign keys between them: pg_restore -j loads
-- them in parallel, in any order, and a key would reject the rows of a child
-- table loaded first.  drop_topic deletes the children itself, and whatever
-- adds a child row locks its parent row as a key would (see _grant and
-- offsets.c); stream.verify() reports orphans.
CREATE TABLE stream._partitions (
    topic_id   integer NOT NULL,
    partition  integer NOT NULL CHECK (partition >= 0),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic_id, partition)
);

CREATE TABLE stream._segments (
    segment_id  bigint PRIMARY KEY DEFAULT nextval('stream._segment_id_seq'),
    topic_id    integer NOT NULL,
    partition   integer NOT NULL,
    base_offset bigint CHECK (base_offset >= 0),   -- NULL until the roller records it
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE stream._segment_id_seq OWNED BY stream._segments.segment_id;
CREATE INDEX _segments_partition_idx ON stream._segments (topic_id, partition, segment_id);

-- pg_dump keeps the catalog's rows; segment tables are ordinary tables.
SELECT pg_catalog.pg_extension_config_dump('stream._topics', '');
SELECT pg_catalog.pg_extension_config_dump('stream._partitions', '');
SELECT pg_catalog.pg_extension_config_dump('stream._segments', '');
SELECT pg_catalog.pg_extension_config_dump('stream._topic_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stream._segment_id_seq', '');

REVOKE ALL ON ALL TABLES IN SCHEMA stream FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA stream FROM PUBLIC;

-- Backends cache topic metadata; any catalog change invalidates the caches.
CREATE FUNCTION stream._catalog_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'stream_catalog_changed' LANGUAGE C;
CREATE TRIGGER _topics_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON stream._topics FOR EACH STATEMENT EXECUTE FUNCTION stream._catalog_changed();
CREATE TRIGGER _partitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON stream._partitions FOR EACH STATEMENT EXECUTE FUNCTION stream._catalog_changed();
CREATE TRIGGER _segments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON stream._segments FOR EACH STATEMENT EXECUTE FUNCTION stream._catalog_changed();

------------------------------------------------------------------------------
-- Internal helpers
------------------------------------------------------------------------------

-- Create the next segment table of a partition.  The table name comes from
-- the segment id only, never from user text.
CREATE FUNCTION stream._create_segment(p_topic_id integer, p_partition integer, p_base bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type regtype;
    v_id   bigint;
BEGIN
    SELECT value_type INTO STRICT v_type FROM stream._topics WHERE topic_id = p_topic_id;
    v_id := nextval('stream._segment_id_seq');
    EXECUTE format(
        'CREATE TABLE stream_data.%I ('
        '  "offset" bigint NOT NULL,'
        '  key text,'
        '  value %s,'
        '  headers jsonb,'
        '  published_at timestamptz NOT NULL,'
        '  CONSTRAINT %I PRIMARY KEY ("offset")'
        ') WITH (autovacuum_vacuum_insert_scale_factor = 0.05)',
        'seg_' || v_id, v_type, 'seg_' || v_id || '_pkey');
    EXECUTE format('REVOKE ALL ON stream_data.%I FROM PUBLIC', 'seg_' || v_id);
    INSERT INTO stream._segments (segment_id, topic_id, partition, base_offset)
    VALUES (v_id, p_topic_id, p_partition, p_base);
    RETURN v_id;
END
$$;

-- The tail of a partition: the segment taking inserts and the next offset.
-- STABLE so that it runs with the caller's (fresh) snapshot, see storage.c.
CREATE FUNCTION stream._partition_tail(p_topic_id integer, p_partition integer,
    OUT segment_id bigint, OUT relid oid, OUT indexid oid, OUT next_offset bigint, OUT bytes bigint,
    OUT segment_xmin xid)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    v_max bigint;
BEGIN
    next_offset := 0;
    FOR s IN SELECT g.segment_id, g.base_offset, g.xmin FROM stream._segments g
             WHERE g.topic_id = p_topic_id AND g.partition = p_partition
             ORDER BY g.segment_id DESC
    LOOP
        IF segment_id IS NULL THEN
            segment_id := s.segment_id;
            segment_xmin := s.xmin;
            relid := to_regclass('stream_data.seg_' || s.segment_id);
            indexid := to_regclass('stream_data.seg_' || s.segment_id || '_pkey');
            bytes := pg_relation_size(relid);
        END IF;
        EXECUTE format('SELECT max("offset") FROM stream_data.%I', 'seg_' || s.segment_id)
            INTO v_max;
        IF v_max IS NOT NULL THEN
            next_offset := greatest(next_offset, v_max + 1);
            EXIT;
        END IF;
        IF s.base_offset IS NOT NULL THEN
            next_offset := greatest(next_offset, s.base_offset);
            EXIT;
        END IF;
    END LOOP;
    -- consumers move past rolled-back offsets at the end of a partition, so
    -- never hand out offsets below what a group committed (restart, eviction)
    next_offset := greatest(next_offset,
        (SELECT max(o.committed_offset) FROM stream._offsets o
         WHERE o.topic_id = p_topic_id AND o.partition = p_partition));
END
$$;

CREATE FUNCTION stream._partition_state(topic text, partition integer,
    OUT end_offset bigint, OUT last_stable_offset bigint)
    AS 'MODULE_PATHNAME', 'stream_partition_state' LANGUAGE C VOLATILE STRICT;

-- Storage figures of one partition, for the stream.partitions view.
CREATE FUNCTION stream._partition_storage_body(p_topic_id integer, p_partition integer,
    p_caller oid,
    OUT log_start_offset bigint, OUT messages bigint, OUT bytes bigint,
    OUT oldest_at timestamptz, OUT newest_at timestamptz, OUT segments integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    v_count bigint;
    v_first bigint;
    v_old timestamptz;
    v_new timestamptz;
BEGIN
    PERFORM stream._check_may_see(p_topic_id, p_caller);
    messages := 0; bytes := 0; segments := 0;
    FOR s IN SELECT g.segment_id, g.base_offset, to_regclass('stream_data.seg_' || g.segment_id) AS rel
             FROM stream._segments g
             WHERE g.topic_id = p_topic_id AND g.partition = p_partition
             ORDER BY g.segment_id
    LOOP
        CONTINUE WHEN s.rel IS NULL;
        -- retention may drop the segment under us: then it simply is not there
        BEGIN
            EXECUTE format('SELECT count(*), min("offset"), min(published_at), max(published_at) '
                           'FROM stream_data.%I', 'seg_' || s.segment_id)
                INTO v_count, v_first, v_old, v_new;
        EXCEPTION WHEN undefined_table THEN
            CONTINUE;
        END;
        segments := segments + 1;
        bytes := bytes + coalesce(pg_total_relation_size(s.rel), 0);
        messages := messages + v_count;
        IF log_start_offset IS NULL THEN
            log_start_offset := coalesce(s.base_offset, v_first);
        END IF;
        oldest_at := least(oldest_at, v_old);
        newest_at := greatest(newest_at, v_new);
    END LOOP;
END
$$;

-- Error 42501 unless the role holds a privilege on the topic (by id).
CREATE FUNCTION stream._check_may_see(p_topic_id integer, p_role oid) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_check_may_see' LANGUAGE C STABLE STRICT;

CREATE FUNCTION stream._partition_storage(p_topic_id integer, p_partition integer,
    OUT log_start_offset bigint, OUT messages bigint, OUT bytes bigint,
    OUT oldest_at timestamptz, OUT newest_at timestamptz, OUT segments integer)
    AS 'MODULE_PATHNAME', 'stream_partition_storage' LANGUAGE C STABLE STRICT;

------------------------------------------------------------------------------
-- Administration
------------------------------------------------------------------------------

CREATE FUNCTION stream._check_topic_args(topic text, partitions integer, retention interval,
    retention_bytes bigint, max_message_bytes integer, segment_bytes bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF topic !~ '^[A-Za-z0-9._-]{1,200}$' THEN
        RAISE EXCEPTION 'invalid topic name "%"', left(topic, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Topic names are 1 to 200 characters: letters A-Z and a-z, digits, ''.'', ''_'' and ''-''.';
    END IF;
    IF partitions IS NOT NULL AND (partitions < 1 OR partitions > 10000) THEN
        RAISE EXCEPTION 'partitions must be between 1 and 10000, got %', partitions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention IS NOT NULL AND retention = '0'::interval THEN
        RAISE EXCEPTION 'retention must be positive, or negative for unlimited'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention_bytes IS NOT NULL AND retention_bytes = 0 THEN
        RAISE EXCEPTION 'retention_bytes must be positive, or negative for unlimited'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_message_bytes IS NOT NULL AND (max_message_bytes < 1 OR max_message_bytes > 1073741823) THEN
        RAISE EXCEPTION 'max_message_bytes must be between 1 and 1073741823, got %', max_message_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF segment_bytes IS NOT NULL AND segment_bytes < 8192 THEN
        RAISE EXCEPTION 'segment_bytes must be at least 8192, got %', segment_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION stream._create_topic(
    topic text,
    partitions integer DEFAULT 1,
    retention interval DEFAULT NULL,
    retention_bytes bigint DEFAULT NULL,
    max_message_bytes integer DEFAULT 1048576,
    value_type regtype DEFAULT 'jsonb',
    segment_bytes bigint DEFAULT 67108864)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id integer;
BEGIN
    IF partitions IS NULL OR max_message_bytes IS NULL OR segment_bytes IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
            CASE WHEN partitions IS NULL THEN 'partitions'
                 WHEN max_message_bytes IS NULL THEN 'max_message_bytes'
                 ELSE 'segment_bytes' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM stream._check_topic_args(topic, partitions, retention, retention_bytes,
                                     max_message_bytes, segment_bytes);
    IF value_type IS NULL OR value_type NOT IN ('jsonb'::regtype, 'text'::regtype, 'bytea'::regtype) THEN
        RAISE EXCEPTION 'value type % is not supported', coalesce(value_type::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A topic holds jsonb, text or bytea values.';
    END IF;
    BEGIN
        INSERT INTO stream._topics (topic, partitions, value_type, retention, retention_bytes,
                                    max_message_bytes, segment_bytes)
        VALUES (topic, partitions, value_type,
                CASE WHEN retention < '0'::interval THEN NULL ELSE retention END,
                CASE WHEN retention_bytes < 0 THEN NULL ELSE retention_bytes END,
                max_message_bytes, segment_bytes)
        RETURNING topic_id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" already exists', topic
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use stream.alter_topic() to change it, or stream.drop_topic() first.';
    END;
    INSERT INTO stream._partitions (topic_id, partition)
    SELECT v_id, p FROM generate_series(0, partitions - 1) p;
    PERFORM stream._create_segment(v_id, p, 0) FROM generate_series(0, partitions - 1) p;
    RETURN v_id;
END
$$;

CREATE FUNCTION stream._alter_topic(
    topic text,
    partitions integer DEFAULT NULL,
    retention interval DEFAULT NULL,
    retention_bytes bigint DEFAULT NULL,
    max_message_bytes integer DEFAULT NULL,
    segment_bytes bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t stream._topics;
BEGIN
    PERFORM stream._check_topic_args(topic, partitions, retention, retention_bytes,
                                     max_message_bytes, segment_bytes);
    SELECT * INTO t FROM stream._topics x WHERE x.topic = _alter_topic.topic FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object';
    END IF;
    IF partitions IS NOT NULL AND partitions < t.partitions THEN
        RAISE EXCEPTION 'cannot decrease the partitions of topic "%" from % to %', topic, t.partitions, partitions
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Partitions can be added, never removed: keys would move and offsets be lost.';
    END IF;
    UPDATE stream._topics x SET
        partitions = coalesce(_alter_topic.partitions, x.partitions),
        retention = CASE WHEN _alter_topic.retention IS NULL THEN x.retention
                         WHEN _alter_topic.retention < '0'::interval THEN NULL
                         ELSE _alter_topic.retention END,
        retention_bytes = CASE WHEN _alter_topic.retention_bytes IS NULL THEN x.retention_bytes
                               WHEN _alter_topic.retention_bytes < 0 THEN NULL
                               ELSE _alter_topic.retention_bytes END,
        max_message_bytes = coalesce(_alter_topic.max_message_bytes, x.max_message_bytes),
        segment_bytes = coalesce(_alter_topic.segment_bytes, x.segment_bytes)
    WHERE x.topic_id = t.topic_id;
    IF partitions IS NOT NULL AND partitions > t.partitions THEN
        INSERT INTO stream._partitions (topic_id, partition)
        SELECT t.topic_id, p FROM generate_series(t.partitions, partitions - 1) p;
        PERFORM stream._create_segment(t.topic_id, p, 0)
        FROM generate_series(t.partitions, partitions - 1) p;
    END IF;
END
$$;

CREATE FUNCTION stream._drop_topic(topic text, if_exists boolean DEFAULT false)
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

-- The administration entry points check privileges as the caller (privileges.c)
-- and then run the bodies above with the extension's rights.
CREATE FUNCTION stream.create_topic(
    topic text,
    partitions integer DEFAULT 1,
    retention interval DEFAULT NULL,
    retention_bytes bigint DEFAULT NULL,
    max_message_bytes integer DEFAULT 1048576,
    value_type regtype DEFAULT 'jsonb',
    segment_bytes bigint DEFAULT 67108864)
RETURNS void
    AS 'MODULE_PATHNAME', 'stream_create_topic' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.alter_topic(
    topic text,
    partitions integer DEFAULT NULL,
    retention interval DEFAULT NULL,
    retention_bytes bigint DEFAULT NULL,
    max_message_bytes integer DEFAULT NULL,
    segment_bytes bigint DEFAULT NULL)
RETURNS void
    AS 'MODULE_PATHNAME', 'stream_alter_topic' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.drop_topic(topic text, if_exists boolean DEFAULT false)
RETURNS void
    AS 'MODULE_PATHNAME', 'stream_drop_topic' LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stream.create_topic(text, integer, interval, bigint, integer, regtype, bigint) IS
    'creates a topic with the given partitions, retention, message size limit, value type and segment size';
COMMENT ON FUNCTION stream.alter_topic(text, integer, interval, bigint, integer, bigint) IS
    'adds partitions or changes retention and size settings of a topic (NULL keeps a setting, negative retention means unlimited)';
COMMENT ON FUNCTION stream.drop_topic(text, boolean) IS
    'drops a topic with all its messages';

------------------------------------------------------------------------------
-- Producing
------------------------------------------------------------------------------

CREATE FUNCTION stream.publish(topic text, value jsonb, key text DEFAULT NULL,
    headers jsonb DEFAULT NULL, partition integer DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish' LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;
CREATE FUNCTION stream.publish(topic text, value text, key text DEFAULT NULL,
    headers jsonb DEFAULT NULL, partition integer DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish' LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;
CREATE FUNCTION stream.publish(topic text, value bytea, key text DEFAULT NULL,
    headers jsonb DEFAULT NULL, partition integer DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish' LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

CREATE FUNCTION stream.publish_batch(topic text, "values" jsonb[], keys text[] DEFAULT NULL,
    headers jsonb[] DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish_batch' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.publish_batch(topic text, "values" text[], keys text[] DEFAULT NULL,
    headers jsonb[] DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish_batch' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.publish_batch(topic text, "values" bytea[], keys text[] DEFAULT NULL,
    headers jsonb[] DEFAULT NULL)
RETURNS TABLE (partition integer, "offset" bigint)
    AS 'MODULE_PATHNAME', 'stream_publish_batch' LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stream.publish(text, jsonb, text, jsonb, integer) IS
    'publishes one message in the current transaction; returns its partition and offset';
COMMENT ON FUNCTION stream.publish(text, text, text, jsonb, integer) IS
    'publishes one message given as text, parsed into the topic''s value type';
COMMENT ON FUNCTION stream.publish(text, bytea, text, jsonb, integer) IS
    'publishes one bytea message';
COMMENT ON FUNCTION stream.publish_batch(text, jsonb[], text[], jsonb[]) IS
    'publishes many messages at once, in array order; returns a partition and offset per message';
COMMENT ON FUNCTION stream.publish_batch(text, text[], text[], jsonb[]) IS
    'publishes many messages given as text, parsed into the topic''s value type';
COMMENT ON FUNCTION stream.publish_batch(text, bytea[], text[], jsonb[]) IS
    'publishes many bytea messages';

CREATE FUNCTION stream.murmur2(key text) RETURNS integer
    AS 'MODULE_PATHNAME', 'stream_murmur2_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION stream.partition_for(key text, partitions integer) RETURNS integer
    AS 'MODULE_PATHNAME', 'stream_partition_for' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION stream.murmur2(text) IS
    'Kafka''s murmur2 hash of the key''s UTF-8 bytes';
COMMENT ON FUNCTION stream.partition_for(text, integer) IS
    'the partition Kafka''s default partitioner picks for a key';

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------

CREATE FUNCTION stream.read(topic text, partition integer, "offset" bigint DEFAULT 0,
    max_messages integer DEFAULT 100)
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value jsonb,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_read' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.read_text(topic text, partition integer, "offset" bigint DEFAULT 0,
    max_messages integer DEFAULT 100)
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value text,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_read_text' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.read_bytea(topic text, partition integer, "offset" bigint DEFAULT 0,
    max_messages integer DEFAULT 100)
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value bytea,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_read_bytea' LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION stream.read(text, integer, bigint, integer) IS
    'reads a jsonb partition from an offset, up to its last stable offset, without a group';
COMMENT ON FUNCTION stream.read_text(text, integer, bigint, integer) IS
    'reads a partition from an offset with values in their text form';
COMMENT ON FUNCTION stream.read_bytea(text, integer, bigint, integer) IS
    'reads a bytea partition from an offset';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

-- Members of stream_admin create topics and administer all of them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'stream_admin') THEN
        CREATE ROLE stream_admin NOLOGIN;
    END IF;
END
$$;

CREATE TABLE stream._acl (
    topic_id   integer NOT NULL,
    role       regrole NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('publish', 'consume', 'admin')),
    granted_by regrole,
    granted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic_id, role, privilege)
);
CREATE INDEX _acl_role_idx ON stream._acl (role);
SELECT pg_catalog.pg_extension_config_dump('stream._acl', '');
REVOKE ALL ON stream._acl FROM PUBLIC;
CREATE TRIGGER _acl_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON stream._acl FOR EACH STATEMENT EXECUTE FUNCTION stream._catalog_changed();

CREATE FUNCTION stream._grant(topic text, role regrole, privilege text, grantor oid)
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

CREATE FUNCTION stream._revoke(topic text, role regrole, privilege text, grantor oid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM stream._acl a
    USING stream._topics t
    WHERE t.topic_id = a.topic_id AND t.topic = _revoke.topic
      AND a.role = _revoke.role AND a.privilege = lower(_revoke.privilege);
END
$$;

CREATE FUNCTION stream.grant(topic text, role regrole, privilege text) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_grant' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.revoke(topic text, role regrole, privilege text) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_revoke' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.has_topic_privilege(topic text, privilege text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'stream_has_topic_privilege' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION stream.grant(text, regrole, text) IS
    'grants ''publish'', ''consume'' or ''admin'' on a topic to a role (needs admin on the topic)';
COMMENT ON FUNCTION stream.revoke(text, regrole, text) IS
    'revokes a privilege on a topic from a role (needs admin on the topic)';
COMMENT ON FUNCTION stream.has_topic_privilege(text, text) IS
    'does the current user hold ''publish'', ''consume'', ''admin'' or ''any'' privilege on the topic';

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------

-- Each view shows the topics the querying role holds a privilege on; as
-- security barriers, no function of the caller's sees the other rows.
CREATE VIEW stream.topics WITH (security_barrier) AS
SELECT t.topic, t.partitions, t.value_type, t.retention, t.retention_bytes,
       t.max_message_bytes, t.created_at, t.segment_bytes, t.topic_id
FROM stream._topics t
WHERE stream.has_topic_privilege(t.topic, 'any');

CREATE VIEW stream.partitions WITH (security_barrier) AS
WITH t AS MATERIALIZED (
    SELECT t.topic, t.topic_id FROM stream._topics t
    WHERE stream.has_topic_privilege(t.topic, 'any')
)
SELECT t.topic, p.partition, s.log_start_offset, st.end_offset, st.last_stable_offset,
       s.messages, s.bytes, s.oldest_at, s.newest_at, s.segments
FROM t
JOIN stream._partitions p USING (topic_id)
CROSS JOIN LATERAL stream._partition_state(t.topic, p.partition) st
CROSS JOIN LATERAL stream._partition_storage(t.topic_id, p.partition) s;

COMMENT ON VIEW stream.topics IS 'one row per topic with its settings';
COMMENT ON VIEW stream.partitions IS 'one row per partition: offsets, last stable offset, size and age';

-- Internals are not for direct use.
REVOKE ALL ON FUNCTION stream._create_segment(integer, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION stream._partition_tail(integer, integer) FROM PUBLIC;

------------------------------------------------------------------------------
-- Consumer groups
------------------------------------------------------------------------------

-- Committed offsets: the NEXT offset a group reads.  Updated in place (HOT):
-- fillfactor leaves room on each page for the new row versions.
CREATE TABLE stream._offsets (
    group_name       text NOT NULL,
    topic_id         integer NOT NULL,
    partition        integer NOT NULL,
    committed_offset bigint NOT NULL CHECK (committed_offset >= 0),
    committed_at     timestamptz NOT NULL,
    PRIMARY KEY (group_name, topic_id, partition)
) WITH (fillfactor = 50);
SELECT pg_catalog.pg_extension_config_dump('stream._offsets', '');
REVOKE ALL ON stream._offsets FROM PUBLIC;

-- First retained offset of a partition (oldest segment's base, else its first message).
CREATE FUNCTION stream._partition_start_body(p_topic_id integer, p_partition integer,
    p_caller oid)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    v_min bigint;
BEGIN
    PERFORM stream._check_may_see(p_topic_id, p_caller);
    FOR s IN SELECT g.segment_id, g.base_offset FROM stream._segments g
             WHERE g.topic_id = p_topic_id AND g.partition = p_partition
             ORDER BY g.segment_id
    LOOP
        IF s.base_offset IS NOT NULL THEN
            RETURN s.base_offset;
        END IF;
        BEGIN
            EXECUTE format('SELECT min("offset") FROM stream_data.%I', 'seg_' || s.segment_id)
                INTO v_min;
        EXCEPTION WHEN undefined_table THEN
            CONTINUE;           -- dropped by retention meanwhile
        END;
        IF v_min IS NOT NULL THEN
            RETURN v_min;
        END IF;
    END LOOP;
    RETURN (SELECT next_offset FROM stream._partition_tail(p_topic_id, p_partition));
END
$$;

-- Callable by anyone (the views use it): checks the caller's privilege in C,
-- then runs the body above with the extension's rights.
CREATE FUNCTION stream._partition_start(p_topic_id integer, p_partition integer)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_partition_start' LANGUAGE C STABLE STRICT;

-- First offset published at or after a time, NULL when none.
CREATE FUNCTION stream._offset_for_time(p_topic_id integer, p_partition integer, p_ts timestamptz)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    v_min bigint;
BEGIN
    FOR s IN SELECT g.segment_id FROM stream._segments g
             WHERE g.topic_id = p_topic_id AND g.partition = p_partition
             ORDER BY g.segment_id
    LOOP
        BEGIN
            EXECUTE format('SELECT min("offset") FROM stream_data.%I WHERE published_at >= $1',
                           'seg_' || s.segment_id)
                INTO v_min USING p_ts;
        EXCEPTION WHEN undefined_table THEN
            CONTINUE;           -- dropped by retention meanwhile
        END;
        IF v_min IS NOT NULL THEN
            RETURN v_min;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE FUNCTION stream.poll("group" text, topic text, max_messages integer DEFAULT 100,
    wait interval DEFAULT '0')
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value jsonb,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_poll' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.poll_text("group" text, topic text, max_messages integer DEFAULT 100,
    wait interval DEFAULT '0')
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value text,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_poll_text' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.poll_bytea("group" text, topic text, max_messages integer DEFAULT 100,
    wait interval DEFAULT '0')
RETURNS TABLE (topic text, partition integer, "offset" bigint, key text, value bytea,
               headers jsonb, published_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_poll_bytea' LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION stream.commit("group" text, topic text) RETURNS integer
    AS 'MODULE_PATHNAME', 'stream_commit' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.commit("group" text, topic text, partition integer, "offset" bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'stream_commit_offset' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.seek("group" text, topic text, partition integer, "offset" bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'stream_seek' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.reset_offsets("group" text, topic text, "to" text) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_reset_offsets' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.reset_offsets("group" text, topic text, "to" timestamptz) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_reset_offsets_time' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION stream.leave("group" text, topic text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'stream_leave' LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION stream._members(OUT pid integer, OUT "group" text, OUT topic_id integer,
    OUT joined bigint)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'stream_members' LANGUAGE C VOLATILE;
CREATE FUNCTION stream._owner_lock_key("group" text, topic_id integer, partition integer,
    OUT classid oid, OUT objid oid)
    AS 'MODULE_PATHNAME', 'stream_owner_lock_key' LANGUAGE C STABLE STRICT;

COMMENT ON FUNCTION stream.poll(text, text, integer, interval) IS
    'joins the group as this session, takes its share of partitions and returns messages from its positions; waits up to "wait" for new ones';
COMMENT ON FUNCTION stream.poll_text(text, text, integer, interval) IS
    'poll with values in their text form (any topic type)';
COMMENT ON FUNCTION stream.poll_bytea(text, text, integer, interval) IS
    'poll for bytea topics';
COMMENT ON FUNCTION stream.commit(text, text) IS
    'commits this session''s positions in the group''s partitions it owns, in the current transaction; returns how many';
COMMENT ON FUNCTION stream.commit(text, text, integer, bigint) IS
    'commits one offset (the next to read) of a partition this session owns';
COMMENT ON FUNCTION stream.seek(text, text, integer, bigint) IS
    'moves this session''s position in a partition it owns, or the committed offset of a partition no live member owns';
COMMENT ON FUNCTION stream.reset_offsets(text, text, text) IS
    'sets the group''s offsets in every partition to ''earliest'' or ''latest''; refused while another live member owns a partition';
COMMENT ON FUNCTION stream.reset_offsets(text, text, timestamptz) IS
    'sets the group''s offsets to the first message published at or after a time';
COMMENT ON FUNCTION stream.leave(text, text) IS
    'gives this session''s partitions of the group back; returns false when it was not a member';

-- Lag per group and partition: committed offsets (also of groups with no live
-- member) and the partitions of live members' topics.
CREATE VIEW stream.consumer_lag WITH (security_barrier) AS
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

COMMENT ON VIEW stream.consumer_lag IS
    'per group and partition: committed offset, end offset, lag, owning session and last commit time';

------------------------------------------------------------------------------
-- Retention
------------------------------------------------------------------------------

-- The segments of a partition, oldest first, with what retention needs.
CREATE FUNCTION stream._segment_ages(p_topic_id integer, p_partition integer,
    OUT segment_id bigint, OUT base_offset bigint, OUT next_base bigint, OUT relid oid,
    OUT bytes bigint, OUT newest_at timestamptz, OUT oldest_at timestamptz)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT g.segment_id, g.base_offset,
                    lead(g.base_offset) OVER (ORDER BY g.segment_id) AS next_base,
                    lead(g.segment_id) OVER (ORDER BY g.segment_id) AS next_id,
                    to_regclass('stream_data.seg_' || g.segment_id) AS rel
             FROM stream._segments g
             WHERE g.topic_id = p_topic_id AND g.partition = p_partition
             ORDER BY g.segment_id
    LOOP
        segment_id := s.segment_id;
        base_offset := s.base_offset;
        next_base := s.next_base;
        -- a following segment whose base is not recorded yet bounds nothing
        IF s.next_id IS NOT NULL AND s.next_base IS NULL THEN
            next_base := NULL;
        END IF;
        relid := s.rel;
        bytes := 0; newest_at := NULL; oldest_at := NULL;
        IF s.rel IS NOT NULL THEN
            BEGIN
                EXECUTE format('SELECT published_at FROM stream_data.%I ORDER BY "offset" DESC LIMIT 1',
                               'seg_' || s.segment_id)
                    INTO newest_at;
                EXECUTE format('SELECT published_at FROM stream_data.%I ORDER BY "offset" LIMIT 1',
                               'seg_' || s.segment_id)
                    INTO oldest_at;
                bytes := coalesce(pg_total_relation_size(s.rel), 0);
            EXCEPTION WHEN undefined_table THEN
                relid := NULL;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- What the retention worker did, one row per cycle that did something.
CREATE SEQUENCE stream._retention_run_id_seq AS bigint;
CREATE TABLE stream._retention_runs (
    run_id           bigint PRIMARY KEY DEFAULT nextval('stream._retention_run_id_seq'),
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    partitions       integer NOT NULL,
    segments_dropped integer NOT NULL,
    bytes_dropped    bigint NOT NULL,
    segments_rolled  integer NOT NULL,
    skipped          integer NOT NULL,
    errors           integer NOT NULL,
    error            text
);
ALTER SEQUENCE stream._retention_run_id_seq OWNED BY stream._retention_runs.run_id;
-- kept by pg_dump like the rest of the catalog: it is history users may want
SELECT pg_catalog.pg_extension_config_dump('stream._retention_runs', '');
SELECT pg_catalog.pg_extension_config_dump('stream._retention_run_id_seq', '');
REVOKE ALL ON stream._retention_runs FROM PUBLIC;
REVOKE ALL ON SEQUENCE stream._retention_run_id_seq FROM PUBLIC;

CREATE VIEW stream.retention_runs AS
SELECT run_id, started_at, finished_at - started_at AS duration, partitions,
       segments_dropped, bytes_dropped, segments_rolled, skipped, errors, error
FROM stream._retention_runs;
COMMENT ON VIEW stream.retention_runs IS
    'the retention worker''s recent cycles that removed or rolled segments or met errors (last 1000)';

------------------------------------------------------------------------------
-- Consistency check
------------------------------------------------------------------------------

-- Catalog vs segment tables vs committed offsets vs shared memory.  Returns
-- one row per problem; no rows means consistent.  Superusers only.
CREATE FUNCTION stream.verify(OUT problem text, OUT detail text)
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
COMMENT ON FUNCTION stream.verify() IS
    'checks catalog, segment tables, committed offsets and shared memory against each other; returns one row per problem';

CREATE VIEW stream.topic_privileges WITH (security_barrier) AS
SELECT t.topic, a.role, a.privilege, a.granted_by, a.granted_at
FROM stream._acl a JOIN stream._topics t USING (topic_id)
WHERE stream.has_topic_privilege(t.topic, 'any');
COMMENT ON VIEW stream.topic_privileges IS
    'grants on the topics the current user holds a privilege on';

-- Every entry point checks the topic privileges itself, so the public API is
-- open to all; the internals are not.  Data and catalog tables stay private.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA stream FROM PUBLIC;
GRANT USAGE ON SCHEMA stream TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    stream.create_topic(text, integer, interval, bigint, integer, regtype, bigint),
    stream.alter_topic(text, integer, interval, bigint, integer, bigint),
    stream.drop_topic(text, boolean),
    stream.publish(text, jsonb, text, jsonb, integer),
    stream.publish(text, text, text, jsonb, integer),
    stream.publish(text, bytea, text, jsonb, integer),
    stream.publish_batch(text, jsonb[], text[], jsonb[]),
    stream.publish_batch(text, text[], text[], jsonb[]),
    stream.publish_batch(text, bytea[], text[], jsonb[]),
    stream.read(text, integer, bigint, integer),
    stream.read_text(text, integer, bigint, integer),
    stream.read_bytea(text, integer, bigint, integer),
    stream.poll(text, text, integer, interval),
    stream.poll_text(text, text, integer, interval),
    stream.poll_bytea(text, text, integer, interval),
    stream.commit(text, text),
    stream.commit(text, text, integer, bigint),
    stream.seek(text, text, integer, bigint),
    stream.reset_offsets(text, text, text),
    stream.reset_offsets(text, text, timestamptz),
    stream.leave(text, text),
    stream.grant(text, regrole, text),
    stream.revoke(text, regrole, text),
    stream.has_topic_privilege(text, text),
    stream.murmur2(text),
    stream.partition_for(text, integer),
    -- used by the views, each checks the caller itself
    stream._partition_state(text, integer),
    stream._partition_storage(integer, integer),
    stream._partition_start(integer, integer),
    stream._members(),
    stream._owner_lock_key(text, integer, integer)
TO PUBLIC;
GRANT SELECT ON stream.topics, stream.partitions, stream.consumer_lag, stream.topic_privileges
    TO PUBLIC;

-- Trigger publishing: creating a trigger takes EXECUTE, firing it takes the
-- table owner's publish privilege on the topic (checked in trigger.c).
CREATE FUNCTION stream.publish_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'stream_publish_trigger' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION stream.publish_trigger() IS
    'AFTER ... FOR EACH ROW trigger: publishes {"op", "schema", "table", "new", "old"} to the topic named by its first argument, keyed by the column named by its second';


"""pg_dump / pg_restore of a database with streams gives a working stream (issue 7, item 3).

A source database, stream_dump_src, gets topics of the three value types (jsonb, text,
bytea) with several partitions: one with a retention and several rolled segments of
which the oldest was removed (what the retention worker does, done here by hand: the
worker only runs in stream.database), one with several rolled segments, one fed by a
table's stream.publish_trigger; messages with and without keys and headers, a rolled-back
offset in the middle of a partition and one at the end of a partition that a group
committed past; committed offsets of two groups on one topic and of one group on each of
two others (one of them below the log start); per-topic grants to two roles. It is
dumped twice and restored into new databases four ways:

    stream_dump_dst      pg_dump -Fc, pg_restore
    stream_dump_dst_j    pg_dump -Fc, pg_restore -j 2: the data of the extension's
                         catalog tables loads in parallel, in no particular order
    stream_dump_dst_jr   the same with session_replication_role=replica (foreign keys
                         do not fire: the workaround for the one above)
    stream_dump_dst_sql  pg_dump -Fp, psql -f

In each: stream.verify() is clean; stream.topics, stream.partitions (all but bytes,
which depend on the physical layout), stream.topic_privileges, stream.consumer_lag,
the segment catalog, the id sequences and the owners and privileges of the data tables
and schemas equal the source's; every message reads back identically (so restoring the
table did not fire its trigger); each group's poll returns exactly the messages after
its committed offset (from the log start when that is below it); publishing continues
at the source's end offset of every partition, and the restored trigger publishes after
them; the reader role can consume but not publish nor read a data table (42501), the
writer role can publish and administer; a new topic and a rolled segment get ids beyond
the source's (the sequences came along); drop_topic leaves no table and no catalog row
behind.

Finally the custom dump is restored over the source itself with pg_restore --clean
after more messages were published there: the partitions must be back in the dumped
state (end offsets, publishing at the dumped end offset).

Databases and roles are dropped at the end (also those of a previous failed run at
the start)."""
import atexit
import os
import shutil
import subprocess
import tempfile

import psycopg
from psycopg import errors

from lib import TAP, connect, wait_until

t = TAP()
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
SRC = "stream_dump_src"
DSTS = ["stream_dump_dst", "stream_dump_dst_j", "stream_dump_dst_jr", "stream_dump_dst_sql"]
READER, WRITER = "stream_dump_reader", "stream_dump_writer"
# topic -> (value type, partitions, extra create_topic arguments)
TOPICS = {
    "dump_json": ("jsonb", 3, ""),
    "dump_text": ("text", 2, ""),
    "dump_bytea": ("bytea", 2, ""),
    "dump_ret": ("jsonb", 2, ", retention => '1 day', retention_bytes => 1000000, segment_bytes => 8192"),
    "dump_roll": ("text", 1, ", segment_bytes => 8192"),
    "dump_trig": ("jsonb", 2, ""),
}
READ_FN = {"jsonb": "read", "text": "read_text", "bytea": "read_bytea"}
POLL_FN = {"jsonb": "poll", "text": "poll_text", "bytea": "poll_bytea"}
GROUPS = [("g_one", "dump_json"), ("g_two", "dump_json"), ("g_text", "dump_text"), ("g_ret", "dump_ret")]


def admin():
    return connect("postgres")


def drop_all():
    a = admin()
    for db in [SRC] + DSTS:
        a.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    for role in (READER, WRITER):
        a.execute("DROP ROLE IF EXISTS %s" % role)
    a.close()


def run(*cmd, pgoptions=None):
    """Run a client program; return (exit status, stderr)."""
    env = dict(os.environ, PGOPTIONS=pgoptions) if pgoptions else None
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    return p.returncode, p.stderr


def q(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def one(conn, sql, *args):
    return conn.execute(sql, args).fetchone()[0]


def segments(conn, topic):
    return one(conn, "SELECT count(*) FROM stream._segments g JOIN stream._topics t USING (topic_id) "
                     "WHERE t.topic = %s", topic)


def roll(conn, topic, partition, n_rolls, tag):
    """Publish ~12 kB batches until the partition rolled n_rolls times, each roll settled."""
    fn = "%s::text" if TOPICS[topic][0] == "text" else "to_jsonb(%s::text)"
    for i in range(n_rolls):
        before = segments(conn, topic)
        conn.execute("SELECT stream.publish(%%s, %s, key => 'k' || g, partition => %%s) "
                     "FROM generate_series(1, 24) g" % fn,
                     (topic, "%s-%d-" % (tag, i) + "x" * 500, partition))
        wait_until(lambda: one(conn, "SELECT count(*) >= %s AND bool_and(base_offset IS NOT NULL) "
                                     "FROM stream._segments g JOIN stream._topics t USING (topic_id) "
                                     "WHERE t.topic = %s", before + 1, topic),
                   timeout=30, what="segment %d of %s to roll" % (i, topic))


def read_all(conn, topic):
    """Every message of the topic: partition -> list of rows, by reading from the log start."""
    vtype, parts, _ = TOPICS[topic]
    out = {}
    for p in range(parts):
        rows, off = [], one(conn, "SELECT log_start_offset FROM stream.partitions "
                                  "WHERE topic = %s AND partition = %s", topic, p)
        while True:
            got = q(conn, "SELECT partition, \"offset\", key, value, headers, published_at "
                          "FROM stream.%s(%%s, %%s, %%s, 1000)" % READ_FN[vtype], topic, p, off)
            if not got:
                break
            rows += got
            off = got[-1][1] + 1
        out[p] = rows
    return out


def state(conn):
    """What must survive a dump: views and catalog rows, as comparable lists."""
    return {
        "topics": q(conn, "SELECT * FROM stream.topics ORDER BY topic"),
        "partitions": q(conn, "SELECT topic, partition, log_start_offset, end_offset, last_stable_offset, "
                              "messages, oldest_at, newest_at, segments "
                              "FROM stream.partitions ORDER BY topic, partition"),
        "privileges": q(conn, "SELECT topic, role::text, privilege, granted_by::text, granted_at "
                              "FROM stream.topic_privileges ORDER BY 1, 2, 3"),
        "lag": q(conn, "SELECT \"group\", topic, partition, committed_offset, end_offset, lag, committed_at, "
                       "log_start_offset, below_log_start FROM stream.consumer_lag ORDER BY 1, 2, 3"),
        "segments": q(conn, "SELECT segment_id, topic_id, partition, base_offset, created_at "
                            "FROM stream._segments ORDER BY segment_id"),
        "sequences": q(conn, "SELECT (SELECT last_value FROM stream._topic_id_seq), "
                             "(SELECT last_value FROM stream._segment_id_seq)"),
        # effective privileges: NULL (the default) equals its explicit form
        "data table owners and ACLs": q(conn, "SELECT relname, relowner::regrole::text, "
                                              "coalesce(relacl, acldefault('r', relowner))::text FROM pg_class "
                                              "WHERE relnamespace = 'stream_data'::regnamespace AND relkind = 'r' "
                                              "ORDER BY 1"),
        "schema owners and ACLs": q(conn, "SELECT nspname, nspowner::regrole::text, nspacl::text FROM pg_namespace "
                                          "WHERE nspname IN ('stream', 'stream_data') ORDER BY 1"),
    }


# ---------------------------------------------------------------------------
# the source database
# ---------------------------------------------------------------------------
drop_all()
a = admin()
a.execute("CREATE DATABASE %s" % SRC)
a.execute("CREATE ROLE %s NOLOGIN" % READER)
a.execute("CREATE ROLE %s NOLOGIN" % WRITER)
a.close()

src = connect(SRC)
src.execute("CREATE EXTENSION stream")
for name, (vtype, parts, extra) in TOPICS.items():
    src.execute("SELECT stream.create_topic(%%s, %s, value_type => %%s%s)" % (parts, extra), (name, vtype))

# jsonb: keyed messages with headers, unkeyed ones without, and a rolled-back offset in
# the middle of partition 0
src.execute("SELECT stream.publish('dump_json', jsonb_build_object('i', g, 'nested', jsonb_build_object('a', "
            "array[g, g * 2], 's', 'é ☃ ' || g)), key => 'user-' || (g % 7), "
            "headers => jsonb_build_object('trace', md5(g::text), 'n', g)) FROM generate_series(1, 40) g")
src.execute("SELECT stream.publish('dump_json', jsonb_build_object('plain', g)) FROM generate_series(1, 9) g")
with src.transaction():
    src.execute("SELECT stream.publish('dump_json', '{\"rolled\": \"back\"}', partition => 0)")
    raise psycopg.Rollback()
src.execute("SELECT stream.publish('dump_json', jsonb_build_object('after_gap', g), partition => 0) "
            "FROM generate_series(1, 3) g")

# text: unicode, quotes, backslashes, tabs and newlines (COPY escaping), empty strings;
# partition 1 ends with a rolled-back offset that group g_text commits past
src.execute("SELECT stream.publish('dump_text', E'line\\t' || g || E'\\n\\\\ \"q\" ''s'' ü€😀', "
            "key => CASE WHEN g % 3 = 0 THEN NULL ELSE 'k' || g END, "
            "headers => CASE WHEN g % 2 = 0 THEN jsonb_build_object('h', g) END, partition => g % 2) "
            "FROM generate_series(1, 30) g")
src.execute("SELECT stream.publish('dump_text', '', partition => 0)")
with src.transaction():
    src.execute("SELECT stream.publish('dump_text', 'never', partition => 1)")
    raise psycopg.Rollback()

# bytea: every byte value, and binary of several sizes ending in zero bytes
src.execute("SELECT stream.publish('dump_bytea', decode(string_agg(lpad(to_hex(b), 2, '0'), ''), 'hex'), "
            "key => 'all', partition => 0) FROM generate_series(0, 255) b")
src.execute("SELECT stream.publish('dump_bytea', convert_to(repeat(chr(65 + g % 26), g * 37), 'UTF8') "
            "|| '\\x00ff00'::bytea, key => 'b' || g, headers => '{\"bin\": true}') FROM generate_series(1, 20) g")

# several rolled segments; for dump_ret the oldest goes the way the retention worker
# removes it (delete its catalog row, drop its table) so that its log starts later
roll(src, "dump_roll", 0, 3, "roll")
roll(src, "dump_ret", 0, 3, "ret")
src.execute("SELECT stream.publish('dump_ret', jsonb_build_object('p1', g), partition => 1) "
            "FROM generate_series(1, 5) g")

# groups: g_one and g_two on dump_json at different places, g_text on dump_text (past
# the rolled-back end of partition 1), g_ret on dump_ret (below the log start, later)
for group, topic, n in [("g_one", "dump_json", 7), ("g_two", "dump_json", 45), ("g_text", "dump_text", 1000),
                        ("g_ret", "dump_ret", 2)]:
    c = connect(SRC)
    fn = POLL_FN[TOPICS[topic][0]]
    c.execute("SELECT count(*) FROM stream.%s(%%s, %%s, %%s)" % fn, (group, topic, n))
    c.execute("SELECT stream.commit(%s, %s)", (group, topic))
    c.close()
with src.transaction():
    seg = one(src, "SELECT min(segment_id) FROM stream._segments g JOIN stream._topics t USING (topic_id) "
                   "WHERE t.topic = 'dump_ret' AND g.partition = 0")
    src.execute("DELETE FROM stream._segments WHERE segment_id = %s" % seg)
    src.execute("DROP TABLE stream_data.seg_%s" % seg)

# a table publishing its changes to dump_trig: restoring its rows must not publish again
src.execute("CREATE TABLE dump_blogs (id int PRIMARY KEY, author int, title text)")
src.execute("CREATE TRIGGER dump_blogs_stream AFTER INSERT OR UPDATE OR DELETE ON dump_blogs "
            "FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('dump_trig', 'author')")
src.execute("INSERT INTO dump_blogs SELECT g, g % 3, 'post ' || g FROM generate_series(1, 6) g")
src.execute("UPDATE dump_blogs SET title = 'edited' WHERE id = 2")
src.execute("DELETE FROM dump_blogs WHERE id = 3")

# grants: the reader consumes dump_json, the writer publishes to dump_text
src.execute("SELECT stream.grant('dump_json', %s, 'consume')", (READER,))
src.execute("SELECT stream.grant('dump_text', %s, 'publish')", (WRITER,))
src.execute("SELECT stream.grant('dump_ret', %s, 'admin')", (WRITER,))

t.is_(q(src, "SELECT * FROM stream.verify()"), [], "source: stream.verify() is clean")
before = state(src)
messages = {topic: read_all(src, topic) for topic in TOPICS}
end = {(r[0], r[1]): r[3] for r in before["partitions"]}
t.ok(all(r[8] >= 3 for r in before["partitions"] if r[0] == "dump_roll")
     and any(r[8] >= 3 and r[2] > 0 for r in before["partitions"] if r[0] == "dump_ret"),
     "source: dump_roll has several segments, dump_ret several and a log start above 0")
t.ok(any(r[3] is not None and r[3] < r[7] for r in before["lag"] if r[0] == "g_ret"),
     "source: g_ret's committed offset is below the log start")
text_p1 = [r for r in before["lag"] if r[0] == "g_text" and r[2] == 1][0]
t.ok(text_p1[3] == end[("dump_text", 1)] > messages["dump_text"][1][-1][1] + 1,
     "source: g_text committed past the rolled-back end of dump_text partition 1")
t.is_(sum(len(v) for v in messages["dump_trig"].values()), 8, "source: the table's trigger published 8 changes")
t.ok(len(messages["dump_json"][0]) < end[("dump_json", 0)] and
     sum(len(v) for v in messages["dump_json"].values()) == 52,
     "source: dump_json holds 52 messages and partition 0 has a gap")

tmp = tempfile.mkdtemp(prefix="stream-dump-")
atexit.register(shutil.rmtree, tmp, True)
os.chmod(tmp, 0o755)
custom, plain = os.path.join(tmp, "src.dump"), os.path.join(tmp, "src.sql")
rc, err = run(os.path.join(PG_BIN, "pg_dump"), "-Fc", "-d", SRC, "-f", custom)
t.is_(rc, 0, "pg_dump -Fc of the source") or t.diag(err)
rc, err = run(os.path.join(PG_BIN, "pg_dump"), "-Fp", "-d", SRC, "-f", plain)
t.is_(rc, 0, "pg_dump -Fp of the source") or t.diag(err)
src.close()


# ---------------------------------------------------------------------------
# the restored databases
# ---------------------------------------------------------------------------
def check_restored(db):
    conn = connect(db)
    t.is_(q(conn, "SELECT * FROM stream.verify()"), [], "%s: stream.verify() is clean" % db)
    after = state(conn)
    for what in before:
        t.is_(after[what], before[what], "%s: %s equal the source's" % (db, what))
    for topic in TOPICS:
        t.ok(read_all(conn, topic) == messages[topic], "%s: every message of %s reads back identically"
             % (db, topic))
    t.is_(one(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'stream_data'::regnamespace "
                    "AND relkind = 'r'"), len(before["segments"]),
          "%s: one table in stream_data per segment row" % db)

    # groups resume from their committed offsets (or the log start when below it)
    for group, topic in GROUPS:
        vtype, parts, _ = TOPICS[topic]
        expected = []
        for p in range(parts):
            lag = [r for r in before["lag"] if r[0] == group and r[1] == topic and r[2] == p]
            start = max(lag[0][3], lag[0][7]) if lag and lag[0][3] is not None else lag[0][7] if lag else 0
            expected += [(p,) + r[1:] for r in messages[topic][p] if r[1] >= start]
        c = connect(db)
        got = []
        with c.transaction():
            while True:
                rows = q(c, "SELECT partition, \"offset\", key, value, headers, published_at "
                            "FROM stream.%s(%%s, %%s, 1000)" % POLL_FN[vtype], group, topic)
                if not rows:
                    break
                got += rows
            raise psycopg.Rollback()      # leave the committed offsets as they are
        c.close()
        t.ok(sorted(got, key=lambda r: (r[0], r[1])) == expected and
             all(x[1] < y[1] for x, y in zip(got, got[1:]) if x[0] == y[0]),
             "%s: group %s resumes %s with exactly the %d messages after its committed offsets"
             % (db, group, topic, len(expected)))
        if sorted(got, key=lambda r: (r[0], r[1])) != expected:
            t.diag("got %d messages, offsets %s" % (len(got), [(r[0], r[1]) for r in got][:20]))

    # publishing continues at the source's end offsets, never reusing one
    ok, bad = True, []
    for (topic, p), e in sorted(end.items()):
        value = {"jsonb": '"next"', "text": "next", "bytea": "\\x6e657874"}[TOPICS[topic][0]]
        r = q(conn, "SELECT partition, \"offset\" FROM stream.publish(%s, %s, key => 'new', partition => %s)",
              topic, value, p)
        if r != [(p, e)]:
            ok, bad = False, bad + [(topic, p, e, r)]
    t.ok(ok, "%s: a publish to every partition gets the source's end offset" % db) or t.diag(bad)
    r = q(conn, "SELECT \"offset\", key, value FROM stream.read('dump_json', 0, %s)", end[("dump_json", 0)])
    t.is_(r, [(end[("dump_json", 0)], "new", "next")], "%s: and reads back after the old messages" % db)

    # the publishing trigger came along and fires once per change, after the old messages
    conn.execute("INSERT INTO dump_blogs VALUES (100, 1, 'restored')")
    p = one(conn, "SELECT stream.partition_for('1', 2)")
    r = q(conn, "SELECT \"offset\", key, value->>'op', value->'new'->>'id' FROM stream.read('dump_trig', %s, %s)",
          p, end[("dump_trig", p)] + 1)
    t.is_(r, [(end[("dump_trig", p)] + 1, "1", "INSERT", "100")],
          "%s: the restored table's trigger publishes an insert after the old messages" % db)

    # grants: the reader consumes but does not publish nor see the data tables
    c = connect(db)
    c.execute("SET ROLE %s" % READER)
    n = one(c, "SELECT count(*) FROM stream.poll('g_reader', 'dump_json', 1000)")
    t.is_(n, 55, "%s: the reader consumes dump_json (52 messages and the 3 new ones)" % db)
    c.execute("SELECT stream.leave('g_reader', 'dump_json')")
    for what, sql in [("publish to dump_json", "SELECT stream.publish('dump_json', '{}')"),
                      ("read dump_text", "SELECT stream.read_text('dump_text', 0)"),
                      ("select a data table", "SELECT count(*) FROM stream_data.seg_%s" % before["segments"][0][0])]:
        try:
            c.execute(sql)
            t.ok(False, "%s: the reader cannot %s" % (db, what))
        except errors.InsufficientPrivilege:
            t.ok(True, "%s: the reader cannot %s: 42501" % (db, what))
    c.execute("RESET ROLE")
    c.execute("SET ROLE %s" % WRITER)
    r = q(c, "SELECT partition, \"offset\" FROM stream.publish('dump_text', 'from the writer', partition => 1)")
    t.is_(r, [(1, end[("dump_text", 1)] + 1)], "%s: the writer publishes to dump_text" % db)
    c.execute("SELECT stream.alter_topic('dump_ret', retention => '2 days')")
    t.ok(True, "%s: the writer administers dump_ret" % db)
    c.close()

    # ids come from restored sequences: a new topic and a new segment do not collide
    conn.execute("SELECT stream.create_topic('dump_new', 2)")
    new = q(conn, "SELECT t.topic_id, min(g.segment_id) FROM stream._topics t JOIN stream._segments g "
                  "USING (topic_id) WHERE t.topic = 'dump_new' GROUP BY 1")
    max_topic = max(r[-1] for r in before["topics"])
    max_seg = before["segments"][-1][0]
    t.ok(new and new[0][0] > max_topic and new[0][1] > max_seg,
         "%s: a new topic gets an id beyond the source's (%s > %s, segment %s > %s)"
         % (db, new and new[0][0], max_topic, new and new[0][1], max_seg))
    roll(conn, "dump_roll", 0, 1, "dst")
    t.ok(one(conn, "SELECT max(segment_id) FROM stream._segments") > max_seg,
         "%s: dump_roll rolls into a new segment" % db)
    t.is_(q(conn, "SELECT * FROM stream.verify()"), [], "%s: stream.verify() is clean after all that" % db)

    # drop_topic leaves nothing behind
    for topic in list(TOPICS) + ["dump_new"]:
        conn.execute("SELECT stream.drop_topic(%s)", (topic,))
    t.is_(one(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'stream_data'::regnamespace"), 0,
          "%s: after drop_topic of every topic, stream_data is empty" % db)
    t.is_(q(conn, "SELECT (SELECT count(*) FROM stream._segments), (SELECT count(*) FROM stream._offsets), "
                  "(SELECT count(*) FROM stream._acl), (SELECT count(*) FROM stream._partitions)"),
          [(0, 0, 0, 0)], "%s: and the catalog holds no rows of them" % db)
    t.is_(q(conn, "SELECT * FROM stream.verify()"), [], "%s: stream.verify() is clean at the end" % db)
    conn.close()


a = admin()
for db in DSTS:
    a.execute("CREATE DATABASE %s" % db)
a.close()
pg_restore = os.path.join(PG_BIN, "pg_restore")
for db, cmd, env in [
        ("stream_dump_dst", [pg_restore, "-d", "stream_dump_dst", custom], None),
        ("stream_dump_dst_j", [pg_restore, "-j", "2", "-d", "stream_dump_dst_j", custom], None),
        # the workaround for the one above: foreign keys do not fire in replica mode
        ("stream_dump_dst_jr", [pg_restore, "-j", "2", "-d", "stream_dump_dst_jr", custom],
         "-c session_replication_role=replica"),
        ("stream_dump_dst_sql", [os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                 "-d", "stream_dump_dst_sql", "-f", plain], None)]:
    rc, err = run(*cmd, pgoptions=env)
    t.is_(rc, 0, "%s: %s%s exits 0" % (db, " ".join(os.path.basename(x) for x in cmd[:-3]),
                                        " (session_replication_role=replica)" if env else "")) or t.diag(err)
    try:
        check_restored(db)
    except psycopg.Error as e:
        t.ok(False, "%s: the checks ran through" % db)
        t.diag("%s: %s" % (e.sqlstate, e))

# ---------------------------------------------------------------------------
# restore over the source itself (pg_restore --clean): back to the dumped state
# ---------------------------------------------------------------------------
src = connect(SRC)
src.execute("SELECT stream.publish('dump_json', '{\"after the dump\": 1}', partition => p) "
            "FROM generate_series(0, 2) p")
src.close()
rc, err = run(pg_restore, "--clean", "--if-exists", "-d", SRC, custom)
t.is_(rc, 0, "pg_restore --clean over the source exits 0") or t.diag(err)
src = connect(SRC)
t.is_(q(src, "SELECT partition, end_offset FROM stream.partitions WHERE topic = 'dump_json' ORDER BY 1"),
      [(p, end[("dump_json", p)]) for p in range(3)],
      "restored over the source: dump_json's end offsets are the dumped ones")
try:
    r = q(src, "SELECT partition, \"offset\" FROM stream.publish('dump_json', '{}', partition => 0)")
except psycopg.Error as e:
    r = "%s: %s" % (e.sqlstate, e)
t.is_(r, [(0, end[("dump_json", 0)])], "restored over the source: publishing continues at the dumped end offset")
t.is_(q(src, "SELECT * FROM stream.verify()"), [], "restored over the source: stream.verify() is clean")
src.close()

drop_all()
t.exit()

"""Helpers for the retention tests t_2NN_*.py.

The retention worker runs in database `postgres` (stream.database), so these tests
connect there, create the extension if it is missing, and name their topics ret_*.
start() sets stream.naptime to 200ms for the whole cluster (ALTER SYSTEM and a
reload); finish() drops the test's topics and RESETs stream.naptime again: call it
in a finally.

Nothing here sleeps on hope.  What the worker did is observed through the catalog,
stream.retention_runs and the server log, always with a bounded wait_until.  Two
tools order a test against the worker's cycles:

  * cycle_mark() returns only after a whole worker cycle has STARTED after the
    call began: it publishes to a "witness" topic with a tiny retention (so the
    worker rolls or drops something and logs the cycle) and waits for a row of
    stream.retention_runs whose started_at is later than the call's start.  Every
    partition of every topic with a retention that existed at that moment was
    examined by that cycle, with everything that was due by then already due.
  * freeze() holds ACCESS SHARE on the oldest segment of a partition in an open
    transaction: the worker cannot take its ACCESS EXCLUSIVE lock, skips it, and
    (going oldest first) drops nothing of that partition until the lock goes.
"""
import json
import os

import psycopg
from psycopg import sql

from lib import connect, pg_log_path, wait_until

DB = "postgres"
NAPTIME = "200ms"
WORKER = "stream retention worker"


def sqlstate(fn):
    """Run fn and return (SQLSTATE, message) of the database error it raised, or (None, None)."""
    try:
        fn()
    except psycopg.Error as e:
        return e.sqlstate, (e.diag.message_primary or str(e))
    return None, None


def session(**kwargs):
    return connect(dbname=DB, **kwargs)


def log_offset():
    """The server log's current size, for lib.pg_log_since."""
    return os.path.getsize(pg_log_path())


def set_naptime(conn, value):
    """ALTER SYSTEM stream.naptime (None: RESET) and reload the configuration."""
    if value is None:
        conn.execute("ALTER SYSTEM RESET stream.naptime")
    else:
        conn.execute("ALTER SYSTEM SET stream.naptime = %s" % sql.Literal(value).as_string(conn))
    conn.execute("SELECT pg_reload_conf()")


def start():
    """Open the admin session in `postgres`, create the extension, set the nap time."""
    admin = session()
    admin.execute("CREATE EXTENSION IF NOT EXISTS stream")
    set_naptime(admin, NAPTIME)
    wait_until(lambda: worker_pid(admin), 30, what="the retention worker in pg_stat_activity")
    return admin


def finish(admin, topics):
    """Drop the test's topics, RESET stream.naptime (call in a finally)."""
    try:
        for topic in topics:
            drop_topic(admin, topic)
    finally:
        set_naptime(admin, None)


def eventually(fn, timeout=30, what=None):
    """wait_until that returns the value, or False on timeout (for t.ok)."""
    try:
        return wait_until(fn, timeout, what=what)
    except TimeoutError:
        return False


def worker_pid(conn):
    """pid of the retention worker (None when it is not running)."""
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (WORKER,)).fetchone()
    return row[0] if row else None


def create_topic(conn, topic, partitions=1, retention=None, retention_bytes=None,
                 segment_bytes=8192, value_type="jsonb"):
    drop_topic(conn, topic)
    conn.execute("SELECT stream.create_topic(%s, partitions => %s, retention => %s::interval, "
                 "retention_bytes => %s, value_type => %s::regtype, segment_bytes => %s)",
                 (topic, partitions, retention, retention_bytes, value_type, segment_bytes))


def drop_topic(conn, topic):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))


def now(conn):
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def value(i, pad=900):
    """The jsonb value of message i: its number and some padding."""
    return {"i": i, "pad": "x" * pad}


def publish_batch(conn, topic, first, n, pad=900):
    """Publish values first..first+n-1 in one transaction; return their offsets."""
    vals = [json.dumps(value(i, pad)) for i in range(first, first + n)]
    rows = conn.execute('SELECT partition, "offset" FROM stream.publish_batch(%s, %s::jsonb[])',
                        (topic, vals)).fetchall()
    return [r[1] for r in rows]


def publish_one(conn, topic, i, partition=0, pad=900):
    return conn.execute('SELECT "offset" FROM stream.publish(%s, %s::jsonb, partition => %s)',
                        (topic, json.dumps(value(i, pad)), partition)).fetchone()[0]


def segments(conn, topic, partition=0):
    """[(segment_id, base_offset, relid)] of a partition, oldest first (relid None: no table)."""
    return [tuple(r) for r in conn.execute(
        "SELECT g.segment_id, g.base_offset, to_regclass('stream_data.seg_' || g.segment_id)::oid "
        "FROM stream._segments g JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s AND g.partition = %s ORDER BY g.segment_id", (topic, partition)).fetchall()]


def merge_segments(known, conn, topic, partition=0):
    """Segments seen before (known) and now, by segment id, oldest first: a list that a
    drop by the worker in the meantime does not shorten."""
    by_id = {s[0]: s for s in known}
    by_id.update({s[0]: s for s in segments(conn, topic, partition)})
    return [by_id[k] for k in sorted(by_id)]


def fill_segments(conn, topic, nseg, first=0, per_batch=10, pad=900):
    """Publish batches of per_batch messages (about 1 kB each, so one batch passes
    segment_bytes 8192) until the partition has nseg more segments than before,
    waiting for each roll.  Returns (next value number, offsets published)."""
    offsets = []
    i = first
    for _ in range(nseg):
        before = segments(conn, topic)[-1][0]
        offsets += publish_batch(conn, topic, i, per_batch, pad)
        i += per_batch
        wait_until(lambda: segments(conn, topic)[-1][0] > before and segments(conn, topic)[-1][1] is not None,
                   30, what="a roll of %s" % topic)
    return i, offsets


def partition(conn, topic, p=0):
    """The stream.partitions row of one partition, as a dict."""
    cur = conn.execute("SELECT * FROM stream.partitions WHERE topic = %s AND partition = %s", (topic, p))
    row = cur.fetchone()
    return dict(zip([d.name for d in cur.description], row)) if row else None


def log_start(conn, topic, p=0):
    """The log start offset from the catalog: the oldest segment's base.  (Waits poll
    this rather than stream.partitions, which fails now and then while the worker drops
    a segment: see t_290_views_during_drop.py.)"""
    return segments(conn, topic, p)[0][1]


def segment_sizes(conn, topic, p=0):
    """[(segment_id, pg_total_relation_size)] oldest first, as the worker measures them;
    segments whose table is gone (dropped meanwhile) are left out."""
    return [tuple(r) for r in conn.execute(
        "SELECT * FROM (SELECT g.segment_id, pg_total_relation_size(to_regclass('stream_data.seg_' || g.segment_id)) b "
        "FROM stream._segments g JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s AND g.partition = %s) s WHERE b IS NOT NULL ORDER BY segment_id", (topic, p)).fetchall()]


def read_offsets(conn, topic, p=0, offset=0, limit=100000):
    """[(offset, value)] read from offset."""
    return [(r[0], r[1]) for r in conn.execute(
        'SELECT "offset", value FROM stream.read(%s, %s, %s, %s)', (topic, p, offset, limit)).fetchall()]


def runs_since(conn, ts):
    """stream.retention_runs rows started after ts, as dicts."""
    cur = conn.execute("SELECT * FROM stream.retention_runs WHERE started_at > %s ORDER BY run_id", (ts,))
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


class Witness:
    """A topic whose only purpose is to make the worker log a cycle (see cycle_mark)."""

    def __init__(self, conn, topic):
        self.conn = conn
        self.topic = topic
        self.n = 0
        create_topic(conn, topic, retention="100 ms")

    def cycle_mark(self, timeout=30):
        """Return (ts, run) once a worker cycle that started after ts has finished."""
        ts = now(self.conn)
        publish_one(self.conn, self.topic, self.n, pad=0)
        self.n += 1
        runs = wait_until(lambda: runs_since(self.conn, ts), timeout,
                          what="a retention cycle started after %s" % ts)
        return ts, runs[0]

    def drop(self):
        drop_topic(self.conn, self.topic)


def freeze(conn, topic, p=0, timeout=30):
    """BEGIN and lock the oldest segment of a partition IN ACCESS SHARE MODE, retrying
    when the worker drops it first; return (segment_id, base_offset).  COMMIT to thaw."""
    def attempt():
        segs = segments(conn, topic, p)
        sid, base = segs[0][0], segs[0][1]
        conn.execute("BEGIN")
        try:
            conn.execute("LOCK TABLE stream_data.seg_%d IN ACCESS SHARE MODE" % sid)
        except psycopg.errors.UndefinedTable:
            conn.execute("ROLLBACK")
            return None
        # still the oldest?  (a fresh statement: a new snapshot in READ COMMITTED)
        if segments(conn, topic, p)[0][0] != sid:
            conn.execute("ROLLBACK")
            return None
        return sid, base
    return wait_until(attempt, timeout, what="a lock on the oldest segment of %s" % topic)


def lock_segment(conn, segment_id, mode="ACCESS SHARE"):
    """BEGIN and lock one segment table."""
    conn.execute("BEGIN")
    conn.execute("LOCK TABLE stream_data.seg_%d IN %s MODE" % (segment_id, mode))


def due(conn, topic, segment_id, retention):
    """Is the segment's newest message older than the retention (server clock)?"""
    return conn.execute(
        "SELECT clock_timestamp() - max(published_at) > %%s::interval FROM stream_data.seg_%d" % segment_id,
        (retention,)).fetchone()[0]


def orphans(conn):
    """Segment tables with no catalog row, and catalog rows with no table."""
    tables = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'stream_data' AND c.relkind = 'r' "
        "AND NOT EXISTS (SELECT 1 FROM stream._segments g WHERE 'seg_' || g.segment_id = c.relname)"
    ).fetchall()
    rows = conn.execute(
        "SELECT segment_id FROM stream._segments g "
        "WHERE to_regclass('stream_data.seg_' || g.segment_id) IS NULL").fetchall()
    return [r[0] for r in tables], [r[0] for r in rows]

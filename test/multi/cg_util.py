"""Helpers for the consumer-group tests t_110 to t_160.

Sessions are psycopg connections in autocommit mode; a test opens and ends
transactions itself with BEGIN / COMMIT / ROLLBACK, so one thread drives several
sessions in an exact order.  The only threads are for long polls (Background):
each runs one statement on its own connection while the main thread acts.

Topics of these tests are named cg_*; groups cg_* too.  fresh_topic drops a
leftover of an earlier run, which also cascades its committed offsets away.
"""
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from lib import wait_until

# objsubid of the advisory locks that stand for partition ownership (src/consumer.h).
OWNER_LOCK_FIELD4 = 21332


def sqlstate(fn):
    """Run fn and return the SQLSTATE of the database error it raised, or None."""
    try:
        fn()
    except psycopg.Error as e:
        return e.sqlstate
    return None


def fresh_topic(conn, topic, partitions=1):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (topic, partitions))


def drop_topic(conn, topic):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))


def publish(conn, topic, value, partition=None, key=None):
    """Publish one jsonb value; return its (partition, offset)."""
    return tuple(conn.execute(
        'SELECT partition, "offset" FROM stream.publish(%s, %s::jsonb, key => %s, partition => %s)',
        (topic, Jsonb(value), key, partition)).fetchone())


def poll(conn, group, topic, max_messages=1000, wait="0"):
    """stream.poll; return [(partition, offset, value)] in the order returned."""
    return [tuple(r) for r in conn.execute(
        'SELECT partition, "offset", value FROM stream.poll(%s, %s, %s, %s::interval)',
        (group, topic, max_messages, wait)).fetchall()]


def parts_of(rows):
    """The set of partitions poll rows come from."""
    return {r[0] for r in rows}


def commit_all(conn, group, topic):
    return conn.execute("SELECT stream.commit(%s, %s)", (group, topic)).fetchone()[0]


def commit_one(conn, group, topic, partition, offset):
    conn.execute("SELECT stream.commit(%s, %s, %s, %s)", (group, topic, partition, offset))


def seek(conn, group, topic, partition, offset):
    conn.execute("SELECT stream.seek(%s, %s, %s, %s)", (group, topic, partition, offset))


def leave(conn, group, topic):
    return conn.execute("SELECT stream.leave(%s, %s)", (group, topic)).fetchone()[0]


def lag(conn, group, topic):
    """{partition: (committed_offset, end_offset, owner_pid)} from stream.consumer_lag."""
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        'SELECT partition, committed_offset, end_offset, owner_pid FROM stream.consumer_lag'
        ' WHERE "group" = %s AND topic = %s ORDER BY partition', (group, topic)).fetchall()}


def committed(conn, group, topic):
    """{partition: committed_offset} (None when never committed)."""
    return {p: v[0] for p, v in lag(conn, group, topic).items()}


def owners_view(conn, group, topic):
    """{partition: owner_pid} from stream.consumer_lag (None when unowned)."""
    return {p: v[2] for p, v in lag(conn, group, topic).items()}


def owned_by(conn, group, topic, pid):
    """Partitions that consumer_lag shows as owned by pid."""
    return {p for p, o in owners_view(conn, group, topic).items() if o == pid}


def lock_holders(conn, group, topic):
    """{partition: sorted [pids]} holding the ownership lock, straight from pg_locks."""
    rows = conn.execute(
        "SELECT p.partition, l.pid"
        " FROM stream._topics t"
        " JOIN stream._partitions p ON p.topic_id = t.topic_id"
        " CROSS JOIN LATERAL stream._owner_lock_key(%s, t.topic_id, p.partition) k"
        " JOIN pg_locks l ON l.locktype = 'advisory' AND l.objsubid = %s AND l.granted"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "  AND l.classid = k.classid AND l.objid = k.objid"
        " WHERE t.topic = %s ORDER BY 1, 2", (group, OWNER_LOCK_FIELD4, topic)).fetchall()
    out = {}
    for p, pid in rows:
        out.setdefault(p, []).append(pid)
    return out


def members(conn, group, topic):
    """Pids of the live members of (group, topic) from stream._members()."""
    return {r[0] for r in conn.execute(
        "SELECT m.pid FROM stream._members() m JOIN stream._topics t ON t.topic_id = m.topic_id"
        " WHERE m.\"group\" = %s AND t.topic = %s", (group, topic)).fetchall()}


def exclusive_state(obs, group, topic):
    """Check that no partition of (group, topic) has two owners, by pg_locks and by
    consumer_lag, that both agree, and that every owner is a live member.  Returns
    ({partition: owner_pid} of the owned partitions, None or a description of the
    violation)."""
    # any ownership lock (of any group or topic) granted to two sessions at once
    dup = obs.execute(
        "SELECT classid, objid, array_agg(pid ORDER BY pid) FROM pg_locks"
        " WHERE locktype = 'advisory' AND objsubid = %s AND granted"
        "  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " GROUP BY classid, objid HAVING count(DISTINCT pid) > 1", (OWNER_LOCK_FIELD4,)).fetchall()
    holders = lock_holders(obs, group, topic)
    rows = obs.execute(
        'SELECT partition, count(*), count(DISTINCT owner_pid), max(owner_pid)'
        ' FROM stream.consumer_lag WHERE "group" = %s AND topic = %s GROUP BY partition',
        (group, topic)).fetchall()
    view = {p: pid for p, _, _, pid in rows}
    view_ok = all(n == 1 and d <= 1 for _, n, d, _ in rows)
    live = members(obs, group, topic)
    by_locks = {p: pids[0] for p, pids in holders.items() if len(pids) == 1}
    ok = (not dup and all(len(v) == 1 for v in holders.values()) and view_ok
          and {p: o for p, o in view.items() if o is not None} == by_locks
          and set(by_locks.values()) <= live)
    if ok:
        return by_locks, None
    return by_locks, "\n".join([
        "duplicate lock holders: %r" % (dup,),
        "pg_locks holders: %r" % (holders,),
        "consumer_lag rows (partition, rows, distinct owners, owner): %r" % (rows,),
        "live members: %r" % (live,)])


def check_exclusive(t, obs, group, topic, label):
    """One TAP test of exclusive_state; returns {partition: owner_pid}."""
    by_locks, problem = exclusive_state(obs, group, topic)
    t.ok(problem is None, "%s: every partition has at most one owner (pg_locks, consumer_lag), "
         "a live member" % label)
    if problem:
        t.diag(problem)
    return by_locks


class ExclusiveWatch:
    """Check exclusivity at every step of a loop of varying length; report once."""

    def __init__(self, obs, group, topic):
        self.obs, self.group, self.topic = obs, group, topic
        self.steps, self.problems = 0, []

    def check(self):
        self.steps += 1
        _, problem = exclusive_state(self.obs, self.group, self.topic)
        if problem:
            self.problems.append(problem)

    def report(self, t, label):
        t.ok(not self.problems and self.steps > 0,
             "%s: at each of %d steps every partition had at most one owner (pg_locks, "
             "consumer_lag), a live member" % (label, self.steps))
        for p in self.problems[:3]:
            t.diag(p)


def pid(conn):
    return conn.info.backend_pid


def wait_state(obs, target_pid):
    """(state, wait_event_type, wait_event) of a backend from pg_stat_activity."""
    r = obs.execute("SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE pid = %s", (target_pid,)).fetchone()
    return tuple(r) if r else None


def is_long_polling(obs, target_pid):
    """True while the backend runs a statement and sleeps in an extension wait."""
    s = wait_state(obs, target_pid)
    return s is not None and s[0] == "active" and s[1] == "Extension"


def wait_long_polling(obs, target_pid, timeout=20):
    return wait_until(lambda: is_long_polling(obs, target_pid), timeout=timeout,
                      what="backend %d sleeping in a long poll" % target_pid)


def wait_gone(obs, target_pid, timeout=20):
    """Wait until a backend has exited."""
    return wait_until(lambda: obs.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s",
                                          (target_pid,)).fetchone()[0],
                      timeout=timeout, what="backend %d to exit" % target_pid)


class Background(threading.Thread):
    """Run one statement on conn in a thread; record rows or the error, and timing."""

    def __init__(self, conn, sql, params=()):
        super().__init__(daemon=True)
        self.conn, self.sql, self.params = conn, sql, params
        self.rows, self.error, self.elapsed = None, None, None
        self.started = None

    def run(self):
        self.started = time.monotonic()
        try:
            cur = self.conn.execute(self.sql, self.params)
            self.rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as e:
            self.error = e
        finally:
            self.elapsed = time.monotonic() - self.started

    def result(self, timeout=30):
        """Join; raise if the statement is still running after timeout seconds."""
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError("statement still running after %ss: %s" % (timeout, self.sql))
        return self.rows

    @property
    def sqlstate(self):
        return self.error.sqlstate if self.error is not None else None


def background_poll(conn, group, topic, wait, max_messages=1000):
    b = Background(conn, 'SELECT partition, "offset", value FROM stream.poll(%s, %s, %s, %s::interval)',
                   (group, topic, max_messages, wait))
    b.start()
    return b

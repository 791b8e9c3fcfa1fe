"""Invariant 6, crash safety: after kill -9 of a backend, and after an immediate
shutdown, every committed message is there once, offsets stay unique and increasing,
committed offsets are intact, ownership is free again and the last stable offset is
not stuck.  Runs last: it makes the whole server restart twice."""
import os
import signal

import psycopg

from lib import TAP, connect, pg_ctl, pg_log_path, pg_log_since, wait_until

t = TAP()
TOPIC = "crash_t"


def reconnect(log_offset):
    """A new session once the server has restarted after the crash and answers."""
    wait_until(lambda: "ready to accept connections" in pg_log_since(log_offset), timeout=60,
               what="the server to finish crash recovery")

    def attempt():
        try:
            conn = connect()
            conn.execute("SELECT 1")
            return conn
        except psycopg.OperationalError:
            return None
    return wait_until(attempt, timeout=60, what="the server to accept connections")


def stored(conn):
    """All (partition, offset, id) stored in the topic, by reading every partition."""
    rows = []
    for p in range(2):
        rows += [(p, o, v) for o, v in conn.execute(
            "SELECT \"offset\", value->>'id' FROM stream.read(%s, %s, 0, 100000)", (TOPIC, p)).fetchall()]
    return rows


def check(conn, committed, label):
    rows = stored(conn)
    ids = [int(v) for _, _, v in rows]
    t.is_(sorted(ids), sorted(committed), "%s: every committed message is there exactly once" % label)
    for p in range(2):
        offs = [o for q, o, _ in rows if q == p]
        t.ok(offs == sorted(set(offs)), "%s: partition %d offsets unique and increasing" % (label, p))
    state = conn.execute("SELECT partition, end_offset, last_stable_offset FROM stream.partitions "
                         "WHERE topic = %s ORDER BY partition", (TOPIC,)).fetchall()
    t.ok(all(e == l for _, e, l in state), "%s: no stale hold: LSO = end offset %s" % (label, state))
    t.is_(conn.execute("SELECT count(*) FROM stream.verify()").fetchone()[0], 0,
          "%s: stream.verify() is clean" % label)


def publish(conn, ident, key):
    return conn.execute("SELECT partition, \"offset\" FROM stream.publish(%s, %s::jsonb, key => %s)",
                        (TOPIC, '{"id": %d}' % ident, key)).fetchone()


a = connect()
a.execute("SELECT stream.drop_topic(%s, true)", (TOPIC,))
a.execute("SELECT stream.create_topic(%s, 2)", (TOPIC,))
committed = []
for i in range(20):
    publish(a, i, "k%d" % i)
    committed.append(i)

# a consumer commits offsets and owns both partitions
c = connect()
got = c.execute("SELECT count(*) FROM stream.poll('crash_g', %s, 7)", (TOPIC,)).fetchone()[0]
c.execute("SELECT stream.commit('crash_g', %s)", (TOPIC,))
before = c.execute("SELECT partition, committed_offset FROM stream.consumer_lag "
                   "WHERE \"group\" = 'crash_g' AND committed_offset IS NOT NULL ORDER BY partition").fetchall()
t.is_(got, 7, "the consumer polled 7 messages and committed")

# a publisher holds offsets in an open transaction, and is killed
b = connect(autocommit=False)
publish(b, 1000, "k1")
publish(b, 1001, "k2")
victim = b.info.backend_pid
log_offset = os.path.getsize(pg_log_path())
os.kill(victim, signal.SIGKILL)

a = reconnect(log_offset)
check(a, committed, "after kill -9")
after = a.execute("SELECT partition, committed_offset FROM stream.consumer_lag "
                  "WHERE \"group\" = 'crash_g' AND committed_offset IS NOT NULL ORDER BY partition").fetchall()
t.is_(after, before, "after kill -9: committed offsets intact")
owners = a.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 21332").fetchone()[0]
t.is_(owners, 0, "after kill -9: no partition is owned (the consumer's session died with the restart)")

# publishing goes on at higher offsets; a new member takes both partitions and resumes
top = {p: max([o for q, o, _ in stored(a) if q == p] or [-1]) for p in range(2)}
for i in range(20, 30):
    p, o = publish(a, i, "k%d" % i)
    committed.append(i)
    t.ok(o > top[p], "publish after the crash: offset %d above the stored %d in partition %d" % (o, top[p], p))
    top[p] = o
d = connect()
n = d.execute("SELECT count(*) FROM stream.poll('crash_g', %s, 1000)", (TOPIC,)).fetchone()[0]
t.is_(n, len(committed) - 7, "a new member owns both partitions and resumes after the committed offsets")
d.execute("SELECT stream.commit('crash_g', %s)", (TOPIC,))
d.close()

# immediate shutdown with an open publishing transaction, then restart
e = connect(autocommit=False)
publish(e, 2000, "k3")
log_offset = os.path.getsize(pg_log_path())
pg_ctl("restart", "-m", "immediate")
a = reconnect(log_offset)
check(a, committed, "after an immediate shutdown")
lag = a.execute("SELECT sum(lag) FROM stream.consumer_lag WHERE \"group\" = 'crash_g'").fetchone()[0]
t.is_(lag, 0, "after an immediate shutdown: the group's committed offsets are intact (lag 0)")
p, o = publish(a, 3000, "k4")
committed.append(3000)
t.ok(o > top[p], "publishing continues above the stored offsets after recovery")

a.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
t.exit()

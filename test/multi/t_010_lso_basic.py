"""Invariants 1 and 2: a reader never passes an offset held by an open transaction.

Session A publishes offset n in an open transaction, session B publishes n+1 and
commits, reader R reads.  If stream.read ignored open transactions R would get n+1 while
A is open, move past n, and lose n when A commits.  Each way A's transaction can end
(commit, rollback, rollback to a savepoint, an error, a terminated backend) must release
the hold exactly then, and only what committed is ever returned.
"""
from lib import TAP, backend_pid, connect, wait_until
from lso_util import drop_topic, fresh_topic, publish, read, read_offsets, state

t = TAP()
a, b, r = connect(), connect(), connect()
TOPIC = "lso_basic"


def setup(label):
    """A fresh topic with two committed messages (offsets 0 and 1); returns n = 2."""
    fresh_topic(r, TOPIC)
    for i in range(2):
        publish(r, TOPIC, {"m": "pre%d" % i})
    t.is_(read_offsets(r, TOPIC, 0), [0, 1], "%s: the two committed messages are readable" % label)
    return 2


def held(label, n, end):
    """Checks while A holds offset n and B committed what follows."""
    t.is_(state(r, TOPIC), (end, n), "%s: end_offset %d, last_stable_offset %d" % (label, end, n))
    t.is_(read_offsets(r, TOPIC, 0, 0), [0, 1], "%s: read from 0 stops before n" % label)
    t.is_(read(r, TOPIC, 0, n), [], "%s: read from n returns nothing" % label)
    t.is_(read(r, TOPIC, 0, n + 1), [], "%s: read from n+1 returns nothing (n+1 is committed)" % label)


# -- A commits: the reader then gets n and n+1, in order --------------------------------
n = setup("commit")
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, n), "commit: A's open transaction got offset n")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "commit: B got n+1 and committed")
held("commit, A open", n, n + 2)
t.is_(state(a, TOPIC), (n + 2, n), "commit: A's own session sees the same LSO")
a.execute("COMMIT")
t.is_(state(r, TOPIC), (n + 2, n + 2), "commit: after A commits the LSO is the end offset")
t.is_(read(r, TOPIC, 0, n), [(n, {"m": "a"}), (n + 1, {"m": "b"})],
      "commit: the reader now gets n (A's) then n+1 (B's)")

# -- A rolls back: n is a gap, never returned --------------------------------------------
n = setup("rollback")
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, n), "rollback: A holds n")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "rollback: B committed n+1")
held("rollback, A open", n, n + 2)
a.execute("ROLLBACK")
t.is_(state(r, TOPIC), (n + 2, n + 2), "rollback: the LSO passes the rolled-back offset")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"})], "rollback: the reader gets n+1 only (n is a gap)")
t.is_(read_offsets(r, TOPIC, 0, 0), [0, 1, n + 1], "rollback: a full read has the gap at n")

# -- A publishes only inside a savepoint, rolls back to it, stays open -------------------
n = setup("savepoint")
a.execute("BEGIN")
a.execute("SAVEPOINT s")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, n), "savepoint: A holds n inside savepoint s")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "savepoint: B committed n+1")
held("savepoint, A open", n, n + 2)
a.execute("ROLLBACK TO SAVEPOINT s")
t.is_(a.info.transaction_status.name, "INTRANS", "savepoint: A's transaction is still open")
t.is_(state(r, TOPIC), (n + 2, n + 2), "savepoint: ROLLBACK TO releases n while A stays open")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"})], "savepoint: the reader gets n+1, not A's message")
t.is_(publish(a, TOPIC, {"m": "a2"}), (0, n + 2), "savepoint: A publishes again, gets n+2")
t.is_(state(r, TOPIC), (n + 3, n + 2), "savepoint: A's new publish holds the LSO at n+2")
t.is_(read(r, TOPIC, 0, n + 2), [], "savepoint: n+2 is not readable while A is open")
a.execute("COMMIT")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"}), (n + 2, {"m": "a2"})],
      "savepoint: after A commits, n+1 and n+2; the rolled-back n never appears")

# -- A published before the savepoint too: the LSO stays at A's first offset -------------
n = setup("savepoint after publish")
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a1"}), (0, n), "savepoint after publish: A holds n")
a.execute("SAVEPOINT s")
t.is_(publish(a, TOPIC, {"m": "a2"}), (0, n + 1), "savepoint after publish: A holds n+1 in s")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 2), "savepoint after publish: B committed n+2")
a.execute("ROLLBACK TO SAVEPOINT s")
t.is_(state(r, TOPIC), (n + 3, n), "savepoint after publish: after ROLLBACK TO the LSO stays at n")
t.is_(read(r, TOPIC, 0, n), [], "savepoint after publish: nothing readable from n")
t.is_(read(r, TOPIC, 0, n + 2), [], "savepoint after publish: B's committed n+2 is not readable yet")
a.execute("COMMIT")
t.is_(read(r, TOPIC, 0, n), [(n, {"m": "a1"}), (n + 2, {"m": "b"})],
      "savepoint after publish: after commit, n and n+2 (n+1 rolled back)")

# -- nested savepoints: RELEASE keeps a hold, ROLLBACK TO an outer one drops inner ones ----
n = setup("nested savepoints")
a.execute("BEGIN")
a.execute("SAVEPOINT s1")
a.execute("SAVEPOINT s2")
t.is_(publish(a, TOPIC, {"m": "a1"}), (0, n), "nested: A holds n in s2")
a.execute("RELEASE SAVEPOINT s2")
a.execute("SAVEPOINT s3")
t.is_(publish(a, TOPIC, {"m": "a2"}), (0, n + 1), "nested: A holds n+1 in s3")
a.execute("ROLLBACK TO SAVEPOINT s3")
t.is_(state(r, TOPIC), (n + 2, n), "nested: rolling back s3 keeps n (released into s1) held")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 2), "nested: B committed n+2")
a.execute("ROLLBACK TO SAVEPOINT s1")
t.is_(state(r, TOPIC), (n + 3, n + 3), "nested: rolling back s1 releases everything A held")
t.is_(read(r, TOPIC, 0, n), [(n + 2, {"m": "b"})], "nested: only B's message is readable")
a.execute("COMMIT")
t.is_(read(r, TOPIC, 0, n), [(n + 2, {"m": "b"})], "nested: A's commit adds nothing")

# -- PL/pgSQL exception block: an implicit subtransaction ---------------------------------
n = setup("exception block")
a.execute("BEGIN")
a.execute("""DO $$ BEGIN
    PERFORM stream.publish('lso_basic', '{"m": "lost"}'::jsonb);
    RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN NULL; END $$""")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "exception block: B committed n+1 after A's undone n")
t.is_(state(r, TOPIC), (n + 2, n + 2), "exception block: the undone publish holds nothing, A still open")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"})], "exception block: reader gets n+1 only")
a.execute("ROLLBACK")

# -- an error aborts A's transaction: released before the client says ROLLBACK ----------
n = setup("error")
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, n), "error: A holds n")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "error: B committed n+1")
try:
    a.execute("SELECT 1/0")
except Exception:
    pass
t.is_(a.info.transaction_status.name, "INERROR", "error: A's transaction is aborted but not ended")
t.is_(state(r, TOPIC), (n + 2, n + 2), "error: the aborted transaction holds nothing")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"})], "error: reader gets n+1 only")
a.execute("ROLLBACK")

# -- A's backend is terminated: the LSO advances, A's message never appears -------------
n = setup("terminate")
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "doomed"}), (0, n), "terminate: A holds n")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, n + 1), "terminate: B committed n+1")
held("terminate, A open", n, n + 2)
a_pid = backend_pid(a)
t.ok(r.execute("SELECT pg_terminate_backend(%s)", (a_pid,)).fetchone()[0],
     "terminate: pg_terminate_backend(A) succeeds")
wait_until(lambda: not r.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                 (a_pid,)).fetchone()[0], timeout=30, what="A's backend to exit")
t.is_(state(r, TOPIC), (n + 2, n + 2), "terminate: once A's backend is gone the LSO is the end")
t.is_(read(r, TOPIC, 0, n), [(n + 1, {"m": "b"})], "terminate: reader gets n+1; A's message is not there")
t.ok(all(v != {"m": "doomed"} for _, v in read(r, TOPIC, 0, 0)),
     "terminate: A's message is nowhere in the partition")
a.close()

# -- a fresh backend reuses the terminated one's process slot without inheriting a hold ---
a = connect()
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, n + 2), "after terminate: a new session publishes n+2")
t.is_(state(r, TOPIC), (n + 3, n + 2), "after terminate: only the new hold counts")
a.execute("COMMIT")
t.is_(state(r, TOPIC), (n + 3, n + 3), "after terminate: released at commit")

drop_topic(r, TOPIC)
t.exit()

"""PREPARE TRANSACTION after a publish is refused, and leaves no hold behind.

A prepared transaction outlives its session: its offsets would be held with no backend to
release them, stalling the partition.  So PREPARE after a publish fails with 0A000, the
transaction is rolled back, and the partition's LSO moves on.  PREPARE of a transaction
that did not publish (or whose publish was rolled back to a savepoint) still works, so
the refusal is specific to publishing.
"""
from lib import TAP, connect
import psycopg
from lso_util import drop_topic, fresh_topic, publish, read, state

t = TAP()
a, b, r = connect(), connect(), connect()
TOPIC = "lso_prepare"

fresh_topic(r, TOPIC)
r.execute("DROP TABLE IF EXISTS lso_prepare_plain")
r.execute("CREATE TABLE lso_prepare_plain (id int)")
for gid in ("lso_prep_pub", "lso_prep_plain", "lso_prep_sp"):
    if r.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (gid,)).fetchone():
        r.execute("ROLLBACK PREPARED '%s'" % gid)  # left by an interrupted earlier run
t.ok(int(r.execute("SHOW max_prepared_transactions").fetchone()[0]) > 0,
     "the cluster allows prepared transactions")


def prepare(conn, gid):
    """PREPARE TRANSACTION gid in conn; return the error, or None when it succeeded."""
    try:
        conn.execute("PREPARE TRANSACTION '%s'" % gid)
    except psycopg.Error as e:
        if conn.info.transaction_status.name != "IDLE":
            conn.execute("ROLLBACK")
        return e
    return None


def refused(conn, gid, label):
    """Expect PREPARE to fail with 0A000; a prepared leftover would block the topic's drop."""
    err = prepare(conn, gid)
    if err is None:
        r.execute("ROLLBACK PREPARED '%s'" % gid)
    t.is_(err and err.sqlstate, "0A000", label)
    return err

# Refused after a publish.
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"m": "a"}), (0, 0), "A publishes offset 0")
t.is_(state(r, TOPIC), (1, 0), "A holds the LSO at 0")
err = refused(a, "lso_prep_pub", "PREPARE TRANSACTION after a publish fails with 0A000")
t.ok(err is not None and "stream" in str(err).lower() and "prepare" in str(err).lower(),
     "the message names the reason: %s" % (err and str(err).splitlines()[0]))
t.is_(a.info.transaction_status.name, "IDLE", "A's transaction has ended")
t.is_(r.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'lso_prep_pub'").fetchone()[0], 0,
      "no prepared transaction was left")
t.is_(state(r, TOPIC), (1, 1), "the partition is not held afterwards (LSO = end = 1)")
t.is_(read(r, TOPIC, 0, 0), [], "A's message was rolled back, never readable")
t.is_(publish(b, TOPIC, {"m": "b"}), (0, 1), "B commits offset 1")
t.is_(read(r, TOPIC, 0, 0), [(1, {"m": "b"})], "the reader gets B's message at once")

# A still works as a session.
t.is_(publish(a, TOPIC, {"m": "a2"}), (0, 2), "A publishes again in autocommit")
t.is_(read(r, TOPIC, 0, 2), [(2, {"m": "a2"})], "and it is readable")

# A prepared transaction without a publish is fine, and holds nothing.
a.execute("BEGIN")
a.execute("INSERT INTO lso_prepare_plain VALUES (1)")
t.is_(prepare(a, "lso_prep_plain"), None, "PREPARE TRANSACTION of a transaction that did not publish")
t.is_(r.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'lso_prep_plain'").fetchone()[0], 1,
      "PREPARE TRANSACTION without a publish succeeds")
t.is_(publish(b, TOPIC, {"m": "b2"}), (0, 3), "B commits offset 3 while that one is prepared")
t.is_(read(r, TOPIC, 0, 3), [(3, {"m": "b2"})], "the prepared transaction does not hold the partition")
if r.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = 'lso_prep_plain'").fetchone():
    r.execute("COMMIT PREPARED 'lso_prep_plain'")

# A publish rolled back to a savepoint leaves nothing held: PREPARE is allowed.
a.execute("BEGIN")
a.execute("INSERT INTO lso_prepare_plain VALUES (2)")
a.execute("SAVEPOINT s")
t.is_(publish(a, TOPIC, {"m": "undone"}), (0, 4), "A publishes offset 4 in a savepoint")
a.execute("ROLLBACK TO SAVEPOINT s")
t.is_(prepare(a, "lso_prep_sp"), None, "PREPARE TRANSACTION after the publish was rolled back to a savepoint")
t.is_(r.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'lso_prep_sp'").fetchone()[0], 1,
      "PREPARE after the publish was rolled back to a savepoint succeeds")
t.is_(state(r, TOPIC), (5, 5), "and the partition is not held")
if r.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = 'lso_prep_sp'").fetchone():
    r.execute("COMMIT PREPARED 'lso_prep_sp'")
t.is_(read(r, TOPIC, 0, 3), [(3, {"m": "b2"})], "offset 4 never appears")

# A publish inside a subtransaction that was released counts: refused.
a.execute("BEGIN")
a.execute("SAVEPOINT s")
t.is_(publish(a, TOPIC, {"m": "released"}), (0, 5), "A publishes offset 5 in a savepoint")
a.execute("RELEASE SAVEPOINT s")
refused(a, "lso_prep_pub", "PREPARE after a publish in a released savepoint fails with 0A000")
t.is_(state(r, TOPIC), (6, 6), "the partition is not held afterwards")

r.execute("DROP TABLE lso_prepare_plain")
drop_topic(r, TOPIC)
t.exit()

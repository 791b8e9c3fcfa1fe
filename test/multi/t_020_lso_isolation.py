"""Invariant 1 at every isolation level of the reading transaction.

A REPEATABLE READ or SERIALIZABLE reader keeps the snapshot of its first query.  If
stream.read used that snapshot, a message that committed after it but below the LSO
would be invisible: the reader would get nothing, or worse the committed message after
it (a gap), move past it and lose it.  stream.read must take a fresh snapshot after
computing the LSO.  And a reader never sees its own transaction's uncommitted publish.
"""
from lib import TAP, connect
from lso_util import drop_topic, fresh_topic, publish, read, read_offsets, state

t = TAP()
a, b, r = connect(), connect(), connect()
TOPIC = "lso_isolation"

for level in ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
    tag = level.lower()

    # A message committed after the reader's snapshot is returned.
    fresh_topic(a, TOPIC)
    publish(a, TOPIC, {"m": "pre"})
    r.execute("BEGIN ISOLATION LEVEL " + level)
    t.is_(read_offsets(r, TOPIC, 0), [0], "%s: reader's first query (takes its snapshot)" % tag)
    t.is_(publish(b, TOPIC, {"m": "b"}), (0, 1), "%s: B commits offset 1 after that snapshot" % tag)
    t.is_(read(r, TOPIC, 0, 1), [(1, {"m": "b"})],
          "%s: the same reader transaction reads the message committed after its snapshot" % tag)
    r.execute("COMMIT")

    # The gap case: n+1 committed before the reader's snapshot, n after it.
    fresh_topic(a, TOPIC)
    a.execute("BEGIN")
    t.is_(publish(a, TOPIC, {"m": "a"}), (0, 0), "%s: A holds offset 0" % tag)
    t.is_(publish(b, TOPIC, {"m": "b"}), (0, 1), "%s: B commits offset 1" % tag)
    r.execute("BEGIN ISOLATION LEVEL " + level)
    t.is_(read(r, TOPIC, 0, 0), [], "%s: reader (snapshot taken now, sees 1 not 0) gets nothing" % tag)
    a.execute("COMMIT")
    t.is_(state(r, TOPIC), (2, 2), "%s: after A commits the LSO is 2" % tag)
    t.is_(read(r, TOPIC, 0, 0), [(0, {"m": "a"}), (1, {"m": "b"})],
          "%s: the old-snapshot reader gets 0 then 1, no gap" % tag)
    r.execute("COMMIT")

    # The reader publishes itself: its own uncommitted message is not returned.
    fresh_topic(a, TOPIC)
    publish(a, TOPIC, {"m": "pre"})
    r.execute("BEGIN ISOLATION LEVEL " + level)
    t.is_(publish(r, TOPIC, {"m": "own"}), (0, 1), "%s: reader publishes offset 1 in its transaction" % tag)
    t.is_(publish(b, TOPIC, {"m": "b"}), (0, 2), "%s: B commits offset 2" % tag)
    t.is_(state(r, TOPIC), (3, 1), "%s: the reader's own publish holds the LSO at 1" % tag)
    t.is_(read_offsets(r, TOPIC, 0, 0), [0], "%s: reader does not read its own uncommitted message" % tag)
    t.is_(read(r, TOPIC, 0, 2), [], "%s: nor B's committed message after it" % tag)
    t.is_(read_offsets(b, TOPIC, 0, 0), [0], "%s: another session does not read it either" % tag)
    r.execute("COMMIT")
    t.is_(read(b, TOPIC, 0, 1), [(1, {"m": "own"}), (2, {"m": "b"})],
          "%s: after the reader commits, its message and B's are readable" % tag)

    # The reader published, then reads messages that others committed before its offset
    # after its snapshot: below its own hold they must all be there.
    fresh_topic(a, TOPIC)
    a.execute("BEGIN")
    t.is_(publish(a, TOPIC, {"m": "a"}), (0, 0), "%s: A holds offset 0" % tag)
    r.execute("BEGIN ISOLATION LEVEL " + level)
    t.is_(read(r, TOPIC, 0, 0), [], "%s: reader takes its snapshot while A is open" % tag)
    t.is_(publish(r, TOPIC, {"m": "own"}), (0, 1), "%s: reader publishes offset 1" % tag)
    a.execute("COMMIT")
    t.is_(state(b, TOPIC), (2, 1), "%s: LSO is the reader's own offset 1" % tag)
    t.is_(read(r, TOPIC, 0, 0), [(0, {"m": "a"})],
          "%s: reader gets A's offset 0 (committed after its snapshot), not its own" % tag)
    r.execute("ROLLBACK")
    t.is_(read(b, TOPIC, 0, 0), [(0, {"m": "a"})], "%s: the reader's rolled-back message never appears" % tag)

drop_topic(a, TOPIC)
t.exit()

"""Invariant 1's other side: only transactions that hold offsets in a partition hold it back.

An LSO derived from the xmin horizon or from "any open writing transaction" would be
held by each of these long-running transactions: a plain INSERT, a REPEATABLE READ
reader, a publisher to another topic, a publisher to another partition of the same
topic.  None of them may stop a reader of this partition; the last one must still hold
its own partition (so the test is not vacuous).
"""
from lib import TAP, connect
from lso_util import drop_topic, fresh_topic, publish, read, state

t = TAP()
u_ins, u_rr, u_topic, u_part, b, r = (connect() for _ in range(6))
TOPIC, OTHER = "lso_unrelated", "lso_unrelated_other"

fresh_topic(b, TOPIC, partitions=2)
fresh_topic(b, OTHER)
b.execute("DROP TABLE IF EXISTS lso_unrelated_plain")
b.execute("CREATE TABLE lso_unrelated_plain (id int)")

# Long-running transactions, all left open while B publishes and R reads.
u_ins.execute("BEGIN")
u_ins.execute("INSERT INTO lso_unrelated_plain VALUES (1)")
t.ok(u_ins.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").fetchone()[0],
     "the INSERT transaction has an xid (it holds back the xmin horizon)")
u_rr.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
u_rr.execute("SELECT count(*) FROM lso_unrelated_plain")
u_topic.execute("BEGIN")
t.is_(publish(u_topic, OTHER, {"m": "other topic"}), (0, 0), "a transaction holds offset 0 of another topic")
u_part.execute("BEGIN")
t.is_(publish(u_part, TOPIC, {"m": "partition 1"}, partition=1), (1, 0),
      "a transaction holds offset 0 of partition 1")

for i in range(3):
    t.is_(publish(b, TOPIC, {"m": i}, partition=0), (0, i), "B commits offset %d to partition 0" % i)
    t.is_(state(r, TOPIC, 0), (i + 1, i + 1), "partition 0: LSO follows the end offset (%d)" % (i + 1))
    t.is_(read(r, TOPIC, 0, i), [(i, {"m": i})], "R reads offset %d at once" % i)

t.is_(state(r, TOPIC, 1), (1, 0), "partition 1 is held by its own open publisher (LSO 0, end 1)")
t.is_(state(r, OTHER, 0), (1, 0), "the other topic is held by its own open publisher")
t.is_(publish(b, TOPIC, {"m": "p1"}, partition=1), (1, 1), "B commits offset 1 to partition 1")
t.is_(read(r, TOPIC, 1, 0), [], "partition 1: R reads nothing while offset 0 is open")

# A REPEATABLE READ reader that is itself long-running does not block others either.
r2 = connect()
r2.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
r2.execute("SELECT 1")
t.is_(publish(b, TOPIC, {"m": 3}, partition=0), (0, 3), "B commits offset 3 to partition 0")
t.is_(read(r, TOPIC, 0, 3), [(3, {"m": 3})], "R reads it while two REPEATABLE READ transactions are open")
t.is_(read(r2, TOPIC, 0, 3), [(3, {"m": 3})], "so does the old REPEATABLE READ transaction itself")
r2.execute("COMMIT")

u_part.execute("COMMIT")
t.is_(read(r, TOPIC, 1, 0), [(0, {"m": "partition 1"}), (1, {"m": "p1"})],
      "partition 1: after its publisher commits, R reads 0 and 1")
for c in (u_ins, u_rr, u_topic):
    c.execute("ROLLBACK")
t.is_(state(r, OTHER, 0), (1, 1), "the other topic is released by its publisher's rollback")
t.is_(read(r, OTHER, 0, 0), [], "and its rolled-back message never appears")

b.execute("DROP TABLE lso_unrelated_plain")
drop_topic(b, TOPIC)
drop_topic(b, OTHER)
t.exit()

"""Committed offsets through Kafka's OffsetCommit/OffsetFetch (raw frames),
shared with SQL groups of the same name.

Simple commits (generation -1) land in stream._offsets with SQL's meaning:
stream.consumer_lag shows them and an SQL poll of the same group starts there;
an SQL commit is what OffsetFetch answers.  Offsets beyond the end (or
negative) are refused per partition without touching the others; unknown
topics and partitions are refused; a partition never committed fetches -1.
While an SQL session is a live member of the group, a Kafka JoinGroup is
refused (INCONSISTENT_GROUP_PROTOCOL) and so is a simple commit.  With
stream.kafka_role set to a role without the consume privilege on a topic,
commits and fetches of that topic answer TOPIC_AUTHORIZATION_FAILED.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "multi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import TAP, connect, pg_log_path, pg_log_since, wait_until  # noqa: E402
import group_raw as k  # noqa: E402

t = TAP()
db = connect(dbname="postgres")
db.execute("CREATE EXTENSION IF NOT EXISTS stream")
for name in ("k2_offs", "k2_priv"):
    db.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
db.execute("SELECT stream.create_topic('k2_offs', 3)")
db.execute("SELECT stream.create_topic('k2_priv', 1)")
db.execute("SELECT stream.publish('k2_offs', jsonb_build_object('i', i), partition => 0) "
           "FROM generate_series(1, 10) i")
db.execute("SELECT stream.publish('k2_offs', jsonb_build_object('i', i), partition => 1) "
           "FROM generate_series(1, 5) i")
db.execute("DELETE FROM stream._offsets WHERE group_name LIKE 'k2_%'")
log_start = os.path.getsize(pg_log_path())
G = "k2_og"
c = k.Conn()


def lag(group):
    return {p: (off, lg) for p, off, lg in db.execute(
        "SELECT partition, committed_offset, lag FROM stream.consumer_lag "
        "WHERE \"group\" = %s AND topic = 'k2_offs' ORDER BY partition", (group,))}


def committed(group, partition):
    row = db.execute("SELECT o.committed_offset FROM stream._offsets o "
                     "JOIN stream._topics t USING (topic_id) "
                     "WHERE o.group_name = %s AND t.topic = 'k2_offs' AND o.partition = %s",
                     (group, partition)).fetchone()
    return row and row[0]


# ---- simple commits, consumer_lag, OffsetFetch ----
r = c.call(k.offset_commit(2, G, -1, "", {"k2_offs": {0: 4, 1: 5}}))
t.is_(r, {("k2_offs", 0): 0, ("k2_offs", 1): 0}, "a simple commit (generation -1) of two partitions: NONE")
t.is_(lag(G), {0: (4, 6), 1: (5, 0)}, "stream.consumer_lag shows the Kafka group's offsets and lag")

r = c.call(k.offset_commit(7, G, -1, "", {"k2_offs": {0: 7, 1: 6, 2: -1}}))
t.is_(r, {("k2_offs", 0): 0, ("k2_offs", 1): k.OFFSET_OUT_OF_RANGE, ("k2_offs", 2): k.OFFSET_OUT_OF_RANGE},
      "v7: beyond the end offset and negative: OFFSET_OUT_OF_RANGE, the valid partition: NONE")
t.is_((committed(G, 0), committed(G, 1), committed(G, 2)), (7, 5, None),
      "only the valid partition was written; the refused ones kept their offsets")
r = c.call(k.offset_commit(3, G, -1, "", {"k2_offs": {0: 10}}))
t.is_((r, committed(G, 0)), ({("k2_offs", 0): 0}, 10), "the end offset itself may be committed")
r = c.call(k.offset_commit(5, G, -1, "", {"k2_offs": {0: 7, 9: 1}, "k2_no_such_topic": {0: 1}}))
t.is_(r, {("k2_offs", 0): 0, ("k2_offs", 9): k.UNKNOWN_TOPIC_OR_PARTITION,
          ("k2_no_such_topic", 0): k.UNKNOWN_TOPIC_OR_PARTITION},
      "unknown partition and unknown topic: UNKNOWN_TOPIC_OR_PARTITION, the rest committed")
r = c.call(k.offset_commit(2, "bad group!", -1, "", {"k2_offs": {0: 1}}))
t.is_(r, {("k2_offs", 0): k.INVALID_GROUP_ID}, "an invalid group id: INVALID_GROUP_ID")

for v in (1, 3, 5):
    r = c.call(k.offset_fetch(v, G, {"k2_offs": [0, 1, 2]}))
    t.is_(r["offsets"], {("k2_offs", 0): (7, 0), ("k2_offs", 1): (5, 0), ("k2_offs", 2): (-1, 0)},
          "OffsetFetch v%d: the committed offsets, -1 where none" % v)
r = c.call(k.offset_fetch(2, G, None))
t.is_(r, {"offsets": {("k2_offs", 0): (7, 0), ("k2_offs", 1): (5, 0)}, "error": 0},
      "OffsetFetch v2 of all topics: every committed partition of the group")
r = c.call(k.offset_fetch(4, G, {"k2_no_such_topic": [0], "k2_offs": [5]}))
t.is_(r["offsets"], {("k2_no_such_topic", 0): (-1, k.UNKNOWN_TOPIC_OR_PARTITION),
                     ("k2_offs", 5): (-1, k.UNKNOWN_TOPIC_OR_PARTITION)},
      "OffsetFetch of an unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION")
r = c.call(k.offset_fetch(3, "bad group!", {"k2_offs": [0]}))
t.is_(r["error"], k.INVALID_GROUP_ID, "OffsetFetch of an invalid group id: INVALID_GROUP_ID")

# ---- shared with SQL ----
sql = connect(dbname="postgres")
rows = sql.execute("SELECT partition, min(\"offset\"), count(*) FROM stream.poll(%s, 'k2_offs', 100) "
                   "GROUP BY partition ORDER BY partition", (G,)).fetchall()
t.is_(rows, [(0, 7, 3)], "an SQL poll of the same group starts at the Kafka-committed offsets")
sql.execute("SELECT stream.commit(%s, 'k2_offs')", (G,))
r = c.call(k.offset_fetch(5, G, {"k2_offs": [0, 1]}))
t.is_(r["offsets"], {("k2_offs", 0): (10, 0), ("k2_offs", 1): (5, 0)},
      "an SQL commit is what Kafka's OffsetFetch answers")

# the SQL session is a live member: Kafka may not join, nor commit from outside
r = c.call(k.join_group(2, G, 10000, 10000, "", [("range", k.subscription(["k2_offs"]))]))
t.is_(r["error"], k.INCONSISTENT_GROUP_PROTOCOL,
      "a Kafka JoinGroup while an SQL session is a member: INCONSISTENT_GROUP_PROTOCOL")
t.ok("SQL sessions are members of the group" in pg_log_since(log_start),
     "the server log says why")
r = c.call(k.offset_commit(2, G, -1, "", {"k2_offs": {0: 8}}))
t.is_((r, committed(G, 0)), ({("k2_offs", 0): k.UNKNOWN_MEMBER_ID}, 10),
      "a simple commit while an SQL session is a member: refused, offset unchanged")
t.is_(sql.execute("SELECT stream.leave(%s, 'k2_offs')", (G,)).fetchone()[0], True, "the SQL session leaves")
r = c.call(k.join_group(2, G, 10000, 10000, "", [("range", k.subscription(["k2_offs"]))]))
t.is_((r["error"], r["generation"]), (0, 1), "then a Kafka member joins: generation 1")
mid = r["member_id"]
r = c.call(k.sync_group(0, G, 1, mid, [(mid, k.assignment({"k2_offs": [0, 1, 2]}))]))
t.is_(r["error"], 0, "and syncs")
r = c.call(k.offset_commit(6, G, 1, mid, {"k2_offs": {1: 3}}))
t.is_((r, committed(G, 1)), ({("k2_offs", 1): 0}, 3), "the member commits with its generation")
t.is_(c.call(k.leave_group(1, G, mid)), 0, "and leaves")

r = c.call(k.offset_commit(2, G, -1, "", {"k2_priv": {0: 0}}))
t.is_(r, {("k2_priv", 0): 0}, "(a simple commit to the other topic, as postgres)")

# ---- privileges: a Kafka role without the consume privilege ----
db.execute("DROP ROLE IF EXISTS k2_reader")
db.execute("CREATE ROLE k2_reader")
db.execute("SELECT stream.grant('k2_offs', 'k2_reader', 'consume')")
db.execute("ALTER SYSTEM SET stream.kafka_role = 'k2_reader'")
db.execute("SELECT pg_reload_conf()")
try:
    wait_until(lambda: c.call(k.offset_fetch(1, G, {"k2_priv": [0]}))["offsets"][("k2_priv", 0)][1]
               == k.TOPIC_AUTHORIZATION_FAILED, timeout=30, what="the listener to act as k2_reader")
    t.ok(True, "OffsetFetch of a topic the role may not consume: TOPIC_AUTHORIZATION_FAILED")
    r = c.call(k.offset_commit(2, G, -1, "", {"k2_offs": {0: 9}, "k2_priv": {0: 0}}))
    t.is_(r, {("k2_offs", 0): 0, ("k2_priv", 0): k.TOPIC_AUTHORIZATION_FAILED},
          "OffsetCommit: TOPIC_AUTHORIZATION_FAILED where the role lacks consume, NONE where it has it")
    t.is_(committed(G, 0), 9, "the permitted partition was committed")
    r = c.call(k.offset_fetch(2, G, None))
    t.is_(sorted(r["offsets"]), [("k2_offs", 0), ("k2_offs", 1), ("k2_offs", 2)],
          "OffsetFetch of all topics lists only what the role may consume (not k2_priv)")
finally:
    db.execute("ALTER SYSTEM RESET stream.kafka_role")
    db.execute("SELECT pg_reload_conf()")
    wait_until(lambda: c.call(k.offset_fetch(1, G, {"k2_priv": [0]}))["offsets"][("k2_priv", 0)][1] == 0,
               timeout=30, what="the listener to act as postgres again")

c.close()
sql.close()
for name in ("k2_offs", "k2_priv"):
    db.execute("SELECT stream.drop_topic(%s)", (name,))
db.execute("DELETE FROM stream._offsets WHERE group_name LIKE 'k2_%'")
db.execute("DROP ROLE k2_reader")
t.exit()

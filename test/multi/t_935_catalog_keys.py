"""The catalog has no foreign keys (pg_restore -j loads its tables in any order), so
what the keys did is done by hand; this checks each part.

drop_topic removes every child row (partitions, segments, committed offsets, grants);
a commit that inserts a group's first offset locks the partition row as a key would,
so a concurrent drop_topic waits for it and then removes the row (no orphan); a commit
after the drop fails with 42704 and writes nothing; stream.verify() reports every kind
of orphan row.
"""
import threading

from lib import TAP, connect, wait_until

t = TAP()
admin = connect()
TOPIC = "keys_t"


def children(topic_id):
    return admin.execute(
        "SELECT (SELECT count(*) FROM stream._partitions WHERE topic_id = %(i)s),"
        "       (SELECT count(*) FROM stream._segments WHERE topic_id = %(i)s),"
        "       (SELECT count(*) FROM stream._offsets WHERE topic_id = %(i)s),"
        "       (SELECT count(*) FROM stream._acl WHERE topic_id = %(i)s)", {"i": topic_id}).fetchone()


def fresh(publish=True):
    admin.execute("SELECT stream.drop_topic(%s, true)", (TOPIC,))
    admin.execute("SELECT stream.create_topic(%s, 2)", (TOPIC,))
    if publish:
        admin.execute("SELECT stream.publish(%s, '{}', partition => p) FROM generate_series(0, 1) p", (TOPIC,))
    return admin.execute("SELECT topic_id FROM stream._topics WHERE topic = %s", (TOPIC,)).fetchone()[0]


admin.execute("SELECT stream.drop_topic(%s, true)", (TOPIC,))  # a failed run may have left it
admin.execute("DROP ROLE IF EXISTS keys_reader")
admin.execute("CREATE ROLE keys_reader")

# --- drop_topic removes every child row -------------------------------------------
tid = fresh()
admin.execute("SELECT stream.grant(%s, 'keys_reader', 'consume')", (TOPIC,))
m = connect()
m.execute("SELECT count(*) FROM stream.poll('keys_g', %s, 10)", (TOPIC,))
m.execute("SELECT stream.commit('keys_g', %s)", (TOPIC,))
m.close()
t.is_(children(tid), (2, 2, 2, 1), "the topic has partitions, segments, an offset and a grant")
admin.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
t.is_(children(tid), (0, 0, 0, 0), "drop_topic removed every child row")

# --- a first commit holds the partition row: drop_topic waits, then removes it ----
# (an empty topic: the poll opens no segment table, whose lock would make the drop
# wait anyway)
tid = fresh(publish=False)
a = connect()
a.execute("SELECT count(*) FROM stream.poll('keys_g', %s, 10)", (TOPIC,))   # own the partitions
a.execute("BEGIN")
a.execute("SELECT stream.commit('keys_g', %s, 0, 0)", (TOPIC,))
dropper_pid = []


def drop():
    b = connect()
    dropper_pid.append(b.execute("SELECT pg_backend_pid()").fetchone()[0])
    b.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
    b.close()


th = threading.Thread(target=drop)
th.start()
def drop_state():
    """'waiting' while the drop waits for a lock, 'done' once it returned, else None."""
    if not th.is_alive():
        return "done"
    if dropper_pid and admin.execute(
            "SELECT coalesce((SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s), false)",
            (dropper_pid[0],)).fetchone()[0]:
        return "waiting"
    return None


waiting = wait_until(drop_state, what="drop_topic waiting or done") == "waiting"
t.ok(waiting, "drop_topic waits for the transaction that committed a first offset")
a.execute("COMMIT")
th.join(30)
t.ok(not th.is_alive(), "drop_topic finished once that transaction ended")
t.is_(children(tid), (0, 0, 0, 0), "and left no offset row behind")

# --- a commit after the drop fails and writes nothing -----------------------------
tid = fresh()
c = connect(autocommit=False)
c.execute("SELECT count(*) FROM stream.poll('keys_g', %s, 10)", (TOPIC,))
c.commit()
admin.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
try:
    c.execute("SELECT stream.commit('keys_g', %s, 0, 1)", (TOPIC,))
    t.ok(False, "commit to a dropped topic fails")
except Exception as e:
    t.is_(getattr(e, "sqlstate", None), "42704", "commit to a dropped topic fails with 42704")
c.rollback()
t.is_(children(tid), (0, 0, 0, 0), "nothing was written")

# --- verify() reports orphans of every kind ---------------------------------------
admin.execute("BEGIN")
admin.execute("INSERT INTO stream._partitions (topic_id, partition) VALUES (-7, 0)")
admin.execute("INSERT INTO stream._acl (topic_id, role, privilege) VALUES (-7, 'keys_reader', 'consume')")
admin.execute("INSERT INTO stream._segments (segment_id, topic_id, partition, base_offset) VALUES (-7, -8, 0, 0)")
admin.execute("INSERT INTO stream._offsets VALUES ('keys_g', -8, 0, 0, now())")
problems = sorted(r[0] for r in admin.execute("SELECT problem FROM stream.verify()").fetchall())
admin.execute("ROLLBACK")
for kind in ("partition", "grant", "segment", "committed offset"):
    t.ok(kind + " row without its parent" in problems, f"verify() reports a {kind} row without its parent")
t.is_(admin.execute("SELECT count(*) FROM stream.verify()").fetchone()[0], 0, "and nothing once they are gone")

admin.execute("DROP ROLE keys_reader")
t.exit()

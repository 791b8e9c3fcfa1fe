"""Consumer groups: reset_offsets, seek, commit and leave, with their errors.

reset_offsets moves a group's committed offsets to 'earliest', 'latest' or a time
while no live member owns its partitions, and is refused (55006, nothing changed)
while another live member owns one.  The owner's seek moves its position (the next
poll starts there) and commit stores it.  Errors: seek of an unknown group 42704,
commit of a partition the session does not own 55000, commit beyond the end offset
22023, leave in a transaction that polled 25001; leave of a non-member is false;
poll's argument errors.  A session whose ownership locks were dropped (DISCARD ALL,
pg_advisory_unlock_all) must not commit or seek partitions another member took.
"""
from lib import TAP, connect
from cg_util import (check_exclusive, commit_all, commit_one, committed, drop_topic, fresh_topic,
                     leave, owned_by, pid, poll, publish, seek, sqlstate)

t = TAP()
admin = connect()
obs = connect()
TOPIC, GROUP = "cg_reset", "cg_reset_g"
fresh_topic(admin, TOPIC, 2)
for i in range(3):
    for p in range(2):
        publish(admin, TOPIC, {"p": p, "i": i}, partition=p)
ts = admin.execute("SELECT clock_timestamp()").fetchone()[0]
for i in range(3, 6):
    for p in range(2):
        publish(admin, TOPIC, {"p": p, "i": i}, partition=p)
END = 6
# the first offset of each partition published at or after ts, from the data itself
at_ts = {p: admin.execute(
    'SELECT min("offset") FROM stream.read(%s, %s, 0, 100) WHERE published_at >= %s',
    (TOPIC, p, ts)).fetchone()[0] for p in range(2)}
t.is_(at_ts, {0: 3, 1: 3}, "messages 3.. of each partition were published after the timestamp")


def offsets(rows):
    return sorted((p, o) for p, o, _ in rows)


# --- a member reads, commits and leaves: the group is idle --------------------------
m = connect()
t.is_(len(poll(m, GROUP, TOPIC)), 2 * END, "the member reads both partitions")
t.is_(commit_all(m, GROUP, TOPIC), 2, "and commits its 2 positions")
t.is_(committed(obs, GROUP, TOPIC), {0: END, 1: END}, "committed offsets are at the end")
t.is_(leave(m, GROUP, TOPIC), True, "the member leaves (true)")
t.is_(leave(m, GROUP, TOPIC), False, "leave again: false, no longer a member")
t.is_(leave(obs, GROUP, TOPIC), False, "leave by a session that never polled: false")
t.is_(owned_by(obs, GROUP, TOPIC, pid(m)), set(), "nobody owns the partitions")

# --- reset while idle -----------------------------------------------------------------
admin.execute("SELECT stream.reset_offsets(%s, %s, 'earliest')", (GROUP, TOPIC))
t.is_(committed(obs, GROUP, TOPIC), {0: 0, 1: 0}, "reset to 'earliest' sets 0 in both partitions")
admin.execute("SELECT stream.reset_offsets(%s, %s, 'latest')", (GROUP, TOPIC))
t.is_(committed(obs, GROUP, TOPIC), {0: END, 1: END}, "reset to 'latest' sets the end offset")
admin.execute("SELECT stream.reset_offsets(%s, %s, %s::timestamptz)", (GROUP, TOPIC, ts))
t.is_(committed(obs, GROUP, TOPIC), at_ts, "reset to a timestamp sets the first offset at or after it")
t.is_(offsets(poll(m, GROUP, TOPIC)), [(p, o) for p in range(2) for o in range(3, END)],
      "the member, back, reads from the reset offsets (3-5 of each partition)")

# an idle partition's committed offset can also be moved by seek from a non-member
t.is_(leave(m, GROUP, TOPIC), True, "the member leaves again")
seek(admin, GROUP, TOPIC, 1, 1)
t.is_(committed(obs, GROUP, TOPIC), {0: 3, 1: 1}, "seek of an idle partition by a non-member sets its "
      "committed offset")

# --- refused while another live member owns a partition ------------------------------
a, b = connect(), connect()
for s in (a, b, a, b):
    poll(s, GROUP, TOPIC, max_messages=1)
check_exclusive(t, obs, GROUP, TOPIC, "a and b settled")
t.is_(owned_by(obs, GROUP, TOPIC, pid(a)), {0}, "A owns partition 0")
t.is_(owned_by(obs, GROUP, TOPIC, pid(b)), {1}, "B owns partition 1")
t.is_(leave(a, GROUP, TOPIC), True, "A leaves: partition 0 is idle, B still owns partition 1")
before = committed(obs, GROUP, TOPIC)
for to in ("'earliest'", "'latest'", "%s::timestamptz"):
    state = sqlstate(lambda: admin.execute(
        "SELECT stream.reset_offsets(%%s, %%s, %s)" % to,
        (GROUP, TOPIC, ts) if "%s" in to else (GROUP, TOPIC)))
    t.is_(state, "55006", "reset to %s refused while B owns partition 1 (55006)" % to)
    t.is_(committed(obs, GROUP, TOPIC), before, "and no offset changed (also not idle partition 0's)")
t.is_(sqlstate(lambda: seek(admin, GROUP, TOPIC, 1, 0)), "55006",
      "seek by a non-owner of an owned partition refused (55006)")
t.is_(committed(obs, GROUP, TOPIC), before, "and no offset changed")
t.is_(sqlstate(lambda: a.execute("SELECT stream.reset_offsets(%s, %s, 'earliest')", (GROUP, TOPIC))),
      "55006", "a former member's reset is refused too (55006)")
t.is_(committed(obs, GROUP, TOPIC), before, "and no offset changed")

# --- seek and commit by the owner ---------------------------------------------------------
# (B's set-up poll read offset 1 of partition 1)
t.is_(offsets(poll(b, GROUP, TOPIC)),
      [(0, o) for o in range(before[0], END)] + [(1, o) for o in range(before[1] + 1, END)],
      "B's next poll takes idle partition 0 too and reads it from its committed offset")
t.is_(owned_by(obs, GROUP, TOPIC, pid(b)), {0, 1}, "B owns both partitions")
seek(b, GROUP, TOPIC, 1, 2)
b.execute("BEGIN")
t.is_(offsets(poll(b, GROUP, TOPIC, max_messages=2)), [(1, 2), (1, 3)],
      "after the owner's seek to 2 its next poll starts at offset 2")
b.execute("ROLLBACK")
seek(b, GROUP, TOPIC, 1, 4)
t.is_(committed(obs, GROUP, TOPIC)[1], before[1], "seek alone does not commit")
t.is_(commit_all(b, GROUP, TOPIC), 2, "commit stores B's two positions")
t.is_(committed(obs, GROUP, TOPIC), {0: END, 1: 4}, "the committed offsets are B's positions, "
      "for partition 1 the sought position 4")
t.is_(offsets(poll(b, GROUP, TOPIC)), [(1, 4), (1, 5)], "and polling continues from 4")
commit_one(b, GROUP, TOPIC, 1, END)
t.is_(committed(obs, GROUP, TOPIC)[1], END, "commit of one offset up to the end offset works")
t.is_(sqlstate(lambda: seek(b, GROUP, TOPIC, 1, END + 1)), "22023", "seek beyond the end offset: 22023")

# --- errors ------------------------------------------------------------------------------------
x = connect()
t.is_(poll(x, GROUP, TOPIC), [], "X joins the group; B still owns both partitions")
t.is_(owned_by(obs, GROUP, TOPIC, pid(x)), set(), "X owns none")
before = committed(obs, GROUP, TOPIC)
t.is_(sqlstate(lambda: seek(admin, "cg_no_such_group", TOPIC, 0, 0)), "42704",
      "seek of an unknown group: 42704")
t.is_(sqlstate(lambda: admin.execute("SELECT stream.reset_offsets('cg_no_such_group', %s, 'earliest')",
                                     (TOPIC,))), "42704", "reset_offsets of an unknown group: 42704")
t.is_(sqlstate(lambda: commit_one(x, GROUP, TOPIC, 1, 1)), "55000",
      "commit by a member of a partition it does not own: 55000")
t.is_(sqlstate(lambda: commit_one(admin, GROUP, TOPIC, 1, 1)), "55000",
      "commit by a session that is not a member: 55000")
t.is_(sqlstate(lambda: commit_all(admin, GROUP, TOPIC)), "55000",
      "commit(group, topic) by a session that is not a member: 55000")
t.is_(sqlstate(lambda: commit_one(b, GROUP, TOPIC, 1, END + 1)), "22023",
      "commit beyond the end offset: 22023")
t.is_(sqlstate(lambda: commit_one(b, GROUP, TOPIC, 1, -1)), "22023", "commit of a negative offset: 22023")
t.is_(sqlstate(lambda: poll(x, GROUP, TOPIC, max_messages=0)), "22023", "poll of 0 messages: 22023")
t.is_(sqlstate(lambda: poll(x, GROUP, TOPIC, max_messages=-1)), "22023", "poll of -1 messages: 22023")
t.is_(sqlstate(lambda: poll(x, GROUP, TOPIC, wait="-1 s")), "22023", "poll with a negative wait: 22023")
t.is_(sqlstate(lambda: poll(x, None, TOPIC)), "22004", "poll with a NULL group: 22004")
t.is_(sqlstate(lambda: poll(x, GROUP, TOPIC, wait=None)), "22004", "poll with a NULL wait: 22004")
t.is_(sqlstate(lambda: commit_one(b, GROUP, TOPIC, 1, None)), "22004", "commit of a NULL offset: 22004")
t.is_(sqlstate(lambda: seek(b, None, TOPIC, 1, 0)), "22004", "seek of a NULL group: 22004")
t.is_(sqlstate(lambda: poll(x, "cg bad name", TOPIC)), "22023", "poll with an invalid group name: 22023")
t.is_(sqlstate(lambda: poll(x, GROUP, "cg_no_such_topic")), "42704", "poll of an unknown topic: 42704")
t.is_(committed(obs, GROUP, TOPIC), before, "none of them changed an offset")

# a session that lost its ownership locks (DISCARD ALL, as connection poolers run,
# drops advisory locks) must not store offsets of partitions another member took
G2 = "cg_reset_lost"
a2, b2 = connect(), connect()
t.is_(len(poll(a2, G2, TOPIC)), 2 * END, "%s: A2 alone owns and reads both partitions" % G2)
commit_all(a2, G2, TOPIC)
t.is_(poll(b2, G2, TOPIC), [], "%s: B2 joins, owning nothing yet" % G2)
a2.execute("DISCARD ALL")
poll(b2, G2, TOPIC)
t.is_(owned_by(obs, G2, TOPIC, pid(b2)), {1}, "%s: after A2's DISCARD ALL, B2 takes partition 1" % G2)
check_exclusive(t, obs, G2, TOPIC, "%s: after B2 took partition 1" % G2)
seek(b2, G2, TOPIC, 1, 2)
commit_all(b2, G2, TOPIC)
t.is_(committed(obs, G2, TOPIC), {0: END, 1: 2}, "%s: B2 committed offset 2 in partition 1" % G2)
t.is_(sqlstate(lambda: commit_one(a2, G2, TOPIC, 1, 3)), "55000",
      "%s: A2's commit of partition 1, now B2's, is refused (55000)" % G2)
sqlstate(lambda: commit_all(a2, G2, TOPIC))
t.is_(committed(obs, G2, TOPIC), {0: END, 1: 2},
      "%s: A2's commit(group, topic) does not overwrite B2's offset of partition 1" % G2)
t.is_(sqlstate(lambda: seek(a2, G2, TOPIC, 1, 0)), "55006",
      "%s: A2's seek of partition 1, now B2's, is refused (55006)" % G2)
t.is_(committed(obs, G2, TOPIC), {0: END, 1: 2}, "%s: B2's offset is unchanged" % G2)
a2.close()
b2.close()

# leave in a transaction that moved a position
publish(admin, TOPIC, {"p": 0, "i": END}, partition=0)
publish(admin, TOPIC, {"p": 1, "i": END}, partition=1)
END += 1
b.execute("BEGIN")
t.ok(len(poll(b, GROUP, TOPIC)) > 0, "B polls a message in a transaction")
t.is_(sqlstate(lambda: leave(b, GROUP, TOPIC)), "25001", "leave in a transaction that polled: 25001")
b.execute("ROLLBACK")
b.execute("BEGIN")
own_b = owned_by(obs, GROUP, TOPIC, pid(b))
commit_one(b, GROUP, TOPIC, min(own_b), 3)
t.is_(sqlstate(lambda: leave(b, GROUP, TOPIC)), "25001", "leave in a transaction that committed: 25001")
b.execute("ROLLBACK")
t.is_(owned_by(obs, GROUP, TOPIC, pid(b)), own_b, "B still owns its partitions after the refused leaves")
t.is_(committed(obs, GROUP, TOPIC), before, "and the offsets are unchanged")
t.is_(leave(b, GROUP, TOPIC), True, "leave after the transaction: true")
t.is_(owned_by(obs, GROUP, TOPIC, pid(b)), set(), "B owns nothing any more")
t.is_(leave(x, GROUP, TOPIC), True, "X leaves too")

# --- reset works again once idle; a member may reset the partitions it owns -------------------
admin.execute("SELECT stream.reset_offsets(%s, %s, 'earliest')", (GROUP, TOPIC))
t.is_(committed(obs, GROUP, TOPIC), {0: 0, 1: 0}, "with no live owner left, reset works again")
c = connect()
poll(c, GROUP, TOPIC, max_messages=1)
t.is_(owned_by(obs, GROUP, TOPIC, pid(c)), {0, 1}, "a single member C owns both partitions")
c.execute("SELECT stream.reset_offsets(%s, %s, 'latest')", (GROUP, TOPIC))
t.is_(committed(obs, GROUP, TOPIC), {0: END, 1: END}, "the owner itself may reset its partitions")
t.is_(poll(c, GROUP, TOPIC), [], "and its positions moved with it (nothing left to read)")

for s in (m, a, b, c, x):
    s.close()
drop_topic(admin, TOPIC)
t.exit()

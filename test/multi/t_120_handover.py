"""Consumer groups: hand-over of partitions when a member goes away.

Members A and B of a group share a 4-partition topic (2 each).  A reads all of
its partitions, commits offset 2 in each (so messages 2.. are not yet
committed) and then goes away in one of three ways: stream.leave, closing its
connection, or pg_terminate_backend.  B then polls (a bounded loop of polls) until
it owns all 4 partitions; from A's partitions it must get exactly the messages
from the committed offset on (2 and 3 again, never 0 and 1), and from its own
partitions nothing (it had read them and its positions stay).

Then the long-poll variant: B sleeps in poll(wait => '10 s') on its own (empty)
partitions; when A leaves (or is terminated), B must take A's partitions and
return their messages well before its wait ends.
"""
import time

from lib import TAP, connect, wait_until
from cg_util import (ExclusiveWatch, background_poll, check_exclusive, commit_all, commit_one,
                     drop_topic, fresh_topic, leave, members, owned_by, pid, poll, publish,
                     wait_gone, wait_long_polling)

t = TAP()
admin = connect()
obs = connect()
TOPIC = "cg_handover"
fresh_topic(admin, TOPIC, 4)
for p in range(4):
    for i in range(4):
        publish(admin, TOPIC, {"p": p, "i": i}, partition=p)


def setup(group):
    """A and B members of group, 2 partitions each, each having read its partitions."""
    a, b = connect(), connect()
    for s in (a, b, a, b):
        poll(s, group, TOPIC)
        check_exclusive(t, obs, group, TOPIC, "%s: set-up poll by %d" % (group, pid(s)))
    own_a = owned_by(obs, group, TOPIC, pid(a))
    own_b = owned_by(obs, group, TOPIC, pid(b))
    t.ok(len(own_a) == 2 and len(own_b) == 2, "%s: A and B own 2 partitions each" % group)
    # both have read everything in their partitions (B's first poll after A let go)
    t.is_(poll(a, group, TOPIC), [], "%s: A has nothing more to read" % group)
    t.is_(poll(b, group, TOPIC), [], "%s: B has nothing more to read" % group)
    for p in own_a:
        commit_one(a, group, TOPIC, p, 2)
    return a, b, own_a, own_b


def take_over(b, group, what):
    """Poll with B until it owns all 4 partitions and has drained them; return rows."""
    got = []
    watch = ExclusiveWatch(obs, group, TOPIC)

    def step():
        rows = poll(b, group, TOPIC)
        got.extend(rows)
        watch.check()
        return not rows and owned_by(obs, group, TOPIC, pid(b)) == {0, 1, 2, 3}
    wait_until(step, timeout=20, what="B to own all partitions")
    watch.report(t, "%s: B's polls after A %s" % (group, what))
    return got


def expected_from(parts, start=2):
    return sorted((p, o) for p in parts for o in range(start, 4))


for how in ("leave", "close", "terminate"):
    group = "cg_hand_" + how
    a, b, own_a, own_b = setup(group)
    a_pid = pid(a)
    if how == "leave":
        t.is_(leave(a, group, TOPIC), True, "%s: stream.leave returns true for a member" % group)
        t.is_(owned_by(obs, group, TOPIC, a_pid), set(), "%s: A owns nothing after leave" % group)
        t.is_(members(obs, group, TOPIC), {pid(b)}, "%s: A is no longer a member" % group)
    elif how == "close":
        a.close()
    else:
        t.ok(obs.execute("SELECT pg_terminate_backend(%s)", (a_pid,)).fetchone()[0],
             "%s: A terminated" % group)
    if how != "leave":
        # a closed or terminated backend exits in the background; the observer's checks
        # read pg_locks, consumer_lag and the members in separate queries, so start
        # once it is gone
        wait_until(lambda: obs.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)",
                                       (a_pid,)).fetchone()[0], what="A's backend to exit")
    rows = take_over(b, group, how)
    t.is_(sorted((p, o) for p, o, _ in rows), expected_from(own_a),
          "%s: B takes A's partitions and resumes from the committed offset 2 (messages 2, 3 "
          "come again, 0 and 1 do not; nothing again from its own partitions)" % group)
    t.ok(all(v == {"p": p, "i": o} for p, o, v in rows), "%s: with their values" % group)
    t.is_(members(obs, group, TOPIC), {pid(b)}, "%s: B is the only member left" % group)
    if how == "leave":
        a.close()
    b.close()

# --- a partition touched by an open transaction is not handed over before it ends -------
for finish in ("COMMIT", "ROLLBACK"):
    group = "cg_hand_txn_" + finish.lower()
    a, b = connect(), connect()
    a.execute("BEGIN")
    t.is_(len(poll(a, group, TOPIC)), 16, "%s: A, alone, polls all 16 messages in a transaction" % group)
    t.is_(poll(b, group, TOPIC), [], "%s: B joins" % group)
    t.is_(poll(a, group, TOPIC), [], "%s: A polls again in its transaction" % group)
    t.is_(owned_by(obs, group, TOPIC, pid(a)), {0, 1, 2, 3},
          "%s: A keeps the partitions its open transaction polled" % group)
    t.is_(poll(b, group, TOPIC), [], "%s: B polls: nothing" % group)
    t.is_(owned_by(obs, group, TOPIC, pid(b)), set(), "%s: B owns nothing yet" % group)
    check_exclusive(t, obs, group, TOPIC, "%s: during A's transaction" % group)
    t.is_(commit_all(a, group, TOPIC), 4, "%s: A commits its 4 positions" % group)
    a.execute(finish)
    poll(a, group, TOPIC)
    t.is_(owned_by(obs, group, TOPIC, pid(a)), {0, 2}, "%s: after %s, A's next poll gives up 1 and 3"
          % (group, finish))
    rows = poll(b, group, TOPIC)
    t.is_(owned_by(obs, group, TOPIC, pid(b)), {1, 3}, "%s: B takes them" % group)
    t.is_(sorted((p, o) for p, o, _ in rows),
          [] if finish == "COMMIT" else expected_from({1, 3}, start=0),
          "%s: and reads them from A's committed offsets (%s)" % (
              group, "A's committed messages never again" if finish == "COMMIT"
              else "A's rolled-back transaction's messages again"))
    check_exclusive(t, obs, group, TOPIC, "%s: after the hand-over" % group)
    a.close()
    b.close()

# --- a member sleeping in a long poll takes over promptly ---------------------
for how in ("leave", "terminate"):
    group = "cg_hand_lp_" + how
    a, b, own_a, own_b = setup(group)
    bg = background_poll(b, group, TOPIC, "10 s")
    wait_long_polling(obs, pid(b))
    t.is_(bg.rows, None, "%s: B sleeps in its long poll (nothing in its partitions)" % group)
    t0 = time.monotonic()
    if how == "leave":
        t.is_(leave(a, group, TOPIC), True, "%s: A leaves" % group)
    else:
        obs.execute("SELECT pg_terminate_backend(%s)", (pid(a),))
    rows = bg.result(timeout=30)
    took = time.monotonic() - t0
    t.is_(bg.error, None, "%s: B's long poll ends without error" % group)
    t.ok(took < 8, "%s: B's 10 s long poll returned before 8 s (took %.2f s)" % (group, took))
    t.is_(sorted((p, o) for p, o, _ in rows or []), expected_from(own_a),
          "%s: and returned A's partitions from the committed offset" % group)
    t.is_(owned_by(obs, group, TOPIC, pid(b)), {0, 1, 2, 3}, "%s: B owns all 4 partitions" % group)
    check_exclusive(t, obs, group, TOPIC, "%s: after the hand-over" % group)
    if how == "terminate":
        wait_gone(obs, pid(a))
    a.close()
    b.close()

drop_topic(admin, TOPIC)
t.exit()

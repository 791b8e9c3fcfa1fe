"""Consumer groups: long poll.

A poll with wait sleeps (wait_event_type Extension) until a publish to one of its
partitions COMMITS: an open publishing transaction does not end it, its commit
does.  With nothing published it returns empty after the wait.  statement_timeout
and pg_cancel_backend interrupt it (57014) and the session keeps working: a later
long poll sleeps and is woken by a commit again.  A commit to a partition another
member owns does not make it return that partition's data.  A long poll in a
REPEATABLE READ transaction sees commits made after its snapshot.  A member sleeping
in a long poll takes, promptly, the partitions another member's poll gives up to it.
Last, a rolled-back publish at the poller's position (a gap in the offsets) must
neither return rows nor keep the long poll from sleeping.

Promptness is checked loosely: the long polls wait 20 s and must return with the
message before 8 s (without a wakeup, they would return only after 20 s).
"""
import time

from lib import TAP, connect, wait_until
from cg_util import (background_poll, check_exclusive, drop_topic, fresh_topic, is_long_polling,
                     owned_by, pid, poll, publish, sqlstate, wait_long_polling, wait_state)

t = TAP()
admin = connect()
obs = connect()
pub = connect()
TOPIC, GROUP = "cg_longpoll", "cg_lp_g"
fresh_topic(admin, TOPIC, 2)
w, v = connect(), connect()
for s in (w, v, w, v):
    poll(s, GROUP, TOPIC)
check_exclusive(t, obs, GROUP, TOPIC, "members settled")
t.is_(owned_by(obs, GROUP, TOPIC, pid(w)), {0}, "W owns partition 0")
t.is_(owned_by(obs, GROUP, TOPIC, pid(v)), {1}, "V owns partition 1")
LONG = "20 s"
seq = [0]


def sleeps_again(bg, timeout=5):
    """True once W is seen asleep in the long poll bg runs, False if it ended or timed out."""
    try:
        return wait_until(lambda: bg.is_alive() and is_long_polling(obs, pid(w)), timeout=timeout)
    except TimeoutError:
        return False


def woken_by_commit(label):
    """W long-polls; an open publish to partition 0 must not end it, its commit must."""
    bg = background_poll(w, GROUP, TOPIC, LONG)
    wait_long_polling(obs, pid(w))
    seq[0] += 1
    pub.execute("BEGIN")
    p, off = publish(pub, TOPIC, {"n": seq[0]}, partition=0)
    # the publish is done but not committed: W must still be asleep in its poll (a
    # bounded wait, as a stray latch wakeup, e.g. a sinval catch-up signal, may find it
    # between two sleeps)
    t.ok(sleeps_again(bg) and bg.rows is None,
         "%s: W still sleeps in its long poll while the publish is uncommitted" % label)
    t0 = time.monotonic()
    pub.execute("COMMIT")
    rows = bg.result(timeout=40)
    took = time.monotonic() - t0
    t.is_(bg.error, None, "%s: the long poll ends without error" % label)
    t.is_([(pp, o, val) for pp, o, val in rows or []], [(0, off, {"n": seq[0]})],
          "%s: it returns the committed message" % label)
    t.ok(took < 8, "%s: promptly after the commit (%.3f s, wait was %s)" % (label, took, LONG))


woken_by_commit("first long poll")

# --- nothing comes: empty after the wait -------------------------------------------
t0 = time.monotonic()
rows = poll(w, GROUP, TOPIC, wait="300 ms")
took = time.monotonic() - t0
t.is_(rows, [], "with nothing published, the long poll returns no rows")
t.ok(took >= 0.29, "after its wait (%.3f s of 300 ms)" % took)

# --- statement_timeout -----------------------------------------------------------------
w.execute("SET statement_timeout = '300ms'")
t.is_(sqlstate(lambda: poll(w, GROUP, TOPIC, wait="30 s")), "57014",
      "statement_timeout interrupts a long poll (57014)")
w.execute("RESET statement_timeout")
t.is_(poll(w, GROUP, TOPIC), [], "the session works after the timeout")
woken_by_commit("after statement_timeout")

# statement_timeout inside a transaction, then ROLLBACK
w.execute("BEGIN")
w.execute("SET LOCAL statement_timeout = '300ms'")
t.is_(sqlstate(lambda: poll(w, GROUP, TOPIC, wait="30 s")), "57014",
      "statement_timeout interrupts a long poll inside a transaction (57014)")
w.execute("ROLLBACK")
woken_by_commit("after statement_timeout in a transaction")

# --- pg_cancel_backend ----------------------------------------------------------------
bg = background_poll(w, GROUP, TOPIC, "30 s")
wait_long_polling(obs, pid(w))
t.ok(obs.execute("SELECT pg_cancel_backend(%s)", (pid(w),)).fetchone()[0], "pg_cancel_backend sent")
bg.result(timeout=20)
t.is_(bg.sqlstate, "57014", "pg_cancel_backend interrupts a long poll (57014)")
t.is_(poll(w, GROUP, TOPIC), [], "the session works after the cancel")
woken_by_commit("after pg_cancel_backend")

# repeated interruptions: each cancelled, and the session still sleeps and wakes after them
for i in range(40):
    bg = background_poll(w, GROUP, TOPIC, "30 s")
    wait_long_polling(obs, pid(w))
    obs.execute("SELECT pg_cancel_backend(%s)", (pid(w),))
    bg.result(timeout=20)
    if bg.sqlstate != "57014":
        break
t.is_(bg.sqlstate, "57014", "40 long polls in a row are each cancelled with 57014")
woken_by_commit("after 40 cancels")

# --- a commit to a partition W does not own ----------------------------------------------
bg = background_poll(w, GROUP, TOPIC, LONG)
wait_long_polling(obs, pid(w))
p1, off1 = publish(pub, TOPIC, {"for": "v"}, partition=1)
t.ok(bg.rows is None, "a commit to partition 1 (V's) does not end W's long poll with data")
p0, off0 = publish(pub, TOPIC, {"for": "w"}, partition=0)
rows = bg.result(timeout=40)
t.is_(rows, [(0, off0, {"for": "w"})], "W's long poll returns only partition 0's message")
t.is_(poll(v, GROUP, TOPIC), [(1, off1, {"for": "v"})], "V gets partition 1's message")
# --- a long poll in a REPEATABLE READ transaction sees commits after its snapshot ----------
w.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
w.execute("SELECT 1")  # the transaction snapshot predates the publish below
woken_by_commit("in a REPEATABLE READ transaction")
w.execute("COMMIT")

# --- a member in a long poll gets partitions another member's poll gives up -----------------
# A owns all 4 partitions; B joins (owning none: A holds them) and sleeps in a long poll;
# A's next (plain) poll gives up partitions 1 and 3, which B wants.  B must take them and
# return a message published to partition 1 promptly, not when its wait ends.
TOPIC2, GROUP2 = "cg_longpoll_join", "cg_lp_join_g"
fresh_topic(admin, TOPIC2, 4)
a, b = connect(), connect()
poll(a, GROUP2, TOPIC2)
poll(b, GROUP2, TOPIC2)
t.is_(owned_by(obs, GROUP2, TOPIC2, pid(b)), set(), "B joined while A owns all 4 partitions")
bg = background_poll(b, GROUP2, TOPIC2, "10 s")
wait_long_polling(obs, pid(b))
poll(a, GROUP2, TOPIC2)
t.is_(owned_by(obs, GROUP2, TOPIC2, pid(a)), {0, 2}, "A's next poll gives up partitions 1 and 3")
t0 = time.monotonic()
p1, off1 = publish(pub, TOPIC2, {"to": "b"}, partition=1)
rows = bg.result(timeout=40)
took = time.monotonic() - t0
t.is_(rows, [(1, off1, {"to": "b"})], "B's long poll returns the message published to partition 1")
t.ok(took < 8, "B took partition 1 and returned before 8 s of its 10 s wait (%.3f s)" % took)
check_exclusive(t, obs, GROUP2, TOPIC2, "after B's long poll")
a.close()
b.close()
drop_topic(admin, TOPIC2)

# --- a rolled-back publish: no rows, and the long poll keeps sleeping -------------------
# (last: the rolled-back offset leaves a gap at W's position in partition 0)
bg = background_poll(w, GROUP, TOPIC, "1 s")
wait_long_polling(obs, pid(w))
pub.execute("BEGIN")
publish(pub, TOPIC, {"rolled": "back"}, partition=0)
pub.execute("ROLLBACK")
t.is_(bg.result(timeout=30), [], "a rolled-back publish gives the long poll no rows")
bg = background_poll(w, GROUP, TOPIC, LONG)
try:
    wait_long_polling(obs, pid(w), timeout=5)
    sleeping = True
except TimeoutError:
    sleeping = False
t.ok(sleeping, "a long poll whose position is at a rolled-back offset sleeps (does not spin)")
if not sleeping:
    t.diag("W's state: %r" % (wait_state(obs, pid(w)),))
t0 = time.monotonic()
p0, off0 = publish(pub, TOPIC, {"after": "gap"}, partition=0)
rows = bg.result(timeout=40)
t.is_(rows, [(0, off0, {"after": "gap"})], "a commit after the gap wakes it with the new message")
t.ok(time.monotonic() - t0 < 8, "promptly")

check_exclusive(t, obs, GROUP, TOPIC, "end")

for s in (w, v, pub):
    s.close()
drop_topic(admin, TOPIC)
t.exit()

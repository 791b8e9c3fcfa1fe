"""Retention never drops what an open transaction writes, and never waits for a reader.

Open publisher: on a topic with retention '1 s', session W publishes offset 10 in
an open transaction, into segment 2; other sessions fill and roll segments 2 and 3.
Once every closed segment is due and a whole worker cycle has started after that
(Witness.cycle_mark), segment 1 (offsets 0-9) is gone but segment 2 (which holds
W's offset) and everything after it survive: the last stable offset is 10 and a
read from 0 returns nothing.  When W commits, a later cycle drops them.

Reader: session R holds segment 1 of another topic (LOCK TABLE ... IN ACCESS SHARE
MODE in an open transaction, as a reader's scan would).  Once segments 1 and 2 are
due and a whole cycle has started after that, segment 1 is still there (the worker,
going oldest first, drops nothing behind it), the cycle's stream.retention_runs row
counts the skip, and the worker finished that cycle while R kept its lock: it did
not wait.  Publishers do not wait either: a publish and a segment roll complete
while R holds the lock.  When R commits, a later cycle drops both segments.
"""
from lib import TAP
from ret_util import (Witness, create_topic, due, eventually, fill_segments, finish, lock_segment,
                      log_start, merge_segments, partition, publish_one, read_offsets, segments, session, start)

A, B, W_TOPIC = "ret_open_xact", "ret_reader", "ret_open_w"

t = TAP()
admin = start()
w_sess, pub, reader = session(), session(), session()
witness = Witness(admin, W_TOPIC)
try:
    # --- an open publishing transaction ---------------------------------------------
    create_topic(admin, A, retention="1 s")
    segs = segments(admin, A)
    nxt, _ = fill_segments(admin, A, 1)                        # segment 1: offsets 0-9
    w_sess.execute("BEGIN")
    k = publish_one(w_sess, A, nxt)
    t.is_(k, 10, "W publishes offset 10 in an open transaction")
    segs = merge_segments(segs, admin, A)
    nxt, offs = fill_segments(pub, A, 2, first=nxt + 1)        # 11-20 join segment 2, 21-30 make segment 3
    t.is_(offs, list(range(11, 31)), "another session publishes 11-30 meanwhile, without waiting")
    segs = merge_segments(segs, admin, A)
    t.is_([s[1] for s in segs], [0, 10, 21, 31], "four segments: bases 0, 10, 21 and 31 (the active one)")
    t.ok(eventually(lambda: log_start(admin, A) == 10, 30),
         "segment 1, entirely below W's offset, expires: log start 10")
    t.ok(eventually(lambda: due(admin, A, segs[2][0], "1 s"), 30), "segments 2 and 3 are due too")
    ts, run = witness.cycle_mark()
    p = partition(admin, A)
    t.is_([s[0] for s in segments(admin, A)], [s[0] for s in segs[1:]],
          "after a whole cycle that started later, segment 2 (holding W's offset) and 3 are still there")
    t.is_((p["log_start_offset"], p["last_stable_offset"], p["end_offset"]), (10, 10, 31),
          "log start 10, last stable offset 10 (W's), end offset 31")
    t.is_(read_offsets(admin, A), [], "a read from 0 returns nothing: offsets from 10 on are not stable")
    w_sess.execute("COMMIT")
    t.ok(eventually(lambda: log_start(admin, A) == 31, 30),
         "once W commits, a later cycle drops segments 2 and 3: log start 31")

    # --- a reader holding the oldest segment -----------------------------------------
    create_topic(admin, B, retention="1 s")
    lock_segment(reader, segments(admin, B)[0][0])             # from its creation
    nxt, _ = fill_segments(admin, B, 2)                        # segments 1 (0-9) and 2 (10-19)
    segs = segments(admin, B)
    t.ok(eventually(lambda: due(admin, B, segs[1][0], "1 s"), 30), "segments 1 and 2 of the second topic are due")
    ts, run = witness.cycle_mark()
    t.ok(True, "a whole worker cycle ran while the reader kept its lock: the worker did not wait")
    t.is_([s[0] for s in segments(admin, B)], [s[0] for s in segs],
          "segment 1, held by the reader, survives, and so does segment 2 behind it")
    t.is_(log_start(admin, B), 0, "log start still 0")
    t.ok(run["skipped"] >= 1, "the cycle's stream.retention_runs row counts the skip (skipped = %d)" % run["skipped"])
    pub.execute("SET statement_timeout = '30s'")
    t.is_(publish_one(pub, B, nxt), 20, "a publish to the topic completes while the reader holds its lock")
    nxt, offs = fill_segments(pub, B, 1, first=nxt + 1)
    t.is_(len(segments(admin, B)), 4, "and so does a segment roll")
    t.is_([o for o, _ in read_offsets(admin, B)], list(range(0, nxt)), "all %d messages are readable" % nxt)
    reader.execute("COMMIT")
    t.ok(eventually(lambda: log_start(admin, B) >= 20, 30),
         "once the reader commits, a later cycle drops segments 1 and 2")
finally:
    for s in (w_sess, reader):
        s.execute("ROLLBACK")
    witness.drop()
    finish(admin, [A, B])
t.exit()

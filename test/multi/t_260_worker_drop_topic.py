"""The retention worker survives drop_topic of a topic it is working on.

The worker shows in pg_stat_activity as backend_type 'stream retention worker',
connected to `postgres`.  A topic with 50 partitions and retention '1 h' gets one
message per partition (nothing is due, but the worker examines every partition).  To catch the worker in the middle of its cycle over that
topic for sure, a session takes ACCESS EXCLUSIVE on partition 25's segment: the
worker, which has already locked partition 25's catalog row, waits for it in
pg_locks.  drop_topic then starts and waits (for that row lock); the session lets
go, and the worker finds the rest of the topic's partitions dropped under it.
Then four more times, unforced: create a 50-partition topic with retention '1 s',
publish to all of it,
and drop it as soon as the worker has started rolling its partitions.

Afterwards the worker is the same process (same pid, no worker exit in the server
log), no segment table was left without its catalog row or the reverse, and it
keeps working: witness cycles complete and another topic's segments expire.
"""
import re
import threading

from lib import TAP, pg_log_since
from ret_util import (WORKER, Witness, create_topic, drop_topic, eventually, fill_segments, finish,
                      lock_segment, log_offset, log_start, orphans, segments, session, start, worker_pid)

MANY, OTHER, W_TOPIC = "ret_many", "ret_after_drop", "ret_drop_w"
N = 50

t = TAP()
admin = start()
log0 = log_offset()
witness = Witness(admin, W_TOPIC)
locker, dropper = session(), session()
try:
    row = admin.execute("SELECT pid, datname, application_name FROM pg_stat_activity WHERE backend_type = %s",
                        (WORKER,)).fetchall()
    t.is_(len(row), 1, "one process with backend_type '%s' in pg_stat_activity" % WORKER)
    pid0 = row[0][0]
    t.is_(tuple(row[0][1:]), ("postgres", WORKER), "connected to postgres, application_name '%s'" % WORKER)

    def fill_many(topic, retention):
        create_topic(admin, topic, partitions=N, retention=retention)
        admin.execute("SELECT count(*) FROM generate_series(0, %s) p, "
                      "LATERAL stream.publish(%s, jsonb_build_object('p', p), partition => p)", (N - 1, topic))

    # --- forced: drop_topic while the worker is inside its cycle over the topic -------
    fill_many(MANY, "1 h")          # nothing due: the worker still looks at every partition
    seg25 = segments(admin, MANY, 25)[0]
    lock_segment(locker, seg25[0], "ACCESS EXCLUSIVE")
    waiting = eventually(lambda: admin.execute(
        "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted AND relation = %s",
        (pid0, seg25[2])).fetchone(), 30)
    t.ok(waiting, "the worker, in its cycle, waits for partition 25's segment")
    result = {}

    def drop():
        try:
            dropper.execute("SELECT stream.drop_topic(%s)", (MANY,))
            result["ok"] = True
        except Exception as e:      # noqa: BLE001 - reported below
            result["error"] = e
    th = threading.Thread(target=drop)
    th.start()
    t.ok(eventually(lambda: admin.execute(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
        (dropper.info.backend_pid,)).fetchone()[0], 30), "drop_topic starts and waits for the worker's partition")
    locker.execute("COMMIT")
    th.join(60)
    t.ok(not th.is_alive() and result.get("ok"), "drop_topic completes once the worker moves on (%s)"
         % result.get("error", "no error"))
    t.is_(admin.execute("SELECT count(*) FROM stream.topics WHERE topic = %s", (MANY,)).fetchone()[0], 0,
          "the topic is gone")

    # --- unforced, a few more times ----------------------------------------------------
    rolled_mid = 0
    for i in range(4):
        topic = "%s_%d" % (MANY, i)
        fill_many(topic, "1 s")
        if eventually(lambda: admin.execute(
                "SELECT count(*) FROM stream._segments g JOIN stream._topics t USING (topic_id) "
                "WHERE t.topic = %s", (topic,)).fetchone()[0] > N, 30):
            rolled_mid += 1
        drop_topic(admin, topic)
    t.is_(rolled_mid, 4, "four more 50-partition topics dropped as soon as the worker began rolling them")

    t.is_(worker_pid(admin), pid0, "the worker is still the same process")
    log = pg_log_since(log0)
    t.ok(not re.search(r'"%s" \(PID \d+\) (exited|was terminated)' % WORKER, log),
         "the server log shows no exit of the worker")
    skipped = re.findall(r'stream retention worker: partition \d+ of topic "%s[^"]*" skipped: (.*)' % MANY, log)
    t.diag("partitions the worker skipped with an error: %d %s" % (len(skipped), sorted(set(skipped))[:3]))
    t.is_(orphans(admin), ([], []), "no segment table without its catalog row, no row without its table")

    witness.cycle_mark()
    witness.cycle_mark()
    t.ok(True, "the worker keeps cycling: two witness cycles completed")
    create_topic(admin, OTHER, retention="1 s")
    fill_segments(admin, OTHER, 1)
    t.ok(eventually(lambda: log_start(admin, OTHER) > 0, 30), "and drops the expired segment of another topic")
    t.is_(worker_pid(admin), pid0, "still the same worker")
finally:
    locker.execute("ROLLBACK")
    witness.drop()
    finish(admin, [MANY, OTHER] + ["%s_%d" % (MANY, i) for i in range(4)])
t.exit()

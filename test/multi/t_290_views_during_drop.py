"""Readers that meet a segment the worker is dropping at that very moment.

The worker drops a segment in one transaction: ACCESS EXCLUSIVE on the table, the
catalog row deleted, the table dropped, commit.  To hold it inside that transaction
a session keeps a FOR KEY SHARE lock on the segment's stream._segments row, so the
worker, having locked the table, waits to delete the row (a test instrument: no
user takes such locks); another session holds the next segment (ACCESS SHARE), so
that the worker stops after segment 1.  Meanwhile three readers start, each of
which reaches segment 1 and waits for the worker's lock:
  - stream.read from 0 (the C read path, which opens segments with try_table_open),
  - SELECT FROM stream.partitions (plpgsql, _partition_storage),
  - stream.reset_offsets(group, topic, timestamptz) (plpgsql, _offset_for_time).
When the row lock goes, the worker finishes the drop and each reader must carry on
without the segment: the read returns the later messages, the view its row with
the new log start, reset_offsets the first offset at or after the time.

(The same race happens without any instrument under steady ingest with a short
retention: a few stream.partitions queries in a thousand fail with 42601.)
"""
import threading

from lib import TAP
from ret_util import (create_topic, eventually, fill_segments, finish, lock_segment, log_start, now,
                      publish_one, segments, session, start, worker_pid)

TOPIC, GROUP = "ret_race", "ret_race_g"

t = TAP()
admin = start()
locker, holder = session(), session()
try:
    create_topic(admin, TOPIC, retention="1 s")
    s = session()
    s.execute("SELECT count(*) FROM stream.poll(%s, %s)", (GROUP, TOPIC))
    s.execute("SELECT stream.commit(%s, %s)", (GROUP, TOPIC))
    s.execute("SELECT stream.leave(%s, %s)", (GROUP, TOPIC))
    s.close()
    ts = now(admin)
    s1 = segments(admin, TOPIC)[0]
    # hold the worker inside its drop transaction of segment 1, when it comes
    locker.execute("BEGIN")
    locker.execute("SELECT 1 FROM stream._segments WHERE segment_id = %s FOR KEY SHARE", (s1[0],))
    nxt, _ = fill_segments(admin, TOPIC, 1)                  # segment 1: offsets 0-9
    s2 = segments(admin, TOPIC)[1]
    # keep segment 2 (and offset 10) out of the worker's reach until the end
    lock_segment(holder, s2[0])
    publish_one(admin, TOPIC, nxt)                           # offset 10, in segment 2
    pid = worker_pid(admin)
    t.ok(eventually(lambda: admin.execute(
        "SELECT 1 FROM pg_locks WHERE pid = %s AND relation = %s AND mode = 'AccessExclusiveLock' AND granted",
        (pid, s1[2])).fetchone(), 30), "the worker holds segment 1 and waits to delete its catalog row")

    queries = {
        "read": ('SELECT array_agg("offset") FROM stream.read(%s, 0, 0, 100)', (TOPIC,)),
        "partitions": ("SELECT log_start_offset FROM stream.partitions WHERE topic = %s", (TOPIC,)),
        "reset_offsets": ("SELECT stream.reset_offsets(%s, %s, %s::timestamptz)", (GROUP, TOPIC, ts)),
    }
    results, sessions, threads = {}, {}, {}
    for name, (q, args) in queries.items():
        sessions[name] = session()

        def run(name=name, q=q, args=args):
            try:
                results[name] = ("ok", sessions[name].execute(q, args).fetchone()[0])
            except Exception as e:  # noqa: BLE001 - reported below
                results[name] = ("error", getattr(e, "sqlstate", None), str(e).splitlines()[0])
        threads[name] = threading.Thread(target=run)
        threads[name].start()
        t.ok(eventually(lambda: name in results or admin.execute(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND relation = %s AND NOT granted",
            (sessions[name].info.backend_pid, s1[2])).fetchone(), 30),
            "%s reaches segment 1 and waits for the worker" % name)
    locker.execute("COMMIT")
    for th in threads.values():
        th.join(60)
    t.ok(eventually(lambda: log_start(admin, TOPIC) == 10, 30), "the worker finishes dropping segment 1")
    t.is_(results.get("read"), ("ok", [10]), "stream.read from 0 returns what is left: offset 10")
    t.is_(results.get("partitions"), ("ok", 10), "stream.partitions returns the new log start, 10")
    t.is_(results.get("reset_offsets", ("?",))[0], "ok", "stream.reset_offsets to a time succeeds (%s)"
          % (results.get("reset_offsets"),))
    t.is_(admin.execute("SELECT committed_offset FROM stream.consumer_lag WHERE \"group\" = %s", (GROUP,)).fetchone(),
          (10,), "and sets the group to the first retained offset, 10")
    t.is_(worker_pid(admin), pid, "the worker is still the same process")
finally:
    locker.execute("ROLLBACK")
    holder.execute("ROLLBACK")
    finish(admin, [TOPIC])
t.exit()

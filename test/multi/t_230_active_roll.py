"""The worker rolls an active segment that is old, so that it can expire.

A topic with retention '2 s' and the default segment_bytes (64 MB) gets five
small messages: its only segment never fills, so no publisher ever rolls it.  The
worker rolls it once its first message is half a retention old (a second segment
appears, whose base is the next offset, and stream.retention_runs counts the roll;
a reader holding the old segment keeps it there meanwhile), then, once the reader
is gone, drops the old segment when its newest message is older than the retention:
the five messages disappear although their segment was a few kB, far below
segment_bytes.  A message published after the roll goes to the new segment.
"""
import re

from lib import TAP, pg_log_since
from ret_util import (create_topic, eventually, finish, lock_segment, log_offset, log_start, now, partition,
                      publish_one, read_offsets, runs_since, segments, session, start)

TOPIC = "ret_roll"
SEGMENT_BYTES = 64 * 1024 * 1024

t = TAP()
admin = start()
reader = session()
log0 = log_offset()
try:
    t0 = now(admin)
    create_topic(admin, TOPIC, retention="2 s", segment_bytes=SEGMENT_BYTES)
    offs = [publish_one(admin, TOPIC, i, pad=10) for i in range(5)]
    t.is_(offs, [0, 1, 2, 3, 4], "five messages published")
    segs = segments(admin, TOPIC)
    t.is_(len(segs), 1, "in one segment")
    s1 = segs[0]
    size = admin.execute("SELECT pg_total_relation_size(%s::regclass)", (s1[2],)).fetchone()[0]
    t.ok(size < SEGMENT_BYTES // 100, "which holds %d bytes, far below segment_bytes" % size)

    # a reader holds the segment: the worker may roll it, but not drop it yet
    lock_segment(reader, s1[0])
    t.ok(eventually(lambda: len(segments(admin, TOPIC)) >= 2 and segments(admin, TOPIC)[1][1] is not None, 30),
         "the worker rolls the active segment: a second segment appears")
    segs = segments(admin, TOPIC)
    t.is_(segs[0][0], s1[0], "the first segment is still there (held by a reader)")
    t.is_(segs[1][1], 5, "the new segment's base is the next offset, 5")
    t.ok(sum(r["segments_rolled"] for r in runs_since(admin, t0)) >= 1,
         "stream.retention_runs counts the roll")
    t.is_(publish_one(admin, TOPIC, 5, pad=10), 5, "a new message gets offset 5")
    t.is_(admin.execute("SELECT array_agg(\"offset\") FROM stream_data.seg_%d" % segs[1][0]).fetchone()[0],
          [5], "and goes to the new segment")
    reader.execute("COMMIT")

    t.ok(eventually(lambda: log_start(admin, TOPIC) >= 5, 30),
         "the old segment expires: the log start offset passes the five messages")
    t.is_(admin.execute("SELECT to_regclass('stream_data.seg_%d')" % s1[0]).fetchone()[0], None,
          "its table is gone")
    t.ok(all(o >= 5 for o, _ in read_offsets(admin, TOPIC)), "reading from 0 returns none of them")
    t.is_(partition(admin, TOPIC)["end_offset"], 6, "the end offset is unchanged (6)")
    t.ok(re.search(r'removed 1 expired segment \(offsets 0 to 4, \d+ bytes\) of partition 0 of topic "%s"'
                   % TOPIC, pg_log_since(log0)), "the server log names the segment's offsets 0 to 4")
finally:
    reader.execute("ROLLBACK")
    finish(admin, [TOPIC])
t.exit()

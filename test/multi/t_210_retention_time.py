"""Retention by time drops whole expired segments, oldest first.

A topic with retention '1 s' and segment_bytes 8192 gets four closed segments of
ten messages each.  A reader session holds the third segment (ACCESS SHARE) from
the moment it is created, which freezes the partition at that segment: the worker
drops the two expired segments before it and must skip the third.  Then: the log
start offset advances to the third segment's base, reading from 0 returns exactly
the retained offsets in order with their values, the end offset is unchanged, the
dropped segments' tables no longer exist (they were dropped, not emptied: no
n_tup_del on what is left, message count = end - log start), the server log says
"removed N expired segment(s) (offsets a to b ...)" for the topic, and
stream.retention_runs has a row for it.  Once the reader ends, everything expires
(the active segment included, by the worker's roll), the end offset still stands
and the next publish continues at it.
"""
import re

from lib import TAP, pg_log_since
from ret_util import (create_topic, eventually, fill_segments, finish, lock_segment, log_offset, log_start, merge_segments,
                      now, partition, publish_one, read_offsets, runs_since, segments, session, start)

TOPIC = "ret_time"
LINE = re.compile(r'removed (\d+) expired segments? \(offsets (\d+) to (\d+), (\d+) bytes\) '
                  r'of partition 0 of topic "%s"' % TOPIC)


def removed_ranges(log):
    """[(count, first, last)] of the LOG lines for TOPIC."""
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in LINE.finditer(log)]


def contiguous(ranges, upto):
    """Do the removed ranges cover 0..upto-1, in order, without gaps?"""
    nxt = 0
    for _, first, last in ranges:
        if first != nxt or last < first:
            return False
        nxt = last + 1
    return nxt == upto


t = TAP()
admin = start()
reader = session()
log0 = log_offset()
try:
    t0 = now(admin)
    create_topic(admin, TOPIC, retention="1 s", segment_bytes=8192)
    segs = segments(admin, TOPIC)
    nxt, offs = fill_segments(admin, TOPIC, 2)
    segs = merge_segments(segs, admin, TOPIC)
    s3 = segs[-1]
    t.is_(s3[1], 20, "two segments rolled: the active one, the third, starts at offset 20")
    # the reader holds segment 3 while it is still the active one: nothing in it can be due yet
    lock_segment(reader, s3[0])
    nxt, offs2 = fill_segments(admin, TOPIC, 2, first=nxt)
    END = nxt
    t.is_(offs + offs2, list(range(END)), "%d messages published at offsets 0..%d" % (END, END - 1))
    segs = merge_segments(segs, admin, TOPIC)
    t.is_([s[1] for s in segs], [0, 10, 20, 30, 40], "five segments: four closed, one active; bases 0, 10, 20, 30, 40")
    dropped_relids = [segs[0][2], segs[1][2]]

    # the worker goes oldest first and cannot take segment 3: the partition stops there
    t.ok(eventually(lambda: log_start(admin, TOPIC) == s3[1], 30),
         "the log start offset advances to segment 3's base (%d)" % s3[1])
    p = partition(admin, TOPIC)
    t.is_(p["log_start_offset"], s3[1], "and stays there while segment 3 is held")
    t.is_(p["end_offset"], END, "the end offset is unchanged")
    t.is_(p["segments"], 3, "stream.partitions counts 3 segments")
    t.is_(p["messages"], END - s3[1], "messages = end offset - log start offset: no holes")
    t.is_([s[0] for s in segments(admin, TOPIC)], [s[0] for s in segs[2:]],
          "the two oldest segments left the catalog, the others are intact")
    t.is_(admin.execute("SELECT count(*) FROM pg_class WHERE oid = ANY(%s)", (dropped_relids,)).fetchone()[0],
          0, "their tables were dropped")
    t.is_(admin.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'stream_data' AND c.relkind = 'r' AND c.relname = ANY(%s)",
        (["seg_%d" % s[0] for s in segs],)).fetchone()[0], 3, "the topic's stream_data tables went from 5 to 3")
    t.is_(admin.execute(
        "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables WHERE relid = ANY(%s)",
        ([s[2] for s in segs[2:]],)).fetchone()[0], 0, "no row of the remaining segments was deleted")

    rows = read_offsets(admin, TOPIC, offset=0)
    t.is_([o for o, _ in rows], list(range(s3[1], END)),
          "reading from 0 returns offsets %d..%d, in order, none below the log start" % (s3[1], END - 1))
    t.ok(all(v["i"] == o and len(v["pad"]) == 900 for o, v in rows), "every retained value is intact")
    t.is_(read_offsets(admin, TOPIC, offset=5), rows, "reading from inside the dropped range: the same")

    ranges = removed_ranges(pg_log_since(log0))
    t.ok(contiguous(ranges, s3[1]), "the server log says which offsets went: 0..%d in order (%s)"
         % (s3[1] - 1, ranges))
    t.is_(sum(r[0] for r in ranges), 2, "two segments removed, as the log lines count them")
    runs = runs_since(admin, t0)
    t.ok(sum(r["segments_dropped"] for r in runs) >= 2 and all(r["errors"] == 0 for r in runs),
         "stream.retention_runs has the cycles that dropped them, without errors")

    # --- the reader ends: everything expires, the active segment by the worker's roll ----
    reader.execute("COMMIT")
    t.ok(eventually(lambda: log_start(admin, TOPIC) == END, 30),
         "once the reader ended, every message expires (the active segment too, by the worker's roll)")
    p = partition(admin, TOPIC)
    t.is_((p["log_start_offset"], p["end_offset"], p["messages"]), (END, END, 0),
          "all expired: log start = end offset = %d, no message left" % END)
    t.is_(read_offsets(admin, TOPIC, offset=0), [], "reading from 0 returns nothing")
    ranges = removed_ranges(pg_log_since(log0))
    t.ok(contiguous(ranges, END), "the log lines cover offsets 0..%d in order" % (END - 1))
    # hold the (empty) active segment so that the next message cannot expire before we read it
    lock_segment(reader, segments(admin, TOPIC)[0][0])
    t.is_(publish_one(admin, TOPIC, END), END, "the next publish continues at offset %d" % END)
    t.is_([o for o, _ in read_offsets(admin, TOPIC, offset=0)], [END], "and is read back")
    reader.execute("COMMIT")
finally:
    if not reader.closed:
        reader.execute("ROLLBACK")
    finish(admin, [TOPIC])
t.exit()

"""Retention by size keeps a partition bounded, dropping the oldest segments first.

A topic with retention_bytes 256 kB and segment_bytes 8192 receives 30 rounds of
ten ~1 kB messages (one segment of about 64 kB on disk each), over seven times its limit.  After every
round, once the worker has caught up, Kafka's rule holds for the partition as the
worker measures it (pg_total_relation_size of each segment): without its
oldest segment the partition would hold less than retention_bytes, so its size
stays below retention_bytes + one segment.  The segments left are always the
newest ones (every segment gone is older than every segment left), the log start
is the oldest one's base, no offset is missing above it, and the LOG lines for the
topic name consecutive offset ranges from 0 whose bytes add up to several times
the limit.
"""
import re

from lib import TAP, pg_log_since
from ret_util import (create_topic, eventually, fill_segments, finish, freeze, log_offset, partition,
                      read_offsets, segment_sizes, segments, session, start)

TOPIC = "ret_bytes"
RB = 262144
ROUNDS = 30
LINE = re.compile(r'removed (\d+) expired segments? \(offsets (\d+) to (\d+), (\d+) bytes\) '
                  r'of partition 0 of topic "%s"' % TOPIC)

t = TAP()
admin = start()
log0 = log_offset()
try:
    create_topic(admin, TOPIC, retention_bytes=RB, segment_bytes=8192)
    def ages():
        """[(segment_id, bytes)] as the worker measures them, oldest first."""
        return segment_sizes(admin, TOPIC)

    def settled():
        a = ages()
        return len(a) == 1 or sum(b for _, b in a) - a[0][1] < RB

    nxt = 0
    ever = set()
    bounded = order_ok = True
    max_total = max_seg = 0
    for rnd in range(ROUNDS):
        nxt, _ = fill_segments(admin, TOPIC, 1, first=nxt)
        ever.update(s[0] for s in segments(admin, TOPIC))
        if not eventually(settled, 30):
            bounded = False
            t.diag("round %d: never settled: %s" % (rnd, ages()))
        a = ages()
        total = sum(b for _, b in a)
        max_total = max(max_total, total)
        max_seg = max([max_seg] + [b for _, b in a])
        left = {s for s, _ in a}
        gone = ever - left
        if gone and max(gone) > min(left):
            order_ok = False
            t.diag("round %d: dropped %s but kept %s" % (rnd, sorted(gone), sorted(left)))
    t.ok(bounded, "after each of %d rounds the worker brought the partition under Kafka's rule "
         "(size without its oldest segment < retention_bytes)" % ROUNDS)
    t.ok(max_total < RB + max_seg, "so it never held more than retention_bytes + one segment once settled "
         "(max %d bytes, limit %d, largest segment %d)" % (max_total, RB, max_seg))
    t.ok(order_ok, "segments always went oldest first: every one dropped is older than every one kept")

    holder = session()
    freeze(holder, TOPIC)           # no more drops while the final state is checked
    segs = segments(admin, TOPIC)
    p = partition(admin, TOPIC)
    t.ok(p["log_start_offset"] > 0, "the log start offset advanced (%d)" % p["log_start_offset"])
    t.is_(p["log_start_offset"], segs[0][1], "to the oldest remaining segment's base")
    t.is_(p["end_offset"], nxt, "the end offset is %d" % nxt)
    t.is_(p["messages"], nxt - p["log_start_offset"], "no offset missing above the log start")
    rows = read_offsets(admin, TOPIC)
    t.is_([o for o, _ in rows], list(range(p["log_start_offset"], nxt)),
          "reading from 0 returns the retained offsets in order")
    t.ok(all(v["i"] == o for o, v in rows), "with their values")

    holder.execute("COMMIT")
    found = [(int(m.group(2)), int(m.group(3)), int(m.group(4))) for m in LINE.finditer(pg_log_since(log0))]
    start_ok = True
    n = 0
    for first, last, _ in found:
        start_ok = start_ok and first == n and last >= first
        n = last + 1
    t.ok(found and start_ok and n == p["log_start_offset"],
         "the LOG lines name consecutive offset ranges 0..%d, oldest first" % (p["log_start_offset"] - 1))
    dropped = sum(b for _, _, b in found)
    t.ok(dropped > 4 * RB, "and %d bytes dropped, several times retention_bytes" % dropped)
finally:
    finish(admin, [TOPIC])
t.exit()

"""Invariant 1 across segment boundaries: segments roll while transactions are open.

A 2-partition topic with segment_bytes => 8192 (the minimum) takes the storm of t_050
with padded messages, so the active segment rolls many times while publishers hold
offsets in it.  A transaction that reserved offsets before a roll writes them into the
old segment while later offsets go to the new one; the followers must still read exactly
the committed set, each once, in offset order, across the segment boundaries.
"""
from lib import TAP, connect, wait_until
from lso_util import check_storm, drop_topic, fresh_topic, publish, read, run_storm, state, storm_seed

t = TAP()
TOPIC, PARTITIONS = "lso_segments", 2
seed = storm_seed() + 60
t.diag("storm seed %d (STREAM_STORM_SEED + 60)" % seed)
conn = connect()
fresh_topic(conn, TOPIC, partitions=PARTITIONS, segment_bytes=8192)


def segments(p):
    """[(segment_id, base_offset)] of partition p, oldest first."""
    return conn.execute(
        "SELECT s.segment_id, s.base_offset FROM stream._segments s JOIN stream.topics t USING (topic_id)"
        " WHERE t.topic = %s AND s.partition = %s ORDER BY s.segment_id", (TOPIC, p)).fetchall()


def settled(p):
    """segments(p) once every roll finished recording its base offset, else None."""
    segs = segments(p)
    return segs if all(base is not None for _, base in segs[1:]) else None


t.is_([len(segments(p)) for p in range(PARTITIONS)], [1] * PARTITIONS, "each partition starts with one segment")

# Deterministic first: A holds offset 0 of partition 1 while B's committed messages fill
# the segment and it rolls; B goes on in the new segment, A publishes there too.
a, b, r = connect(), connect(), connect()
PAD = "y" * 400
a.execute("BEGIN")
t.is_(publish(a, TOPIC, {"id": "a0"}, partition=1), (1, 0), "A holds offset 0 of partition 1")
published = [(0, "a0")]
while len(segments(1)) < 2 and len(published) < 200:  # bounded: 8192 bytes take ~20 of these
    i = "b%d" % len(published)
    published.append((publish(b, TOPIC, {"id": i, "pad": PAD}, partition=1)[1], i))
segs = wait_until(lambda: (s := settled(1)) and len(s) >= 2 and s,
                  timeout=30, what="the roll of partition 1 to finish")
t.ok(len(published) < 200, "partition 1 rolled after %d committed messages while A is open"
     % (len(published) - 1))
base = segs[1][1]
t.is_(state(r, TOPIC, 1)[1], 0, "A still holds the LSO at 0")
t.is_(read(r, TOPIC, 1, 0), [], "nothing is readable from 0")
t.is_(read(r, TOPIC, 1, base), [], "nothing is readable from the new segment's base %d either" % base)
p, o = publish(b, TOPIC, {"id": "after"}, partition=1)
published.append((o, "after"))
t.ok(o >= base, "B's next message goes to the new segment (offset %d)" % o)
p, o = publish(a, TOPIC, {"id": "a1"}, partition=1)
published.append((o, "a1"))
t.ok(o > base, "A publishes into the new segment too (offset %d)" % o)
t.is_(read(r, TOPIC, 1, 0), [], "still nothing readable while A is open")
a.execute("COMMIT")
got = [(o, v["id"]) for o, v in read(r, TOPIC, 1, 0)]
t.is_(got, sorted(published), "after A commits the reader gets every message in order across the boundary")
t.is_([o for o, _ in got], list(range(len(got))), "offsets are dense: no offset lost at the roll")
fresh_topic(conn, TOPIC, partitions=PARTITIONS, segment_bytes=8192)
pubs, fols = run_storm(t, TOPIC, PARTITIONS, seed, txns_total=1200, pad=200)
check_storm(t, conn, TOPIC, PARTITIONS, pubs, fols)

# Rolls are requested only by publishes, so every segment but the first was started
# during the storm; a roller may still be finishing its bookkeeping: wait for it.
committed = {}
for th in pubs:
    for p, o, i in th.committed:
        committed.setdefault(p, []).append(o)
for p in range(PARTITIONS):
    segs = wait_until(lambda: settled(p), timeout=30, what="partition %d's segments to have base offsets" % p)
    bases = [b for _, b in segs[1:]]
    t.ok(len(segs) >= 3, "partition %d rolled during the storm: %d segments" % (p, len(segs)))
    spanned = {sum(1 for b in bases if b <= o) for o in committed[p]}
    t.ok(len(spanned) >= 3, "partition %d: the committed messages the followers read lie in %d segments"
         % (p, len(spanned)))
    rows = conn.execute("SELECT partition, segments FROM stream.partitions WHERE topic = %s AND partition = %s",
                        (TOPIC, p)).fetchone()
    t.is_(rows[1], len(segs), "partition %d: stream.partitions.segments agrees" % p)

drop_topic(conn, TOPIC)
t.exit()

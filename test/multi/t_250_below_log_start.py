"""A group whose committed offset fell below the log start, under each reset policy.

For a topic with a time retention ('1 s') and one with a size retention (192 kB:
three segments of about 64 kB on disk, so none can go before the third exists),
three groups commit offset 0 before anything is published.  Seven segments of ten
messages follow; a reader session holds the third segment from its creation, so
the worker drops exactly segments 1 and 2 (by time, resp. by size) and the log
start settles at 20.  Then stream.consumer_lag shows each group with
committed_offset 0, log_start_offset 20 and below_log_start true, and a poll
(stream.auto_offset_reset set in the polling session) resumes:
  - 'earliest' (also the default): at the log start, returning 20..END-1 in order;
  - 'error': fails with SQLSTATE 22023 and a message naming the log start offset;
  - 'latest': at the end, returning nothing old; a message published next comes.
A commit then clears below_log_start.
"""
from lib import TAP
from ret_util import (create_topic, eventually, fill_segments, finish, lock_segment, log_start,
                      publish_one, segments, session, sqlstate, start)

POLICIES = ("earliest", "error", "latest")

t = TAP()
admin = start()
t.is_(admin.execute("SHOW stream.auto_offset_reset").fetchone()[0], "earliest",
      "stream.auto_offset_reset defaults to 'earliest'")
reader = session()
topics = []


def poll(s, group, topic):
    return [r[0] for r in s.execute('SELECT "offset" FROM stream.poll(%s, %s, 1000)', (group, topic)).fetchall()]


def lag(topic):
    return {r[0]: tuple(r[1:]) for r in admin.execute(
        'SELECT "group", committed_offset, log_start_offset, below_log_start FROM stream.consumer_lag '
        'WHERE topic = %s', (topic,)).fetchall()}


try:
    for kind, opts in (("time", {"retention": "1 s"}), ("bytes", {"retention_bytes": 196608})):
        topic = "ret_below_" + kind
        topics.append(topic)
        groups = {pol: "%s_%s" % (topic, pol) for pol in POLICIES}
        create_topic(admin, topic, segment_bytes=8192, **opts)
        for g in groups.values():
            s = session()
            t.is_(poll(s, g, topic), [], "%s: group %s joins the empty topic" % (kind, g))
            s.execute("SELECT stream.commit(%s, %s, 0, 0)", (g, topic))
            s.execute("SELECT stream.leave(%s, %s)", (g, topic))
            s.close()
        nxt, _ = fill_segments(admin, topic, 2)
        s3 = segments(admin, topic)[-1]
        t.is_(s3[1], 20, "%s: the third segment, still the (empty) active one, starts at 20" % kind)
        lock_segment(reader, s3[0])
        nxt, _ = fill_segments(admin, topic, 5, first=nxt)
        END = nxt
        t.ok(eventually(lambda: log_start(admin, topic) == 20, 30),
             "%s: retention drops segments 1 and 2 (held at segment 3): log start 20" % kind)
        t.is_(lag(topic), {g: (0, 20, True) for g in groups.values()},
              "%s: consumer_lag shows each group at 0, log start 20, below_log_start" % kind)

        s = session()
        s.execute("SET stream.auto_offset_reset = 'earliest'")
        got = poll(s, groups["earliest"], topic)
        t.is_(got, list(range(20, END)), "%s: 'earliest': poll resumes at the log start, 20..%d in order"
              % (kind, END - 1))
        t.is_(lag(topic)[groups["earliest"]], (0, 20, True), "%s: until it commits, the group is still below" % kind)
        s.execute("SELECT stream.commit(%s, %s)", (groups["earliest"], topic))
        t.is_(lag(topic)[groups["earliest"]], (END, 20, False), "%s: after its commit it is not" % kind)
        s.close()

        s = session()
        s.execute("SET stream.auto_offset_reset = 'error'")
        state, msg = sqlstate(lambda: poll(s, groups["error"], topic))
        t.is_(state, "22023", "%s: 'error': poll fails with 22023" % kind)
        t.ok(msg and "below the log start offset 20" in msg and "offset 0" in msg,
             "%s: naming the offset and the log start: %s" % (kind, msg))
        t.is_(lag(topic)[groups["error"]], (0, 20, True), "%s: the group did not move" % kind)
        s.execute("RESET stream.auto_offset_reset")
        t.is_(poll(s, groups["error"], topic)[:1], [20], "%s: by default (earliest) the same session resumes at 20"
              % kind)
        s.close()

        s = session()
        s.execute("SET stream.auto_offset_reset = 'latest'")
        t.is_(poll(s, groups["latest"], topic), [], "%s: 'latest': poll resumes at the end, nothing old" % kind)
        t.is_(publish_one(admin, topic, END), END, "%s: a new message is published at %d" % (kind, END))
        t.is_(poll(s, groups["latest"], topic), [END], "%s: and is the next one polled" % kind)
        s.close()
        reader.execute("COMMIT")
finally:
    reader.execute("ROLLBACK")
    finish(admin, topics)
t.exit()

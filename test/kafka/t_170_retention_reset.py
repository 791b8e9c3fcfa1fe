"""An offset that retention dropped resets per the client's auto.offset.reset, for a
committed group offset and for an explicit start offset.

A one-partition jsonb topic with retention '1 s' and 8 kB segments; two Kafka groups
(confluent, subscribe) commit offset 0 while it is empty.  Two segments of ten
messages fill; a reader session holds the third segment (base 20) from its creation,
so the retention worker (stream.naptime 200ms, as test/multi/ret_util.py sets it)
drops exactly segments 1 and 2 and the log start settles at 20 (as in
test/multi/t_250_below_log_start.py).  consumer_lag shows both groups below the log
start.  Then:
  - group, auto.offset.reset=earliest: resumes at 20 and reads 20..END-1 in order;
    after its commit consumer_lag no longer shows it below the log start;
  - group, auto.offset.reset=latest: gets no old message; the first it gets is one
    published after it started (published one at a time until it has one);
  - assign at offset 5 (no group offset): earliest -> first message 20; latest -> only
    new messages; error -> the consumer reports an offset-reset error."""
from kafka_util import TAP, ck_consumer, create_topic, drop_all, end_offset, setup, tp, wait_until
from ret_util import fill_segments, lock_segment, log_start, publish_one, segments, session, set_naptime

t = TAP()
admin = setup(t)
reader = session()
G_EARLY, G_LATE = "k1_ret_early", "k1_ret_late"


def consumer_below(group):
    return admin.execute('SELECT committed_offset, log_start_offset, below_log_start FROM stream.consumer_lag '
                         'WHERE "group" = %s AND topic = %s', (group, T)).fetchone()


def wait_assigned(c, what):
    """Poll c until it has an assignment; return the offsets of messages it got meanwhile."""
    early = []

    def step():
        m = c.poll(0.1)
        if m is not None and not m.error():
            early.append(m.offset())
        return c.assignment()
    wait_until(step, 60, 0, what=what)
    return early


def first_new(c, start_end, early=(), limit=40):
    """Publish one message at a time until c gets one; return the first it got
    (or the first of early, messages it got before)."""
    if early:
        return early[0]
    for i in range(limit):
        publish_one(admin, T, 10000 + i, pad=0)
        m = c.poll(1.0)
        while m is not None and m.error():
            t.diag("consumer event: %s" % m.error())
            m = c.poll(0.2)
        if m is not None:
            return m.offset()
    return None


try:
    set_naptime(admin, "200ms")
    T = create_topic(admin, "k1_ret", 1, value_type="jsonb", retention="1 s", segment_bytes=8192)

    for g in (G_EARLY, G_LATE):
        c = ck_consumer(**{"group.id": g, "session.timeout.ms": 10000})
        c.subscribe([T])
        wait_assigned(c, "%s to be assigned" % g)
        c.commit(offsets=[tp(T, 0, 0)], asynchronous=False)
        c.close()
        t.is_(consumer_below(g), (0, 0, False), "%s committed offset 0 on the empty topic" % g)

    nxt, _ = fill_segments(admin, T, 2)
    s3 = segments(admin, T)[-1]
    t.is_(s3[1], 20, "the third segment starts at 20")
    lock_segment(reader, s3[0])
    nxt, _ = fill_segments(admin, T, 5, first=nxt)
    END = end_offset(admin, T)
    t.is_(END, nxt, "END = %d" % END)
    t.ok(wait_until(lambda: log_start(admin, T) == 20, 60, what="the log start to reach 20"),
         "retention dropped segments 1 and 2: log start 20")
    for g in (G_EARLY, G_LATE):
        t.is_(consumer_below(g), (0, 20, True), "consumer_lag: %s committed 0, below the log start 20" % g)

    # group offset below the log start, earliest
    c = ck_consumer(**{"group.id": G_EARLY, "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    c.subscribe([T])
    got = []

    def drained():
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.offset())
        return len(got) >= END - 20
    wait_until(drained, 60, 0, what="the earliest group to read %d messages" % (END - 20))
    t.is_(got, list(range(20, END)), "group, earliest: resumes at the log start, 20..%d in order" % (END - 1))
    c.commit(asynchronous=False)
    c.close()
    t.is_(consumer_below(G_EARLY), (END, 20, False), "after its commit the group is at END, not below")

    # group offset below the log start, latest
    c = ck_consumer(**{"group.id": G_LATE, "auto.offset.reset": "latest", "session.timeout.ms": 10000})
    c.subscribe([T])
    early = wait_assigned(c, "the latest group to be assigned")
    first = first_new(c, END, early)
    c.close()
    t.ok(first is not None and first >= END, "group, latest: the first message is a new one (%s >= %d)" % (first, END))

    # explicit start offset 5, below the log start
    for policy in ("earliest", "latest"):
        e = end_offset(admin, T)
        c = ck_consumer(**{"group.id": "k1_ret_assign", "auto.offset.reset": policy})
        c.assign([tp(T, 0, 5)])
        if policy == "earliest":
            m = None
            for _ in range(100):
                m = c.poll(0.3)
                if m is not None and not m.error():
                    break
            t.is_(m.offset() if m is not None and not m.error() else None, 20,
                  "assign at 5, earliest: the first message is the log start, 20")
        else:
            first = first_new(c, e)
            t.ok(first is not None and first >= e, "assign at 5, latest: only new messages (%s >= %d)" % (first, e))
        c.close()

    from confluent_kafka import KafkaError
    c = ck_consumer(**{"group.id": "k1_ret_assign", "auto.offset.reset": "error"})
    c.assign([tp(T, 0, 5)])
    ev = None
    for _ in range(100):
        m = c.poll(0.3)
        if m is not None:
            ev = m
            break
    c.close()
    t.ok(ev is not None and ev.error() is not None and ev.error().code() in (KafkaError._AUTO_OFFSET_RESET,
                                                                               KafkaError.OFFSET_OUT_OF_RANGE),
         "assign at 5, auto.offset.reset=error: the consumer reports the reset error (%s)"
         % (ev.error() if ev is not None else None))
finally:
    try:
        reader.execute("COMMIT") if reader.info.transaction_status else None
    finally:
        drop_all(admin)
        set_naptime(admin, None)
t.exit()

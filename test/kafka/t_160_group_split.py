"""Two confluent_kafka consumers of one group split a 4-partition topic, and after one
closes the survivor takes all four, resuming the closed one's partitions at the
offsets it committed.

A joins alone and is assigned 0..3; B joins; both are polled until their
assignments are disjoint, cover 0..3 and are two each (range assignor).  Messages
published to every partition then reach each consumer for its own partitions only,
each exactly once; both commit synchronously.  B closes (LeaveGroup); A is polled
until it holds 0..3; new messages on every partition reach A, and none of the
messages B consumed and committed comes again.  stream.consumer_lag shows the group at
the end of every partition after A commits.  The same is then done with the
cooperative-sticky assignor (incremental rebalance): B's arrival must not take
from A more than the two partitions it gives B."""
import time

from kafka_util import TAP, ck_consumer, create_topic, drop_all, group_lag, setup, wait_until

NP = 4
t = TAP()
admin = setup(t)


def assigned(c):
    return sorted(x.partition for x in c.assignment())


def pump(consumers, fn, timeout=60, what=None):
    """Poll every consumer (serving rebalance callbacks, keeping messages) until fn()."""
    got = {id(c): [] for c in consumers}

    def step():
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got[id(c)].append((m.partition(), m.offset(), m.value().decode()))
        return fn()
    wait_until(step, timeout, 0, what=what)
    return got


def publish_round(topic, tag):
    out = set()
    for p in range(NP):
        for j in range(3):
            o = admin.execute('SELECT "offset" FROM stream.publish(%s, %s::text, partition => %s)',
                              (topic, "%s-%d-%d" % (tag, p, j), p)).fetchone()[0]
            out.add((p, o, "%s-%d-%d" % (tag, p, j)))
    return out


def scenario(strategy, G, T):
    conf = {"group.id": G, "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": strategy}
    a = ck_consumer(**conf)
    a.subscribe([T])
    pump([a], lambda: assigned(a) == list(range(NP)), what="A to be assigned all partitions")
    t.ok(True, "%s: A alone holds 0..3" % strategy)
    b = ck_consumer(**conf)
    b.subscribe([T])
    seen_a = set()

    def split():
        pa, pb = assigned(a), assigned(b)
        seen_a.add(tuple(pa))
        return len(pa) == 2 and len(pb) == 2 and sorted(pa + pb) == list(range(NP))
    pump([a, b], split, what="A and B to split the partitions")
    pa, pb = assigned(a), assigned(b)
    t.ok(True, "%s: A holds %s, B holds %s" % (strategy, pa, pb))
    if strategy == "cooperative-sticky":
        t.ok(all(len(x) >= 2 for x in seen_a),
             "cooperative-sticky: A never dropped below its final share while B joined (%s)" % sorted(seen_a))

    msgs = publish_round(T, strategy[:4] + "1")
    ga, gb = [], []

    def all_in():
        for c, acc in ((a, ga), (b, gb)):
            m = c.poll(0.1)
            if m is not None and not m.error():
                acc.append((m.partition(), m.offset(), m.value().decode()))
        return len(ga) + len(gb) >= len(msgs)
    wait_until(all_in, 60, 0, what="both consumers to receive round 1")
    t.ok({x[0] for x in ga} <= set(pa) and {x[0] for x in gb} <= set(pb),
         "%s: each consumer receives only its own partitions" % strategy)
    t.is_(sorted(ga + gb), sorted(msgs), "%s: together exactly round 1, once each" % strategy)
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)
    lag = group_lag(admin, G, T)
    t.ok(all(lag.get(p, (None, None, None))[2] == 0 for p in range(NP)),
         "%s: consumer_lag shows the group committed at the end of all 4 partitions (%s)" % (strategy, lag))

    b.close()
    pump([a], lambda: assigned(a) == list(range(NP)), what="A to take all partitions after B closed")
    t.ok(True, "%s: after B closed, A holds 0..3" % strategy)
    msgs2 = publish_round(T, strategy[:4] + "2")
    ga2 = []

    def a_all():
        m = a.poll(0.1)
        if m is not None and not m.error():
            ga2.append((m.partition(), m.offset(), m.value().decode()))
        return len(ga2) >= len(msgs2)
    wait_until(a_all, 60, 0, what="A to receive round 2")
    # a little more polling would show duplicates of round 1 if B's commits were ignored:
    # they would come before round 2 on B's partitions, so they are already in ga2
    t.is_(sorted(ga2), sorted(msgs2), "%s: A gets round 2 on all partitions and nothing of round 1 again" % strategy)
    a.commit(asynchronous=False)
    t.is_(group_lag(admin, G, T), {p: (6, 6, 0) for p in range(NP)},
          "%s: consumer_lag: committed 6 everywhere, lag 0" % strategy)
    a.close()


try:
    for strategy in ("range", "cooperative-sticky"):
        T = create_topic(admin, "k1_split_" + strategy.split("-")[0], NP, value_type="text")
        t0 = time.monotonic()
        scenario(strategy, "k1_split_g_" + strategy.split("-")[0], T)
        t.diag("%s scenario: %.1f s" % (strategy, time.monotonic() - t0))
finally:
    drop_all(admin)
t.exit()

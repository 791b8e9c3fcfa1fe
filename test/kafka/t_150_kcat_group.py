"""kcat -G (librdkafka's balanced consumer: JoinGroup, SyncGroup, Heartbeat,
OffsetFetch, OffsetCommit, LeaveGroup) run several times resumes from the offsets it
committed, and stream.consumer_lag shows the Kafka group.

Ten messages, five per partition of a 2-partition topic.  Run 1 exits after 6 (-c 6)
and commits on close; consumer_lag then shows, per partition, the offset after the
last message run 1 printed.  Run 2 (-e) prints exactly the other 4 and exits at the
end; consumer_lag shows lag 0.  Three more are published; run 3 prints exactly those
three.  No message twice, none lost."""
from kafka_util import TAP, create_topic, drop_all, group_lag, kcat_json, setup

G = "k1_kg"
t = TAP()
admin = setup(t)


def run(*extra):
    rc, msgs, err = kcat_json(["-G", G, "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000"]
                              + list(extra) + [T], timeout=90)
    return rc, [(m["partition"], m["offset"], m["payload"]) for m in msgs], err


try:
    T = create_topic(admin, "k1_kgroup", 2, value_type="text")
    for i in range(10):
        admin.execute("SELECT stream.publish(%s, %s::text, partition => %s)", (T, "g%d" % i, i % 2))
    everything = {(i % 2, i // 2, "g%d" % i) for i in range(10)}

    rc, r1, err = run("-c", "6")
    t.is_(rc, 0, "run 1 (kcat -G -c 6) exits 0%s" % ("" if rc == 0 else ": " + err[-400:]))
    t.is_(len(r1), 6, "run 1 printed 6 messages")
    expect = {p: max([o for pp, o, _ in r1 if pp == p], default=-1) + 1 for p in range(2)}
    lag = group_lag(admin, G, T)
    t.is_({p: lag.get(p, (None,))[0] for p in range(2) if expect[p] > 0},
          {p: e for p, e in expect.items() if e > 0},
          "consumer_lag: the Kafka group committed, per partition, the offset after the last message printed")
    for p in range(2):
        per = [o for pp, o, _ in r1 if pp == p]
        t.is_(per, list(range(len(per))), "run 1: partition %d read in offset order from 0" % p)

    rc, r2, err = run("-e")
    t.is_(rc, 0, "run 2 (kcat -G -e) exits 0 at the end%s" % ("" if rc == 0 else ": " + err[-400:]))
    t.is_(sorted(r2), sorted(everything - set(r1)), "run 2 printed exactly the 4 that run 1 did not")
    t.is_(group_lag(admin, G, T), {0: (5, 5, 0), 1: (5, 5, 0)}, "consumer_lag: committed 5 and 5, lag 0")

    for i in range(10, 13):
        admin.execute("SELECT stream.publish(%s, %s::text, partition => %s)", (T, "g%d" % i, i % 2))
    t.is_(group_lag(admin, G, T), {0: (5, 7, 2), 1: (5, 6, 1)}, "consumer_lag: lag 2 and 1 after 3 more")
    rc, r3, err = run("-e")
    t.is_(rc, 0, "run 3 exits 0")
    t.is_(sorted(r3), [(0, 5, "g10"), (0, 6, "g12"), (1, 5, "g11")], "run 3 printed exactly the 3 new messages")
    t.is_(group_lag(admin, G, T), {0: (7, 7, 0), 1: (6, 6, 0)}, "consumer_lag: at the end again")
    t.is_(admin.execute("SELECT count(*) FROM stream.consumer_lag WHERE \"group\" = %s AND owner_pid IS NOT NULL",
                        (G,)).fetchone()[0], 0, "no SQL session owns a partition of the Kafka group")
finally:
    drop_all(admin)
t.exit()

"""Keyed messages produced by Kafka clients land where SQL publish puts the same key:
kcat -X partitioner=murmur2_random and confluent_kafka with partitioner=murmur2_random
(the Java client's default) produce keys k0..k59 to a 6-partition topic; SQL
stream.publish of the same keys goes to another 6-partition topic; every key must be
in the same partition in all three, equal to stream.partition_for(key, 6), and spread
over several partitions.  The listener stores records in the partition the client
chose: a record produced by confluent to an explicit partition stays there whatever
its key.  Per key, the order of production is the offset order."""
from kafka_util import TAP, ck_produce, ck_producer, create_topic, drop_all, kcat, setup, sql_rows

NP = 6
# an empty key is hashed like any other (kcat: a line ":value"); a non-ASCII key as UTF-8
KEYS = ["k%d" % i for i in range(60)] + ["", "ümlaut-ключ"]
t = TAP()
admin = setup(t)
try:
    a = create_topic(admin, "k1_keys_kcat", NP, value_type="text")
    b = create_topic(admin, "k1_keys_ck", NP, value_type="text")
    c = create_topic(admin, "k1_keys_sql", NP, value_type="text")

    def placement(topic):
        got = {}
        for p in range(NP):
            for off, key, val, _ in sql_rows(admin, topic, p, fn="read_text"):
                got.setdefault(key, []).append((p, off, val))
        return got

    # kcat: "key:value" lines; an empty key (line ":v") is an empty key, not NULL, without -Z
    lines = "".join("%s:v-%s-%d\n" % (k, k, rep) for rep in range(2) for k in KEYS)
    r = kcat(["-P", "-t", a, "-K:", "-X", "partitioner=murmur2_random"], input=lines, timeout=60)
    t.is_(r.returncode, 0, "kcat -P -K: -X partitioner=murmur2_random exits 0 (%s)" % r.stderr.strip()[-300:])

    p = ck_producer(partitioner="murmur2_random")
    res = ck_produce(p, b, [(k.encode(), ("v-%s-%d" % (k, rep)).encode()) for rep in range(2) for k in KEYS])
    t.ok(all(e is None for e, _, _ in res), "confluent: every keyed message delivered")

    for rep in range(2):
        for k in KEYS:
            admin.execute("SELECT stream.publish(%s, %s::text, key => %s)", (c, "v-%s-%d" % (k, rep), k))

    expect = {k: admin.execute("SELECT stream.partition_for(%s, %s)", (k, NP)).fetchone()[0] for k in KEYS}
    t.ok(len(set(expect.values())) >= 4, "the keys spread over at least 4 of %d partitions" % NP)
    for name, topic in (("kcat", a), ("confluent", b), ("SQL publish", c)):
        got = placement(topic)
        parts = {k: sorted({x[0] for x in v}) for k, v in got.items()}
        t.is_(parts, {k: [expect[k]] for k in KEYS},
              "%s: every key in one partition, the one stream.partition_for names" % name)
        order = all([x[2] for x in sorted(v, key=lambda x: x[1])] == ["v-%s-0" % k, "v-%s-1" % k]
                    for k, v in got.items())
        t.ok(order, "%s: per key, offsets follow the production order" % name)
    t.is_([r_[1] for r_ in res], [expect[k] for _ in range(2) for k in KEYS],
          "confluent delivery reports name the same partitions")

    # the client decides: an explicit partition is kept
    res = ck_produce(p, b, [(b"k0", b"explicit", None, (expect["k0"] + 1) % NP)])
    t.is_(res[0][:2], (None, (expect["k0"] + 1) % NP), "confluent: explicit partition acknowledged")
    rows = sql_rows(admin, b, (expect["k0"] + 1) % NP, fn="read_text")
    t.ok(any(k == "k0" and v == "explicit" for _, k, v, _ in rows), "it is stored in that partition, not re-routed")
finally:
    drop_all(admin)
t.exit()

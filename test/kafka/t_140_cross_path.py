"""SQL and Kafka clients on one log, both ways.

SQL -> kcat: 30 keyed messages published from SQL to a 3-partition text topic are
exactly what kcat -C -e -J prints: same partition, offset, key and value for each.
kcat -> SQL: 20 keyed lines produced with kcat -P -K: are exactly what stream.read_text
returns after the SQL ones, with the key routing of SQL publish; an SQL group polling
(stream.poll_text) gets all 50 messages once, in offset order per partition, commits,
and stream.consumer_lag shows it at the end; stream.verify() is clean."""
from kafka_util import TAP, connect, create_topic, drop_all, group_lag, kcat, kcat_consume, setup, sql_rows

NP = 3
t = TAP()
admin = setup(t)
try:
    T = create_topic(admin, "k1_cross", NP, value_type="text")
    sql_msgs = [("s%d" % i, "sql value %d" % i) for i in range(30)]
    admin.execute("SELECT stream.publish_batch(%s, %s::text[], %s::text[])",
                  (T, [v for _, v in sql_msgs], [k for k, _ in sql_msgs]))
    stored = sorted((p, o, k, v) for p in range(NP) for o, k, v, _ in sql_rows(admin, T, p, fn="read_text"))
    t.is_(len(stored), 30, "SQL: 30 messages stored")

    rc, got, err = kcat_consume(T, "-o", "beginning")
    t.is_(rc, 0, "kcat -C -e exits 0")
    t.is_(sorted(got), stored, "SQL publish -> kcat: every (partition, offset, key, value) as stored")

    kmsgs = [("k%d" % i, "kcat value %d" % i) for i in range(20)]
    r = kcat(["-P", "-t", T, "-K:", "-X", "partitioner=murmur2_random"],
             input="".join("%s:%s\n" % m for m in kmsgs))
    t.is_(r.returncode, 0, "kcat -P exits 0")
    after = {p: [(k, v) for o, k, v, _ in sql_rows(admin, T, p, fn="read_text")] for p in range(NP)}
    want = {p: [(k, v) for pp, _, k, v in stored if pp == p] for p in range(NP)}
    for k, v in kmsgs:
        want[admin.execute("SELECT stream.partition_for(%s, %s)", (k, NP)).fetchone()[0]].append((k, v))
    t.is_(after, want, "kcat -> SQL read_text: each line after the SQL messages, in its key's partition, in order")

    s = connect()
    rows = s.execute("SELECT partition, \"offset\", key, value FROM stream.poll_text('k1_cross_g', %s, 1000)",
                     (T,)).fetchall()
    t.is_(len(rows), 50, "SQL poll_text: all 50 messages")
    t.is_({p: [(k, v) for pp, o, k, v in sorted(rows) if pp == p] for p in range(NP)}, want,
          "SQL poll: the same messages, offset order per partition")
    t.is_(s.execute("SELECT stream.commit('k1_cross_g', %s)", (T,)).fetchone()[0], NP, "SQL commit of 3 partitions")
    lag = group_lag(admin, "k1_cross_g", T)
    t.ok(len(lag) == NP and all(c == e and lg == 0 for c, e, lg in lag.values()),
         "consumer_lag: the SQL group is at the end of each partition (%s)" % lag)
    s.execute("SELECT stream.leave('k1_cross_g', %s)", (T,))
    s.close()
    t.is_(admin.execute("SELECT count(*) FROM stream.verify()").fetchone()[0], 0, "stream.verify() is clean")
finally:
    drop_all(admin)
t.exit()

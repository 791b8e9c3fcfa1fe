"""The last stable offset holds Kafka consumers back exactly as it holds SQL readers,
and the topic's value type maps Kafka bytes sensibly.

LSO: offsets 0..2 committed; session X publishes offset 3 in an open transaction;
session Y publishes and commits 4 and 5.  Then kcat -o beginning -e (read_committed,
librdkafka's default) prints exactly 0..2 and exits at the end (the listener reports
the LSO 3); kcat with isolation.level=read_uncommitted -c 3 prints 0..2 as well and a
fourth message never comes before X commits (checked with -c 4 under a bound: it
must time out); a confluent consumer parked in a long poll at 3 is woken by Y's
commits but gets nothing; when X commits it gets 3, 4, 5 in order.  A rolled-back
publish leaves a gap that consumers step over.

Value types: a bytea topic stores bytes as sent (checked in t_120); a text topic
stores UTF-8 as text and refuses invalid UTF-8 and NUL bytes; a jsonb topic stores
JSON as jsonb and refuses a value that is not JSON; refused records fail delivery
and store nothing.  SQL jsonb values reach Kafka clients as JSON text."""
import json
import time

from kafka_util import TAP, ck_consumer, ck_drain, ck_produce, ck_producer, connect, create_topic, drop_all, \
    kcat_consume, setup, sql_rows, tp

t = TAP()
admin = setup(t)
try:
    T = create_topic(admin, "k1_lso", 1, value_type="text")
    for i in range(3):
        admin.execute("SELECT stream.publish(%s, %s::text)", (T, "c%d" % i))
    x = connect(autocommit=False)
    y = connect()
    n = x.execute('SELECT "offset" FROM stream.publish(%s, %s::text)', (T, "open")).fetchone()[0]
    t.is_(n, 3, "X holds offset 3 in an open transaction")
    for v in ("y4", "y5"):
        y.execute("SELECT stream.publish(%s, %s::text)", (T, v))
    t.is_(admin.execute("SELECT end_offset, last_stable_offset FROM stream.partitions WHERE topic = %s",
                        (T,)).fetchone(), (6, 3), "SQL: end offset 6, LSO 3")

    rc, got, err = kcat_consume(T, "-o", "beginning")
    t.is_((rc, [(o, v) for _, o, _, v in got]), (0, [(0, "c0"), (1, "c1"), (2, "c2")]),
          "kcat -e (read_committed): exactly 0..2, then the end")
    rc, got, err = kcat_consume(T, "-o", "beginning", "-X", "isolation.level=read_uncommitted", "-c", "4",
                                timeout=3)
    t.is_([(o, v) for _, o, _, v in got], [(0, "c0"), (1, "c1"), (2, "c2")],
          "kcat read_uncommitted -c 4: only 0..2 come, no 4th message while X is open")
    rc, got, err = kcat_consume(T, "-o", "3")
    t.is_([o for _, o, _, _ in got], [], "kcat -o 3 -e: nothing at or past the LSO")

    c = ck_consumer(**{"fetch.wait.max.ms": 1000})
    c.assign([tp(T, 0, 0)])
    msgs, errs = ck_drain(c)
    t.is_([m.offset() for m in msgs], [0, 1, 2], "confluent: 0..2 then EOF")
    # parked at 3 now; Y's commits wake the listener, which must still return nothing
    y.execute("SELECT stream.publish(%s, %s::text)", (T, "y6"))
    stray = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            stray.append(m.offset())
    t.is_(stray, [], "confluent: nothing past the LSO after another session's commit woke the listener")
    t0 = time.monotonic()
    x.commit()
    msgs, errs = ck_drain(c, want=4, timeout=20)
    t.is_([(m.offset(), m.value().decode()) for m in msgs], [(3, "open"), (4, "y4"), (5, "y5"), (6, "y6")],
          "after X commits: 3, 4, 5, 6 in order (%.2f s)" % (time.monotonic() - t0))

    # a rolled-back publish is a gap
    x.execute("SELECT stream.publish(%s, %s::text)", (T, "rolled back"))
    x.rollback()
    y.execute("SELECT stream.publish(%s, %s::text)", (T, "after gap"))
    msgs, errs = ck_drain(c, want=1, timeout=20)
    t.is_([(m.offset(), m.value().decode()) for m in msgs], [(8, "after gap")], "the rolled-back offset 7 is skipped")
    c.close()
    rc, got, err = kcat_consume(T, "-o", "beginning")
    t.is_([o for _, o, _, _ in got], [0, 1, 2, 3, 4, 5, 6, 8], "kcat: every committed offset, none rolled back")
    x.close()
    y.close()

    # ---- value types ----
    TT = create_topic(admin, "k1_vt_text", 1, value_type="text")
    TJ = create_topic(admin, "k1_vt_json", 1, value_type="jsonb")
    p = ck_producer(**{"message.timeout.ms": 10000, "retries": 0})
    good = ck_produce(p, TT, [(b"u", "héllo wörld ✓".encode())])
    t.is_(good[0][0], None, "text topic: UTF-8 accepted")
    bad = ck_produce(p, TT, [(b"bad", b"\xff\xfe\xfd")])
    t.ok(bad[0][0] is not None, "text topic: invalid UTF-8 refused (%s)" % bad[0][0])
    bad = ck_produce(p, TT, [(b"nul", b"a\x00b")])
    t.ok(bad[0][0] is not None, "text topic: a NUL byte refused (%s)" % bad[0][0])
    t.is_([(k, v) for _, k, v, _ in sql_rows(admin, TT, fn="read_text")], [("u", "héllo wörld ✓")],
          "text topic: only the valid record stored")

    good = ck_produce(p, TJ, [(b"j", b'{"a": [1, 2, {"b": null}], "c": "\\u00e9"}'), (b"j2", b"42")])
    t.is_([e for e, _, _ in good], [None, None], "jsonb topic: JSON accepted (an object and a scalar)")
    bad = ck_produce(p, TJ, [(b"bad", b"{not json")])
    t.ok(bad[0][0] is not None, "jsonb topic: a value that is not JSON is refused (%s)" % bad[0][0])
    t.is_([(k, v) for _, k, v, _ in sql_rows(admin, TJ, fn="read")],
          [("j", {"a": [1, 2, {"b": None}], "c": "é"}), ("j2", 42)], "jsonb topic: stored as jsonb")
    admin.execute("SELECT stream.publish(%s, %s::jsonb, key => 's')", (TJ, '{"from": "sql", "n": [1, 2]}'))
    c = ck_consumer()
    c.assign([tp(TJ, 0, 0)])
    msgs, errs = ck_drain(c)
    c.close()
    t.is_([json.loads(m.value()) for m in msgs], [{"a": [1, 2, {"b": None}], "c": "é"}, 42, {"from": "sql", "n": [1, 2]}],
          "jsonb topic -> confluent: values are JSON text that parses back to the stored values")
finally:
    drop_all(admin)
t.exit()

"""Headers, NULL values and empty or NULL keys round-trip between Kafka clients and SQL.

On a bytea topic (bytes stored as they came): confluent_kafka produces records with
headers (one with a NULL value), a NULL key, an empty key, a NULL value (tombstone) and
an empty value; kcat produces with -H headers, -Z (an empty field is NULL) and -K:.
Then the same records are read back three ways, each must tell NULL from empty:
confluent consume, kcat -C -J and SQL stream.read_bytea (key text NULL vs '', value
NULL vs '\\x', headers a JSON object of the header names).  Then the other way: SQL
publish with headers and a NULL value, consumed by confluent and kcat."""
from kafka_util import TAP, ck_consumer, ck_drain, ck_produce, ck_producer, create_topic, drop_all, kcat, \
    kcat_consume, kcat_json, setup, sql_rows, tp

t = TAP()
admin = setup(t)
try:
    T = create_topic(admin, "k1_hdr", 1, value_type="bytea")
    p = ck_producer()
    sent = [
        (b"k1", b"v1", [("h1", b"x"), ("trace-id", b"abc")]),
        (None, b"v2", None),
        (b"", b"v3", None),
        (b"k4", None, None),
        (b"k5", b"", None),
        (b"k6", b"\x00\xffbin\x01", [("hnull", None), ("empty", b"")]),
    ]
    res = ck_produce(p, T, [(k, v, h, 0) for k, v, h in sent])
    t.is_([r[0] for r in res], [None] * len(sent), "confluent: all 6 records delivered")
    t.is_([r[2] for r in res], list(range(6)), "at offsets 0..5")

    # kcat -Z: "kz:" has a NULL value, ":vz" a NULL key; -H adds headers to every record
    r = kcat(["-P", "-t", T, "-p", "0", "-K:", "-Z", "-H", "h2=y", "-H", "h3=zz"], input="kz:\n:vz\n", timeout=60)
    t.is_(r.returncode, 0, "kcat -P -Z -K: -H exits 0 (%s)" % r.stderr.strip()[-300:])
    # without -Z, ":ve" has an empty key
    r = kcat(["-P", "-t", T, "-p", "0", "-K:"], input=":ve\n", timeout=60)
    t.is_(r.returncode, 0, "kcat -P -K: exits 0")

    # --- SQL read ---
    rows = sql_rows(admin, T, 0, fn="read_bytea")
    t.is_([(o, k, bytes(v) if v is not None else None) for o, k, v, _ in rows],
          [(0, "k1", b"v1"), (1, None, b"v2"), (2, "", b"v3"), (3, "k4", None), (4, "k5", b""),
           (5, "k6", b"\x00\xffbin\x01"), (6, "kz", None), (7, None, b"vz"), (8, "", b"ve")],
          "SQL read_bytea: keys (NULL vs empty) and values (NULL vs empty, binary) as produced")
    hdrs = [h for _, _, _, h in rows]
    t.is_(hdrs[0], {"h1": "x", "trace-id": "abc"}, "SQL: headers of record 0 as a JSON object")
    t.is_(hdrs[1:5], [None] * 4, "SQL: records without headers have NULL headers")
    t.is_(hdrs[5], {"hnull": None, "empty": ""}, "SQL: a NULL header value is JSON null, an empty one ''")
    t.is_(hdrs[6:8], [{"h2": "y", "h3": "zz"}] * 2, "SQL: kcat -H headers")

    # --- confluent consume ---
    c = ck_consumer()
    c.assign([tp(T, 0, 0)])
    msgs, errs = ck_drain(c)
    c.close()
    t.is_(errs, [], "confluent consume: no error")
    t.is_([(m.offset(), m.key(), m.value()) for m in msgs],
          [(0, b"k1", b"v1"), (1, None, b"v2"), (2, b"", b"v3"), (3, b"k4", None), (4, b"k5", b""),
           (5, b"k6", b"\x00\xffbin\x01"), (6, b"kz", None), (7, None, b"vz"), (8, b"", b"ve")],
          "confluent consume: keys and values, NULL vs empty")
    # (a JSON object does not keep the order of header names: compare them sorted)
    t.is_([sorted(m.headers()) if m.headers() is not None else None for m in msgs],
          [[("h1", b"x"), ("trace-id", b"abc")], None, None, None, None, [("empty", b""), ("hnull", None)],
           [("h2", b"y"), ("h3", b"zz")], [("h2", b"y"), ("h3", b"zz")], None],
          "confluent consume: headers, NULL header value kept")

    # --- kcat consume ---
    rc, got, err = kcat_json(["-C", "-t", T, "-e", "-o", "beginning"])
    t.is_(rc, 0, "kcat -C -J -e exits 0")
    def pairs(h):
        return None if h is None else sorted(zip(h[0::2], h[1::2]))
    want = {0: ("k1", "v1", [("h1", "x"), ("trace-id", "abc")]), 1: (None, "v2", None), 2: ("", "v3", None),
            3: ("k4", None, None), 4: ("k5", "", None), 6: ("kz", None, [("h2", "y"), ("h3", "zz")]),
            7: (None, "vz", [("h2", "y"), ("h3", "zz")]), 8: ("", "ve", None)}
    t.is_({m["offset"]: (m["key"], m["payload"], pairs(m.get("headers"))) for m in got if m["offset"] != 5},
          want, "kcat -C -J: keys, payloads and headers (null for NULL)")

    # --- SQL publish -> Kafka consumers ---
    admin.execute("SELECT stream.publish(%s, NULL::bytea, key => 'tomb', headers => %s::jsonb, partition => 0)",
                  (T, '{"trace-id": "t-1", "z": ""}'))
    admin.execute("SELECT stream.publish(%s, '\\x00ff'::bytea, key => '', partition => 0)", (T,))
    c = ck_consumer()
    c.assign([tp(T, 0, 9)])
    msgs, errs = ck_drain(c)
    c.close()
    t.is_([(m.offset(), m.key(), m.value(), sorted(m.headers()) if m.headers() else None) for m in msgs],
          [(9, b"tomb", None, [("trace-id", b"t-1"), ("z", b"")]), (10, b"", b"\x00\xff", None)],
          "SQL publish -> confluent: NULL value, headers as bytes, empty key")
    rc, got, err = kcat_consume(T, "-o", "9")
    t.is_([(o, k, v) for _, o, k, v in got][:1], [(9, "tomb", None)], "SQL publish -> kcat: a NULL payload is null")
    t.is_([(o, k) for _, o, k, v in got], [(9, "tomb"), (10, "")], "SQL publish -> kcat: an empty key is \"\"")
finally:
    drop_all(admin)
t.exit()

"""Kafka data APIs over raw frames: RecordBatch validation, Produce, Fetch,
ListOffsets and Metadata, checked against what SQL sees.

Frames are built by test/kafka/kafka_raw.py (its own CRC-32C and varints), so
each case is exact: a corrupt CRC, a truncated batch, gzip, snappy, bad JSON,
a non-UTF-8 key, an oversize record, one bad partition next to a good one,
unknown topics, missing privileges, the LSO, a rolled-back tail and
ListOffsets at a timestamp.  Topics are named k05_* and dropped at the end.
"""
import atexit
import os
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "multi"))
sys.path.insert(0, HERE)
from lib import TAP, connect, kafka_node_id, pg_log_path, pg_log_since, wait_until  # noqa: E402
import kafka_raw as k  # noqa: E402

CORRUPT, UNKNOWN_TOPIC, TOO_LARGE, INVALID_ACKS = 2, 3, 10, 21
OUT_OF_RANGE, TOPIC_AUTH, INVALID_REQUEST, FORMAT = 1, 29, 42, 43
COMPRESSION, INVALID_RECORD, INVALID_TOPIC = 76, 87, 17

t = TAP()
db = connect("postgres")
db.execute("SET client_min_messages = warning")
db.execute("CREATE EXTENSION IF NOT EXISTS stream")

TOPICS = ["k05_json", "k05_text", "k05_bytes", "k05_two", "k05_small", "k05_lso", "k05_time",
          "k05_priv", "k05_big"]


def cleanup():
    db.execute("ALTER SYSTEM RESET stream.kafka_role")
    db.execute("SELECT pg_reload_conf()")
    for name in TOPICS:
        db.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
    db.execute("DROP ROLE IF EXISTS k05_reader")


cleanup()
atexit.register(cleanup)
db.execute("SELECT stream.create_topic('k05_json', 1)")
db.execute("SELECT stream.create_topic('k05_text', 1, value_type => 'text')")
db.execute("SELECT stream.create_topic('k05_bytes', 1, value_type => 'bytea')")
db.execute("SELECT stream.create_topic('k05_two', 2)")
db.execute("SELECT stream.create_topic('k05_small', 1, max_message_bytes => 100)")
db.execute("SELECT stream.create_topic('k05_lso', 1)")
db.execute("SELECT stream.create_topic('k05_time', 1)")
db.execute("SELECT stream.create_topic('k05_priv', 1)")
db.execute("SELECT stream.create_topic('k05_big', 1, value_type => 'bytea')")

c = k.Conn()


def stored(topic, partition=0, fn="read_text"):
    return db.execute("SELECT \"offset\", key, value, headers FROM stream.%s(%%s, %%s, 0, 1000)" % fn,
                      (topic, partition)).fetchall()


def end_offset(topic, partition=0):
    return db.execute("SELECT end_offset FROM stream.partitions WHERE topic = %s AND partition = %s",
                      (topic, partition)).fetchone()[0]


def produce1(topic, blob, partition=0, **kw):
    return c.produce({topic: {partition: blob}}, **kw)[topic][partition]


def hsort(headers):
    return sorted(headers, key=lambda h: (h[0], h[1] is not None, h[1] or b""))


def batch(*records, **kw):
    return k.encode_batch([(r[0], r[1], r[2] if len(r) > 2 else []) for r in records], **kw)


# ---- Metadata ----
md = c.metadata(None)
t.ok(all(n in md["topics"] for n in TOPICS), "Metadata v4 with a null list lists every topic")
NODE = kafka_node_id(connect("postgres"))
t.is_(md["brokers"], [{"node_id": NODE, "host": "127.0.0.1", "port": k.PORT, "rack": None}],
      "one broker: the listener itself")
t.is_(len(md["topics"]["k05_two"]["partitions"]), 2, "k05_two has its 2 partitions")
md0 = c.metadata(None, version=0)
t.ok("k05_json" in md0["topics"], "Metadata v0 with an empty list lists every topic")
md1 = c.metadata([], version=1)
t.is_(md1["topics"], {}, "Metadata v1 with an empty list lists none")
md = c.metadata(["k05_json", "k05_nope", "bad name!"])
t.is_((md["topics"]["k05_json"]["error"], md["topics"]["k05_nope"]["error"],
       md["topics"]["bad name!"]["error"]), (0, UNKNOWN_TOPIC, INVALID_TOPIC),
      "requested topics: found, unknown (3, not created), invalid name (17)")
t.is_(db.execute("SELECT count(*) FROM stream.topics WHERE topic = 'k05_nope'").fetchone()[0], 0,
      "Metadata never creates a topic")

# ---- Produce: good batch, then every kind of bad one ----
r = produce1("k05_json", batch((b"k1", b'{"a": 1}'), (b"k2", None)))
t.is_((r["error"], r["base_offset"], r["log_start_offset"]), (0, 0, 0),
      "a good batch of 2 is stored at offset 0")
t.is_(stored("k05_json"), [(0, "k1", '{"a": 1}', None), (1, "k2", None, None)],
      "SQL reads both, a NULL value as NULL")

good = batch((b"k3", b'{"a": 3}'))
bad_crc = bytearray(good)
bad_crc[-1] ^= 0x01
t.is_(produce1("k05_json", bytes(bad_crc))["error"], CORRUPT, "a CRC mismatch is CORRUPT_MESSAGE")
t.is_(produce1("k05_json", good[:-3])["error"], CORRUPT, "a truncated batch is CORRUPT_MESSAGE")
shortlen = bytearray(good)
struct.pack_into(">i", shortlen, 8, len(good) - 12 - 2)   # batch length 2 short of its records
t.is_(produce1("k05_json", bytes(shortlen))["error"], CORRUPT,
      "a batch length that cuts a record is CORRUPT_MESSAGE")
t.is_(produce1("k05_json", good + good[:20])["error"], CORRUPT,
      "a second batch cut short is CORRUPT_MESSAGE (and the first is not stored either)")
t.is_(produce1("k05_json", batch((b"k", b"1"), compression=2, records_blob=b"\x00" * 16))["error"],
      COMPRESSION, "snappy is UNSUPPORTED_COMPRESSION_TYPE (76)")
t.is_(produce1("k05_json", batch((b"k", b"1"), compression=4, records_blob=b"\x00" * 16))["error"],
      COMPRESSION, "zstd is UNSUPPORTED_COMPRESSION_TYPE (76)")
t.is_(produce1("k05_json", batch((b"k", b"1"), magic=1))["error"], FORMAT,
      "magic 1 is UNSUPPORTED_FOR_MESSAGE_FORMAT (43)")
t.is_(produce1("k05_json", batch((b"k", b"1"), attributes_extra=0x10))["error"], INVALID_RECORD,
      "a transactional batch is refused")
t.is_(produce1("k05_json", batch((b"k", b"1"), attributes_extra=0x20))["error"], INVALID_RECORD,
      "a control batch is refused")
t.is_(produce1("k05_json", good, transactional_id="tx")["error"], INVALID_REQUEST,
      "a transactional id is refused")
t.is_(produce1("k05_json", good, acks=5)["error"], INVALID_ACKS, "acks 5 is INVALID_REQUIRED_ACKS")
bad_gzip = batch((b"k", b"1"), compression=1, records_blob=b"\x1f\x8b" + b"\x00" * 20)
t.is_(produce1("k05_json", bad_gzip)["error"], CORRUPT, "corrupt gzip data is CORRUPT_MESSAGE")
t.is_(stored("k05_json")[-1][0], 1, "none of the refused batches stored anything")

logpos = os.path.getsize(pg_log_path())
t.is_(produce1("k05_json", batch((b"ok", b'{"b": 1}'), (b"bad", b"{not json")))["error"],
      INVALID_RECORD, "bad JSON to a jsonb topic is INVALID_RECORD")
log = wait_until(lambda: (lambda s: s if "refused" in s else None)(pg_log_since(logpos)),
                 what="the refusal in the server log")
t.ok('topic "k05_json" partition 0 refused with error 87: record 1 of 2: invalid input syntax for type json' in log,
     "the server log says which record was refused and why")
t.is_(produce1("k05_json", batch((b"\xff\xfe", b"{}")))["error"], INVALID_RECORD,
      "a non-UTF-8 key is INVALID_RECORD")
t.is_(produce1("k05_json", batch((b"a\x00b", b"{}")))["error"], INVALID_RECORD,
      "a key with a NUL byte is INVALID_RECORD")
t.is_(produce1("k05_json", batch((b"k", b"{}", [(b"\xff", b"v")])))["error"], INVALID_RECORD,
      "a non-UTF-8 header key is INVALID_RECORD")
t.is_(len(stored("k05_json")), 2, "nothing of the refused records was stored")

gz = batch((b"g1", b'{"z": 1}'), (b"g2", b'{"z": 2}'), compression=1)
r = produce1("k05_json", gz)
t.is_((r["error"], r["base_offset"]), (0, 2), "a gzip batch is accepted")
t.is_(stored("k05_json")[2:], [(2, "g1", '{"z": 1}', None), (3, "g2", '{"z": 2}', None)],
      "its records are decoded and stored")

# text and bytea topics
t.is_(produce1("k05_text", batch((None, "héllo".encode()), (None, b"")))["error"], 0,
      "UTF-8 text to a text topic is accepted")
t.is_(produce1("k05_text", batch((None, b"\xc3\x28")))["error"], INVALID_RECORD,
      "non-UTF-8 text to a text topic is INVALID_RECORD")
t.is_(stored("k05_text"), [(0, None, "héllo", None), (1, None, "", None)],
      "the text topic holds the two good values (an empty one is empty, not NULL)")
raw = bytes(range(256))
t.is_(produce1("k05_bytes", batch((b"b", raw), (b"n", None)))["error"], 0, "bytes to a bytea topic")
t.is_(db.execute("SELECT value FROM stream.read_bytea('k05_bytes', 0)").fetchall(),
      [(raw,), (None,)], "a bytea topic stores the bytes as they came, NULL as NULL")

# max_message_bytes
t.is_(produce1("k05_small", batch((b"k", b'"' + b"x" * 200 + b'"')))["error"], TOO_LARGE,
      "a record over max_message_bytes is MESSAGE_TOO_LARGE")
t.is_(produce1("k05_small", batch((b"k", b'"' + b"x" * 20 + b'"'), (b"k", b'"' + b"x" * 200 + b'"')))["error"],
      TOO_LARGE, "one oversize record refuses its whole batch")
t.is_(end_offset("k05_small"), 0, "and nothing was stored in k05_small")
big = b"\x01" * (2 << 20)
r = c.produce({"k05_big": {0: batch((b"k", big), compression=1)}})["k05_big"][0]
t.is_(r["error"], TOO_LARGE, "a gzip batch inflating past the topic's limit (1 MB) is MESSAGE_TOO_LARGE")

# one bad partition next to a good one, and unknown topics and partitions
res = c.produce({"k05_two": {0: batch((b"a", b"1"), (b"b", b"2")),
                             1: batch((b"c", b"3"), (b"d", b"{oops"))},
                 "k05_nope": {0: good}})
t.is_((res["k05_two"][0]["error"], res["k05_two"][1]["error"], res["k05_nope"][0]["error"]),
      (0, INVALID_RECORD, UNKNOWN_TOPIC),
      "good partition stored, bad partition refused, unknown topic UNKNOWN_TOPIC_OR_PARTITION")
t.is_([r[:3] for r in stored("k05_two", 0)], [(0, "a", "1"), (1, "b", "2")],
      "the good partition holds its records")
t.is_((stored("k05_two", 1), end_offset("k05_two", 1)), ([], 0),
      "the bad partition holds nothing, not even its good first record")
t.is_(produce1("k05_two", good, partition=2)["error"], UNKNOWN_TOPIC,
      "a partition out of range is UNKNOWN_TOPIC_OR_PARTITION")
t.is_(db.execute("SELECT count(*) FROM stream.topics WHERE topic = 'k05_nope'").fetchone()[0], 0,
      "Produce never creates a topic")

# acks = 0: no answer at all, the next request's answer comes next
c.produce({"k05_json": {0: batch((b"fire", b'"forget"'))}}, acks=0)
md = c.metadata(["k05_json"])
t.is_(md["topics"]["k05_json"]["error"], 0, "after an acks=0 Produce the next answer is the next request's")
t.is_(stored("k05_json")[-1][1:3], ("fire", '"forget"'), "the acks=0 record was stored")

# headers round trip
hdrs = [(b"trace", b"abc"), (b"dup", b"1"), (b"dup", None), (b"dup", b"\x00\xff"), (b"nul", None),
        (b"empty", b"")]
r = produce1("k05_json", batch((b"h", b"{}", hdrs)))
t.is_(r["error"], 0, "a record with headers is accepted")
t.is_(db.execute("SELECT headers FROM stream.read('k05_json', 0, %s)", (r["base_offset"],)).fetchone()[0],
      {"trace": "abc", "dup": ["1", None, {"base64": "AP8="}], "nul": None, "empty": ""},
      "headers stored as documented: strings, null, arrays for repeated keys, base64 for binary")
f = c.fetch({"k05_json": {0: r["base_offset"]}})["k05_json"][0]
t.is_(hsort(f["records"][0]["headers"]), hsort(hdrs), "Fetch gives the same headers back")
db.execute("""SELECT stream.publish('k05_json', '{}'::jsonb, 'sql',
              '{"n": 5, "b": true, "o": {"x": 1}, "s": "t"}'::jsonb)""")
f = c.fetch({"k05_json": {0: r["base_offset"] + 1}})["k05_json"][0]
t.is_(hsort(f["records"][0]["headers"]),
      hsort([(b"n", b"5"), (b"b", b"true"), (b"o", b'{"x": 1}'), (b"s", b"t")]),
      "SQL-published headers of any JSON type reach Kafka clients as text")

# ---- Fetch ----
f = c.fetch({"k05_json": {0: 0}})["k05_json"][0]
end = end_offset("k05_json")
t.is_((f["error"], f["high_watermark"], f["last_stable_offset"], f["log_start_offset"]),
      (0, end, end, 0), "Fetch reports the high watermark, the LSO and the log start")
t.is_([x["offset"] for x in f["records"]], list(range(end)), "and every record from 0")
t.ok(all(b["crc_ok"] and b["magic"] == 2 and b["producer_id"] == -1 and b["attributes"] == 0
         for b in f["batches"]), "batches: magic 2, CRC-32C right, producer id -1, uncompressed")
t.is_(f["records"][0]["value"], b'{"a": 1}', "a jsonb value is sent as its text form")
ts_sql = db.execute("""SELECT (extract(epoch FROM published_at) * 1000)::bigint
                       FROM stream.read('k05_json', 0, 0, 1)""").fetchone()[0]
t.ok(abs(f["records"][0]["timestamp"] - ts_sql) <= 1, "record timestamps are published_at in ms")
f = c.fetch({"k05_json": {0: end + 1}})["k05_json"][0]
t.is_((f["error"], f["records_raw"]), (OUT_OF_RANGE, b""),
      "a fetch beyond the end offset is OFFSET_OUT_OF_RANGE, with empty (not null) records")
f = c.fetch({"k05_json": {0: end}})["k05_json"][0]
t.is_((f["error"], f["records_raw"]), (0, b""), "a fetch at the end returns empty records")
f = c.fetch({"k05_json": {0: 0}}, partition_max_bytes=1)["k05_json"][0]
t.is_(len(f["records"]), 1, "partition_max_bytes 1 still returns one record")
f = c.fetch({"k05_json": {0: 0}, "k05_two": {0: 0}}, max_bytes=1, partition_max_bytes=1 << 20)
t.is_((len(f["k05_json"][0]["records"]), len(f["k05_two"][0]["records"])), (1, 0),
      "max_bytes 1: the response's first record only")
f = c.fetch({"k05_json": {0: 0}}, partition_max_bytes=200)["k05_json"][0]
t.ok(1 < len(f["records"]) < end, "partition_max_bytes 200 returns some records, not all")
t.is_(f["batches"][0]["base_offset"] + f["batches"][0]["last_offset_delta"], f["records"][-1]["offset"],
      "a batch cut by the size limit covers only what it holds")
f = c.fetch({"k05_nope": {0: 0}, "k05_two": {5: 0}})
t.is_((f["k05_nope"][0]["error"], f["k05_two"][5]["error"]), (UNKNOWN_TOPIC, UNKNOWN_TOPIC),
      "Fetch of an unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION")

# the LSO: an open SQL transaction holding offset n stops Fetch before n
db.execute("SELECT stream.publish('k05_lso', '1'::jsonb)")
tx = connect("postgres", autocommit=False)
tx.execute("SELECT stream.publish('k05_lso', '2'::jsonb)")          # offset 1, open
db.execute("SELECT stream.publish('k05_lso', '3'::jsonb)")          # offset 2, committed
f = c.fetch({"k05_lso": {0: 0}})["k05_lso"][0]
t.is_((f["high_watermark"], f["last_stable_offset"], [x["offset"] for x in f["records"]]),
      (3, 1, [0]), "an open transaction at offset 1: LSO 1, only offset 0 returned")
t.is_(f["batches"][0]["last_offset_delta"], 0, "and the batch does not cover the held offset")
# long poll: parked at the LSO, woken by the commit (socket timeout 30 s < max_wait 60 s)
corr = c.send(1, 5, struct.pack(">iiiibi", -1, 60000, 1, 1 << 20, 1, 1) + k._string("k05_lso")
              + struct.pack(">iiqqi", 1, 0, 1, -1, 1 << 20))
tx.commit()
r = c.recv(corr)
r.take(">i")
r.take(">i")
r.string()
r.take(">i")
part = dict(partition=r.take(">i"), error=r.take(">h"), hw=r.take(">q"), lso=r.take(">q"))
t.is_((part["error"], part["lso"]), (0, 3), "a parked Fetch is answered when the holder commits")

# a rolled-back tail, and a rolled-back gap in the middle
tx = connect("postgres", autocommit=False)
tx.execute("SELECT stream.publish('k05_lso', '4'::jsonb)")           # 3
tx.execute("SELECT stream.publish('k05_lso', '5'::jsonb)")           # 4
tx.rollback()
f = c.fetch({"k05_lso": {0: 2}})["k05_lso"][0]
b = f["batches"][0]
t.is_(([x["offset"] for x in f["records"]], f["last_stable_offset"], b["base_offset"] + b["last_offset_delta"]),
      ([2], 5, 4), "records before a rolled-back tail: the batch covers the tail (up to 4)")
f = c.fetch({"k05_lso": {0: 3}})["k05_lso"][0]
b = f["batches"][0] if f["batches"] else None
t.ok(b is not None and b["records"] == [] and b["base_offset"] == 3 and b["last_offset_delta"] == 1
     and b["crc_ok"], "a fetch inside the rolled-back tail gets an empty batch covering 3..4")
kp = k.Conn(client_id="kafka-python-2.0.2")
f = kp.fetch({"k05_lso": {0: 3}})["k05_lso"][0]
t.is_((f["error"], f["records_raw"], f["last_stable_offset"]), (0, b"", 5),
      "kafka-python (which fails on batches without records) gets no batch there")
kp.close()
db.execute("SELECT stream.publish('k05_lso', '6'::jsonb)")           # 5
f = c.fetch({"k05_lso": {0: 3}})["k05_lso"][0]
t.is_(([x["offset"] for x in f["records"]], f["batches"][0]["base_offset"]), ([5], 3),
      "a fetch at a rolled-back gap gets the next record, in a batch starting at the gap")

# ---- ListOffsets ----
db.execute("SELECT stream.publish('k05_time', '0'::jsonb)")
db.execute("SELECT pg_sleep(0.02)")   # distinct published_at milliseconds, not ordering
db.execute("SELECT stream.publish('k05_time', '1'::jsonb)")
db.execute("SELECT stream.publish('k05_time', '2'::jsonb)")
ts1 = db.execute("""SELECT floor(extract(epoch FROM published_at) * 1000)::bigint
                    FROM stream.read('k05_time', 0, 1, 1)""").fetchone()[0]
lo = c.list_offsets({"k05_time": {0: ts1}})["k05_time"][0]
t.is_((lo["error"], lo["offset"], lo["timestamp"]), (0, 1, ts1),
      "ListOffsets at a timestamp: the first offset published at or after it, and its time")
lo = c.list_offsets({"k05_time": {0: ts1 + 3600 * 1000}})["k05_time"][0]
t.is_(lo["offset"], 3, "a timestamp after every message gives the latest offset")
lo = c.list_offsets({"k05_time": {0: -1}, "k05_lso": {0: -2}})
t.is_((lo["k05_time"][0]["offset"], lo["k05_lso"][0]["offset"]), (3, 0), "-1 latest, -2 earliest")
tx = connect("postgres", autocommit=False)
tx.execute("SELECT stream.publish('k05_time', '3'::jsonb)")
lo1 = c.list_offsets({"k05_time": {0: -1}}, version=1)["k05_time"][0]
lo2 = c.list_offsets({"k05_time": {0: -1}}, version=2, isolation=1)["k05_time"][0]
tx.rollback()
t.is_((lo1["offset"], lo2["offset"]), (3, 3),
      "latest stays below an open transaction's offset (v1 and read_committed v2)")
t.is_(c.list_offsets({"k05_nope": {0: -1}})["k05_nope"][0]["error"], UNKNOWN_TOPIC,
      "ListOffsets of an unknown topic: UNKNOWN_TOPIC_OR_PARTITION")

# ---- privileges: the listener acts as stream.kafka_role ----
db.execute("CREATE ROLE k05_reader LOGIN")
db.execute("SELECT stream.grant('k05_priv', 'k05_reader', 'consume')")
db.execute("SELECT stream.publish('k05_priv', '1'::jsonb)")
db.execute("ALTER SYSTEM SET stream.kafka_role = 'k05_reader'")
db.execute("SELECT pg_reload_conf()")
wait_until(lambda: "k05_json" not in c.metadata(None)["topics"], what="the role change")
md = c.metadata(None)
t.ok("k05_priv" in md["topics"] and "k05_json" not in md["topics"],
     "Metadata lists only the topics the role holds a privilege on")
t.is_(c.metadata(["k05_json"])["topics"]["k05_json"]["error"], TOPIC_AUTH,
      "a requested topic without privilege: TOPIC_AUTHORIZATION_FAILED")
t.is_(produce1("k05_priv", good)["error"], TOPIC_AUTH, "Produce without publish: TOPIC_AUTHORIZATION_FAILED")
t.is_(end_offset("k05_priv"), 1, "and nothing was stored")
t.is_(len(c.fetch({"k05_priv": {0: 0}})["k05_priv"][0]["records"]), 1, "Fetch with consume works")
t.is_(c.fetch({"k05_json": {0: 0}})["k05_json"][0]["error"], TOPIC_AUTH,
      "Fetch without consume: TOPIC_AUTHORIZATION_FAILED")
t.is_(c.list_offsets({"k05_json": {0: -1}})["k05_json"][0]["error"], TOPIC_AUTH,
      "ListOffsets without consume: TOPIC_AUTHORIZATION_FAILED")
db.execute("ALTER SYSTEM RESET stream.kafka_role")
db.execute("SELECT pg_reload_conf()")
wait_until(lambda: "k05_json" in c.metadata(None)["topics"], what="the role reset")

# a malformed Produce body closes the connection only
c2 = k.Conn()
try:
    c2.call(0, 7, b"\x00\x00\x00")
    closed = False
except (ConnectionError, socket.timeout, struct.error):
    closed = True
t.ok(closed, "a truncated Produce body closes that connection")
t.is_(c.metadata(["k05_json"])["topics"]["k05_json"]["error"], 0, "the others keep being served")

c.close()
t.exit()

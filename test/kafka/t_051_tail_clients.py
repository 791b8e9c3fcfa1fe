"""Real clients over a rolled-back tail: librdkafka (confluent-kafka) and
kafka-python must not stay stuck re-fetching offsets that were rolled back,
and must still get the next message; kcat produces and consumes.

Setup: offsets 0 and 1 committed, 2 and 3 published in a transaction that
rolls back (end offset 4, LSO 4, nothing stored at 2..3).  librdkafka's fetch
position is read from its statistics (next_offset); kafka-python's from
position().  Topics k05_tail*, dropped at the end.
"""
import atexit
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "multi"))
from lib import TAP, connect, wait_until  # noqa: E402

PORT = int(os.environ.get("STREAM_KAFKA_PORT", "9499"))
BOOT = "127.0.0.1:%d" % PORT

t = TAP()
db = connect("postgres")
db.execute("SET client_min_messages = warning")
db.execute("CREATE EXTENSION IF NOT EXISTS stream")


def cleanup():
    for name in ("k05_tail", "k05_kcat"):
        db.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))


cleanup()
atexit.register(cleanup)
db.execute("SELECT stream.create_topic('k05_tail', 1)")
db.execute("SELECT stream.publish('k05_tail', '0'::jsonb)")
db.execute("SELECT stream.publish('k05_tail', '1'::jsonb)")
tx = connect("postgres", autocommit=False)
tx.execute("SELECT stream.publish('k05_tail', '2'::jsonb)")
tx.execute("SELECT stream.publish('k05_tail', '3'::jsonb)")
tx.rollback()
t.is_(db.execute("SELECT end_offset, last_stable_offset FROM stream.partitions WHERE topic = 'k05_tail'")
      .fetchone(), (4, 4), "setup: end offset and LSO 4, offsets 2 and 3 rolled back")

# ---- librdkafka ----
import confluent_kafka as ck  # noqa: E402

stats = {}


def on_stats(s):
    p = json.loads(s).get("topics", {}).get("k05_tail", {}).get("partitions", {}).get("0")
    if p:
        stats["next_offset"] = p.get("next_offset")


def librdkafka_consumer():
    # no group: assign() only, so nothing here depends on the group coordinator
    return ck.Consumer({"bootstrap.servers": BOOT, "group.id": "k05_tail_unused",
                        "enable.auto.commit": False, "statistics.interval.ms": 100,
                        "stats_cb": on_stats, "fetch.wait.max.ms": 100,
                        "log_level": 0})


def consume(consumer, n, timeout=20):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            got.append((m.offset(), m.value()))
    return got


def next_offset_is(consumer, want):
    def check():
        consumer.poll(0.1)
        return stats.get("next_offset") == want
    try:
        wait_until(check, timeout=20)
        return True
    except TimeoutError:
        return False


c = librdkafka_consumer()
c.assign([ck.TopicPartition("k05_tail", 0, 0)])
t.is_(consume(c, 2), [(0, b"0"), (1, b"1")], "librdkafka reads offsets 0 and 1")
t.ok(next_offset_is(c, 4), "and its fetch position moves past the rolled-back tail to 4 (stats next_offset)")
c.close()

stats.clear()
c = librdkafka_consumer()
c.assign([ck.TopicPartition("k05_tail", 0, 2)])
t.ok(next_offset_is(c, 4), "librdkafka started inside the rolled-back tail moves to 4 (empty batch)")
db.execute("SELECT stream.publish('k05_tail', '4'::jsonb)")
t.is_(consume(c, 1), [(4, b"4")], "and gets the next message, offset 4")
c.close()

# ---- kafka-python ----
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

tp = TopicPartition("k05_tail", 0)
kc = KafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False, fetch_max_wait_ms=100,
                   api_version=(1, 0, 0))
kc.assign([tp])
kc.seek(tp, 0)


def kp_consume(n, timeout=20):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for recs in kc.poll(200).values():
            got += [(r.offset, r.value) for r in recs]
    return got


t.is_(kp_consume(5), [(0, b"0"), (1, b"1"), (4, b"4")],
      "kafka-python reads 0, 1 and 4 from the start")
t.is_(kc.position(tp), 5, "and its position is 5")

# a tail rolled back after the consumer reached it
tx = connect("postgres", autocommit=False)
tx.execute("SELECT stream.publish('k05_tail', '5'::jsonb)")
tx.execute("SELECT stream.publish('k05_tail', '6'::jsonb)")
tx.rollback()
errors = []
for _ in range(5):
    try:
        kc.poll(200)
    except Exception as e:          # kafka-python 2.0.2 raised IndexError on an empty batch
        errors.append(repr(e))
t.is_(errors, [], "kafka-python polling at a rolled-back tail raises nothing")
db.execute("SELECT stream.publish('k05_tail', '7'::jsonb)")
t.is_(kp_consume(1), [(7, b"7")], "kafka-python gets the next message after the gap, offset 7")
t.is_(kc.position(tp), 8, "and moves to 8")
kc.close()

# ---- kcat ----
db.execute("SELECT stream.create_topic('k05_kcat', 2)")
out = subprocess.run(["kcat", "-b", BOOT, "-P", "-t", "k05_kcat", "-K:", "-p", "1", "-H", "h=v"],
                     input=b'a:{"n": 1}\nb:{"n": 2}\n', capture_output=True, timeout=60)
t.is_(out.returncode, 0, "kcat -P produces to partition 1")
t.is_(db.execute("SELECT key, value::text, headers::text FROM stream.read('k05_kcat', 1)").fetchall(),
      [("a", '{"n": 1}', '{"h": "v"}'), ("b", '{"n": 2}', '{"h": "v"}')], "SQL reads what kcat produced")
db.execute("""SELECT stream.publish('k05_kcat', '{"n": 3}'::jsonb, 'c', partition => 0)""")
out = subprocess.run(["kcat", "-b", BOOT, "-C", "-t", "k05_kcat", "-e", "-o", "beginning",
                      "-f", "%p %o %k %s\n"], capture_output=True, timeout=60)
t.is_(sorted(out.stdout.decode().splitlines()),
      ['0 0 c {"n": 3}', '1 0 a {"n": 1}', '1 1 b {"n": 2}'], "kcat -C -e reads both paths' messages")
out = subprocess.run(["kcat", "-b", BOOT, "-L", "-t", "k05_kcat"], capture_output=True, timeout=60)
t.ok(b'topic "k05_kcat" with 2 partitions' in out.stdout, "kcat -L describes the topic")

t.exit()

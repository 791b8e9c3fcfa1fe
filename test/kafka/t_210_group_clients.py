"""The group coordinator with real clients: python3-kafka (kafka-python 2.0.2)
and python3-confluent-kafka (librdkafka).

- kafka-python: a group consumes every message SQL published and commits;
  stream.consumer_lag shows the group at the end; an SQL poll of the same
  group starts where Kafka committed, and the SQL commit is what Kafka's
  committed() reads back (shared offsets).
- kafka-python: two consumers split the partitions, the survivor takes all
  after the other closes (LeaveGroup).
- confluent-kafka with partition.assignment.strategy=cooperative-sticky: two
  consumers split the partitions (incremental rebalances), read every message
  between them, and when one is killed (SIGKILL: no LeaveGroup) the survivor
  takes all after the session timeout.
Waits are bounded polls of a condition; nothing is timed.
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "multi"))

from lib import TAP, connect  # noqa: E402

t = TAP()
try:
    import confluent_kafka
    import kafka
except ImportError as e:
    t.skip_all("Kafka client modules missing: %s" % e)

BOOT = "127.0.0.1:%s" % os.environ["STREAM_KAFKA_PORT"]
NPART = 4
db = connect(dbname="postgres")
db.execute("CREATE EXTENSION IF NOT EXISTS stream")
for name in ("k2_cli", "k2_coop"):
    db.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
    db.execute("SELECT stream.create_topic(%s, %s, value_type => 'bytea')", (name, NPART))
    db.execute("SELECT stream.publish_batch(%s, array_agg(convert_to('v' || i, 'UTF8')), "
               "array_agg('key' || i)) FROM generate_series(1, 40) i", (name,))
db.execute("DELETE FROM stream._offsets WHERE group_name LIKE 'k2_%'")


def all_offsets(topic):
    return {(p, o) for p, o in db.execute(
        "SELECT r.partition, r.\"offset\" FROM generate_series(0, %s - 1) p, "
        "LATERAL stream.read_bytea(%s, p, 0, 1000) r", (NPART, topic))}


def poll_until(polls, cond, timeout=60, what="a condition"):
    """Call every poll function in turn until cond() holds; raise after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        for p in polls:
            p()


def kp_consumer(group, **kw):
    return kafka.KafkaConsumer(
        "k2_cli", bootstrap_servers=BOOT, group_id=group, client_id="k2-kp",
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=6000, heartbeat_interval_ms=300, **kw)


def kp_poll(consumer, into):
    def poll():
        for tp, records in consumer.poll(timeout_ms=100).items():
            for r in records:
                into.add((tp.partition, r.offset))
    return poll


def kp_parts(consumer):
    return {tp.partition for tp in consumer.assignment()}


# ---- kafka-python: consume, commit, lag, shared with SQL ----
expected = all_offsets("k2_cli")
t.is_(len(expected), 40, "40 messages published by SQL in %d partitions" % NPART)
c1 = kp_consumer("k2_kp")
got = set()
poll_until([kp_poll(c1, got)], lambda: got >= expected, what="kafka-python to read everything")
t.is_(got, expected, "kafka-python (group k2_kp) read every message")
c1.commit()
lag = db.execute("SELECT count(*), sum(lag), bool_and(committed_offset = end_offset) "
                 "FROM stream.consumer_lag WHERE \"group\" = 'k2_kp' AND topic = 'k2_cli'").fetchone()
t.is_(lag, (NPART, 0, True), "stream.consumer_lag shows the Kafka group committed at the end of every partition")
c1.close()

db.execute("SELECT stream.publish('k2_cli', convert_to('late', 'UTF8'), partition => 2)")
sql = connect(dbname="postgres")
rows = sql.execute("SELECT partition, \"offset\" FROM stream.poll_bytea('k2_kp', 'k2_cli', 100)").fetchall()
end2 = db.execute("SELECT end_offset FROM stream.partitions WHERE topic = 'k2_cli' AND partition = 2").fetchone()[0]
t.is_(rows, [(2, end2 - 1)], "an SQL poll of the group returns only the message published after Kafka's commit")
sql.execute("SELECT stream.commit('k2_kp', 'k2_cli')")
sql.execute("SELECT stream.leave('k2_kp', 'k2_cli')")
c1 = kp_consumer("k2_kp")
tp = kafka.TopicPartition("k2_cli", 2)
t.is_(c1.committed(tp), end2, "kafka-python's committed() reads the SQL commit")
c1.close()

# ---- kafka-python: two members split, the survivor takes all ----
class KpMember(threading.Thread):
    """A kafka-python consumer polled in its own thread (its poll blocks while it joins)."""

    def __init__(self, group):
        super().__init__(daemon=True)
        self.consumer = kp_consumer(group)
        self.parts = set()
        self.stop = False
        self.start()

    def run(self):
        while not self.stop:
            self.consumer.poll(timeout_ms=100)
            self.parts = kp_parts(self.consumer)
        self.consumer.close()

    def close(self):
        self.stop = True
        self.join(60)


def idle():
    time.sleep(0.05)


a = KpMember("k2_kp2")
poll_until([idle], lambda: a.parts == set(range(NPART)), what="a to own every partition")
t.ok(True, "kafka-python: the first member owns every partition")
b = KpMember("k2_kp2")
poll_until([idle], lambda: a.parts and b.parts and not (a.parts & b.parts)
           and (a.parts | b.parts) == set(range(NPART)),
           what="the two kafka-python members to split the partitions")
t.ok(True, "kafka-python: two members split the partitions: %s / %s"
     % (sorted(a.parts), sorted(b.parts)))
b.close()
t.ok(not b.is_alive(), "the second member closed (LeaveGroup)")
poll_until([idle], lambda: a.parts == set(range(NPART)), what="the survivor to take every partition")
t.ok(True, "kafka-python: after the other closed, the survivor owns every partition")
a.close()

# ---- confluent-kafka, cooperative-sticky ----
CONF = {
    "bootstrap.servers": BOOT,
    "group.id": "k2_coop_g",
    "partition.assignment.strategy": "cooperative-sticky",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 200,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 300,
}


def ck_consumer():
    c = confluent_kafka.Consumer(CONF)
    c.subscribe(["k2_coop"])
    return c


def ck_poll(consumer, into):
    def poll():
        m = consumer.poll(0.1)
        if m is not None and m.error() is None:
            into.add((m.partition(), m.offset()))
    return poll


def ck_parts(consumer):
    return {tp.partition for tp in consumer.assignment()}


expected = all_offsets("k2_coop")
x = ck_consumer()
gx, gy = set(), set()
poll_until([ck_poll(x, gx)], lambda: len(ck_parts(x)) == NPART, what="x to own every partition")
t.is_(ck_parts(x), set(range(NPART)), "confluent (cooperative-sticky): the first member owns every partition")
y = ck_consumer()
poll_until([ck_poll(x, gx), ck_poll(y, gy)],
           lambda: ck_parts(x) and ck_parts(y) and not (ck_parts(x) & ck_parts(y))
           and (ck_parts(x) | ck_parts(y)) == set(range(NPART)),
           what="the two confluent members to split the partitions")
t.ok(True, "confluent (cooperative-sticky): two members split the partitions: %s / %s"
     % (sorted(ck_parts(x)), sorted(ck_parts(y))))
poll_until([ck_poll(x, gx), ck_poll(y, gy)], lambda: (gx | gy) >= expected,
           what="the two confluent members to read every message")
t.is_(gx | gy, expected, "between them, the two confluent members read every message")
y.close()
poll_until([ck_poll(x, gx)], lambda: ck_parts(x) == set(range(NPART)),
           what="x to take every partition back")
t.ok(True, "confluent: after the other closed, the survivor owns every partition again")

# a member killed with SIGKILL sends no LeaveGroup: its session must expire
child = subprocess.Popen([sys.executable, "-c", """
import sys, confluent_kafka
c = confluent_kafka.Consumer(%r)
c.subscribe(["k2_coop"])
while True:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
""" % CONF], stdout=subprocess.PIPE, text=True)
try:
    poll_until([ck_poll(x, gx)], lambda: len(ck_parts(x)) < NPART, timeout=60,
               what="the child to take some partitions")
    t.ok(len(ck_parts(x)) < NPART, "a third-party member (a child process) took some partitions")
    t.is_(child.stdout.readline().strip(), "assigned", "the child says it has partitions")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    poll_until([ck_poll(x, gx)], lambda: ck_parts(x) == set(range(NPART)), timeout=60,
               what="the killed member's session to expire")
    t.ok(True, "after the killed member's session timed out, the survivor owns every partition")
finally:
    if child.poll() is None:
        child.kill()
        child.wait()
x.close()
cnt = db.execute("SELECT count(*) FROM stream.consumer_lag WHERE \"group\" = 'k2_coop_g' "
                 "AND committed_offset IS NOT NULL").fetchone()[0]
t.is_(cnt, NPART, "the confluent group's auto-commits are in stream.consumer_lag")

sql.close()
for name in ("k2_cli", "k2_coop"):
    db.execute("SELECT stream.drop_topic(%s)", (name,))
db.execute("DELETE FROM stream._offsets WHERE group_name LIKE 'k2_%'")
t.exit()

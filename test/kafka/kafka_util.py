"""Helpers for the real-client Kafka tests test/kafka/t_1*_*.py.

The tests drive the Kafka listener (a background worker of the extension) with
clients that no one here wrote: the kcat binary, confluent_kafka (librdkafka) and
kafka-python, all from Debian, under /usr/bin/python3.  Run them with

    . scripts/lib.sh && ensure_cluster     # exports PGHOST PGPORT STREAM_KAFKA_PORT ...
    prove -v --exec /usr/bin/python3 test/kafka/t_*.py

The listener serves database `postgres` (stream.database), so the SQL side of every
test connects there; setup() creates the extension when it is missing and waits for
the listener to answer an ApiVersions request.  Topics are named k1_*, created by
the test and dropped at its end (drop_all in a finally).

Nothing here sleeps on hope: a wait is a bounded loop on a condition (wait_until),
a consumer loop ends on a partition-EOF event or a message count, and kcat runs
under a timeout.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "multi"))

import psycopg  # noqa: E402

from lib import TAP, pg_ctl, pg_log_path, pg_log_since, wait_until  # noqa: E402,F401

DB = os.environ.get("STREAM_KAFKA_DB", "postgres")
KPORT = int(os.environ.get("STREAM_KAFKA_PORT", "0") or 0)
BOOT = "127.0.0.1:%d" % KPORT
KCAT = "kcat"
PREFIX = "k1_"

_created = []


def connect(autocommit=True, **kwargs):
    kwargs.setdefault("application_name", os.path.basename(sys.argv[0]))
    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(dbname=DB, autocommit=autocommit, **kwargs)


# ---- raw protocol ----

def frame(api_key, api_version, correlation_id, body=b"", client_id="k1-test"):
    """A request frame with a v1 request header (int32 size first)."""
    cid = client_id.encode()
    hdr = struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid
    payload = hdr + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def recv_frame(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def raw_connect(timeout=10):
    s = socket.create_connection(("127.0.0.1", KPORT), timeout=timeout)
    s.settimeout(timeout)
    return s


def api_versions(sock, correlation_id=7):
    """Send ApiVersions v0 on sock; return {api_key: (min, max)} (raises if no answer)."""
    sock.sendall(frame(18, 0, correlation_id))
    resp = recv_frame(sock)
    cid, err, n = struct.unpack(">ihi", resp[:10])
    if cid != correlation_id:
        raise AssertionError("correlation id %d, expected %d" % (cid, correlation_id))
    if err != 0:
        raise AssertionError("ApiVersions error %d" % err)
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", resp[10 + 6 * i:16 + 6 * i])
        apis[k] = (lo, hi)
    return apis


def serving():
    """True when a new connection gets an answer to ApiVersions."""
    try:
        with raw_connect(5) as s:
            return bool(api_versions(s))
    except (OSError, ConnectionError, AssertionError, struct.error):
        return False


def closed_by_peer(sock, timeout=10):
    """True when the server closes sock (EOF or reset) within timeout; bytes it sends
    before closing are read and ignored."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def wait_serving(timeout=60):
    return wait_until(serving, timeout, 0.2, what="the Kafka listener on %s to answer ApiVersions" % BOOT)


def listener_pid(conn):
    """pid of the Kafka listener worker per pg_stat_activity (None if not found)."""
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type ILIKE '%kafka%' "
                       "ORDER BY pid LIMIT 1").fetchone()
    return row[0] if row else None


# ---- setup and topics ----

def setup(t):
    """Admin session in the listener's database with the extension; listener answers."""
    if not KPORT:
        t.skip_all("STREAM_KAFKA_PORT is not set (run under scripts/lib.sh ensure_cluster)")
    admin = connect()
    admin.execute("SET client_min_messages = warning")
    admin.execute("CREATE EXTENSION IF NOT EXISTS stream")
    wait_serving()
    return admin


def create_topic(conn, name, partitions=1, value_type="bytea", **kw):
    assert name.startswith(PREFIX)
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
    args = ["%s", "partitions => %s", "value_type => %s::regtype"]
    params = [name, partitions, value_type]
    casts = {"retention": "interval", "retention_bytes": "bigint", "segment_bytes": "bigint",
             "max_message_bytes": "integer"}
    for k, v in kw.items():
        args.append("%s => %%s::%s" % (k, casts[k]))
        params.append(v)
    conn.execute("SELECT stream.create_topic(%s)" % ", ".join(args), params)
    if name not in _created:
        _created.append(name)
    return name


def drop_all(conn):
    for name in _created:
        try:
            conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
        except psycopg.Error as e:  # pragma: no cover - cleanup only
            print("# could not drop %s: %s" % (name, e), flush=True)


def end_offset(conn, topic, p=0):
    return conn.execute("SELECT end_offset FROM stream.partitions WHERE topic = %s AND partition = %s",
                        (topic, p)).fetchone()[0]


def sql_rows(conn, topic, p=0, offset=0, fn="read_bytea", limit=100000):
    """[(offset, key, value, headers)] from stream.read* of one partition."""
    return [tuple(r) for r in conn.execute(
        'SELECT "offset", key, value, headers FROM stream.%s(%%s, %%s, %%s, %%s)' % fn,
        (topic, p, offset, limit)).fetchall()]


def group_lag(conn, group, topic):
    """{partition: (committed_offset, end_offset, lag)} from stream.consumer_lag."""
    return {r[0]: tuple(r[1:]) for r in conn.execute(
        'SELECT partition, committed_offset, end_offset, lag FROM stream.consumer_lag '
        'WHERE "group" = %s AND topic = %s ORDER BY partition', (group, topic)).fetchall()}


# ---- kcat ----

def kcat(args, input=None, timeout=60):
    """Run kcat -b BOOT args...; return CompletedProcess with stdout and stderr as text
    (invalid UTF-8 replaced), never raising on a non-zero exit; 124 on timeout."""
    cmd = [KCAT, "-b", BOOT] + list(args)
    if isinstance(input, str):
        input = input.encode()
    try:
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
        out, err, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = e.stdout or b"", (e.stderr or b"") + b"\n(timed out)", 124
    return subprocess.CompletedProcess(cmd, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def kcat_json(args, timeout=60):
    """kcat -C/-G ... -J: (returncode, [message dicts], stderr)."""
    r = kcat(list(args) + ["-J", "-u"], timeout=timeout)
    msgs = [json.loads(line) for line in r.stdout.split("\n") if line.strip()]
    return r.returncode, msgs, r.stderr


def kcat_consume(topic, *extra, timeout=60):
    """kcat -C -t topic -e -J extra...: (rc, [(partition, offset, key, payload)], stderr)."""
    rc, msgs, err = kcat_json(["-C", "-t", topic, "-e"] + list(extra), timeout=timeout)
    return rc, [(m["partition"], m["offset"], m.get("key"), m.get("payload")) for m in msgs], err


# ---- confluent_kafka ----

def ck_conf(**kw):
    conf = {"bootstrap.servers": BOOT, "broker.address.family": "v4",
            "socket.connection.setup.timeout.ms": 10000}
    conf.update(kw)
    return conf


def ck_producer(**kw):
    from confluent_kafka import Producer
    return Producer(ck_conf(**kw))


def ck_produce(producer, topic, msgs, timeout=30):
    """Produce [(key, value, headers, partition)] (missing fields: None) and flush.
    Returns [(err, partition, offset)] in the order given."""
    results = [None] * len(msgs)

    def cb(i):
        def f(err, msg):
            results[i] = (err, msg.partition(), msg.offset())
        return f

    for i, m in enumerate(msgs):
        m = tuple(m) + (None,) * (4 - len(m))
        key, value, headers, part = m
        kwargs = {"key": key, "value": value, "on_delivery": cb(i)}
        if headers is not None:
            kwargs["headers"] = headers
        if part is not None:
            kwargs["partition"] = part
        producer.produce(topic, **kwargs)
        producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise AssertionError("%d messages not delivered after %ss" % (left, timeout))
    return results


def ck_consumer(**kw):
    from confluent_kafka import Consumer
    kw.setdefault("group.id", "k1_unused")
    kw.setdefault("enable.auto.commit", False)
    kw.setdefault("enable.partition.eof", True)
    conf = ck_conf()
    conf.update(kw)
    return Consumer(conf)


def ck_drain(consumer, npartitions=1, timeout=30, want=None):
    """Consume until npartitions EOF events (or want messages) arrive; return
    (messages, errors).  EOF events are counted per partition, once each."""
    from confluent_kafka import KafkaError
    msgs, errors, eofs = [], [], set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if want is not None and len(msgs) >= want:
            break
        if want is None and len(eofs) >= npartitions:
            break
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eofs.add((m.topic(), m.partition()))
            else:
                errors.append(m.error())
            continue
        msgs.append(m)
    else:
        raise TimeoutError("ck_drain: %d messages, %d EOFs, errors %s after %ss"
                           % (len(msgs), len(eofs), errors, timeout))
    return msgs, errors


def tp(topic, p, offset=None):
    from confluent_kafka import TopicPartition
    return TopicPartition(topic, p) if offset is None else TopicPartition(topic, p, offset)

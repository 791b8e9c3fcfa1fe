"""bench/kafka.sh's driver (run with /usr/bin/python3): Kafka clients through the
listener against SQL doing the same work, on the same rows.

    kafka_bench.py BINARY

For each value size (KBENCH_SIZES, default "100 1024" bytes) and each of KBENCH_RUNS
runs (default 3), on bytea topics of KBENCH_PARTITIONS partitions (default 4) in
database postgres (where the listener serves), KBENCH_MESSAGES_<size> messages
(defaults 300000 for 100 B, 100000 for 1 kB):
  produce  Kafka: BINARY produce (librdkafka, acks=1, default batching, no key) into a
           fresh topic, timed to the last acknowledgement;
           SQL:   stream.publish_batch(topic, bytea[]) of the same values, 1000 per
           call, one transaction per call, one session, into another fresh topic.
  consume  Kafka: BINARY consume of the Kafka-produced topic from the beginning;
           SQL:   stream.read_bytea of the same topic, 1000 per call, partition after
           partition, one session (binary results, as the Kafka client gets bytes).
Runs alternate Kafka and SQL (Kafka first on odd runs, SQL first on even ones), with a
CHECKPOINT before each produce.  Prints per-run figures, then medians of messages/s
and MB/s (payload bytes, 10^6) and the ratio Kafka/SQL.
"""
import os
import statistics
import subprocess
import sys
import time

import psycopg

BOOT = "127.0.0.1:%s" % os.environ["STREAM_KAFKA_PORT"]
SIZES = [int(x) for x in os.environ.get("KBENCH_SIZES", "100 1024").split()]
RUNS = int(os.environ.get("KBENCH_RUNS", "3"))
NP = int(os.environ.get("KBENCH_PARTITIONS", "4"))
DEFAULT_N = {100: 300000, 1024: 100000}
BATCH = 1000


def messages(size):
    return int(os.environ.get("KBENCH_MESSAGES_%d" % size, DEFAULT_N.get(size, 50000)))


def connect():
    return psycopg.connect(dbname="postgres", autocommit=True, application_name="kafka_bench")


def fresh_topic(conn, name):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))
    conn.execute("SELECT stream.create_topic(%s, %s, value_type => 'bytea')", (name, NP))


def values(n, size):
    """The same value layout as kafka_bench.c: an 11-digit counter, NUL, then a-z."""
    tail = bytes(ord("a") + i % 26 for i in range(size))
    return [("%011d" % i).encode()[:size - 1] + b"\0" + tail[12:] if size >= 12 else tail for i in range(n)]


def run_binary(*args):
    out = subprocess.run([BINARY] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("kafka_bench %s failed: %s" % (args[0], out.stderr.strip()[-500:]))
    secs, n, nbytes = out.stdout.split()
    return float(secs), int(n), int(nbytes)


def kafka_produce(conn, topic, n, size):
    fresh_topic(conn, topic)
    conn.execute("CHECKPOINT")
    return run_binary("produce", BOOT, topic, n, size)


def sql_publish(conn, topic, n, size, vals):
    fresh_topic(conn, topic)
    conn.execute("CHECKPOINT")
    batches = [vals[i:i + BATCH] for i in range(0, n, BATCH)]
    t0 = time.monotonic()
    done = 0
    for b in batches:
        done += conn.execute("SELECT count(*) FROM stream.publish_batch(%s, %s::bytea[])", (topic, b)).fetchone()[0]
    return time.monotonic() - t0, done, done * size


def kafka_consume(conn, topic, n):
    return run_binary("consume", BOOT, topic, NP, n)


def sql_read(conn, topic, n):
    t0 = time.monotonic()
    got = nbytes = 0
    cur = conn.cursor(binary=True)
    for p in range(NP):
        off = 0
        while True:
            rows = cur.execute('SELECT "offset", value FROM stream.read_bytea(%s, %s, %s, %s)',
                               (topic, p, off, BATCH)).fetchall()
            if not rows:
                break
            got += len(rows)
            nbytes += sum(len(v) for _, v in rows)
            off = rows[-1][0] + 1
    return time.monotonic() - t0, got, nbytes


def main():
    conn = connect()
    conn.execute("SET client_min_messages = warning")
    conn.execute("CREATE EXTENSION IF NOT EXISTS stream")
    results = {}  # (size, op, side) -> [(msgs/s, MB/s)]
    tk, ts = "k1_bench_kafka", "k1_bench_sql"
    try:
        for size in SIZES:
            n = messages(size)
            vals = values(n, size)
            print("\n== %d-byte values, %d messages, %d partitions" % (size, n, NP), flush=True)
            for r in range(1, RUNS + 1):
                order = ("kafka", "sql") if r % 2 else ("sql", "kafka")
                for op in ("produce", "consume"):
                    for side in order:
                        if op == "produce":
                            secs, got, nbytes = (kafka_produce(conn, tk, n, size) if side == "kafka"
                                                 else sql_publish(conn, ts, n, size, vals))
                        else:
                            secs, got, nbytes = (kafka_consume(conn, tk, n) if side == "kafka"
                                                 else sql_read(conn, tk, n))
                        if got != n:
                            raise RuntimeError("%s %s: %d of %d messages" % (side, op, got, n))
                        mps, mbs = got / secs, nbytes / secs / 1e6
                        results.setdefault((size, op, side), []).append((mps, mbs))
                        print("   run %d/%d  %-7s %-5s %10.0f msg/s %8.1f MB/s  (%.2f s)"
                              % (r, RUNS, op, side, mps, mbs, secs), flush=True)
                # the Kafka-produced topic must hold what SQL read: same rows
                stored = conn.execute("SELECT sum(messages) FROM stream.partitions WHERE topic = %s",
                                      (tk,)).fetchone()[0]
                if stored != n:
                    raise RuntimeError("the Kafka-produced topic holds %s messages, not %d" % (stored, n))
    finally:
        for name in (tk, ts):
            conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (name,))

    print("\nmedians of %d runs (MB/s: payload bytes / 10^6)" % RUNS)
    print("%-6s %-8s %14s %9s %14s %9s %8s" % ("size", "op", "Kafka msg/s", "MB/s", "SQL msg/s", "MB/s",
                                             "Kafka/SQL"))
    for size in SIZES:
        for op, sqlname in (("produce", "publish_batch"), ("consume", "read")):
            k = results[(size, op, "kafka")]
            s = results[(size, op, "sql")]
            km, kb = statistics.median(x[0] for x in k), statistics.median(x[1] for x in k)
            sm, sb = statistics.median(x[0] for x in s), statistics.median(x[1] for x in s)
            print("%-6s %-8s %14.0f %9.1f %14.0f %9.1f %8.2f   (SQL: %s)"
                  % ("%dB" % size, op, km, kb, sm, sb, km / sm, sqlname))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    BINARY = sys.argv[1]
    main()

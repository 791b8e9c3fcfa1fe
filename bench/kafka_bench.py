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
  in-server: the same publish_batch and read_bytea calls made inside the server (a DO
           block committing after each call; a recursive query), to show what the client
           costs the SQL figures.
Runs alternate the order of the sides (Kafka first on odd runs, last on even ones), with a
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


def server_publish(conn, topic, n, size):
    """publish_batch run inside the server (a DO block, COMMIT after each call of
    BATCH values, as sql_publish): the SQL path without any client in the way."""
    fresh_topic(conn, topic)
    conn.execute("CHECKPOINT")
    t0 = time.monotonic()
    conn.execute("""
        DO $$
        DECLARE
            tail bytea := substring(convert_to(repeat('abcdefghijklmnopqrstuvwxyz', %(size)s / 26 + 1), 'UTF8')
                                    FROM 13 FOR greatest(%(size)s - 12, 0));
            vals bytea[];
        BEGIN
            FOR b IN 0 .. (%(n)s - 1) / %(batch)s LOOP
                SELECT array_agg(convert_to(lpad(i::text, 11, '0'), 'UTF8') || '\\x00'::bytea || tail)
                  INTO vals
                  FROM generate_series(b * %(batch)s, least((b + 1) * %(batch)s, %(n)s) - 1) i;
                PERFORM count(*) FROM stream.publish_batch(%(topic)L, vals);
                COMMIT;
            END LOOP;
        END $$""".replace("%(topic)L", "'%s'" % topic) % {"size": size, "n": n, "batch": BATCH})
    secs = time.monotonic() - t0
    got = conn.execute("SELECT sum(messages)::bigint FROM stream.partitions WHERE topic = %s",
                       (topic,)).fetchone()[0]
    return secs, got, got * size


def server_read(conn, topic, n):
    """read_bytea inside the server (BATCH per call, partition after partition)."""
    t0 = time.monotonic()
    got, nbytes = conn.execute("""
        WITH RECURSIVE r(p, off, got, nbytes) AS (
            SELECT p, 0::bigint, 0::bigint, 0::bigint FROM generate_series(0, %s - 1) p
          UNION ALL
            SELECT r.p, x.next, r.got + x.c, r.nbytes + x.b
            FROM r, LATERAL (SELECT count(*) c, coalesce(sum(length(value)), 0) b,
                                    max("offset") + 1 next
                             FROM stream.read_bytea(%s, r.p, r.off, %s)) x
            WHERE x.c > 0)
        SELECT sum(got)::bigint, sum(nbytes)::bigint FROM r
        WHERE (p, got) IN (SELECT p, max(got) FROM r GROUP BY p)""", (NP, topic, BATCH)).fetchone()
    return time.monotonic() - t0, got, nbytes


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
                order = ("kafka", "sql", "server") if r % 2 else ("server", "sql", "kafka")
                for op in ("produce", "consume"):
                    for side in order:
                        if op == "produce":
                            secs, got, nbytes = {
                                "kafka": lambda: kafka_produce(conn, tk, n, size),
                                "sql": lambda: sql_publish(conn, ts, n, size, vals),
                                "server": lambda: server_publish(conn, ts, n, size)}[side]()
                        else:
                            secs, got, nbytes = {
                                "kafka": lambda: kafka_consume(conn, tk, n),
                                "sql": lambda: sql_read(conn, tk, n),
                                "server": lambda: server_read(conn, tk, n)}[side]()
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
    print("SQL = one psycopg session (1000 per call and transaction); in-server = the same calls"
          " in a DO block / recursive query, no client")
    print("%-6s %-8s %12s %7s %12s %7s %12s %7s %8s %10s" % (
        "size", "op", "Kafka msg/s", "MB/s", "SQL msg/s", "MB/s", "in-server", "MB/s",
        "K/SQL", "K/server"))
    for size in SIZES:
        for op, sqlname in (("produce", "publish_batch"), ("consume", "read_bytea")):
            med = {}
            for side in ("kafka", "sql", "server"):
                x = results[(size, op, side)]
                med[side] = (statistics.median(v[0] for v in x), statistics.median(v[1] for v in x))
            print("%-6s %-8s %12.0f %7.1f %12.0f %7.1f %12.0f %7.1f %8.2f %10.2f   (SQL: %s)"
                  % ("%dB" % size, op, med["kafka"][0], med["kafka"][1], med["sql"][0], med["sql"][1],
                     med["server"][0], med["server"][1], med["kafka"][0] / med["sql"][0],
                     med["kafka"][0] / med["server"][0], sqlname))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    BINARY = sys.argv[1]
    main()

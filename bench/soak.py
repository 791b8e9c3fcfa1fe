#!/usr/bin/python3
"""Soak benchmark for retention: bounded storage under constant ingest, and the cost of
expiring messages by dropping segments against a row-by-row DELETE.

Part 1, soak.  A topic (retention '20 s', segment_bytes 1 MB, 2 partitions) receives a
constant ingest from 2 publisher threads, each publishing transactions of one
stream.publish_batch of 100 messages of about 200 bytes, at a fixed total rate
(--rate messages/s; 0: as fast as they can).  The retention worker runs with
stream.naptime = 1s (ALTER SYSTEM, reset at the end).  Every 10 s it prints the
elapsed time, the messages published, the total relation size of the topic's segment
tables (sum of pg_total_relation_size over stream._segments), the log start offsets
the segment count and the age of the oldest retained message (sizes are also
sampled every second for the maxima).  At the end it compares the largest size seen in the second
half of the run with the first half: under a steady ingest the second half must not
keep growing (bounded).

Part 2, expiry cost.  A topic without retention gets --rows messages of the same kind
(segment_bytes 4 MB, so several segments).  A plain table with the same columns and
primary key gets exactly the rows of the closed segments (INSERT ... SELECT from
them).  After a CHECKPOINT each (the rows were written long ago, as expired rows are),
it measures, with the wall-clock time and the WAL written (pg_current_wal_lsn diff):
  - DELETE FROM plain WHERE "offset" < M  (row-by-row expiry; the VACUUM it calls for
    is measured and printed separately, not counted),
  - dropping the closed segments the way the retention worker does, in one
    transaction: DELETE FROM stream._segments WHERE segment_id = ...; DROP TABLE ...
and prints both, and the ratios drop/DELETE (target <= 0.05).

Usage: /usr/bin/python3 bench/soak.py [--duration 180] [--rate 5000] [--rows 200000]
Connection: PGHOST, PGPORT, PGUSER from the environment; --dbname (default: postgres,
where the retention worker runs: stream.database).
"""
import argparse
import json
import os
import sys
import threading
import time

import psycopg

SOAK_TOPIC = "bench_soak"
DROP_TOPIC = "bench_drop"
PLAIN = "bench_delete_plain"
BATCH = 100
PAD = 170          # a value of about 200 bytes: {"seq": n, "t": thread, "pad": "xx..."}


def connect(args, autocommit=True):
    return psycopg.connect(dbname=args.dbname, autocommit=autocommit, application_name="soak.py")


def set_naptime(conn, value):
    if value is None:
        conn.execute("ALTER SYSTEM RESET stream.naptime")
    else:
        conn.execute("ALTER SYSTEM SET stream.naptime = '%s'" % value)
    conn.execute("SELECT pg_reload_conf()")


def topic_storage(conn, topic):
    """(total bytes, segments, {partition: log start}) from the catalog.  Segment tables
    dropped meanwhile (to_regclass NULL, or size NULL) are not counted."""
    rows = conn.execute(
        "SELECT g.partition, g.segment_id, g.base_offset, "
        "pg_total_relation_size(to_regclass('stream_data.seg_' || g.segment_id)) "
        "FROM stream._segments g JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s ORDER BY g.partition, g.segment_id", (topic,)).fetchall()
    total = 0
    segs = 0
    start = {}
    for part, _sid, base, size in rows:
        if size is None:
            continue
        total += size
        segs += 1
        if part not in start:
            start[part] = base
    return total, segs, start


def mb(n):
    return "%.1f MB" % (n / 1048576.0)


# ---------------------------------------------------------------------------------------
# Part 1: soak
# ---------------------------------------------------------------------------------------

def soak(args, admin):
    admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (SOAK_TOPIC,))
    admin.execute("SELECT stream.create_topic(%s, partitions => 2, retention => '20 s', "
                  "segment_bytes => 1048576)", (SOAK_TOPIC,))
    stop = threading.Event()
    published = [0, 0]
    errors = []
    per_thread_rate = args.rate / 2.0 if args.rate > 0 else 0

    def publisher(k):
        try:
            conn = connect(args)
            vals = [json.dumps({"seq": i, "t": k, "pad": "x" * PAD}) for i in range(BATCH)]
            t0 = time.monotonic()
            while not stop.is_set():
                conn.execute("SELECT count(*) FROM stream.publish_batch(%s, %s::jsonb[])", (SOAK_TOPIC, vals))
                published[k] += BATCH
                if per_thread_rate:
                    ahead = published[k] / per_thread_rate - (time.monotonic() - t0)
                    if ahead > 0:
                        stop.wait(ahead)
            conn.close()
        except Exception as e:     # noqa: BLE001 - reported by the main thread
            errors.append("publisher %d: %s" % (k, e))
            stop.set()

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(2)]
    start = time.monotonic()
    for th in threads:
        th.start()
    samples = []
    print("%8s %12s %10s %11s %9s %16s %11s" % ("elapsed", "published", "msg/s", "size", "segments",
                                               "log start", "oldest age"))
    next_report = 10
    try:
        while True:
            now = time.monotonic() - start
            if now >= args.duration or stop.is_set():
                break
            # sample every second (for the maxima), print every 10 s
            total, segs, ls = topic_storage(admin, SOAK_TOPIC)
            samples.append((now, total))
            if now >= next_report:
                n = sum(published)
                age = admin.execute(
                    "SELECT extract(epoch FROM clock_timestamp() - min(r.published_at)) "
                    "FROM generate_series(0, 1) p, LATERAL stream.read(%s, p, 0, 1) r", (SOAK_TOPIC,)).fetchone()[0]
                print("%7.0fs %12d %10.0f %11s %9d %16s %10.1fs" % (
                    now, n, n / now, mb(total), segs, "/".join(str(ls[k]) for k in sorted(ls)), age or 0),
                    flush=True)
                next_report += 10
            time.sleep(1)
    finally:
        stop.set()
        for th in threads:
            th.join()
    if errors:
        print("ERRORS: %s" % errors)
    elapsed = time.monotonic() - start
    half = args.duration / 2.0
    first = [s[1] for s in samples if s[0] <= half]
    second = [s[1] for s in samples if s[0] > half]
    runs = admin.execute(
        "SELECT count(*), coalesce(sum(segments_dropped), 0), coalesce(sum(bytes_dropped), 0)::bigint, "
        "coalesce(sum(segments_rolled), 0), coalesce(sum(errors), 0), coalesce(max(duration), '0')::text, "
        "extract(epoch FROM coalesce(sum(duration), '0'))::float8 "
        "FROM stream.retention_runs WHERE started_at >= now() - make_interval(secs => %s)", (elapsed,)).fetchone()
    print()
    print("soak: %d messages in %.0f s (%.0f msg/s, %d-message batches, ~%d-byte values, 2 threads)"
          % (sum(published), elapsed, sum(published) / elapsed, BATCH, PAD + 30))
    print("retention worker: %d logged cycles, %d segments dropped (%s), %d rolled, %d errors, longest cycle %s,"
          % (runs[0], runs[1], mb(runs[2]), runs[3], runs[4], runs[5]))
    if runs[1]:
        print("  %.1f ms per dropped segment (time of the cycles that dropped, from stream.retention_runs)"
              % (runs[6] * 1000 / runs[1]))
    result = {"published": sum(published), "elapsed": elapsed}
    if first and second:
        m1, m2 = max(first), max(second)
        print("max size, first half: %s; second half: %s; ratio %.2f -> %s (ingested %s of values)"
              % (mb(m1), mb(m2), m2 / m1, "BOUNDED" if m2 <= 1.25 * m1 else "GROWING",
                 mb(sum(published) * (PAD + 30))))
        result.update(first_half_max=m1, second_half_max=m2, bounded=m2 <= 1.25 * m1)
    else:
        print("run too short to compare halves")
    admin.execute("SELECT stream.drop_topic(%s)", (SOAK_TOPIC,))
    return result


# ---------------------------------------------------------------------------------------
# Part 2: expiry by segment drop vs DELETE
# ---------------------------------------------------------------------------------------

def wal_lsn(conn):
    return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def wal_diff(conn, a, b):
    return int(conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (b, a)).fetchone()[0])


def measure(conn, fn):
    """Run fn after a CHECKPOINT; return (seconds, WAL bytes)."""
    conn.execute("CHECKPOINT")
    a = wal_lsn(conn)
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return dt, wal_diff(conn, a, wal_lsn(conn))


def expiry_cost(args, admin):
    admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (DROP_TOPIC,))
    admin.execute("DROP TABLE IF EXISTS %s" % PLAIN)
    admin.execute("SELECT stream.create_topic(%s, segment_bytes => %s)", (DROP_TOPIC, args.drop_segment_bytes))
    vals = [json.dumps({"seq": i, "t": 0, "pad": "x" * PAD}) for i in range(1000)]
    for _ in range(args.rows // 1000):
        admin.execute("SELECT count(*) FROM stream.publish_batch(%s, %s::jsonb[])", (DROP_TOPIC, vals))
    # the last roll must be complete (base recorded) before segments are counted
    deadline = time.monotonic() + 60
    while admin.execute(
            "SELECT count(*) FROM stream._segments g JOIN stream._topics t USING (topic_id) "
            "WHERE t.topic = %s AND g.base_offset IS NULL", (DROP_TOPIC,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("a segment roll did not finish")
        time.sleep(0.1)
    segs = admin.execute(
        "SELECT g.segment_id, g.base_offset FROM stream._segments g JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s ORDER BY g.segment_id", (DROP_TOPIC,)).fetchall()
    closed = [s for s, _ in segs[:-1]]
    m = segs[-1][1]
    if not closed:
        raise RuntimeError("no closed segment: raise --rows")
    closed_bytes = sum(admin.execute("SELECT pg_total_relation_size('stream_data.seg_%d')" % s).fetchone()[0]
                       for s in closed)

    # the same rows, in a plain table with the same columns and primary key
    admin.execute('CREATE TABLE %s ("offset" bigint NOT NULL, key text, value jsonb, headers jsonb, '
                  'published_at timestamptz NOT NULL, PRIMARY KEY ("offset"))' % PLAIN)
    admin.execute("INSERT INTO %s SELECT * FROM (%s) s" % (
        PLAIN, " UNION ALL ".join('SELECT * FROM stream_data.seg_%d' % s for s in closed)))
    admin.execute("VACUUM ANALYZE %s" % PLAIN)
    n_plain = admin.execute("SELECT count(*) FROM %s" % PLAIN).fetchone()[0]
    plain_bytes = admin.execute("SELECT pg_total_relation_size(%s)", (PLAIN,)).fetchone()[0]
    print()
    print("expiry of %d messages (offsets 0..%d): %d closed segments (%s) vs a plain table (%s)"
          % (m, m - 1, len(closed), mb(closed_bytes), mb(plain_bytes)))
    if n_plain != m:
        print("WARNING: the plain table has %d rows, the segments %d" % (n_plain, m))

    del_t, del_wal = measure(admin, lambda: admin.execute('DELETE FROM %s WHERE "offset" < %%s' % PLAIN, (m,)))
    vac_t, vac_wal = measure(admin, lambda: admin.execute("VACUUM %s" % PLAIN))

    def drop_segments():
        with admin.transaction():
            for s in closed:
                admin.execute("DELETE FROM stream._segments WHERE segment_id = %s", (s,))
                admin.execute("DROP TABLE stream_data.seg_%d" % s)
    drop_t, drop_wal = measure(admin, drop_segments)
    left = admin.execute('SELECT min("offset") FROM stream.read(%s, 0, 0, 1)', (DROP_TOPIC,)).fetchone()[0]

    print("%-44s %10s %14s" % ("", "time", "WAL"))
    print("%-44s %9.1fms %14s" % ('DELETE FROM plain WHERE "offset" < %d' % m, del_t * 1000, "{:,}".format(del_wal)))
    print("%-44s %9.1fms %14s" % ("  (then VACUUM plain, not counted)", vac_t * 1000, "{:,}".format(vac_wal)))
    print("%-44s %9.1fms %14s" % ("drop %d segments (worker's SQL)" % len(closed), drop_t * 1000,
                                  "{:,}".format(drop_wal)))
    rt, rw = drop_t / del_t, drop_wal / float(del_wal)
    print("ratio drop/DELETE: time %.4f, WAL %.4f (target <= 0.05): %s"
          % (rt, rw, "OK" if rt <= 0.05 and rw <= 0.05 else "MISSED"))
    print("after the drop the topic's first readable offset is %s (expected %d)" % (left, m))
    admin.execute("DROP TABLE %s" % PLAIN)
    admin.execute("SELECT stream.drop_topic(%s)", (DROP_TOPIC,))
    return {"rows": m, "delete_s": del_t, "delete_wal": del_wal, "drop_s": drop_t, "drop_wal": drop_wal,
            "time_ratio": rt, "wal_ratio": rw}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_DURATION", 180)),
                    help="soak seconds (default 180, env SOAK_DURATION)")
    ap.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 5000)),
                    help="total messages per second, 0 = unthrottled (default 5000)")
    ap.add_argument("--rows", type=int, default=int(os.environ.get("SOAK_ROWS", 200000)),
                    help="messages for the expiry cost comparison (default 200000)")
    ap.add_argument("--drop-segment-bytes", type=int, default=int(os.environ.get("SOAK_DROP_SEGMENT_BYTES", 4194304)),
                    help="segment_bytes of the expiry comparison's topic (default 4 MB)")
    ap.add_argument("--dbname", default=os.environ.get("PGDATABASE", "postgres"))
    ap.add_argument("--skip-soak", action="store_true", help="only the expiry cost comparison")
    args = ap.parse_args()

    admin = connect(args)
    admin.execute("CREATE EXTENSION IF NOT EXISTS stream")
    info = admin.execute("SELECT current_setting('server_version'), inet_server_port(), current_database()").fetchone()
    print("server %s, port %s, database %s; soak %.0f s at %s msg/s; expiry of %d rows"
          % (info[0], info[1], info[2], args.duration, args.rate or "max", args.rows))
    set_naptime(admin, "1s")
    try:
        if not args.skip_soak:
            soak(args, admin)
        expiry_cost(args, admin)
    finally:
        set_naptime(admin, None)
        admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (SOAK_TOPIC,))
        admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (DROP_TOPIC,))
        admin.execute("DROP TABLE IF EXISTS %s" % PLAIN)
    return 0


if __name__ == "__main__":
    sys.exit(main())

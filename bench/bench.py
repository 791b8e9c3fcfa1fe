"""Helpers of bench/run.sh, run with /usr/bin/python3 (Debian's psycopg 3).

  bench.py batch MODE CLIENTS SECONDS [BATCH]
      MODE copy:    COPY bench_insert (key, value) FROM STDIN, BATCH rows per COPY
      MODE publish: SELECT count(*) FROM stream.publish_batch('bench', $1::jsonb[], $2::text[])
      Each of CLIENTS processes opens its own autocommit connection (so one statement is
      one transaction), and all start together behind a barrier and send whole batches
      until SECONDS have passed. Prints "<msgs/s> <messages>": messages committed divided
      by the time from the first start to the last finish.

  bench.py report RUNS_TSV
      Reads the per-run figures (section, role, name, run, msgs/s, rows; role is base or
      stream) and prints the table: median, min and max msgs/s and, for each stream row,
      its ratio to the baseline of the same section (median over median) checked against
      the target, and the median of the per-run ratios (stream run i / baseline run i).

Both modes send the same pre-generated rows, rendered once before the clock starts: the
COPY text format for COPY, array literals for publish_batch. The server parses the same
JSON text into jsonb in both cases; see bench/README.md for why this baseline.
"""
import multiprocessing as mp
import os
import queue
import random
import statistics
import sys
import time

DB = os.environ.get("BENCH_DB", "stream_bench")
DISTINCT_BATCHES = 8  # batches cycle through this many different sets of rows


def payload(rng):
    """One message as (key, JSON text), drawn like the \\set lines of publish.sql."""
    order_id = rng.randint(1, 1000000000)
    customer = rng.randint(1, 100000)
    amount = rng.randint(1, 100000)
    value = ('{"order_id": %d, "customer": "c-%d", "amount": %d, "currency": "EUR", '
             '"status": "created", "items": 3}' % (order_id, customer, amount))
    return "customer-%d" % customer, value


def array_literal(items):
    """A PostgreSQL array literal of text items, each quoted and escaped."""
    return "{" + ",".join(
        '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "}"


def make_batches(mode, size, seed):
    rng = random.Random(seed)
    batches = []
    for _ in range(DISTINCT_BATCHES):
        rows = [payload(rng) for _ in range(size)]
        if mode == "copy":
            # text format: no tab, newline or backslash occurs in these keys and values
            batches.append("".join("%s\t%s\n" % r for r in rows).encode())
        else:
            batches.append((array_literal(v for _, v in rows), array_literal(k for k, _ in rows)))
    return batches


def worker(mode, seconds, size, seed, barrier, results):
    try:
        results.put(run_client(mode, seconds, size, seed, barrier))
    except Exception as e:  # one line, not a traceback: run.sh retries the run
        barrier.abort()
        print("bench.py %s client: %s: %s" % (mode, type(e).__name__, str(e).splitlines()[0]),
              file=sys.stderr)
        sys.exit(1)


def run_client(mode, seconds, size, seed, barrier):
    import psycopg

    batches = make_batches(mode, size, seed)
    conn = psycopg.connect(dbname=DB, autocommit=True, application_name="bench " + mode)
    cur = conn.cursor()
    sql = "SELECT count(*) FROM stream.publish_batch('bench', %s::jsonb[], %s::text[])"
    copy_sql = "COPY bench_insert (key, value) FROM STDIN"
    barrier.wait()
    start = time.monotonic()
    deadline = start + seconds
    sent = 0
    i = 0
    while time.monotonic() < deadline:
        b = batches[i % len(batches)]
        i += 1
        if mode == "copy":
            with cur.copy(copy_sql) as copy:
                copy.write(b)
            if cur.rowcount != size:
                raise RuntimeError("COPY wrote %s rows, expected %d" % (cur.rowcount, size))
        else:
            n = cur.execute(sql, b, prepare=True).fetchone()[0]
            if n != size:
                raise RuntimeError("publish_batch returned %d rows, expected %d" % (n, size))
        sent += size
    end = time.monotonic()
    conn.close()
    return start, end, sent


def batch(mode, clients, seconds, size=1000):
    if mode not in ("copy", "publish"):
        raise SystemExit("mode must be copy or publish")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(mode, seconds, size, 1000 + c, barrier, results))
             for c in range(clients)]
    for p in procs:
        p.start()
    got = []
    while len(got) < clients:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit(1)
    for p in procs:
        p.join()
    elapsed = max(r[1] for r in got) - min(r[0] for r in got)
    total = sum(r[2] for r in got)
    print("%.1f %d" % (total / elapsed, total))


TARGETS = {"a": 0.9, "b1": 0.8, "b2": 0.8}


def report(path):
    series = {}  # (section, role, name) -> {run: msgs/s}, in file order
    for line in open(path):
        section, role, name, run, rate, _rows = line.rstrip("\n").split("\t")
        series.setdefault((section, role, name), {})[int(run)] = float(rate)
    medians = {k: statistics.median(v.values()) for k, v in series.items()}
    fmt = "%-46s %12s %10s %10s %6s %6s  %s"
    print(fmt % ("name", "median msg/s", "min", "max", "ratio", "pairs", "target"))
    for (section, role, name), rates in series.items():
        ratio = pairs = target = ""
        base = [k for k in series if k[0] == section and k[1] == "base"]
        if role == "stream" and base:
            r = medians[(section, role, name)] / medians[base[0]]
            ratio = "%.2f" % r
            # the runs of a pair ran one after the other: their ratio is less exposed to
            # slow drifts and bursts of load than the ratio of the medians
            per_run = [rates[i] / series[base[0]][i] for i in rates if i in series[base[0]]]
            pairs = "%.2f" % statistics.median(per_run) if per_run else ""
            t = TARGETS.get(section)
            if t is not None:
                target = ">= %.1f %s" % (t, "ok" if r >= t else "BELOW")
        print(fmt % ("%-3s %s" % (section, name), "%.0f" % medians[(section, role, name)],
                     "%.0f" % min(rates.values()), "%.0f" % max(rates.values()),
                     ratio, pairs, target))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "batch":
        batch(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
              int(sys.argv[5]) if len(sys.argv) > 5 else 1000)
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        raise SystemExit(__doc__)

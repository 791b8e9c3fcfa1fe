#!/usr/bin/python3
"""Peak backend memory of stream.publish_batch() with 100k messages.

Each case runs in a fresh session.  While the call runs, a second session asks the
backend to dump its memory contexts (pg_log_backend_memory_contexts) every 50 ms into
the server log (STREAM_PGLOG); the largest dump gives the peak "Grand total" and the
peak of the function's own context (ExprContext, where publish_batch allocates: the
arrays passed in are in PortalContext/MessageContext, PostgreSQL's, not ours).  A
thread also samples the backend's RssAnon in /proc/<pid>/status.

The arrays are sent as bind parameters: jsonb[] values are parsed by PostgreSQL
before the call (that cost, about 3 KB per element in jsonb's input function, is the
server's), text[] values on a jsonb topic are parsed by publish_batch itself.

Needs the server on this machine: /proc/<backend pid> readable (root or postgres) and,
for the context figures, STREAM_PGLOG readable.  Connection from PGHOST/PGPORT/PGUSER;
database FUZZ_DB, STREAM_TEST_DB, PGDATABASE or stream_fuzz.  Exits 1 when
publish_batch's own context peaks above BATCH_MEMORY_LIMIT_MB (default 256).

  /usr/bin/python3 test/fuzz/batch_memory.py [messages]     (default 100000)
"""
import os
import re
import sys
import threading
import time

import psycopg

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
LIMIT_MB = float(os.environ.get("BATCH_MEMORY_LIMIT_MB", 256))
DB = (os.environ.get("FUZZ_DB") or os.environ.get("STREAM_TEST_DB")
      or os.environ.get("PGDATABASE") or "stream_fuzz")
LOG = os.environ.get("STREAM_PGLOG")
MB = 1024 * 1024


def values(kind, n):
    if kind == "small jsonb":
        return ['{"i": %d}' % i for i in range(n)]
    if kind == "1 KB jsonb":
        return ['{"i": %d, "pad": "%s"}' % (i, "x" * 1000) for i in range(n)]
    if kind == "1 KB text":
        return ["y" * 1000 + str(i) for i in range(n)]
    return ["\\x" + "ab" * 1000 for _ in range(n)]  # 1 KB bytea


def literal(items):
    return "{" + ",".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for x in items) + "}"


CASES = [  # value kind, array type, topic, keys, headers
    ("small jsonb", "jsonb", "mem_j", False, False),
    ("small jsonb", "jsonb", "mem_j", True, True),
    ("small jsonb", "text", "mem_j", False, False),
    ("1 KB jsonb", "jsonb", "mem_j", False, False),
    ("1 KB jsonb", "text", "mem_j", False, False),
    ("1 KB text", "text", "mem_t", True, False),
    ("1 KB bytea", "bytea", "mem_b", False, False),
]


def rss_anon(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def run_case(query, params):
    conn = psycopg.connect(dbname=DB, autocommit=True, application_name="batch_memory")
    pid = conn.info.backend_pid
    start = rss_anon(pid)
    peak = {"rss": start}
    done = threading.Event()
    offset = os.path.getsize(LOG) if LOG else 0

    def watch():
        mon = psycopg.connect(dbname=DB, autocommit=True) if LOG else None
        try:
            while not done.is_set():
                try:
                    peak["rss"] = max(peak["rss"], rss_anon(pid))
                except OSError:
                    break
                if mon is not None:
                    mon.execute("SELECT pg_log_backend_memory_contexts(%s)", [pid])
                done.wait(0.05)
        finally:
            if mon is not None:
                mon.close()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        rows = conn.execute(query, params).fetchone()[0]
    finally:
        done.set()
        t.join()
    elapsed = time.monotonic() - t0
    conn.close()
    total = expr = None
    if LOG:
        with open(LOG, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        for dump in text.split("logging memory contexts of PID %d" % pid)[1:]:
            m = re.search(r"Grand total: (\d+) bytes", dump)
            if not m:
                continue
            total = max(total or 0, int(m.group(1)))
            for c in re.finditer(r"level: \d+; ExprContext: (\d+) total", dump):
                expr = max(expr or 0, int(c.group(1)))
    return rows, elapsed, start, peak["rss"], total, expr


def mb(v):
    return "-" if v is None else "%.1f" % (v / MB)


def main():
    admin = psycopg.connect(dbname=DB, autocommit=True)
    admin.execute("SET client_min_messages = warning")
    for t, typ in (("mem_j", "jsonb"), ("mem_t", "text"), ("mem_b", "bytea")):
        admin.execute("SELECT stream.drop_topic(%s, true)", [t])
        admin.execute("SELECT stream.create_topic(%s, 4, value_type => %s::regtype)", [t, typ])
    print("stream.publish_batch(): %d messages per call, database %s" % (N, DB))
    print("MB: backend RssAnon at start and peak; memory contexts' peak grand total and")
    print("peak of publish_batch's own context (ExprContext)%s" % (
        "" if LOG else " (not measured: STREAM_PGLOG unset)"))
    print("%-58s %7s %7s %7s %8s %9s" % ("case", "seconds", "start", "rss", "contexts", "function"))
    worst = 0
    for kind, atype, topic, keys, headers in CASES:
        args, params = ["%s::" + atype + "[]"], [literal(values(kind, N))]
        label = "%s as %s[] to a %s topic" % (kind, atype, {"mem_j": "jsonb", "mem_t": "text",
                                                             "mem_b": "bytea"}[topic])
        if keys:
            args.append("%s::text[]")
            params.append(literal(["key-%d" % i for i in range(N)]))
            label += ", keys"
        if headers:
            args.append("%s::jsonb[]")
            params.append(literal(['{"trace": %d}' % i for i in range(N)]))
            label += ", headers"
        rows, elapsed, start, rss, total, expr = run_case(
            "SELECT count(*) FROM stream.publish_batch(%%s, %s)" % ", ".join(args), [topic] + params)
        worst = max(worst, expr or 0)
        print("%-58s %7.2f %7s %7s %8s %9s%s" % (label, elapsed, mb(start), mb(rss), mb(total), mb(expr),
                                               "" if rows == N else "  (published %s)" % rows), flush=True)
    for t in ("mem_j", "mem_t", "mem_b"):
        admin.execute("SELECT stream.drop_topic(%s)", [t])
    admin.close()
    print("largest publish_batch context: %s MB (limit %.0f MB)" % (mb(worst), LIMIT_MB))
    return 1 if worst > LIMIT_MB * MB else 0


if __name__ == "__main__":
    sys.exit(main())

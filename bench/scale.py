"""Performance at scale (issue 8): how the cost grows with topics, partitions, message
size, retained volume, groups and concurrent publishers. Run it through bench/scale.sh
(which builds, installs and starts the private cluster, then calls this with
/usr/bin/python3), e.g.

    bash bench/scale.sh                                 # every section but retained
    bash bench/scale.sh --only topics,poll --quick      # smoke run of section 1
    bash bench/scale.sh --only retained --retained 10000000
    /usr/bin/python3 bench/scale.py report              # tables and plots from the last results

Sections (--only, comma separated; default: topics,poll,size,groups,concurrency):

  topics       1 -> 10 -> 100 -> 1000 topics x 8 partitions (--topics): publish throughput
               (pgbench, scale_topics.sql, a random topic per transaction) against a raw
               INSERT into one of as many plain tables (scale_topics_raw.sql: a table
               list-partitioned into topics x 8 leaves, in its own database), and against
               the stream's own 1-topic figure; the memory of a backend that touched every
               partition (VmRSS/RssAnon from /proc, the backend's memory contexts: the
               relcache and catcache in CacheMemoryContext, our "stream topic cache");
               catalog sizes (stream._* tables, pg_class rows, database size).
  poll         the cost of a poll for a member owning 8 partitions of a topic of 8, 64, 256
               partitions (--poll-partitions; the group has partitions/8 members): polls
               that read 100 messages, and empty polls. Must not grow with the partitions
               the member does not own.
  size         message size 100 B .. 1 MB (--sizes), bytea topic: publish_batch against
               COPY (binary, both) of the same rows into a plain table of the segment's
               shape; poll_bytea against the prepared range scan of that table (binary
               results, TOAST included); MB/s of payload.
  retained     publish (pgbench, 8 clients) and poll throughput on a topic holding
               --retained messages against a small topic; storage bytes per message against
               the payload; time of the monitoring views. Loads once, reuses the topic on
               later runs (--retained-reload to reload).
  groups       256 partitions (--group-partitions), 16 members (--group-members) joining
               one by one then leaving: polls until the assignment converges (members
               polling in turn) and wall time (members in long polls, as consumers run);
               then 1, 10, 100 groups (--groups) reading one topic: total and per-group
               throughput against as many range-scan readers of a plain copy.
  concurrency  1, 2, 4, 8, 16, 32 publishers (--clients), 1 message per transaction, on one
               partition and on 32 partitions, against a raw INSERT into one table
               (bench/publish.sql, bench/insert.sql, bench/reset.sql); then perf record -g of
               the backends of the 32-client one-partition case (--no-perf to skip) and of
               the raw INSERT for comparison: top symbols by DSO.

Every figure is the median of --runs runs (default 3); baseline and stream runs
alternate. Results: bench/results/scale.json (every run), bench/results/scale-latest.txt
(the output), plots in bench/plots/scale-*.png.
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PLOTS = os.path.join(HERE, "plots")
JSON_PATH = os.path.join(RESULTS, "scale.json")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
DB = os.environ.get("BENCH_DB", "stream_scale")
RAW_DB = DB + "_raw"

ALL_SECTIONS = ["topics", "inval", "poll", "size", "retained", "groups", "concurrency"]
DEFAULT_SECTIONS = ["topics", "inval", "poll", "size", "groups", "concurrency"]

# (%% : the expression goes into statements with psycopg parameters)
JSON_VALUE = ("format('{\"order_id\": %%s, \"customer\": \"c-%%s\", \"amount\": %%s, "
              "\"currency\": \"EUR\", \"status\": \"created\", \"items\": 3}', "
              "(random() * 999999999)::int + 1, c, (random() * 99999)::int + 1)::jsonb")


def log(*args):
    print(*args, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def connect(db=None, app="bench scale"):
    import psycopg
    conn = psycopg.connect(dbname=db or DB, autocommit=True, application_name=app)
    conn.execute("SET client_min_messages = warning")
    return conn


def recreate_db(name, extension=True):
    c = connect("postgres")
    c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    c.execute("CREATE DATABASE %s" % name)
    c.close()
    if extension:
        c = connect(name)
        c.execute("CREATE EXTENSION stream")
        c.close()


def ensure_db(name):
    c = connect("postgres")
    exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    c.close()
    if not exists:
        recreate_db(name)


def checkpoint(conn):
    conn.execute("CHECKPOINT")


class Session:
    """A raw libpq connection (psycopg's pq layer): prepared statements, no row
    adaptation, text or binary parameters and results."""

    def __init__(self, name, db=None):
        from psycopg import pq
        self.pq = pq
        self.pg = pq.PGconn.connect(("dbname=%s application_name='%s'" % (db or DB, name)).encode())
        if self.pg.status != pq.ConnStatus.OK:
            raise RuntimeError(self.pg.error_message.decode(errors="replace").strip())
        self.pid = self.pg.backend_pid
        self.execute("SET client_min_messages = warning")

    def _check(self, res, what):
        ok = (self.pq.ExecStatus.TUPLES_OK, self.pq.ExecStatus.COMMAND_OK)
        if res.status not in ok:
            msg = res.error_message or self.pg.error_message
            raise RuntimeError("%s: %s" % (what, msg.decode(errors="replace").strip()))
        return res

    def prepare(self, name, sql, types=None):
        self._check(self.pg.prepare(name.encode(), sql.encode(), types), "PREPARE " + name)

    def run(self, name, *params, binary_params=False, binary_result=False):
        vals = [p if isinstance(p, bytes) else str(p).encode() for p in params]
        fmts = [1 if binary_params else 0] * len(vals)
        return self._check(self.pg.exec_prepared(name.encode(), vals, fmts, 1 if binary_result else 0),
                           name)

    def execute(self, sql):
        return self._check(self.pg.exec_(sql.encode()), sql[:60])

    def value(self, sql):
        r = self.execute(sql)
        return r.get_value(0, 0).decode() if r.ntuples and r.get_value(0, 0) is not None else None

    def copy_in(self, sql, data):
        res = self.pg.exec_(sql.encode())
        if res.status != self.pq.ExecStatus.COPY_IN:
            self._check(res, sql)
            raise RuntimeError("%s: not in COPY IN" % sql)
        self.pg.put_copy_data(data)
        self.pg.put_copy_end()
        res = self.pg.get_result()
        self._check(res, sql)
        n = int(res.command_tuples or 0)
        while self.pg.get_result() is not None:
            pass
        return n

    def close(self):
        self.pg.finish()


def proc_status(pid):
    """Memory figures of a process from /proc/<pid>/status, in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def cpu_ns(pid):
    """CPU time a process has used so far, in ns (/proc/<pid>/schedstat)."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def server_pids(conn, app="pgbench"):
    """(pids of the backends of `app` in conn's database, pids of every other server
    process but conn's own: background processes, other sessions)."""
    rows = conn.execute("SELECT pid, application_name = %s AND datname = current_database() "
                        "FROM pg_stat_activity WHERE pid <> pg_backend_pid()", (app,)).fetchall()
    return [r[0] for r in rows if r[1]], [r[0] for r in rows if not r[1]]


def cpu_sum(pids):
    total = 0
    for pid in pids:
        try:
            total += cpu_ns(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def pgbench_window(script, clients, warm, seconds, defines, count_sql, db=None, jobs=None,
                   ready_count=None, warm_max=300.0):
    """Run pgbench and measure a window of `seconds` after the warm-up: at least `warm`
    seconds and, with ready_count, until count_sql reaches it (the scripts of section
    topics first touch every partition from every client). Measured: messages counted by
    count_sql (exact: end offsets or a sequence, read by a separate connection), wall
    time, and the CPU time (/proc/<pid>/schedstat) of the pgbench backends and of every
    other server process. CPU per message is what a loaded machine disturbs least.
    pgbench is stopped after the window. Returns a dict."""
    cmd = [os.path.join(PG_BIN, "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
           "-j", str(jobs or min(2, clients)), "-T", str(int(warm_max + seconds + 30)), "-f", script]
    for k, v in defines:
        cmd += ["-D", "%s=%s" % (k, v)]
    cmd.append(db or DB)
    meta = connect(db, app="bench scale meter")
    count = lambda: int(meta.execute(count_sql).fetchone()[0] or 0)
    start = count()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_start = time.monotonic()
    try:
        time.sleep(warm)
        if ready_count is not None:
            while count() - start < ready_count:
                if proc.poll() is not None:
                    break
                if time.monotonic() - t_start > warm_max:
                    raise RuntimeError("warm-up not done after %.0f s" % warm_max)
                time.sleep(0.5)
            time.sleep(1.0)
        warmed = time.monotonic() - t_start
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError("pgbench failed: %s" % "\n".join((out + err).splitlines()[-5:]))
        backends, others = server_pids(meta)
        b0, o0 = cpu_sum(backends), cpu_sum(others)
        c0, t0 = count(), time.monotonic()
        time.sleep(seconds)
        b1, o1 = cpu_sum(backends), cpu_sum(others)
        c1, t1 = count(), time.monotonic()
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError("pgbench ended early: %s" % "\n".join((out + err).splitlines()[-5:]))
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate()
        meta.close()
    n = c1 - c0
    return {"rate": n / (t1 - t0), "messages": n, "backends": len(backends), "warm_s": warmed,
            "cpu_us": (b1 - b0) / 1e3 / max(n, 1), "server_cpu_us": (b1 - b0 + o1 - o0) / 1e3 / max(n, 1),
            "load": loadavg()}


def psql_file(path, variables=(), db=None):
    cmd = [os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db or DB]
    for k, v in variables:
        cmd += ["-v", "%s=%s" % (k, v)]
    cmd += ["-f", path]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def fmt_int(x):
    return "-" if x is None or x != x else "{:,.0f}".format(x)


def fmt_f(x, d=2):
    return "-" if x is None or x != x else ("%%.%df" % d) % x


def table(headers, rows):
    """Aligned text table (first column left-aligned, others right-aligned)."""
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cols):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                               for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Section topics: publish throughput, memory and catalog with 1 .. 1000 topics

def catalog_sizes(conn, schema):
    r = conn.execute("""
        SELECT (SELECT count(*) FROM pg_class),
               (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = %s),
               (SELECT count(*) FROM pg_attribute),
               pg_total_relation_size('pg_class') + pg_total_relation_size('pg_attribute')
                 + pg_total_relation_size('pg_depend') + pg_total_relation_size('pg_index')
                 + pg_total_relation_size('pg_type') + pg_total_relation_size('pg_constraint'),
               pg_database_size(current_database())""", (schema,)).fetchone()
    out = {"pg_class_rows": r[0], "relations": r[1], "pg_attribute_rows": r[2],
           "system_catalog_bytes": r[3], "database_bytes": r[4]}
    if schema == "stream_data":
        for t in ("_topics", "_partitions", "_segments", "_offsets"):
            out["stream." + t] = conn.execute(
                "SELECT pg_total_relation_size('stream.%s')" % t).fetchone()[0]
    return out


def touch_all(side, ntopics):
    """A fresh session writes one message into every partition (stream) or leaf table
    (raw); returns its memory before and after, and the time of the first and of a
    second pass."""
    if side == "stream":
        s = Session("bench scale touch")
        s.prepare("w", "SELECT count(*) FROM stream.publish($1, '{\"touch\": true}'::jsonb, partition => $2)")
        targets = [("scale-%d" % t, p) for t in range(1, ntopics + 1) for p in range(8)]
    else:
        s = Session("bench scale touch", RAW_DB)
        s.prepare("w", "INSERT INTO scale_raw (part, value) VALUES ($1, '{\"touch\": true}'::jsonb)")
        targets = [(k,) for k in range(ntopics * 8)]
    import psycopg
    meta = psycopg.connect(dbname=DB if side == "stream" else RAW_DB, autocommit=True)
    s.execute("SELECT 1")

    def snapshot():
        # the session's own contexts: ask it, not the meta connection
        r = s.execute("""SELECT sum(total_bytes),
               sum(total_bytes) FILTER (WHERE name = 'CacheMemoryContext'),
               sum(total_bytes) FILTER (WHERE parent = 'CacheMemoryContext'),
               coalesce(sum(total_bytes) FILTER (WHERE name = 'stream topic cache'), 0)
               FROM pg_backend_memory_contexts""")
        ctx = [int(r.get_value(0, i).decode()) for i in range(4)]
        m = proc_status(s.pid)
        m.update({"all_contexts": ctx[0], "cache_context": ctx[1], "cache_children": ctx[2],
                  "topic_cache": ctx[3]})
        return m

    before = snapshot()
    t0 = time.monotonic()
    for t in targets:
        s.run("w", *t)
    first = time.monotonic() - t0
    after = snapshot()
    t0 = time.monotonic()
    for t in targets:
        s.run("w", *t)
    second = time.monotonic() - t0
    again = snapshot()
    s.close()
    meta.close()
    return {"before": before, "after": after, "after_second_pass": again,
            "first_pass_us": 1e6 * first / len(targets), "second_pass_us": 1e6 * second / len(targets),
            "targets": len(targets)}


def section_topics(a):
    data = {"params": {"topics": a.topics, "clients": a.clients_topics, "seconds": a.seconds,
                       "runs": a.runs}, "points": []}
    recreate_db(RAW_DB, extension=False)
    conn = connect()
    rconn = connect(RAW_DB)
    # one transaction per topic: dropping 1000 topics at once would take 32,000 locks
    for (t,) in conn.execute("SELECT topic FROM stream.topics WHERE topic LIKE 'scale-%'").fetchall():
        conn.execute("SELECT stream.drop_topic(%s)", (t,))
    # the segment's columns (offset from a sequence, published_at from a default, as in
    # bench/reset.sql) plus the routing column; each leaf gets its own btree on "offset"
    rconn.execute("CREATE SEQUENCE scale_raw_seq")
    rconn.execute("""CREATE TABLE scale_raw (
        part         integer NOT NULL,
        "offset"     bigint NOT NULL DEFAULT nextval('scale_raw_seq'),
        key          text,
        value        jsonb,
        headers      jsonb,
        published_at timestamptz NOT NULL DEFAULT now()
    ) PARTITION BY LIST (part)""")
    have = 0
    for n in a.topics:
        log("\n== topics: %d topics x 8 partitions" % n)
        t0 = time.monotonic()
        for i in range(have + 1, n + 1):
            conn.execute("SELECT stream.create_topic(%s, partitions => 8)", ("scale-%d" % i,))
        create = time.monotonic() - t0
        t0 = time.monotonic()
        for k in range(have * 8, n * 8):
            rconn.execute('CREATE TABLE scale_raw_%d PARTITION OF scale_raw (PRIMARY KEY ("offset")) '
                          'FOR VALUES IN (%d) WITH (autovacuum_vacuum_insert_scale_factor = 0.05)' % (k, k))
        create_raw = time.monotonic() - t0
        created = n - have
        have = n
        point = {"topics": n, "partitions": 8 * n,
                 "create_ms_per_topic": 1000 * create / created if created else None,
                 "create_raw_ms_per_8_tables": 1000 * create_raw / created if created else None}
        log("   created %d topics in %.1f s (%.1f ms per topic; the raw side's 8 tables: %.1f ms)"
            % (created, create, point["create_ms_per_topic"] or 0, point["create_raw_ms_per_8_tables"] or 0))
        point["catalog"] = {"stream": catalog_sizes(conn, "stream_data"),
                            "raw": catalog_sizes(rconn, "public")}
        point["memory"] = {"stream": touch_all("stream", n), "raw": touch_all("raw", n)}
        for side in ("raw", "stream"):
            m = point["memory"][side]
            log("   %-6s a fresh backend touching all %d partitions: first %.0f us, then %.0f us each;"
                " RssAnon %d -> %d kB, CacheMemoryContext %.1f MB (+%.1f MB children), topic cache %.0f kB"
                % (side, m["targets"], m["first_pass_us"], m["second_pass_us"], m["before"]["RssAnon"],
                   m["after"]["RssAnon"], m["after"]["cache_context"] / 2**20,
                   m["after"]["cache_children"] / 2**20, m["after"]["topic_cache"] / 1024))
        # every backend of a run starts cold: each client first writes once to every
        # partition (leaf table) in turn, and the window starts when all have
        point["runs"] = {"raw": [], "stream": []}
        for r in range(1, a.runs + 1):
            for side in ("raw", "stream"):
                checkpoint(conn)
                if side == "raw":
                    m = pgbench_window(os.path.join(HERE, "scale_topics_raw.sql"), a.clients_topics, 2,
                                       a.seconds, [("nparts", 8 * n), ("i", 0)], "SELECT last_value FROM scale_raw_seq",
                                       RAW_DB, ready_count=a.clients_topics * 8 * n)
                else:
                    m = pgbench_window(os.path.join(HERE, "scale_topics.sql"), a.clients_topics, 2, a.seconds,
                                       [("ntopics", n), ("nwarm", 8 * n), ("i", 0)], STREAM_COUNT_SQL % "scale-%",
                                       ready_count=a.clients_topics * 8 * n)
                point["runs"][side].append(m)
                log_window(r, a.runs, side, m)
        data["points"].append(point)
        save_section("topics", data)
    conn.close()
    rconn.close()
    return data


def invalidator(kind, rate, stop, counter):
    """Change the catalog `rate` times a second until stop is set: kind "roll" publishes
    a 9 kB message to inval-roll (segment_bytes 8192), so that every publish rolls its
    segment (a row inserted into stream._segments, then updated); kind "alter" runs
    stream.alter_topic('inval-roll', ...) (a no-op change of max_message_bytes)."""
    c = connect(app="bench scale invalidator")
    i = 0
    nxt = time.monotonic()
    big = "x" * 9000
    while not stop.is_set():
        if kind == "roll":
            c.execute("SELECT count(*) FROM stream.publish('inval-roll', %s::text)", (big,))
        else:
            c.execute("SELECT stream.alter_topic('inval-roll', max_message_bytes => %s)", (1048576 + i % 2,))
        i += 1
        nxt += 1.0 / rate
        stop.wait(max(0.0, nxt - time.monotonic()))
    counter.append(i)
    c.close()


def flush_cost(conn, n, runs, passes=4):
    """One session publishes one message to each of the n topics per pass (prepared,
    200 per transaction, so that few commit flushes are measured); its CPU time per pass is
    compared between passes that follow a catalog change made by another session
    (alter_topic of inval-roll, or a roll of inval-roll's segment) and passes that
    follow none. Returns per-topic figures in us."""
    s = Session("bench scale flush")
    s.prepare("pub", "SELECT count(*) FROM stream.publish($1, '{\"flush\": true}'::jsonb, partition => 0)")
    topics = ["scale-%d" % i for i in range(1, n + 1)]

    def one_pass():
        c0 = cpu_ns(s.pid)
        for i, t in enumerate(topics):
            if i % 200 == 0:  # stream.max_xact_partitions is 256
                s.execute("BEGIN")
            s.run("pub", t)
            if i % 200 == 199 or i == len(topics) - 1:
                s.execute("COMMIT")
        return (cpu_ns(s.pid) - c0) / 1e3

    def segments_done():
        return conn.execute("SELECT count(*) FROM stream._segments s JOIN stream._topics t USING (topic_id) "
                            "WHERE t.topic = 'inval-roll' AND s.base_offset IS NOT NULL").fetchone()[0]

    one_pass()  # warm: every topic and segment opened once
    res = {"none": [], "alter": [], "roll": []}
    log("\n== inval: one session publishing to each of %d topics, after a catalog change or none" % n)
    for r in range(runs * passes):
        for kind in ("none", "alter", "roll"):
            if kind == "alter":
                conn.execute("SELECT stream.alter_topic('inval-roll', max_message_bytes => %s)", (1048576 + r % 2,))
            elif kind == "roll":
                before = segments_done()
                conn.execute("SELECT count(*) FROM stream.publish('inval-roll', %s::text)", ("x" * 9000,))
                deadline = time.monotonic() + 10
                while segments_done() == before and time.monotonic() < deadline:
                    time.sleep(0.005)
            res[kind].append(one_pass())
    s.close()
    out = {k: median(v) / n for k, v in res.items()}
    log("   CPU per topic and pass: %.1f us with no change, %.1f us after alter_topic, %.1f us after a segment roll"
        % (out["none"], out["alter"], out["roll"]))
    return {"topics": n, "us_per_topic": out, "passes": {k: v for k, v in res.items()}}


def section_inval(a):
    """Publish at the largest topic count of --topics while the catalog changes R times a
    second: every change of stream._topics, _partitions, _segments or _acl flushes every
    backend's whole topic cache (topic.c), and segment rolls and retention drops change
    stream._segments."""
    n = a.topics[-1]
    data = {"params": {"topics": n, "rates": a.topic_inval_rates, "clients": a.clients_topics,
                       "seconds": a.seconds, "runs": a.runs}, "runs": {}}
    conn = connect()
    have = conn.execute("SELECT count(*) FROM stream._topics WHERE topic LIKE 'scale-%'").fetchone()[0]
    for i in range(have + 1, n + 1):
        conn.execute("SELECT stream.create_topic(%s, partitions => 8)", ("scale-%d" % i,))
    if not conn.execute("SELECT 1 FROM stream._topics WHERE topic = 'inval-roll'").fetchone():
        conn.execute("SELECT stream.create_topic('inval-roll', value_type => 'text', segment_bytes => 8192)")
    data["flush"] = flush_cost(conn, n, a.runs)
    save_section("inval", data)
    log("\n== inval: publish to %d topics while the catalog changes R times a second" % n)
    series = [("none", 0)] + [("roll", r) for r in a.topic_inval_rates]
    for r in range(1, a.runs + 1):
        for kind, rate in series:
            key = "%s-%g" % (kind, rate)
            checkpoint(conn)
            stop = threading.Event()
            done = []
            th = None
            if rate:
                th = threading.Thread(target=invalidator, args=(kind, rate, stop, done))
                th.start()
            try:
                m = pgbench_window(os.path.join(HERE, "scale_topics.sql"), a.clients_topics, 2, a.seconds,
                                   [("ntopics", n), ("nwarm", 8 * n), ("i", 0)], STREAM_COUNT_SQL % "scale-%",
                                   ready_count=a.clients_topics * 8 * n)
            finally:
                stop.set()
                if th:
                    th.join()
            m["achieved_rate"] = done[0] / (m["warm_s"] + a.seconds) if done else 0
            data["runs"].setdefault(key, []).append(m)
            log_window(r, a.runs, "%s (%.1f/s)" % (key, m["achieved_rate"]), m)
        save_section("inval", data)
    segs = conn.execute("SELECT count(*) FROM stream._segments s JOIN stream._topics t USING (topic_id) "
                        "WHERE t.topic = 'inval-roll'").fetchone()[0]
    data["roll_segments"] = segs
    # inval-roll stays: with thousands of segments, drop_topic needs more locks than
    # the lock table holds (4 relations per segment, all in one transaction)
    conn.close()
    save_section("inval", data)
    return data


def report_inval(d):
    p = d["params"]
    base = median([x["rate"] for x in d["runs"]["none-0"]])
    basec = median([x["cpu_us"] for x in d["runs"]["none-0"]])
    rows = []
    for key, runs in d["runs"].items():
        kind, rate = key.split("-")
        v = median([x["rate"] for x in runs])
        c = median([x["cpu_us"] for x in runs])
        rows.append([{"none": "nothing", "roll": "segment rolls", "alter": "alter_topic"}[kind],
                     rate, fmt_f(median([x["achieved_rate"] for x in runs]), 1), fmt_int(v), fmt_f(v / base),
                     fmt_f(c, 0), fmt_f(c / basec)])
    f = d.get("flush")
    head = ""
    if f:
        u = f["us_per_topic"]
        head = ("one session publishing one message to each of %d topics (200 per transaction), backend CPU "
                "per topic: %.1f us when nothing changed, %.1f us after an alter_topic of another topic, %.1f us "
                "after a segment roll of another topic: each catalog change costs every backend about %.0f us "
                "per topic it publishes to next\n\n" % (f["topics"], u["none"], u["alter"], u["roll"],
                                                         u["roll"] - u["none"]))
    return (head + "publish, 1 msg/xact, %d clients, %d topics, while another session changes the catalog "
            "(medians)\n" % (p["clients"], p["topics"]) +
            table(["change", "per s asked", "achieved", "msg/s", "vs nothing", "backend CPU us/msg",
                   "vs nothing"], rows))


# messages published so far to the topics matching a LIKE pattern (shared memory, exact)
STREAM_COUNT_SQL = ("SELECT sum((stream._partition_state(t.topic, p)).end_offset) FROM stream._topics t, "
                    "generate_series(0, t.partitions - 1) p WHERE t.topic LIKE '%s'")


def log_window(r, runs, name, m):
    log("   run %d/%d %-26s %8.0f msg/s, backend CPU %5.0f us/msg, all server processes %5.0f us/msg (load %s)"
        % (r, runs, name, m["rate"], m["cpu_us"], m["server_cpu_us"], m["load"]))


def report_topics(d):
    pts = d["points"]
    if not pts:
        return ""
    base1 = median([x["cpu_us"] for x in pts[0]["runs"]["stream"]])
    rows = []
    for p in pts:
        raw = median([x["rate"] for x in p["runs"]["raw"]])
        st = median([x["rate"] for x in p["runs"]["stream"]])
        rc = median([x["cpu_us"] for x in p["runs"]["raw"]])
        sc = median([x["cpu_us"] for x in p["runs"]["stream"]])
        ms, mr = p["memory"]["stream"]["after"], p["memory"]["raw"]["after"]
        cs = p["catalog"]["stream"]
        rows.append([p["topics"], fmt_int(raw), fmt_int(st), fmt_f(st / raw), fmt_f(rc, 0), fmt_f(sc, 0),
                     fmt_f(sc / rc), fmt_f(sc / base1),
                     "%.0f / %.0f" % (p["memory"]["stream"]["first_pass_us"], p["memory"]["raw"]["first_pass_us"]),
                     "%.1f / %.1f" % (ms["RssAnon"] / 1024, mr["RssAnon"] / 1024),
                     "%.1f / %.1f" % ((ms["cache_context"] + ms["cache_children"]) / 2**20,
                                      (mr["cache_context"] + mr["cache_children"]) / 2**20),
                     "%.0f" % (ms["topic_cache"] / 1024),
                     fmt_int(cs["pg_class_rows"]), "%.0f" % (cs["database_bytes"] / 2**20),
                     "%.0f" % ((cs["stream._topics"] + cs["stream._partitions"] + cs["stream._segments"]) / 1024),
                     fmt_f(p["create_ms_per_topic"], 1)])
    out = ["publish, 1 msg/xact, %d clients, topic drawn at random; raw = INSERT into one of topics x 8 leaf "
           "tables (list partitions); msg/s and backend CPU per message over %ss, once every client has written "
           "once to every partition (leaf); medians; memory = one fresh backend after touching every partition (stream / raw)"
           % (d["params"]["clients"], d["params"]["seconds"]),
           table(["topics", "raw msg/s", "stream msg/s", "ratio", "raw CPU us", "stream CPU us", "cost ratio",
                  "vs 1 topic", "1st touch us", "RssAnon MB", "cache MB", "topic cache kB", "pg_class", "db MB",
                  "stream._* kB", "create ms"], rows)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Section poll: a member owning 8 partitions of 8, 64, 256

def publish_server_side(conn, topic, n, batch=10000):
    """Publish n ~110-byte JSON messages generated by the server, keyed customer-N."""
    sql = ("SELECT count(*) FROM (SELECT array_agg(" + JSON_VALUE + ") AS v, "
           "array_agg('customer-' || c) AS k FROM (SELECT (random() * 99999)::int + 1 AS c "
           "FROM generate_series(1, %s)) g) s, stream.publish_batch(%s, s.v, s.k)")
    left = n
    while left > 0:
        k = min(batch, left)
        conn.execute(sql, (k, topic))
        left -= k


def owned_counts(conn, group, topic):
    """{pid: partitions owned} for a group, from pg_locks."""
    rows = conn.execute("""
        SELECT l.pid, count(*) FROM pg_locks l,
               stream._owner_lock_key(%s, (SELECT topic_id FROM stream._topics WHERE topic = %s), 0) x
        WHERE l.locktype = 'advisory' AND l.objsubid = 21332 AND l.granted AND l.classid = x.classid
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        GROUP BY l.pid""", (group, topic)).fetchall()
    return dict(rows)


def section_poll(a):
    data = {"params": {"partitions": a.poll_partitions, "per_partition": a.poll_messages,
                       "empty_polls": a.poll_empty, "runs": a.runs}, "points": []}
    conn = connect()
    for p in a.poll_partitions:
        t = "poll-%d" % p
        conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (t,))
        conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (t, p))
        publish_server_side(conn, t, p * a.poll_messages)
        data["points"].append({"partitions": p, "members": max(1, p // 8), "runs": []})
    conn.execute("VACUUM ANALYZE")
    checkpoint(conn)
    log("\n== poll: one member owning 8 partitions of %s (%d messages per partition)"
        % ("/".join(map(str, a.poll_partitions)), a.poll_messages))
    for r in range(1, a.runs + 1):
        for point in data["points"]:
            p, nm = point["partitions"], point["members"]
            t = "poll-%d" % p
            group = "g-%d-%d" % (r, time.time_ns())
            ms = [Session("bench scale poll member %d" % i) for i in range(nm)]
            for s in ms:
                s.prepare("join", "SELECT count(*) FROM stream.poll($1::text, '%s', 1)" % t)
                s.prepare("poll", "SELECT * FROM stream.poll($1::text, '%s', 100)" % t)
            for _ in range(3):  # join, let go of what is not ours, take our share
                for s in ms:
                    s.execute("BEGIN")
                    s.run("join", group)
                    s.execute("ROLLBACK")
            owned = owned_counts(conn, group, t)
            me = ms[0]
            if owned.get(me.pid) != 8 or sum(owned.values()) != p:
                raise RuntimeError("assignment did not settle: %s" % owned)
            # read the member's 8 partitions to the end, 100 messages per poll
            polls = msgs = 0
            c0, t0 = cpu_ns(me.pid), time.monotonic()
            while True:
                got = me.run("poll", group).ntuples
                polls += 1
                if got == 0:
                    break
                msgs += got
            data_wall, data_cpu = time.monotonic() - t0, cpu_ns(me.pid) - c0
            # empty polls: nothing left to read
            c0, t0 = cpu_ns(me.pid), time.monotonic()
            for _ in range(a.poll_empty):
                me.run("poll", group)
            empty_wall, empty_cpu = time.monotonic() - t0, cpu_ns(me.pid) - c0
            for s in ms:
                s.execute("SELECT stream.leave('%s', '%s')" % (group, t))
                s.close()
            res = {"polls": polls, "messages": msgs,
                   "data_us_per_poll": 1e6 * data_wall / polls, "data_cpu_us_per_poll": data_cpu / 1e3 / polls,
                   "empty_us_per_poll": 1e6 * empty_wall / a.poll_empty,
                   "empty_cpu_us_per_poll": empty_cpu / 1e3 / a.poll_empty, "load": loadavg()}
            point["runs"].append(res)
            log("   run %d/%d  8 of %3d partitions (%2d members): %d polls of 100: %.0f us/poll (backend CPU %.0f);"
                " empty poll %.0f us (backend CPU %.0f)"
                % (r, a.runs, p, nm, polls, res["data_us_per_poll"], res["data_cpu_us_per_poll"],
                   res["empty_us_per_poll"], res["empty_cpu_us_per_poll"]))
    conn.close()
    save_section("poll", data)
    return data


def report_poll(d):
    pts = d["points"]
    if not pts:
        return ""
    b = pts[0]
    bd = median([x["data_cpu_us_per_poll"] for x in b["runs"]])
    be = median([x["empty_cpu_us_per_poll"] for x in b["runs"]])
    rows = []
    for p in pts:
        dc = median([x["data_cpu_us_per_poll"] for x in p["runs"]])
        ec = median([x["empty_cpu_us_per_poll"] for x in p["runs"]])
        rows.append(["8 of %d" % p["partitions"], p["members"],
                     fmt_f(median([x["data_us_per_poll"] for x in p["runs"]]), 0), fmt_f(dc, 0), fmt_f(dc / bd),
                     fmt_f(median([x["empty_us_per_poll"] for x in p["runs"]]), 0), fmt_f(ec, 0), fmt_f(ec / be)])
    return ("poll cost of one member owning 8 partitions (medians; backend CPU from /proc/<pid>/schedstat)\n" +
            table(["owns", "members", "poll 100 us", "backend CPU us", "vs 8 of 8",
                   "empty poll us", "backend CPU us", "vs 8 of 8"], rows))


# ---------------------------------------------------------------------------------------
# Section size: 100 B .. 1 MB messages

def bin_array(elemoid, items):
    """The binary send format of a one-dimensional array without NULLs."""
    out = [struct.pack("!iiiii", 1, 0, elemoid, len(items), 1)]
    for b in items:
        out.append(struct.pack("!i", len(b)))
        out.append(b)
    return b"".join(out)


def copy_binary(rows):
    """COPY's binary format for rows of (key, value)."""
    out = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for k, v in rows:
        out.append(struct.pack("!hi", 2, len(k)))
        out.append(k)
        out.append(struct.pack("!i", len(v)))
        out.append(v)
    out.append(struct.pack("!h", -1))
    return b"".join(out)


SIZE_TABLE_DDL = """CREATE TABLE %s (
    "offset"     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          text,
    value        bytea,
    headers      jsonb,
    published_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05)"""


def size_batch(size, a):
    return max(1, min(1000, a.size_call_bytes // size))


def size_reset(conn, topic, tbl, size):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("DROP TABLE IF EXISTS %s" % tbl)
    conn.execute("SELECT stream.create_topic(%s, partitions => 1, value_type => 'bytea', "
                 "max_message_bytes => %s)", (topic, size + 1024))
    conn.execute(SIZE_TABLE_DDL % tbl)
    conn.execute("VACUUM")
    checkpoint(conn)


def size_batches(size, batch, count=4, seed=7):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        keys = [("customer-%d" % rng.randint(1, 100000)).encode() for _ in range(batch)]
        vals = [os.urandom(size) for _ in range(batch)]
        out.append((keys, vals))
    return out


def size_write(side, size, batch, seconds, topic="size-w", tbl="size_raw"):
    """One client for SECONDS: publish_batch of BATCH messages or a binary COPY of the
    same rows, one transaction each. Returns (MB/s of payload, messages/s, messages)."""
    batches = size_batches(size, batch)
    s = Session("bench scale size " + side)
    if side == "publish":
        s.prepare("pub", "SELECT count(*) FROM stream.publish_batch('%s', $1::bytea[], $2::text[])" % topic,
                  [1001, 1009])
        rendered = [(bin_array(17, v), bin_array(25, k)) for k, v in batches]
    else:
        rendered = [copy_binary(list(zip(k, v))) for k, v in batches]
    sent = 0
    i = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        b = rendered[i % len(rendered)]
        i += 1
        if side == "publish":
            n = int(s.run("pub", *b, binary_params=True).get_value(0, 0))
        else:
            n = s.copy_in("COPY %s (key, value) FROM STDIN (FORMAT binary)" % tbl, b)
        if n != batch:
            raise RuntimeError("%s wrote %d rows, expected %d" % (side, n, batch))
        sent += batch
    el = time.monotonic() - t0
    s.close()
    return sent * size / el / 1e6, sent / el, sent


def size_fill(conn, size, a, topic="size-r", tbl="size_scan"):
    """The topic and its plain copy that the read runs scan; returns (messages, storage)."""
    n = max(8, a.size_read_mb * 2**20 // size)
    batch = size_batch(size, a)
    size_reset(conn, topic, tbl, size)
    conn.execute("DROP TABLE %s" % tbl)
    s = Session("bench scale size fill")
    s.prepare("pub", "SELECT count(*) FROM stream.publish_batch('%s', $1::bytea[], $2::text[])" % topic,
              [1001, 1009])
    batches = size_batches(size, batch, count=2, seed=11)
    left = n
    i = 0
    while left > 0:
        keys, vals = batches[i % 2]
        i += 1
        k = min(batch, left)
        s.run("pub", bin_array(17, vals[:k]), bin_array(25, keys[:k]), binary_params=True)
        left -= k
    s.close()
    conn.execute(SIZE_TABLE_DDL.replace("GENERATED ALWAYS AS IDENTITY ", "") % tbl)
    segs = [r[0] for r in conn.execute(
        "SELECT s.segment_id FROM stream._segments s JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s ORDER BY s.segment_id", (topic,)).fetchall()]
    for seg in segs:
        conn.execute('INSERT INTO %s SELECT "offset", key, value, headers, published_at '
                     'FROM stream_data.seg_%d ORDER BY "offset"' % (tbl, seg))
    conn.execute("VACUUM ANALYZE")
    checkpoint(conn)
    seg_bytes = sum(conn.execute("SELECT pg_total_relation_size('stream_data.seg_%d')" % seg).fetchone()[0]
                    for seg in segs)
    tbl_bytes = conn.execute("SELECT pg_total_relation_size(%s)", (tbl,)).fetchone()[0]
    return n, {"segments_bytes": seg_bytes, "table_bytes": tbl_bytes, "messages": n,
               "bytes_per_message": seg_bytes / n, "table_bytes_per_message": tbl_bytes / n,
               "payload": size}


def size_read(side, size, n, k, passes, topic="size-r", tbl="size_scan"):
    """Read all n messages PASSES times, k per call, binary results. Returns MB/s."""
    s = Session("bench scale size read " + side)
    if side == "poll":
        s.prepare("next", "SELECT * FROM stream.poll_bytea($1::text, '%s', %d)" % (topic, k))
    else:
        s.prepare("next", 'SELECT * FROM %s WHERE "offset" >= $1 AND "offset" < $1 + %d ORDER BY "offset"'
                  % (tbl, k))
    el = 0.0
    for _ in range(passes):
        group = "size-%d" % time.time_ns()
        pos = 0
        got = 0
        t0 = time.monotonic()
        while True:
            r = s.run("next", group if side == "poll" else pos, binary_result=True)
            m = r.ntuples
            if m == 0:
                break
            got += m
            pos += m
        el += time.monotonic() - t0
        if side == "poll":
            s.execute("SELECT stream.leave('%s', '%s')" % (group, topic))
        if got != n:
            raise RuntimeError("%s read %d of %d messages" % (side, got, n))
    s.close()
    return passes * n * size / el / 1e6


def explain_temp(conn, sql):
    """Temp blocks written by one statement (EXPLAIN ANALYZE BUFFERS)."""
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql).fetchall())
    m = re.search(r"temp read=(\d+) written=(\d+)", plan)
    return int(m.group(2)) * 8192 if m else 0


def section_size(a):
    data = {"params": {"sizes": a.sizes, "seconds": a.size_seconds, "read_mb": a.size_read_mb,
                       "call_bytes": a.size_call_bytes, "passes": a.size_passes, "runs": a.runs},
            "points": []}
    conn = connect()
    for size in a.sizes:
        batch = size_batch(size, a)
        log("\n== size: %d-byte values, %d per call" % (size, batch))
        point = {"size": size, "batch": batch, "write": {"copy": [], "publish": []},
                 "read": {"scan": [], "poll": []}}
        for r in range(1, a.runs + 1):
            for side in ("copy", "publish"):
                size_reset(conn, "size-w", "size_raw", size)
                mbs, rate, sent = size_write(side, size, batch, a.size_seconds)
                point["write"][side].append(mbs)
                log("   write run %d/%d %-8s %8.1f MB/s  (%.0f msg/s, %d messages)" % (r, a.runs, side, mbs, rate, sent))
        n, storage = size_fill(conn, size, a)
        point["storage"] = storage
        group = "size-explain-%d" % time.time_ns()
        point["temp_bytes"] = {
            "poll": explain_temp(conn, "SELECT * FROM stream.poll_bytea('%s', 'size-r', %d)" % (group, batch)),
            "scan": explain_temp(conn, 'SELECT * FROM size_scan WHERE "offset" >= 0 AND "offset" < %d '
                                       'ORDER BY "offset"' % batch)}
        conn.execute("SELECT stream.leave(%s, 'size-r')", (group,))
        for r in range(1, a.runs + 1):
            for side in ("scan", "poll"):
                mbs = size_read(side, size, n, batch, a.size_passes)
                point["read"][side].append(mbs)
                log("   read  run %d/%d %-8s %8.1f MB/s  (%d messages x %d passes)" % (r, a.runs, side, mbs, n, a.size_passes))
        log("   storage: %.0f bytes per message in the topic, %.0f in the plain table; temp written by one"
            " call: poll %d kB, scan %d kB" % (storage["bytes_per_message"], storage["table_bytes_per_message"],
                                                point["temp_bytes"]["poll"] // 1024, point["temp_bytes"]["scan"] // 1024))
        data["points"].append(point)
        save_section("size", data)
    conn.close()
    return data


def report_size(d):
    rows = []
    for p in d["points"]:
        c, pb = median(p["write"]["copy"]), median(p["write"]["publish"])
        sc, po = median(p["read"]["scan"]), median(p["read"]["poll"])
        rows.append([p["size"], p["batch"], fmt_f(c, 1), fmt_f(pb, 1), fmt_f(pb / c),
                     fmt_f(sc, 1), fmt_f(po, 1), fmt_f(po / sc),
                     "%.0f" % p["storage"]["bytes_per_message"], "%.0f" % p["storage"]["table_bytes_per_message"],
                     "%d" % (p["temp_bytes"]["poll"] // 1024)])
    return ("payload MB/s by message size (bytea, 1 client, binary on both sides; calls of up to %d bytes)\n"
            % d["params"]["call_bytes"] +
            table(["bytes", "per call", "COPY", "publish_batch", "ratio", "range scan", "poll_bytea", "ratio",
                   "stored B/msg", "table B/msg", "poll temp kB"], rows))


# ---------------------------------------------------------------------------------------
# Section retained: a topic holding many messages against a small one

def partition_ends(conn, topic):
    return [r[0] for r in conn.execute(
        "SELECT (stream._partition_state(%s, p)).end_offset FROM generate_series(0, "
        "(SELECT partitions FROM stream._topics WHERE topic = %s) - 1) p", (topic, topic)).fetchall()]


def loader(topic, n, batch, q):
    try:
        c = connect(app="bench scale loader")
        publish_server_side(c, topic, n, batch)
        c.close()
        q.put(None)
    except Exception as e:
        q.put(str(e))


def load_topic(conn, topic, n, procs=2, batch=10000, chunk=1000000):
    """Publish n messages with `procs` parallel loaders, printing progress per chunk."""
    t0 = time.monotonic()
    done = 0
    while done < n:
        k = min(chunk, n - done)
        q = mp.Queue()
        ps = [mp.Process(target=loader, args=(topic, k // procs + (1 if i < k % procs else 0), batch, q))
              for i in range(procs)]
        for p in ps:
            p.start()
        errs = [q.get() for _ in ps]
        for p in ps:
            p.join()
        if any(errs):
            raise RuntimeError("loader: %s" % [e for e in errs if e])
        done += k
        el = time.monotonic() - t0
        log("   loaded %d of %d messages in %.0f s (%.0f msg/s)" % (done, n, el, done / el))
    return time.monotonic() - t0


def topic_storage(conn, topic):
    r = conn.execute("""SELECT count(*), sum(pg_total_relation_size(('stream_data.seg_' || s.segment_id)::regclass)),
            sum(pg_relation_size(('stream_data.seg_' || s.segment_id)::regclass)),
            sum(pg_indexes_size(('stream_data.seg_' || s.segment_id)::regclass))
        FROM stream._segments s JOIN stream._topics t USING (topic_id) WHERE t.topic = %s""", (topic,)).fetchone()
    return {"segments": r[0], "total_bytes": int(r[1]), "heap_bytes": int(r[2]), "index_bytes": int(r[3])}


def drain_tail(topic, per_partition, k, head=False, max_polls=None):
    """One member reads per_partition messages of each partition from the tail (or the
    head), k per poll. Returns (msg/s, polls, backend CPU us per message)."""
    s = Session("bench scale retained reader")
    group = "ret-%d" % time.time_ns()
    import psycopg
    meta = psycopg.connect(dbname=DB, autocommit=True)
    ends = partition_ends(meta, topic)
    starts = [r[0] for r in meta.execute(
        "SELECT stream._partition_start(topic_id, p) FROM stream._topics, generate_series(0, partitions - 1) p "
        "WHERE topic = %s ORDER BY p", (topic,)).fetchall()]
    meta.close()
    s.prepare("poll", "SELECT * FROM stream.poll($1::text, '%s', %d)" % (topic, k))
    s.execute("BEGIN")
    s.execute("SELECT count(*) FROM stream.poll('%s', '%s', 1)" % (group, topic))
    for p, (e, st) in enumerate(zip(ends, starts)):
        s.execute("SELECT stream.seek('%s', '%s', %d, %d)" % (group, topic, p, st if head else max(st, e - per_partition)))
    s.execute("COMMIT")
    want = sum(min(per_partition, e - st) for e, st in zip(ends, starts))
    got = polls = 0
    c0, t0 = cpu_ns(s.pid), time.monotonic()
    while got < want and (max_polls is None or polls < max_polls):
        m = s.run("poll", group).ntuples
        polls += 1
        got += m
        if m == 0 and not head:
            break
    el, cpu = time.monotonic() - t0, cpu_ns(s.pid) - c0
    s.execute("SELECT stream.leave('%s', '%s')" % (group, topic))
    s.close()
    return got / el, polls, cpu / 1e3 / max(got, 1), 1e6 * el / polls


def time_sql(conn, sql, *args):
    t0 = time.monotonic()
    conn.execute(sql, args).fetchall()
    return time.monotonic() - t0


def section_retained(a):
    n = a.retained
    big, small = "ret-big", "ret-small"
    data = {"params": {"retained": n, "segment_bytes": a.retained_segment_bytes, "runs": a.runs,
                       "seconds": a.seconds, "clients": a.clients_topics, "read": a.retained_read}}
    conn = connect()
    exists = conn.execute("SELECT segment_bytes FROM stream._topics WHERE topic = %s", (big,)).fetchone()
    have = sum(partition_ends(conn, big)) if exists else 0
    log("\n== retained: %d messages in %s (8 partitions) against %s" % (n, big, small))
    if a.retained_reload or not exists or exists[0] != a.retained_segment_bytes or have < n:
        data_dir = os.environ.get("STREAM_PGDATA", "/")
        free = shutil.disk_usage(data_dir if os.path.exists(data_dir) else "/").free
        need = n * 260 + (4 << 30)  # ~200 stored bytes a message, WAL, margin
        if free < need:
            raise SystemExit("retained: %d messages need about %.0f GB, %.0f GB free" % (n, need / 1e9, free / 1e9))
        conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (big,))
        conn.execute("SELECT stream.create_topic(%s, partitions => 8, segment_bytes => %s)",
                     (big, a.retained_segment_bytes))
        checkpoint(conn)
        el = load_topic(conn, big, n)
        t0 = time.monotonic()
        conn.execute("VACUUM ANALYZE")
        vac = time.monotonic() - t0
        data["load"] = {"seconds": el, "msg_per_s": n / el, "vacuum_s": vac, "loaded": n}
        log("   load: %.0f s (%.0f msg/s), VACUUM ANALYZE %.0f s" % (el, n / el, vac))
    else:
        old = load_section("retained") or {}
        data["load"] = old.get("load", {"loaded": have, "reused": True})
        log("   reusing %s: %d messages already published" % (big, have))
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (small,))
    conn.execute("SELECT stream.create_topic(%s, partitions => 8, segment_bytes => %s)",
                 (small, a.retained_segment_bytes))
    publish_server_side(conn, small, a.retained_read)
    conn.execute("VACUUM ANALYZE")
    checkpoint(conn)

    st = topic_storage(conn, big)
    payload = conn.execute(
        "SELECT avg(octet_length(value::text) + octet_length(key)), avg(pg_column_size(value) + pg_column_size(key)) "
        "FROM (SELECT value, key FROM stream.read(%s, 0, 0, 10000)) s", (big,)).fetchone()
    ends = partition_ends(conn, big)
    data["storage"] = dict(st, messages=sum(ends), payload_text=float(payload[0]),
                           payload_stored=float(payload[1]),
                           bytes_per_message=st["total_bytes"] / sum(ends),
                           heap_per_message=st["heap_bytes"] / sum(ends),
                           index_per_message=st["index_bytes"] / sum(ends))
    log("   storage: %d segments, %.0f bytes per message (heap %.0f, index %.0f) for a payload of %.0f bytes"
        " as text (%.0f as stored jsonb + key)"
        % (st["segments"], data["storage"]["bytes_per_message"], data["storage"]["heap_per_message"],
           data["storage"]["index_per_message"], payload[0], payload[1]))
    # the monitoring views
    data["views"] = {}
    for topic in (small, big):
        data["views"][topic] = {
            "partitions_s": time_sql(conn, "SELECT * FROM stream.partitions WHERE topic = %s", topic),
            "partition_state_s": time_sql(conn, "SELECT stream._partition_state(%s, p) FROM generate_series(0, 7) p", topic)}
        log("   %s: SELECT * FROM stream.partitions WHERE topic = ... takes %.3f s" % (topic, data["views"][topic]["partitions_s"]))

    data["publish"] = {small: [], big: []}
    data["poll_tail"] = {small: [], big: []}
    data["poll_head"] = {small: [], big: []}
    data["poll_small"] = {small: [], big: []}
    per = a.retained_read // 8
    for r in range(1, a.runs + 1):
        for topic in (small, big):
            checkpoint(conn)
            m = pgbench_window(os.path.join(HERE, "scale_publish.sql"), a.clients_topics, 2, a.seconds,
                               [("topic", topic)], STREAM_COUNT_SQL % topic)
            data["publish"][topic].append(m)
            log_window(r, a.runs, "publish " + topic, m)
        for topic in (small, big):
            rate, polls, cpu, _ = drain_tail(topic, per, 1000)
            data["poll_tail"][topic].append({"msg_s": rate, "cpu_us_per_msg": cpu})
            log("   run %d/%d poll 1000/call, the last %d messages of %-9s %8.0f msg/s (backend %.2f us/msg)"
                % (r, a.runs, a.retained_read, topic, rate, cpu))
        for topic in (small, big):
            rate, polls, cpu, _ = drain_tail(topic, per, 1000, head=True)
            data["poll_head"][topic].append({"msg_s": rate, "cpu_us_per_msg": cpu})
            log("   run %d/%d poll 1000/call, the first %d messages of %-9s %8.0f msg/s (backend %.2f us/msg)"
                % (r, a.runs, a.retained_read, topic, rate, cpu))
        for topic in (small, big):
            rate, polls, cpu, us = drain_tail(topic, per, 1, max_polls=a.poll_empty)
            data["poll_small"][topic].append({"us_per_poll": us, "cpu_us": cpu})
            log("   run %d/%d poll 1/call from the tail of %-9s %8.0f us per poll (backend %.0f us)"
                % (r, a.runs, topic, us, cpu))
    conn.close()
    save_section("retained", data)
    return data


def report_retained(d):
    p = d["params"]
    small, big = "ret-small", "ret-big"
    st = d["storage"]
    rows = []
    pub_s, pub_b = [median([x["rate"] for x in d["publish"][t]]) for t in (small, big)]
    rows.append(["publish, 1 msg/xact, %d clients (msg/s)" % p["clients"], fmt_int(pub_s), fmt_int(pub_b), fmt_f(pub_b / pub_s)])
    pub_s, pub_b = [median([x["cpu_us"] for x in d["publish"][t]]) for t in (small, big)]
    rows.append(["publish: backend CPU us per message", fmt_f(pub_s, 0), fmt_f(pub_b, 0), fmt_f(pub_b / pub_s)])
    for key, name in (("poll_tail", "poll 1000/call, newest %d" % p["read"]),
                      ("poll_head", "poll 1000/call, oldest %d" % p["read"])):
        a_, b_ = median([x["msg_s"] for x in d[key][small]]), median([x["msg_s"] for x in d[key][big]])
        rows.append([name + " (msg/s)", fmt_int(a_), fmt_int(b_), fmt_f(b_ / a_)])
        a_, b_ = median([x["cpu_us_per_msg"] for x in d[key][small]]), median([x["cpu_us_per_msg"] for x in d[key][big]])
        rows.append(["  backend CPU us per message", fmt_f(a_), fmt_f(b_), fmt_f(b_ / a_)])
    a_, b_ = median([x["us_per_poll"] for x in d["poll_small"][small]]), median([x["us_per_poll"] for x in d["poll_small"][big]])
    rows.append(["poll 1/call (us per poll)", fmt_f(a_, 0), fmt_f(b_, 0), fmt_f(b_ / a_)])
    a_, b_ = median([x["cpu_us"] for x in d["poll_small"][small]]), median([x["cpu_us"] for x in d["poll_small"][big]])
    rows.append(["  backend CPU us per poll", fmt_f(a_, 0), fmt_f(b_, 0), fmt_f(b_ / a_)])
    a_, b_ = d["views"][small]["partitions_s"], d["views"][big]["partitions_s"]
    rows.append(["SELECT * FROM stream.partitions WHERE topic = .. (s)", fmt_f(a_, 3), fmt_f(b_, 3), fmt_f(b_ / a_, 0)])
    load = d.get("load", {})
    lines = ["retained volume: %s messages (8 partitions, segment_bytes %d) against a topic of %d"
             % (fmt_int(st["messages"]), p["segment_bytes"], p["read"]),
             table(["", "small topic", "big topic", "big / small"], rows),
             "storage: %d segments, %.0f bytes per message (heap %.0f, index %.0f) for a payload of %.0f bytes "
             "(value as JSON text + key; %.0f as stored: jsonb + key), i.e. %.2fx"
             % (st["segments"], st["bytes_per_message"], st["heap_per_message"], st["index_per_message"],
                st["payload_text"], st["payload_stored"], st["bytes_per_message"] / st["payload_text"])]
    if "seconds" in load:
        lines.append("load: %s messages in %.0f s (%.0f msg/s, 2 loaders, publish_batch of 10,000 generated by "
                     "the server), VACUUM ANALYZE %.0f s" % (fmt_int(load["loaded"]), load["seconds"],
                                                             load["msg_per_s"], load["vacuum_s"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Section groups: assignment convergence, and many groups reading one topic

def expected_counts(partitions, members):
    base, extra = divmod(partitions, members)
    return sorted([base + 1] * extra + [base] * (members - extra))


def converged(counts, pids, partitions):
    """Every partition owned once, each live member its share (p % M == rank)."""
    live = [counts.get(pid, 0) for pid in pids]
    return (sum(counts.values()) == partitions and set(counts) <= set(pids)
            and sorted(live) == expected_counts(partitions, len(pids)))


def groups_rounds(conn, topic, partitions, nmembers):
    """Members poll in turn (join order) until the assignment converges after each join
    and each leave; returns {"join": [polls per step], "leave": [...]}."""
    group = "rounds-%d" % time.time_ns()
    members = []
    out = {"join": [], "leave": []}

    def settle():
        polls = 0
        pids = [m.pid for m in members]
        while True:
            for m in list(members):
                m.run("poll", group)
                polls += 1
                if converged(owned_counts(conn, group, topic), pids, partitions):
                    return polls
                if polls > 100 * len(members):
                    raise RuntimeError("no convergence after %d polls" % polls)

    for i in range(nmembers):
        m = Session("bench scale rounds %d" % i)
        m.prepare("poll", "SELECT count(*) FROM stream.poll($1::text, '%s', 1)" % topic)
        m.run("poll", group)  # joins
        members.append(m)
        out["join"].append(settle() + 1)
    while len(members) > 1:
        m = members.pop(0)  # the oldest leaves first: every rank changes
        m.execute("SELECT stream.leave('%s', '%s')" % (group, topic))
        m.close()
        out["leave"].append(settle())
    members[0].close()
    return out


def live_member(i, topic, group, wait_ms, start_ev, leave_ev, polls, ready, left_at):
    try:
        s = Session("bench scale live member %d" % i)
        s.prepare("poll", "SELECT count(*) FROM stream.poll($1::text, '%s', 100, wait => '%d ms')" % (topic, wait_ms))
        ready.put((i, s.pid))
        start_ev.wait()
        while not leave_ev.is_set():
            s.run("poll", group)
            with polls.get_lock():
                polls.value += 1
        s.execute("SELECT stream.leave('%s', '%s')" % (group, topic))
        left_at[i] = time.monotonic()
        s.close()
    except Exception as e:
        print("live member %d: %s" % (i, e), file=sys.stderr)
        sys.exit(1)


def groups_live(conn, topic, partitions, nmembers, wait_ms, timeout=30.0):
    """Members loop on poll(..., wait) as consumers do (in separate processes); after each
    join and each leave, the time until the assignment converges and the polls made
    meanwhile (all members)."""
    group = "live-%d" % time.time_ns()
    ctx = mp.get_context("fork")
    polls = ctx.Value("q", 0)
    left_at = ctx.Array("d", nmembers)
    ready = ctx.Queue()
    procs, starts, leaves, pids = [], [], [], []
    out = {"join": [], "leave": []}

    def wait_converged(t0, p0):
        while True:
            if converged(owned_counts(conn, group, topic), pids, partitions):
                return time.monotonic() - t0, polls.value - p0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("no convergence within %.0f s" % timeout)
            time.sleep(0.001)

    try:
        for i in range(nmembers):
            se, le = ctx.Event(), ctx.Event()
            p = ctx.Process(target=live_member, args=(i, topic, group, wait_ms, se, le, polls, ready, left_at))
            p.start()
            procs.append(p)
            starts.append(se)
            leaves.append(le)
            _, pid = ready.get(timeout=30)
            pids.append(pid)
            t0, p0 = time.monotonic(), polls.value
            se.set()
            out["join"].append(wait_converged(t0, p0))
        for i in range(nmembers - 1):
            p0 = polls.value
            leaves[i].set()
            procs[i].join(timeout=30)
            pids.remove(pids[0])
            # from the moment leave() returned
            out["leave"].append(wait_converged(left_at[i], p0))
        leaves[-1].set()
        procs[-1].join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return out


def fan_reader(side, topic, groups, total, step, q):
    try:
        s = Session("bench scale fan %s" % side)
        if side == "poll":
            s.prepare("next", "SELECT * FROM stream.poll($1::text, '%s', %d)" % (topic, step))
        else:
            s.prepare("next", 'SELECT * FROM fan_scan WHERE "offset" >= $1 AND "offset" < $1 + %d ORDER BY "offset"'
                      % step)
        pos = {g: 0 for g in groups}
        got = {g: 0 for g in groups}
        done = {}
        q.put("ready")
        t0 = time.monotonic()
        active = list(groups)
        while active:
            for g in list(active):
                m = s.run("next", g if side == "poll" else pos[g]).ntuples
                pos[g] += m
                got[g] += m
                if m == 0 or got[g] >= total:
                    done[g] = time.monotonic() - t0
                    active.remove(g)
        if side == "poll":
            for g in groups:
                s.execute("SELECT stream.leave('%s', '%s')" % (g, topic))
        s.close()
        q.put((t0, time.monotonic(), got, done))
    except Exception as e:
        q.put("error: %s" % e)


def groups_fanout(nconsumers, sessions, topic, total, step):
    """nconsumers groups (or range-scan readers of fan_scan) spread over `sessions`
    processes each read the whole topic; returns (total msg/s, per-group msg/s)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    out = {}
    for side in ("scan", "poll"):
        tag = time.time_ns()
        names = ["fan-%d-%d" % (tag, g) for g in range(nconsumers)]
        shares = [names[i::sessions] for i in range(min(sessions, nconsumers))]
        procs = [ctx.Process(target=fan_reader, args=(side, topic, sh, total, step, q)) for sh in shares]
        for p in procs:
            p.start()
        res = []
        while len(res) < 2 * len(procs):
            x = q.get(timeout=600)
            if isinstance(x, str) and x.startswith("error"):
                for p in procs:
                    p.kill()
                raise RuntimeError(x)
            res.append(x)
        for p in procs:
            p.join()
        res = [x for x in res if x != "ready"]
        t0 = min(x[0] for x in res)
        t1 = max(x[1] for x in res)
        n = sum(sum(x[2].values()) for x in res)
        if n != total * nconsumers:
            raise RuntimeError("%s: %d messages read, expected %d" % (side, n, total * nconsumers))
        per_group = [total / t for x in res for t in x[3].values()]
        out[side] = {"total": n / (t1 - t0), "per_group_median": median(per_group)}
    return out


def section_groups(a):
    p, nm = a.group_partitions, a.group_members
    data = {"params": {"partitions": p, "members": nm, "wait_ms": a.group_wait_ms, "groups": a.groups,
                       "sessions": a.group_sessions, "messages": a.group_messages, "runs": a.runs},
            "rounds": [], "live": []}
    conn = connect()
    topic = "grp-assign"
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (topic, p))
    log("\n== groups: %d partitions, %d members joining one by one, then leaving (oldest first)" % (p, nm))
    for r in range(1, a.runs + 1):
        ro = groups_rounds(conn, topic, p, nm)
        data["rounds"].append(ro)
        log("   run %d/%d members polling in turn: polls to converge after each join %s, each leave %s"
            % (r, a.runs, ro["join"], ro["leave"]))
        li = groups_live(conn, topic, p, nm, a.group_wait_ms)
        data["live"].append(li)
        log("   run %d/%d members in long polls (wait %d ms): ms to converge after each join %s, each leave %s"
            % (r, a.runs, a.group_wait_ms, [round(1000 * x[0]) for x in li["join"]],
               [round(1000 * x[0]) for x in li["leave"]]))
        log("      polls meanwhile: joins %s, leaves %s" % ([x[1] for x in li["join"]], [x[1] for x in li["leave"]]))
    save_section("groups", data)

    topic = "grp-fan"
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("SELECT stream.create_topic(%s, partitions => 8)", (topic,))
    publish_server_side(conn, topic, a.group_messages)
    conn.execute("DROP TABLE IF EXISTS fan_scan")
    conn.execute('CREATE TABLE fan_scan ("offset" bigint PRIMARY KEY, key text, value jsonb, headers jsonb, '
                 'published_at timestamptz NOT NULL) WITH (autovacuum_vacuum_insert_scale_factor = 0.05)')
    # the baseline table holds the same rows, renumbered 0 .. n-1 in (partition, offset) order
    conn.execute("""INSERT INTO fan_scan SELECT row_number() OVER (ORDER BY partition, "offset") - 1, key, value,
                        headers, published_at FROM (SELECT r.* FROM generate_series(0, 7) p,
                        stream.read(%s, p, 0, 100000) r) s""", (topic,))
    n = conn.execute("SELECT count(*) FROM fan_scan").fetchone()[0]
    if n != a.group_messages:
        raise RuntimeError("fan_scan has %d rows (stream.max_read_messages?)" % n)
    conn.execute("VACUUM ANALYZE")
    checkpoint(conn)
    data["fanout"] = []
    log("\n== groups: 1 .. %d groups reading one topic of %d messages (8 partitions), %d sessions at most,"
        " 1000 per poll" % (max(a.groups), a.group_messages, a.group_sessions))
    for g in a.groups:
        point = {"groups": g, "sessions": min(g, a.group_sessions), "runs": []}
        for r in range(1, a.runs + 1):
            res = groups_fanout(g, a.group_sessions, topic, a.group_messages, 1000)
            point["runs"].append(res)
            log("   run %d/%d %3d groups over %d sessions: poll %8.0f msg/s in all (%6.0f per group);"
                " range scans %8.0f (%6.0f per reader)"
                % (r, a.runs, g, point["sessions"], res["poll"]["total"], res["poll"]["per_group_median"],
                   res["scan"]["total"], res["scan"]["per_group_median"]))
        data["fanout"].append(point)
        save_section("groups", data)
    # the consumer_lag view with many owned partitions: one session joins G groups of
    # the topic of section "assignment" and owns all its partitions in each
    data["consumer_lag"] = []
    log("\n== groups: SELECT * FROM stream.consumer_lag with 1 session owning G x %d partitions" % p)
    for g in a.lag_groups:
        s = Session("bench scale lag")
        names = ["lag-%d-%d" % (time.time_ns(), i) for i in range(g)]
        for name in names:
            s.execute("SELECT count(*) FROM stream.poll('%s', 'grp-assign', 1)" % name)
        t0 = time.monotonic()
        rows = len(conn.execute("SELECT * FROM stream.consumer_lag").fetchall())
        t_all = time.monotonic() - t0
        t0 = time.monotonic()
        one = len(conn.execute('SELECT * FROM stream.consumer_lag WHERE "group" = %s', (names[0],)).fetchall())
        t_one = time.monotonic() - t0
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 21332").fetchone()[0]
        s.close()
        data["consumer_lag"].append({"groups": g, "rows": rows, "seconds": t_all, "one_group_rows": one,
                                     "one_group_seconds": t_one, "locks": locks})
        log("   %2d groups, %5d ownership locks: %5d rows in %.3f s; WHERE \"group\" = one of them: %d rows in %.3f s"
            % (g, locks, rows, t_all, one, t_one))
    conn.close()
    save_section("groups", data)
    return data


def report_groups(d):
    p = d["params"]
    rows = []
    nm = p["members"]
    for i in range(nm):
        rj = median([r["join"][i] for r in d["rounds"]])
        lj = median([1000 * r["join"][i][0] for r in d["live"]])
        pj = median([r["join"][i][1] for r in d["live"]])
        rows.append(["join: %d members" % (i + 1), fmt_f(rj, 0), fmt_f(lj, 0), fmt_f(pj, 0)])
    for i in range(nm - 1):
        rl = median([r["leave"][i] for r in d["rounds"]])
        ll = median([1000 * r["leave"][i][0] for r in d["live"]])
        pl = median([r["leave"][i][1] for r in d["live"]])
        rows.append(["leave: %d members" % (nm - 1 - i), fmt_f(rl, 0), fmt_f(ll, 0), fmt_f(pl, 0)])
    out = ["assignment of %d partitions (medians): polls until converged when members poll in turn; "
           "ms and polls until converged when members loop on poll(wait => '%d ms')" % (p["partitions"], p["wait_ms"]),
           table(["step", "polls (in turn)", "ms (live)", "polls returned (live)"], rows)]
    if d.get("fanout"):
        rows = []
        for pt in d["fanout"]:
            pt_ = median([r["poll"]["total"] for r in pt["runs"]])
            st_ = median([r["scan"]["total"] for r in pt["runs"]])
            rows.append([pt["groups"], pt["sessions"], fmt_int(st_), fmt_int(pt_), fmt_f(pt_ / st_),
                         fmt_int(median([r["poll"]["per_group_median"] for r in pt["runs"]])),
                         fmt_int(median([r["scan"]["per_group_median"] for r in pt["runs"]]))])
        out += ["", "groups reading one topic of %d messages (each group reads all; 1000 per call)" % p["messages"],
                table(["groups", "sessions", "scan total msg/s", "poll total msg/s", "ratio",
                       "poll per group", "scan per reader"], rows)]
    if d.get("consumer_lag"):
        out += ["", "SELECT * FROM stream.consumer_lag, one session owning every partition of G groups of "
                "the %d-partition topic" % p["partitions"],
                table(["groups", "ownership locks", "rows", "seconds", "one group: rows", "seconds"],
                      [[x["groups"], x["locks"], x["rows"], fmt_f(x["seconds"], 3), x["one_group_rows"],
                        fmt_f(x["one_group_seconds"], 3)] for x in d["consumer_lag"]])]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Section concurrency: 1 .. 32 publishers, and where the time goes

def perf_profile(kind, partitions, clients, seconds, tag):
    """pgbench with `clients` clients; perf record -g of all its backends for `seconds`.
    Returns the top symbols (self time) and the share of each DSO."""
    psql_file(os.path.join(HERE, "reset.sql"), [("partitions", partitions)])
    script = os.path.join(HERE, "%s.sql" % kind)
    cmd = [os.path.join(PG_BIN, "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
           "-T", str(seconds + 6), "-f", script, DB]
    pg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    conn = connect(app="bench scale perf")
    time.sleep(3)
    pids = [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND datname = current_database()").fetchall()]
    conn.close()
    data_file = os.path.join(RESULTS, "perf-%s.data" % tag)
    subprocess.run(["perf", "record", "-q", "-g", "-F", "999", "-o", data_file, "-p", ",".join(map(str, pids)),
                    "--", "sleep", str(seconds)], capture_output=True, text=True)
    out, err = pg.communicate()
    tps = float(re.search(r"^tps = ([\d.]+)", out, re.M).group(1))

    def report(*args):
        p = subprocess.run(["perf", "report", "-i", data_file, "--stdio", "--no-header"] + list(args),
                           capture_output=True, text=True)
        return p.stdout

    selfs = []
    for line in report("--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.4").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)$", line)
        if m:
            selfs.append((float(m.group(1)), m.group(2), m.group(3).strip()))
    dsos = []
    for line in report("--no-children", "--sort", "dso", "-g", "none").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s*$", line)
        if m:
            dsos.append((float(m.group(1)), m.group(2)))
    ours = []
    for line in report("--no-children", "--dsos", "stream.so", "--sort", "sym", "-g", "none").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[.\]\s+(.*)$", line)
        if m:
            ours.append((float(m.group(1)), m.group(2).strip()))
    children = {}
    for line in report("--children", "--sort", "sym", "-g", "none", "--percent-limit", "0.3").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(.*)$", line)
        if m:
            children[m.group(3).strip()] = (float(m.group(1)), float(m.group(2)))
    with open(os.path.join(RESULTS, "perf-%s.txt" % tag), "w") as f:
        f.write(report("--no-children", "--sort", "dso,sym", "-g", "caller,0.5,callee", "--percent-limit", "1"))
    return {"tps": tps, "backends": len(pids), "self": selfs[:40], "dso": dsos, "children": children,
            "stream_so": ours[:15]}


def section_concurrency(a):
    data = {"params": {"clients": a.clients, "seconds": a.conc_seconds, "runs": a.runs}, "points": []}
    series = [("insert", "INSERT into one table", "insert", 1),
              ("publish-1p", "publish, 1 partition", "publish", 1),
              ("publish-32p", "publish, 32 partitions", "publish", 32)]
    log("\n== concurrency: 1 message per transaction, %s clients" % ",".join(map(str, a.clients)))
    for c in a.clients:
        point = {"clients": c, "runs": {s[0]: [] for s in series}}
        for r in range(1, a.runs + 1):
            for key, name, script, parts in series:
                psql_file(os.path.join(HERE, "reset.sql"), [("partitions", parts)])
                count = (STREAM_COUNT_SQL % "bench" if script == "publish" else
                         "SELECT last_value FROM bench_insert_offset_seq")
                m = pgbench_window(os.path.join(HERE, script + ".sql"), c, 1.0, a.conc_seconds, [], count)
                point["runs"][key].append(m)
                log_window(r, a.runs, "%2d clients %s" % (c, name), m)
        data["points"].append(point)
        save_section("concurrency", data)
    if a.perf and shutil.which("perf"):
        data["perf"] = {}
        for kind, parts, tag in (("publish", 1, "publish-1p-32c"), ("insert", 1, "insert-32c")):
            log("   perf record -g of the backends: %s, 32 clients" % tag)
            data["perf"][tag] = perf_profile(kind, parts, 32, a.perf_seconds, tag)
            save_section("concurrency", data)
    return data


PERF_WATCH = ["stream_publish", "stream_append", "stream_reserve_offsets", "stream_partition_lock",
              "stream_topic_lookup_cstr", "stream_xact_callback", "release_hold", "wake_waiters",
              "insert_into_segment", "XLogFlush", "XLogInsertRecord", "XLogInsert", "heap_insert", "btinsert",
              "_bt_doinsert", "LWLockAcquire", "LWLockRelease", "s_lock", "LockAcquireExtended",
              "CommitTransaction", "ExecInsert", "ExecMakeTableFunctionResult", "finish_spin_delay",
              "perform_spin_delay", "pg_usleep", "LWLockWaitListLock"]


def report_concurrency(d):
    rows = []
    for p in d["points"]:
        i_, a_, b_ = [median([x["rate"] for x in p["runs"][k]]) for k in ("insert", "publish-1p", "publish-32p")]
        ic, ac, bc = [median([x["cpu_us"] for x in p["runs"][k]]) for k in ("insert", "publish-1p", "publish-32p")]
        rows.append([p["clients"], fmt_int(i_), fmt_int(a_), fmt_f(a_ / i_), fmt_int(b_), fmt_f(b_ / i_),
                     fmt_f(ic, 0), fmt_f(ac, 0), fmt_f(ac / ic), fmt_f(bc, 0), fmt_f(bc / ic)])
    out = ["by number of publishers, 1 message per transaction (pgbench -c N -j 2 -M prepared; medians of the "
           "runs; msg/s and backend CPU per message over %ss after 1 s)" % d["params"]["seconds"],
           table(["clients", "INSERT msg/s", "publish 1p", "ratio", "publish 32p", "ratio",
                  "INSERT CPU us", "publish 1p", "ratio", "publish 32p", "ratio"], rows)]
    for tag, pr in (d.get("perf") or {}).items():
        ours = sum(x[0] for x in pr["dso"] if "stream.so" in x[1])
        out.append("\nperf, %s (%d backends, %.0f msg/s while profiled): share of samples by DSO: %s"
                   % (tag, pr["backends"], pr["tps"], ", ".join("%s %.1f%%" % (x[1], x[0]) for x in pr["dso"][:6])))
        out.append("stream.so in all: %.1f%% (self): %s" % (ours, ", ".join(
            "%s %.2f%%" % (sym, v) for v, sym in pr.get("stream_so", [])[:8])))
        out.append(table(["self %", "dso", "symbol"], [["%.1f" % s, dso, sym[:70]] for s, dso, sym in pr["self"][:20]]))
        watch = [[k, "%.1f" % pr["children"][k][0], "%.1f" % pr["children"][k][1]] for k in PERF_WATCH if k in pr["children"]]
        if watch:
            out.append(table(["symbol", "incl. %", "self %"], watch))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Results, report and plots

def load_all():
    if os.path.exists(JSON_PATH):
        with open(JSON_PATH) as f:
            return json.load(f)
    return {}


def load_section(name):
    return load_all().get(name)


TAG = None  # --tag: results stored as "<section>@<tag>", beside the untagged ones


def save_section(name, data):
    if TAG:
        name = "%s@%s" % (name, TAG)
    allr = load_all()
    data = dict(data)
    data["when"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    allr[name] = data
    os.makedirs(RESULTS, exist_ok=True)
    tmp = JSON_PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(allr, f, indent=1)
    os.replace(tmp, JSON_PATH)


REPORTS = {"topics": report_topics, "inval": report_inval, "poll": report_poll, "size": report_size, "retained": report_retained,
           "groups": report_groups, "concurrency": report_concurrency}


def report(sections=None):
    allr = load_all()
    for s in ALL_SECTIONS:
        if sections is not None and s not in sections:
            continue
        for key in sorted(k for k in allr if k.split("@")[0] == s):
            try:
                text = REPORTS[s](allr[key])
            except (KeyError, IndexError, ZeroDivisionError) as e:
                text = "(incomplete results: %s)" % e
            log("\n### %s (%s)\n%s" % (key, allr[key].get("when", "?"), text))
    plots(allr, sections)


def plots(allr, sections=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("(no plots: install python3-matplotlib)")
        return
    os.makedirs(PLOTS, exist_ok=True)
    want = lambda s: s in allr and (sections is None or s in sections)
    made = []
    if want("topics") and allr["topics"]["points"]:
        d = allr["topics"]["points"]
        fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4))
        xs = [p["topics"] for p in d]
        for side, lab in (("raw", "INSERT into one of topics x 8 tables"), ("stream", "stream.publish")):
            ax0.plot(xs, [median([r["cpu_us"] for r in p["runs"][side]]) for p in d], "o-", label=lab)
            ax1.plot(xs, [median([r["rate"] for r in p["runs"][side]]) for p in d], "o-", label=lab)
        for ax, yl in ((ax0, "backend CPU us per message (median)"), (ax1, "msg/s (median)")):
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("topics (8 partitions each)")
            ax.set_ylabel(yl)
            ax.set_title("publish, 1 msg/xact, %d clients" % allr["topics"]["params"]["clients"])
            ax.legend(fontsize=8)
        for side, lab in (("raw", "raw tables"), ("stream", "stream")):
            ax2.plot(xs, [p["memory"][side]["after"]["RssAnon"] / 1024 for p in d], "o-", label=lab + ": RssAnon")
            ax2.plot(xs, [(p["memory"][side]["after"]["cache_context"] + p["memory"][side]["after"]["cache_children"]) / 2**20
                          for p in d], "s--", label=lab + ": CacheMemoryContext")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("topics touched by the backend")
        ax2.set_ylabel("MB")
        ax2.set_title("backend memory after touching every partition")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "scale-topics.png"), dpi=90)
        made.append("scale-topics.png")
    if want("size") and allr["size"]["points"]:
        d = allr["size"]["points"]
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [p["size"] for p in d]
        ax.plot(xs, [median(p["write"]["copy"]) for p in d], "o--", label="COPY (binary)")
        ax.plot(xs, [median(p["write"]["publish"]) for p in d], "o-", label="publish_batch")
        ax.plot(xs, [median(p["read"]["scan"]) for p in d], "s--", label="range scan")
        ax.plot(xs, [median(p["read"]["poll"]) for p in d], "s-", label="poll_bytea")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("value bytes")
        ax.set_ylabel("payload MB/s (median)")
        ax.set_title("message size, 1 client")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "scale-size.png"), dpi=90)
        made.append("scale-size.png")
    if want("concurrency") and allr["concurrency"]["points"]:
        d = allr["concurrency"]["points"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        xs = [p["clients"] for p in d]
        for ax, metric, yl in ((axes[0], "rate", "msg/s (median)"), (axes[1], "cpu_us", "backend CPU us per message (median)")):
            for key, lab, st in (("insert", "INSERT into one table", "o--"), ("publish-1p", "publish, 1 partition", "o-"),
                                 ("publish-32p", "publish, 32 partitions", "s-")):
                ax.plot(xs, [median([x[metric] for x in p["runs"][key]]) for p in d], st, label=lab)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([str(x) for x in xs])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("clients (pgbench -c N -j 2)")
            ax.set_ylabel(yl)
            ax.set_title("publishers, 1 message per transaction, durable commits")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "scale-concurrency.png"), dpi=90)
        made.append("scale-concurrency.png")
    if want("groups") and allr["groups"].get("live"):
        g = allr["groups"]
        nm = g["params"]["members"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(range(1, nm + 1), [median([1000 * r["join"][i][0] for r in g["live"]]) for i in range(nm)], "o-",
                label="join (members after)")
        ax.plot(range(nm - 1, 0, -1), [median([1000 * r["leave"][i][0] for r in g["live"]]) for i in range(nm - 1)],
                "s-", label="leave (members after)")
        ax.set_xlabel("members")
        ax.set_ylabel("ms until converged (median)")
        ax.set_title("assignment of %d partitions, members in long polls" % g["params"]["partitions"])
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "scale-groups.png"), dpi=90)
        made.append("scale-groups.png")
    if made:
        log("\nplots: %s" % ", ".join(os.path.join("bench/plots", m) for m in made))


# ---------------------------------------------------------------------------------------

def intlist(s):
    return [int(float(x)) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="run", choices=["run", "report"])
    ap.add_argument("--only", default=None, help="sections, comma separated: " + ",".join(ALL_SECTIONS))
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 short runs: a smoke run")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--seconds", type=float, help="measured seconds of a pgbench run (topics, retained)")
    ap.add_argument("--topics", type=intlist)
    ap.add_argument("--clients-topics", type=int, default=8)
    ap.add_argument("--topic-inval-rates", type=lambda x: [float(v) for v in x.split(",") if v],
                    help="catalog changes per second during extra runs at the largest topic count")
    ap.add_argument("--poll-partitions", type=intlist)
    ap.add_argument("--poll-messages", type=int, help="messages per partition (poll)")
    ap.add_argument("--poll-empty", type=int, help="empty polls measured")
    ap.add_argument("--sizes", type=intlist)
    ap.add_argument("--size-seconds", type=float)
    ap.add_argument("--size-read-mb", type=int)
    ap.add_argument("--size-call-bytes", type=int, default=4 << 20)
    ap.add_argument("--size-passes", type=int)
    ap.add_argument("--retained", type=int)
    ap.add_argument("--retained-read", type=int)
    ap.add_argument("--retained-segment-bytes", type=int, default=64 << 20)
    ap.add_argument("--retained-reload", action="store_true")
    ap.add_argument("--group-partitions", type=int)
    ap.add_argument("--group-members", type=int)
    ap.add_argument("--group-wait-ms", type=int, default=1000)
    ap.add_argument("--groups", type=intlist)
    ap.add_argument("--group-sessions", type=int, default=4)
    ap.add_argument("--group-messages", type=int)
    ap.add_argument("--lag-groups", type=intlist)
    ap.add_argument("--clients", type=intlist)
    ap.add_argument("--conc-seconds", type=float)
    ap.add_argument("--no-perf", dest="perf", action="store_false")
    ap.add_argument("--tag", help="store the results as <section>@TAG (another configuration, say)")
    ap.add_argument("--perf-seconds", type=int, default=10)
    a = ap.parse_args()

    q = a.quick
    defaults = {
        "runs": 2 if q else 3, "seconds": 3 if q else 10,
        "topics": [1, 10, 100] if q else [1, 10, 100, 1000], "topic_inval_rates": [10] if q else [1, 10],
        "poll_partitions": [8, 64] if q else [8, 64, 256], "poll_messages": 500 if q else 5000,
        "poll_empty": 500 if q else 3000,
        "sizes": [100, 10000, 1000000] if q else [100, 1000, 10000, 100000, 1000000],
        "size_seconds": 2 if q else 5, "size_read_mb": 16 if q else 64, "size_passes": 1 if q else 2,
        "retained": 200000 if q else 10000000, "retained_read": 80000 if q else 200000,
        "group_partitions": 64 if q else 256, "group_members": 4 if q else 16,
        "groups": [1, 10] if q else [1, 10, 100], "group_messages": 40000 if q else 100000,
        "lag_groups": [1, 4] if q else [1, 8, 32],
        "clients": [1, 8, 32] if q else [1, 2, 4, 8, 16, 32], "conc_seconds": 3 if q else 8,
    }
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if q:
        a.perf_seconds = min(a.perf_seconds, 4)

    global TAG
    TAG = a.tag
    sections = a.only.replace(" ", ",").split(",") if a.only else DEFAULT_SECTIONS
    for s in sections:
        if s not in ALL_SECTIONS:
            raise SystemExit("unknown section %s (%s)" % (s, ", ".join(ALL_SECTIONS)))
    if a.command == "report":
        report(sections if a.only else None)
        return
    os.makedirs(RESULTS, exist_ok=True)
    ensure_db(DB)
    c = connect()
    log("stream scale benchmark  %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    log("%s, %d CPUs, load %s" % (c.execute("SELECT version()").fetchone()[0].split(" on ")[0], os.cpu_count(), loadavg()))
    log(" ".join("%s=%s" % r for r in c.execute(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('shared_buffers', "
        "'synchronous_commit', 'fsync', 'max_wal_size', 'work_mem', 'max_connections', "
        "'max_locks_per_transaction', 'stream.max_partitions') ORDER BY name").fetchall()))
    log("sections: %s; %s" % (",".join(sections), " ".join("%s=%s" % (k, getattr(a, k)) for k in sorted(defaults))))
    c.close()
    start = time.monotonic()
    funcs = {"topics": section_topics, "inval": section_inval, "poll": section_poll, "size": section_size, "retained": section_retained,
             "groups": section_groups, "concurrency": section_concurrency}
    for s in ALL_SECTIONS:
        if s in sections:
            t0 = time.monotonic()
            funcs[s](a)
            log("   (%s: %.0f s)" % (s, time.monotonic() - t0))
    report(sections)
    log("(%.0f s in all)" % (time.monotonic() - start))


if __name__ == "__main__":
    main()

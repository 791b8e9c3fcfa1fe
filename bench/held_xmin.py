#!/usr/bin/python3
"""Held xmin: publish and consume at a steady rate while a REPEATABLE READ transaction
keeps its snapshot open, and watch throughput and the size of the extension's tables.

A transaction that keeps an old snapshot open holds back the database's xmin horizon:
no row version deleted or updated after its snapshot can be removed, by VACUUM or by
page pruning, until it ends.  The stream's data never needs that (retention drops
whole segment tables, and the last stable offset does not look at xmin), but its
catalog does: every stream.commit updates rows of stream._offsets, every segment roll
and drop writes stream._segments and the system catalogs.  This benchmark measures
what that costs.

Phases (one run):
  baseline   [0, --hold) s: no transaction held;
  held       [--hold, --release) s: a session runs
             BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM bench_held_xmin_anchor
             and then stays idle in that transaction (its backend_xmin is the horizon);
  released   [--release, --duration) s, when --release is given: it commits.
All along:
  - publishers at a steady total --rate (messages/s): one publishes one message per
    transaction (stream.publish with a key), one publishes small batches
    (stream.publish_batch of --batch messages with keys), half of the rate each;
    ~200-byte JSON values;
  - a consumer group of --consumers members on a --partitions partition topic; each
    member loops on a transaction BEGIN; SELECT count(*) FROM stream.poll(group,
    topic, --max-messages) GROUP BY partition; SELECT stream.commit(group, topic);
    COMMIT (the commit only when the poll returned something, unless --commit-empty),
    and sleeps --poll-interval when its poll came back short.  Every stream.commit
    upserts one stream._offsets row per partition the member owns;
  - the topic has a retention (--retention, --segment-bytes) and the retention
    worker runs every second (stream.naptime = 1s, ALTER SYSTEM, reset at the end),
    so segments roll and are dropped during the held phase too.
Every --interval seconds it prints and records (bench/results/held_xmin-<time>.tsv):
publish and consume msg/s, consumer lag, poll and commit latency p50/p99, the offset
rows each commit writes and how many of them it changes (partitions the poll returned
messages from), the CPU time of the consumers' and the publishers' backends
(/proc/<pid>/stat, so the server must run on this machine: unlike latencies, it
hardly depends on other load), the buffers one primary-key lookup of an offset row
touches (EXPLAIN (ANALYZE, BUFFERS): the work the commit's upsert does to find its
row), the size (pg_total_relation_size) and n_dead_tup of stream._offsets, _segments,
_partitions, _topics, _retention_runs and of pg_class, pg_attribute, pg_type,
pg_depend, the topic's segment count and bytes, and the segments the retention worker
dropped.
At the end: throughput, latency and backend CPU of the first minute, of the first and
last minute of the held phase and of the time after the release; sizes at start /
start of hold / middle / end of hold / end; a least-squares fit of each relation's
size against the work that writes it (_offsets: commits and offset rows written; the
others: segments created): linear growth means without bound while the snapshot is
held.  The output also goes to bench/results/held_xmin-latest.txt.

--hold-mode read makes the held transaction also read one message of every partition
(stream.read) before it idles: it shows whether a reader's open transaction keeps the
retention worker, which never waits for a segment's lock, from dropping the segments
it read (it does not: stream.read releases its segment locks at the end of the call).

Usage: /usr/bin/python3 bench/held_xmin.py [--duration 300] [--hold 60] [--release S]
         [--rate 1000] [--partitions 4] [--consumers 3] ...   (--help for all)
Connection: PGHOST, PGPORT, PGUSER from the environment; --dbname (default postgres,
where the retention worker runs: stream.database).  The benchmark needs the database
to itself: any other old snapshot in it holds the horizon back during the baseline.
"""
import argparse
import datetime
import json
import os
import random
import sys
import threading
import time

import psycopg

TOPIC = "bench_held_xmin"
GROUP = "bench_held_xmin_g"
ANCHOR = "bench_held_xmin_anchor"
PAD = 150           # value of about 200 bytes: {"seq": n, "src": "...", "pad": "xx..."}
KEYS = 10000
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Relations whose size is followed: (label, regclass).  The system catalogs grow with
# segment rolls and drops (each segment is a table, its primary key, a TOAST table and
# its index).
RELATIONS = [
    ("_offsets", "stream._offsets"),
    ("_segments", "stream._segments"),
    ("_partitions", "stream._partitions"),
    ("_topics", "stream._topics"),
    ("_retention_runs", "stream._retention_runs"),
    ("pg_class", "pg_catalog.pg_class"),
    ("pg_attribute", "pg_catalog.pg_attribute"),
    ("pg_type", "pg_catalog.pg_type"),
    ("pg_depend", "pg_catalog.pg_depend"),
]


class Out:
    """print() to stdout and to the summary file."""

    def __init__(self, path):
        self.f = open(path, "w")

    def __call__(self, *a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        self.f.write(s + "\n")
        self.f.flush()


def connect(args, autocommit=True, name="held_xmin.py"):
    return psycopg.connect(dbname=args.dbname, autocommit=autocommit, application_name=name)


def percentile(values, q):
    """Nearest-rank percentile (values need not be sorted); NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def kb(n):
    return "%.0f" % (n / 1024.0)


class Events:
    """Append-only list of (end time, latency s, messages, offset rows written, offset
    rows changed) per kind, filled by the worker threads (list.append is atomic under
    the GIL) and read by the monitor."""

    def __init__(self):
        self.items = []

    def add(self, t, lat, n, rows=0, changed=0):
        self.items.append((t, lat, n, rows, changed))

    def window(self, t0, t1):
        return [e for e in self.items if t0 <= e[0] < t1]


# ---------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------

def publisher(args, kind, rate, stop, events, errors, start, pids):
    try:
        conn = connect(args, name="held_xmin.py publisher " + kind)
        pids.append(conn.info.backend_pid)
        rng = random.Random(1 if kind == "single" else 2)
        per_xact = 1 if kind == "single" else args.batch
        sent = 0
        base = start
        seq = 0
        while not stop.is_set():
            keys = ["k-%d" % rng.randrange(KEYS) for _ in range(per_xact)]
            vals = [json.dumps({"seq": seq + i, "src": kind, "pad": "x" * PAD}) for i in range(per_xact)]
            seq += per_xact
            t0 = time.monotonic()
            if per_xact == 1:
                conn.execute("SELECT partition FROM stream.publish(%s, %s::jsonb, key => %s)",
                             (TOPIC, vals[0], keys[0])).fetchall()
            else:
                conn.execute("SELECT count(*) FROM stream.publish_batch(%s, %s::jsonb[], %s::text[])",
                             (TOPIC, vals, keys)).fetchall()
            t1 = time.monotonic()
            events.add(t1, t1 - t0, per_xact)
            sent += per_xact
            if rate > 0:
                ahead = sent / rate - (t1 - base)
                if ahead > 0:
                    stop.wait(ahead)
                elif ahead < -1.0:
                    # more than a second behind (a stall): start the schedule again
                    # rather than catch up in a burst, so the rate stays steady
                    sent, base = 0, t1
        conn.close()
    except Exception as e:     # noqa: BLE001 - reported by the main thread
        errors.append("publisher %s: %s" % (kind, e))
        stop.set()


def consumer(args, i, stop, polls, commits, errors, pids):
    try:
        conn = connect(args, name="held_xmin.py consumer %d" % i)
        pids.append(conn.info.backend_pid)
        while not stop.is_set():
            with conn.transaction():
                t0 = time.monotonic()
                # one row per partition that had messages: the offsets this commit changes
                got = conn.execute("SELECT count(*) FROM stream.poll(%s, %s, %s) GROUP BY partition",
                                   (GROUP, TOPIC, args.max_messages)).fetchall()
                t1 = time.monotonic()
                n = sum(r[0] for r in got)
                rows = 0
                if n or args.commit_empty:
                    rows = conn.execute("SELECT stream.commit(%s, %s)", (GROUP, TOPIC)).fetchone()[0]
            t2 = time.monotonic()
            polls.add(t1, t1 - t0, n)
            if n or args.commit_empty:
                # stream.commit and the COMMIT (its WAL flush)
                commits.add(t2, t2 - t1, n, rows, len(got))
            if n < args.max_messages:
                stop.wait(args.poll_interval)
        conn.close()
    except Exception as e:     # noqa: BLE001
        errors.append("consumer %d: %s" % (i, e))
        stop.set()


# ---------------------------------------------------------------------------------------
# Monitor
# ---------------------------------------------------------------------------------------

def sample(mon):
    """Sizes and statistics of the followed relations, the topic's storage, the lag."""
    mon.execute("SELECT pg_stat_clear_snapshot()")
    rel = {}
    for label, name in RELATIONS:
        # used: heap bytes not free (pgstattuple), which grows with the row versions
        # kept even where an earlier run left free space behind
        r = mon.execute(
            "SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), coalesce(s.n_dead_tup, 0), "
            "coalesce(s.n_live_tup, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_hot_upd, 0), "
            "coalesce(s.autovacuum_count, 0), t.table_len - t.free_space, t.dead_tuple_len "
            "FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid, "
            "LATERAL public.pgstattuple(c.oid) t WHERE c.oid = %s::regclass",
            (name,)).fetchone()
        rel[label] = dict(zip(("total", "heap", "dead", "live", "upd", "hot", "autovac", "used", "dead_bytes"),
                              r))
    segs = mon.execute(
        "SELECT count(*), coalesce(sum(pg_total_relation_size(to_regclass('stream_data.seg_' || g.segment_id))), 0) "
        "FROM stream._segments g JOIN stream._topics t USING (topic_id) WHERE t.topic = %s", (TOPIC,)).fetchone()
    lag = mon.execute("SELECT coalesce(sum(lag), 0) FROM stream.consumer_lag WHERE \"group\" = %s AND topic = %s",
                      (GROUP, TOPIC)).fetchone()[0]
    xmin_age = mon.execute("SELECT max(age(backend_xmin)) FROM pg_stat_activity "
                           "WHERE datname = current_database()").fetchone()[0]
    ret = mon.execute("SELECT coalesce(sum(segments_dropped), 0), coalesce(sum(skipped), 0), "
                      "coalesce(sum(segments_rolled), 0), coalesce(sum(errors), 0) FROM stream._retention_runs "
                      "WHERE run_id > %s", (RUN0,)).fetchone()
    created = mon.execute("SELECT last_value FROM stream._segment_id_seq").fetchone()[0]
    topic_id = mon.execute("SELECT topic_id FROM stream._topics WHERE topic = %s", (TOPIC,)).fetchone()[0]
    bufs, probe_ms = probe(mon, topic_id)
    return {"rel": rel, "segments": segs[0], "seg_bytes": int(segs[1]), "created": created,
            "probe_bufs": bufs, "probe_ms": probe_ms, "lag": int(lag), "xmin_age": xmin_age or 0,
            "dropped": ret[0], "skipped": ret[1], "rolled": ret[2], "ret_errors": ret[3]}


RUN0 = 0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU seconds of the backends (they run on this machine)."""
    total = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / float(TICK)
        except OSError:
            pass
    return total


def probe(mon, topic_id):
    """Buffers touched and time of one lookup of a committed offset by the primary key,
    the way the commit's upsert finds its row: a load-independent measure of the work."""
    if topic_id is None:
        return 0, 0.0
    with mon.transaction():
        # the primary key, as the upsert (only here: the views get slow without seq scans)
        mon.execute("SET LOCAL enable_seqscan = off")
        mon.execute("SET LOCAL enable_bitmapscan = off")
        plan = mon.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT committed_offset FROM stream._offsets "
            "WHERE group_name = '%s' AND topic_id = %d AND partition = 0" % (GROUP, topic_id)).fetchone()[0]
    top = plan[0]["Plan"]
    return top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0), plan[0]["Execution Time"]


def fit(xs, ys):
    """Least squares y = a + b x: (b, r2)."""
    n = len(xs)
    if n < 3:
        return float("nan"), float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    if sxx == 0:
        return float("nan"), float("nan")
    b = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy else 1.0
    return b, r2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=300, help="seconds in all (default 300)")
    ap.add_argument("--hold", type=float, default=60,
                    help="seconds of baseline before the transaction is opened (default 60)")
    ap.add_argument("--release", type=float, default=0,
                    help="second at which the held transaction commits (default 0: held to the end)")
    ap.add_argument("--hold-mode", choices=("anchor", "read"), default="anchor",
                    help="anchor: SELECT 1 FROM a table of its own; read: also stream.read every partition")
    ap.add_argument("--rate", type=float, default=1000, help="messages/s in all, 0: unthrottled (default 1000)")
    ap.add_argument("--batch", type=int, default=10, help="messages per publish_batch (default 10)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--max-messages", type=int, default=100, help="per poll (default 100)")
    ap.add_argument("--poll-interval", type=float, default=0.02,
                    help="seconds a consumer sleeps after a short poll (default 0.02)")
    ap.add_argument("--commit-empty", action="store_true",
                    help="commit after every poll, also those that returned nothing")
    ap.add_argument("--retention", default="30 s", help="topic retention (default '30 s')")
    ap.add_argument("--segment-bytes", type=int, default=262144, help="default 256 kB")
    ap.add_argument("--interval", type=float, default=5, help="seconds between samples (default 5)")
    ap.add_argument("--dbname", default=os.environ.get("PGDATABASE", "postgres"))
    args = ap.parse_args()
    if args.hold >= args.duration:
        ap.error("--hold must be below --duration")
    if args.release and not args.hold < args.release < args.duration:
        ap.error("--release must lie between --hold and --duration")

    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    tsv_path = os.path.join(RESULTS, "held_xmin-%s.tsv" % stamp)
    out = Out(os.path.join(RESULTS, "held_xmin-latest.txt"))

    admin = connect(args)
    admin.execute("SET client_min_messages = warning")
    admin.execute("CREATE EXTENSION IF NOT EXISTS stream")
    admin.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple SCHEMA public")
    info = admin.execute("SELECT current_setting('server_version'), inet_server_port(), current_database(), "
                         "current_setting('shared_buffers'), current_setting('autovacuum_naptime'), "
                         "current_setting('stream.database')").fetchone()
    others = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL").fetchone()[0]
    out("held_xmin  %s  server %s port %s database %s (stream.database %s), shared_buffers %s, "
        "autovacuum_naptime %s" % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S UTC"),
                                   info[0], info[1], info[2], info[5], info[3], info[4]))
    out("load average %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
    out("duration %.0f s, hold from %.0f s%s (%s), rate %s msg/s (half single publishes, half batches of %d), "
        "%d partitions, %d consumers, poll max %d, retention %s, segment_bytes %d"
        % (args.duration, args.hold, " to %.0f s" % args.release if args.release else " to the end",
           args.hold_mode, args.rate or "max", args.batch, args.partitions, args.consumers,
           args.max_messages, args.retention, args.segment_bytes))
    if info[2] != info[5]:
        out("WARNING: the retention worker runs in database %s, not here: segments will not be dropped" % info[5])
    if others:
        out("WARNING: %d other sessions of this database hold a snapshot now" % others)

    admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (TOPIC,))
    admin.execute("DROP TABLE IF EXISTS %s" % ANCHOR)
    admin.execute("CREATE TABLE %s (i int)" % ANCHOR)
    admin.execute("INSERT INTO %s VALUES (1)" % ANCHOR)
    admin.execute("SELECT stream.create_topic(%s, partitions => %s, retention => %s::interval, "
                  "segment_bytes => %s)", (TOPIC, args.partitions, args.retention, args.segment_bytes))
    admin.execute("ALTER SYSTEM SET stream.naptime = '1s'")
    admin.execute("SELECT pg_reload_conf()")
    try:
        return run(args, admin, out, tsv_path)
    finally:
        admin.execute("ALTER SYSTEM RESET stream.naptime")
        admin.execute("SELECT pg_reload_conf()")
        admin.execute("SELECT stream.drop_topic(%s, if_exists => true)", (TOPIC,))
        admin.execute("DROP TABLE IF EXISTS %s" % ANCHOR)


def run(args, admin, out, tsv_path):
    """The phases, with the workers and the monitor; then the summary."""
    global RUN0
    # start from compact tables of our own (the sizes would otherwise first fill the
    # free space an earlier run left); the system catalogs are only vacuumed
    for _label, name in RELATIONS:
        admin.execute("VACUUM %s%s" % ("FULL " if name.startswith("stream.") else "", name))
    RUN0 = admin.execute("SELECT coalesce(max(run_id), 0) FROM stream._retention_runs").fetchone()[0]

    stop = threading.Event()
    errors = []
    pubs, polls, commits = Events(), Events(), Events()
    pub_pids, con_pids = [], []
    start = time.monotonic()
    threads = [threading.Thread(target=publisher,
                                args=(args, k, args.rate / 2.0, stop, pubs, errors, start, pub_pids))
               for k in ("single", "batch")]
    threads += [threading.Thread(target=consumer, args=(args, i, stop, polls, commits, errors, con_pids))
                for i in range(args.consumers)]
    for th in threads:
        th.start()

    holder = None
    hold_pid = None
    samples = []
    tsv = open(tsv_path, "w")
    cols = ["t", "phase", "pub_s", "con_s", "lag", "poll_p50_ms", "poll_p99_ms", "commit_p50_ms",
            "commit_p99_ms", "pub_p50_ms", "pub_p99_ms", "commits", "offset_rows", "offset_rows_changed",
            "probe_buffers", "probe_ms", "consumer_cpu_pct", "publisher_cpu_pct", "segments",
            "segments_created", "seg_bytes", "dropped", "skipped", "rolled", "xmin_age", "load1"]
    for label, _ in RELATIONS:
        cols += [label + "_bytes", label + "_used", label + "_dead_bytes", label + "_dead"]
    cols += ["_offsets_heap", "_offsets_upd", "_offsets_hot", "_offsets_autovac"]
    tsv.write("\t".join(cols) + "\n")
    line = "%6s %-8s %5s %5s %4s %11s %11s %6s %4s %4s %8s %6s %5s %4s %4s %6s %6s %6s %6s %4s %5s"
    out(line % ("t", "phase", "pub/s", "con/s", "lag", "poll p50/99", "cmt p50/99", "commit", "rows", "chg",
                "_offsets", "dead", "probe", "cCPU", "pCPU", "_segm", "pg_cls", "pg_att", "segs", "segs",
                "drops"))
    out(line % ("s", "", "", "", "msgs", "ms", "ms", "s", "/cmt", "/cmt", "kB", "tuples", "bufs", "%", "%",
                "kB", "kB", "kB", "MB", "", "total"))
    phase = "baseline"
    mon = connect(args, name="held_xmin.py monitor")
    s0 = sample(mon)
    s0["con_cpu"] = s0["pub_cpu"] = float("nan")
    samples.append((0.0, phase, s0, 0, 0))
    st = {"last": start, "cpu": (0.0, 0.0)}

    def take(phase):
        """Sample, record and print the interval since the previous sample."""
        t1 = time.monotonic()
        cpu_now = (cpu_seconds(con_pids), cpu_seconds(pub_pids))
        s = sample(mon)
        last = st["last"]
        p = pubs.window(last, t1)
        c = polls.window(last, t1)
        m = commits.window(last, t1)
        dt = t1 - last
        ccpu = (cpu_now[0] - st["cpu"][0]) / dt * 100
        pcpu = (cpu_now[1] - st["cpu"][1]) / dt * 100
        st["cpu"], st["last"] = cpu_now, t1
        s["con_cpu"], s["pub_cpu"] = ccpu, pcpu
        ncommits = len(commits.items)
        nrows = sum(e[3] for e in commits.items)
        nchanged = sum(e[4] for e in commits.items)
        pub_s = sum(e[2] for e in p) / dt
        con_s = sum(e[2] for e in c) / dt
        pl = [e[1] * 1000 for e in c]
        cl = [e[1] * 1000 for e in m]
        publ = [e[1] * 1000 for e in p]
        rows_per_commit = sum(e[3] for e in m) / len(m) if m else 0
        chg_per_commit = sum(e[4] for e in m) / len(m) if m else 0
        s["load"] = os.getloadavg()[0]
        samples.append((t1 - start, phase, s, ncommits, nrows))
        o = s["rel"]["_offsets"]
        row = [t1 - start, phase, pub_s, con_s, s["lag"], percentile(pl, 50), percentile(pl, 99),
               percentile(cl, 50), percentile(cl, 99), percentile(publ, 50), percentile(publ, 99),
               ncommits, nrows, nchanged, s["probe_bufs"], s["probe_ms"], ccpu, pcpu,
               s["segments"], s["created"] - s0["created"], s["seg_bytes"], s["dropped"], s["skipped"],
               s["rolled"], s["xmin_age"], os.getloadavg()[0]]
        for label, _ in RELATIONS:
            row += [s["rel"][label][k] for k in ("total", "used", "dead_bytes", "dead")]
        row += [o["heap"], o["upd"], o["hot"], o["autovac"]]
        tsv.write("\t".join("%.3f" % v if isinstance(v, float) else str(v) for v in row) + "\n")
        tsv.flush()
        out(line % ("%.0f" % (t1 - start), phase, "%.0f" % pub_s, "%.0f" % con_s, s["lag"],
                    "%5.1f/%5.1f" % (percentile(pl, 50), percentile(pl, 99)),
                    "%5.1f/%5.1f" % (percentile(cl, 50), percentile(cl, 99)),
                    "%.0f" % (len(m) / dt), "%.2f" % rows_per_commit, "%.2f" % chg_per_commit,
                    kb(o["total"]), o["dead"], s["probe_bufs"], "%.0f" % ccpu, "%.0f" % pcpu,
                    kb(s["rel"]["_segments"]["total"]), kb(s["rel"]["pg_class"]["total"]),
                    kb(s["rel"]["pg_attribute"]["total"]), "%.1f" % (s["seg_bytes"] / 1048576.0),
                    s["segments"], s["dropped"]))

    try:
        next_t = start + args.interval
        while not stop.is_set():
            now = time.monotonic()
            el = now - start
            if el >= args.duration:
                break
            hold_due = holder is None and el >= args.hold
            release_due = phase == "held" and args.release and el >= args.release
            if now < next_t and not hold_due and not release_due:
                # sleep until the next sample, or a phase change if it comes first
                wake = min(next_t, start + args.duration)
                if holder is None:
                    wake = min(wake, start + args.hold)
                elif args.release and phase == "held":
                    wake = min(wake, start + args.release)
                stop.wait(max(0.0, wake - now))
                continue
            # a phase ends with a sample, which is also where the next one starts from
            take(phase)
            while next_t <= time.monotonic():
                next_t += args.interval
            if hold_due:
                holder = connect(args, autocommit=False, name="held_xmin.py holder")
                holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                holder.execute("SELECT 1 FROM %s" % ANCHOR).fetchall()
                if args.hold_mode == "read":
                    for p in range(args.partitions):
                        holder.execute("SELECT count(*) FROM stream.read(%s, %s, 0, 1)", (TOPIC, p)).fetchall()
                hold_pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
                phase = "held"
                out("%6.0f -- REPEATABLE READ transaction opened by pid %d (%s), held idle in transaction"
                    % (time.monotonic() - start, hold_pid, args.hold_mode))
            elif release_due:
                holder.commit()
                holder.close()
                phase = "released"
                out("%6.0f -- held transaction committed" % (time.monotonic() - start))
    finally:
        stop.set()
        for th in threads:
            th.join()
        if holder is not None and phase == "held":
            holder.rollback()
            holder.close()
        mon.close()
        tsv.close()
    if errors:
        out("ERRORS: %s" % errors)
    summary(args, out, samples, pubs, polls, commits, start)
    out("samples: %s" % tsv_path)
    return 1 if errors else 0


# ---------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------

def window_stats(pubs, polls, commits, samples, start, t0, t1, phase):
    p = pubs.window(start + t0, start + t1)
    c = polls.window(start + t0, start + t1)
    m = commits.window(start + t0, start + t1)
    ss = [x[2] for x in samples if t0 + 0.5 < x[0] <= t1 + 0.5 and x[1] == phase]
    dt = t1 - t0
    ccpu = sum(x["con_cpu"] for x in ss) / len(ss) if ss else float("nan")
    pcpu = sum(x["pub_cpu"] for x in ss) / len(ss) if ss else float("nan")
    return {
        "ccpu": ccpu, "pcpu": pcpu, "probe": ss[-1]["probe_bufs"] if ss else 0,
        "cpu_per_commit": ccpu * 10 / (len(m) / dt) if m else float("nan"),
        "cpu_per_msg": pcpu * 10000 / (sum(e[2] for e in p) / dt) if p else float("nan"),
        "pub": sum(e[2] for e in p) / dt, "con": sum(e[2] for e in c) / dt,
        "commits": len(m) / dt,
        "poll50": percentile([e[1] * 1000 for e in c], 50), "poll99": percentile([e[1] * 1000 for e in c], 99),
        "cmt50": percentile([e[1] * 1000 for e in m], 50), "cmt99": percentile([e[1] * 1000 for e in m], 99),
        "pub50": percentile([e[1] * 1000 for e in p], 50), "pub99": percentile([e[1] * 1000 for e in p], 99),
    }


def summary(args, out, samples, pubs, polls, commits, start):
    end = samples[-1][0] if samples else 0
    hold_end = args.release if args.release else end
    out("")
    out("== throughput and latency (windows of 60 s, or the whole phase when shorter)")
    wins = [("first minute (baseline)", 0, min(60, args.hold), "baseline")]
    wins.append(("first minute held", args.hold, min(args.hold + 60, hold_end), "held"))
    wins.append(("last minute held", max(args.hold, hold_end - 60), hold_end, "held"))
    if args.release:
        wins.append(("after release", args.release, end, "released"))
    out("%-34s %9s %9s %9s %13s %13s %13s" % ("window", "pub msg/s", "con msg/s", "commits/s",
                                              "poll p50/p99", "commit p50/99", "publish p50/99"))
    stats = {}
    for name, t0, t1, ph in wins:
        if t1 - t0 < 1:
            continue
        w = window_stats(pubs, polls, commits, samples, start, t0, t1, ph)
        stats[name] = w
        out("%-34s %9.0f %9.0f %9.1f %6.2f/%6.2f %6.2f/%6.2f %6.2f/%6.2f" % (
            "%s [%.0f-%.0f s]" % (name, t0, t1), w["pub"], w["con"], w["commits"], w["poll50"], w["poll99"],
            w["cmt50"], w["cmt99"], w["pub50"], w["pub99"]))
    out("")
    out("%-34s %11s %11s %11s %11s %11s" % ("backend CPU (from /proc)", "consumers %", "ms/commit",
                                            "publishers %", "us/message", "probe bufs"))
    for name, t0, t1, _ph in wins:
        if name in stats:
            w = stats[name]
            out("%-34s %11.1f %11.2f %11.1f %11.1f %11d" % ("%s [%.0f-%.0f s]" % (name, t0, t1), w["ccpu"],
                                                           w["cpu_per_commit"], w["pcpu"], w["cpu_per_msg"],
                                                           w["probe"]))
    out("(ms/commit: the consumers' backend CPU per poll + commit transaction, empty polls included; "
        "probe bufs: buffers one primary-key lookup of an offset row touches, at the end of the window)")
    rows = sum(e[3] for e in commits.items)
    changed = sum(e[4] for e in commits.items)
    if commits.items:
        out("offset rows written per stream.commit: %.2f, of which changed (partitions the poll returned "
            "messages from): %.2f (%.0f%%)" % (rows / float(len(commits.items)), changed / float(len(commits.items)),
                                               100.0 * changed / rows if rows else 0))
    a, b = stats.get("first minute (baseline)"), stats.get("last minute held")
    if a and b:
        out("ratio last minute held / first minute: publish %.2f, consume %.2f, commits/s %.2f;\n"
            "  poll p99 x%.2f, commit p50 x%.2f, p99 x%.2f, consumer backend CPU per commit x%.2f"
            % (b["pub"] / a["pub"], b["con"] / a["con"],
               b["commits"] / a["commits"] if a["commits"] else float("nan"), b["poll99"] / a["poll99"],
               b["cmt50"] / a["cmt50"], b["cmt99"] / a["cmt99"], b["cpu_per_commit"] / a["cpu_per_commit"]))

    def at(t):
        """The sample closest to second t."""
        return min(samples, key=lambda s: abs(s[0] - t))

    def phase_samples(ph):
        """The samples of a phase, after the last one of the phase before (where it starts)."""
        idx = [i for i, x in enumerate(samples) if x[1] == ph]
        if not idx:
            return []
        return samples[max(0, idx[0] - 1):idx[-1] + 1]

    held_ss = phase_samples("held")
    picked = [("start", samples[0])]
    if held_ss:
        picked += [("hold start", held_ss[0]), ("mid hold", at((held_ss[0][0] + held_ss[-1][0]) / 2)),
                   ("hold end", held_ss[-1])]
    if args.release:
        picked.append(("end", samples[-1]))
    out("")
    out("== sizes in kB at the samples nearest to the times below: pg_total_relation_size (table, indexes,")
    out("   TOAST) / heap bytes in use (pgstattuple: table_len - free_space; dead row versions included)")
    out("%-16s" % "relation" + "".join("%17s" % ("%s %.0fs" % (n, s[0])) for n, s in picked))
    for label, _ in RELATIONS:
        out("%-16s" % label + "".join("%17s" % ("%s / %s" % (kb(s[2]["rel"][label]["total"]),
                                                            kb(s[2]["rel"][label]["used"])))
                                      for _n, s in picked))
    out("%-16s" % "segments (n)" + "".join("%17d" % s[2]["segments"] for _n, s in picked))
    out("%-16s" % "segment tables" + "".join("%17s" % kb(s[2]["seg_bytes"]) for _n, s in picked))
    out("%-16s" % "segs created" + "".join("%17d" % (s[2]["created"] - samples[0][2]["created"])
                                           for _n, s in picked))
    out("%-16s" % "commits" + "".join("%17d" % s[3] for _n, s in picked))
    out("%-16s" % "offset rows" + "".join("%17d" % s[4] for _n, s in picked))

    out("")
    out("== growth per unit of work: least squares of the heap bytes in use over the samples of each phase;")
    out("   _offsets against stream.commit calls (and offset rows written), the rest against segments created")
    out("%-16s %-9s %9s %7s %8s %8s %10s %9s %6s %7s" % ("relation", "phase", "unit", "units", "size +kB",
                                                      "used +kB", "B per unit", "B per row", "r2", "verdict"))
    created0 = samples[0][2]["created"]
    for label, _ in RELATIONS:
        for ph in ("baseline", "held", "released"):
            ss = phase_samples(ph)
            if len(ss) < 3:
                continue
            if label == "_offsets":
                unit = "commits"
                xs = [s[3] for s in ss]
            else:
                unit = "segments"
                xs = [s[2]["created"] - created0 for s in ss]
            xr = [s[4] for s in ss]
            ys = [s[2]["rel"][label]["used"] for s in ss]
            grew = ys[-1] - ys[0]
            size_grew = ss[-1][2]["rel"][label]["total"] - ss[0][2]["rel"][label]["total"]
            slope, r2 = fit(xs, ys)
            per_row = "%9.1f" % fit(xr, ys)[0] if label == "_offsets" else "%9s" % ""
            if grew <= 16384:
                verdict = "flat"
            elif r2 >= 0.9:
                verdict = "LINEAR"
            else:
                verdict = "grows"
            if label == "_offsets" or grew > 16384 or size_grew > 16384:
                out("%-16s %-9s %9s %7d %8s %8s %10.1f %s %6.3f %7s" % (
                    label, ph, unit, xs[-1] - xs[0], kb(size_grew), kb(grew), slope, per_row, r2, verdict))
    out("(listed: _offsets, and the relations whose size or bytes in use grew by more than 16 kB in a phase;")
    out(" LINEAR: bytes in use grew by more than 16 kB with r2 >= 0.9)")
    held = held_ss
    if len(held) >= 2 and held[-1][0] > held[0][0]:
        dt = held[-1][0] - held[0][0]
        d_off = held[-1][2]["rel"]["_offsets"]["used"] - held[0][2]["rel"]["_offsets"]["used"]
        d_cmt = held[-1][3] - held[0][3]
        out("_offsets while held: +%s kB in use in %.0f s = %.1f MB/hour at %.0f commits/s (%.0f offset rows/s)"
            % (kb(d_off), dt, d_off / dt * 3600 / 1048576.0, d_cmt / dt, (held[-1][4] - held[0][4]) / dt))

    loads = [x[2]["load"] for x in samples if "load" in x[2]]
    if loads:
        out("")
        out("load average (1 min) over the samples: min %.2f, median %.2f, max %.2f on %d CPUs (other work on "
            "the machine shows in the latencies and the rates, much less in the backend CPU per commit)"
            % (min(loads), sorted(loads)[len(loads) // 2], max(loads), os.cpu_count()))
    last = samples[-1][2]
    if not held_ss:
        return
    hs = held_ss[0][2]
    he = held_ss[-1][2]
    out("")
    out("== retention: %d segments dropped, %d rolled, %d skipped (locked), %d errors in the whole run"
        % (last["dropped"], last["rolled"], last["skipped"], last["ret_errors"]))
    out("   during the held phase: %d dropped, %d rolled, %d skipped; segments %d -> %d, segment tables %s -> %s kB"
        % (he["dropped"] - hs["dropped"], he["rolled"] - hs["rolled"], he["skipped"] - hs["skipped"],
           hs["segments"], he["segments"], kb(hs["seg_bytes"]), kb(he["seg_bytes"])))
    out("   max segment count in the held phase: %d; max xmin age seen: %d transactions"
        % (max(s[2]["segments"] for s in held_ss),
           max(s[2]["xmin_age"] for s in samples)))


if __name__ == "__main__":
    sys.exit(main())

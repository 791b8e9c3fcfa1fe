"""Helpers of bench/run.sh, run with /usr/bin/python3 (Debian's psycopg 3).

  bench.py batch MODE CLIENTS SECONDS [BATCH]                          (sections b1, b2)
      MODE copy:    COPY bench_insert (key, value) FROM STDIN, BATCH rows per COPY
      MODE publish: SELECT count(*) FROM stream.publish_batch('bench', $1::jsonb[], $2::text[])
      Each of CLIENTS processes opens its own autocommit connection (so one statement is
      one transaction), and all start together behind a barrier and send whole batches
      until SECONDS have passed. Prints "<msgs/s> <messages>": messages committed divided
      by the time from the first start to the last finish.

  bench.py prepare TOPIC PARTITIONS MESSAGES                            (sections c, e)
      Creates TOPIC with MESSAGES messages and, for each partition P, the plain table
      TOPIC_pP holding the same rows; VACUUM ANALYZE, CHECKPOINT.

  bench.py drain KIND MESSAGES [PASSES]                                 (section c)
      One session reads the 1-partition topic benchc PASSES times, 1000 messages per
      call. KIND poll, poll-commit (stream.poll [+ stream.commit] per transaction),
      scan, scan-commit (range scan of benchc_p0 [+ the upsert of an offset row]).
      Prints "<msgs/s> <messages per pass>".

  bench.py members SIDE MEMBERS MESSAGES [PASSES]                       (section e)
      MEMBERS processes read the MEMBERS-partition topic benche concurrently, 1000
      messages + commit per transaction, PASSES times: SIDE poll (one group) or scan
      (session i scans benche_pi). Prints "<msgs/s> <messages per pass> <check>", the
      check being whether every message was read exactly once.

  bench.py latency PARTITIONS CONSUMERS SECONDS RATE [WARMUP]          (sections d1, d2)
      One publisher at RATE messages/s (1 per transaction), CONSUMERS processes in a
      long poll; prints latency percentiles from publish commit to poll return.

  bench.py report RUNS_TSV
      Reads the per-run figures (section, role, name, run, msgs/s, rows; role is base or
      stream; role lat: the latency figures of a run of d) and prints the table: median,
      min and max msgs/s and, for each stream row, its ratio to the baseline of the same
      section (median over median) checked against the target, and the median of the
      per-run ratios (stream run i / baseline run i); then the latency table (medians
      over the runs).

In b both modes send the same pre-generated rows, rendered once before the clock starts:
the COPY text format for COPY, array literals for publish_batch. The server parses the
same JSON text into jsonb in both cases. In c and e both sides read the same rows through
the same raw libpq loop. See bench/README.md for why these baselines.
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


# ---------------------------------------------------------------------------------------
# Consumers (sections c, d, e)

STEP = 1000  # messages per poll, rows per range scan

OFFSETS_DDL = """CREATE TABLE IF NOT EXISTS bench_offsets (
    group_name       text NOT NULL,
    topic_id         integer NOT NULL,
    partition        integer NOT NULL,
    committed_offset bigint NOT NULL CHECK (committed_offset >= 0),
    committed_at     timestamptz NOT NULL,
    PRIMARY KEY (group_name, topic_id, partition)
) WITH (fillfactor = 50)"""

# A segment table's definition (stream._create_segment), under another name.
SCAN_TABLE_DDL = """CREATE TABLE %s (
    "offset"     bigint NOT NULL PRIMARY KEY,
    key          text,
    value        jsonb,
    headers      jsonb,
    published_at timestamptz NOT NULL
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05)"""

SCAN_SQL = 'SELECT * FROM %s WHERE "offset" >= $1 AND "offset" < $1 + %d ORDER BY "offset"'
POLL_SQL = "SELECT * FROM stream.poll($1::text, '%s', %d%s)"
COMMIT_SQL = "SELECT stream.commit($1::text, '%s')"
# What stream.commit runs for each partition (src/offsets.c), on a table of the same shape.
UPSERT_SQL = ("INSERT INTO bench_offsets AS o "
              "(group_name, topic_id, partition, committed_offset, committed_at) "
              "VALUES ($1, 0, $2, $3, clock_timestamp()) "
              "ON CONFLICT (group_name, topic_id, partition) DO UPDATE "
              "SET committed_offset = excluded.committed_offset, "
              "committed_at = excluded.committed_at")


def scan_table(topic, partition):
    """The baseline table holding the rows of one partition of a topic."""
    return "%s_p%d" % (topic, partition)


class Session:
    """A libpq connection used without psycopg's row adaptation: libpq receives every row
    and parses the message into a PGresult, and the timed loops convert no value into a
    Python object (the same on both sides of every comparison)."""

    def __init__(self, name):
        from psycopg import pq
        self.pq = pq
        self.pg = pq.PGconn.connect(("dbname=%s application_name='%s'" % (DB, name)).encode())
        if self.pg.status != pq.ConnStatus.OK:
            raise RuntimeError(self.pg.error_message.decode(errors="replace").strip())

    def _check(self, res, what):
        if res.status not in (self.pq.ExecStatus.TUPLES_OK, self.pq.ExecStatus.COMMAND_OK):
            msg = res.error_message or self.pg.error_message
            raise RuntimeError("%s: %s" % (what, msg.decode(errors="replace").strip()))
        return res

    def prepare(self, name, sql):
        self._check(self.pg.prepare(name.encode(), sql.encode()), "PREPARE " + name)

    def run(self, name, *params):
        return self._check(self.pg.exec_prepared(name.encode(), [str(p).encode() for p in params]),
                           name)

    def execute(self, sql):
        return self._check(self.pg.exec_(sql.encode()), sql)

    def close(self):
        self.pg.finish()


class Reader:
    """One consumer on either side of a comparison; step() is one batch.

    side "poll": stream.poll(group, topic, STEP[, wait]) and, with commit,
        stream.commit(group, topic), in one transaction (BEGIN ... COMMIT).
    side "scan": the range scan of the next STEP offsets of the partition's baseline
        table (prepared, like the poll) and, with commit, the upsert stream.commit runs,
        into bench_offsets, in one transaction.
    Without commit, each statement is its own (autocommit) transaction."""

    def __init__(self, sess, side, topic, group, partition=0, commit=False, wait=None):
        self.sess, self.side, self.group, self.partition, self.commit = \
            sess, side, group, partition, commit
        self.offset = 0
        if side == "poll":
            sess.prepare("next", POLL_SQL % (topic, STEP, ", wait => '%s'" % wait if wait else ""))
            if commit:
                sess.prepare("commit", COMMIT_SQL % topic)
        elif side == "scan":
            sess.prepare("next", SCAN_SQL % (scan_table(topic, partition), STEP))
            if commit:
                sess.prepare("commit", UPSERT_SQL)
        else:
            raise SystemExit("side must be poll or scan")

    def step(self):
        """Read the next batch; returns the PGresult (no rows: nothing left)."""
        s = self.sess
        if self.commit:
            s.execute("BEGIN")
        if self.side == "poll":
            r = s.run("next", self.group)
        else:
            r = s.run("next", self.offset)
        n = r.ntuples
        if self.side == "scan":
            self.offset += n  # the offsets of a partition are contiguous here
        if self.commit:
            if n:
                if self.side == "poll":
                    s.run("commit", self.group)
                else:
                    s.run("commit", self.group, self.partition, self.offset)
            s.execute("COMMIT")
        return r


def new_group(prefix):
    """A group name never used before: every run starts from the earliest offsets."""
    return "%s-%d-%d" % (prefix, os.getpid(), time.time_ns())


def prepare(topic, partitions, messages):
    """Create TOPIC with PARTITIONS and MESSAGES messages (publish_batch of 1000, keys
    spreading them over the partitions), and for each partition p a plain table
    TOPIC_pP holding the same rows (copied from the segment tables, in offset order),
    then VACUUM ANALYZE and CHECKPOINT: both sides are read from the same clean state."""
    import psycopg

    conn = psycopg.connect(dbname=DB, autocommit=True, application_name="bench prepare")
    conn.execute("SET client_min_messages = warning")
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (topic, partitions))
    rng = random.Random(4242)
    sql = "SELECT count(*) FROM stream.publish_batch(%s, %s::jsonb[], %s::text[])"
    left = messages
    while left > 0:
        rows = [payload(rng) for _ in range(min(1000, left))]
        conn.execute(sql, (topic, array_literal(v for _, v in rows),
                           array_literal(k for k, _ in rows)), prepare=True)
        left -= len(rows)
    conn.execute(OFFSETS_DDL)
    for p in range(partitions):
        table = scan_table(topic, p)
        conn.execute("DROP TABLE IF EXISTS %s" % table)
        conn.execute(SCAN_TABLE_DDL % table)
        for (seg,) in conn.execute(
                "SELECT s.segment_id FROM stream._segments s JOIN stream._topics t USING (topic_id)"
                " WHERE t.topic = %s AND s.partition = %s ORDER BY s.segment_id", (topic, p)).fetchall():
            conn.execute('INSERT INTO %s SELECT "offset", key, value, headers, published_at'
                         ' FROM stream_data.seg_%d ORDER BY "offset"' % (table, seg))
    conn.execute("VACUUM ANALYZE")
    conn.execute("CHECKPOINT")
    stored = conn.execute("SELECT sum(messages), count(*) FILTER (WHERE log_start_offset <> 0),"
                          " sum(segments) FROM stream.partitions WHERE topic = %s",
                          (topic,)).fetchone()
    copied = sum(conn.execute("SELECT count(*) FROM %s" % scan_table(topic, p)).fetchone()[0]
                 for p in range(partitions))
    conn.close()
    if stored[0] != messages or copied != messages or stored[1] != 0:
        raise SystemExit("prepare %s: %s messages stored, %d copied, expected %d"
                         % (topic, stored[0], copied, messages))
    print(stored[2])  # segments


def drain(kind, messages, passes=1, topic="benchc"):
    """Section c: one session reads the whole 1-partition topic PASSES times, STEP
    messages per call: KIND poll, poll-commit, scan or scan-commit. Each pass of poll
    reads as a new group (and leaves it afterwards, off the clock). Prints "<msgs/s>
    <messages read per pass>"."""
    side, _, commit = kind.partition("-")
    sess = Session("bench drain " + kind)
    reader = Reader(sess, side, topic, None, 0, commit == "commit")
    total = 0
    elapsed = 0.0
    for _ in range(passes):
        reader.group = new_group(topic)
        reader.offset = 0
        n = 0
        start = time.monotonic()
        while True:
            got = reader.step().ntuples
            if got == 0:
                break
            n += got
        elapsed += time.monotonic() - start
        if side == "poll":
            sess.execute("SELECT stream.leave('%s', '%s')" % (reader.group, topic))
        if n != messages:
            raise RuntimeError("%s read %d messages, expected %d" % (kind, n, messages))
        total += n
    sess.close()
    print("%.1f %d" % (total / elapsed, messages))


def member(side, i, topic, group, total, passes, barrier, counter, results):
    try:
        results.put(run_member(side, i, topic, group, total, passes, barrier, counter))
    except Exception as e:
        barrier.abort()
        print("bench.py member %d: %s: %s" % (i, type(e).__name__, str(e).splitlines()[0]),
              file=sys.stderr)
        sys.exit(1)


def run_member(side, i, topic, group, total, passes, barrier, counter):
    sess = Session("bench member %s %d" % (side, i))
    # a member whose partitions are drained waits in a long poll for the others to finish
    reader = Reader(sess, side, topic, None, i, True, wait="100 ms")
    sess.prepare("join", "SELECT count(*) FROM stream.poll($1::text, '%s', 1)" % topic)
    clocks = []  # per pass: (start, last commit, messages)
    seen = {}  # (pass, partition) -> offsets read
    for k in range(passes):
        reader.group = "%s-%d" % (group, k)  # every pass reads as a new group
        reader.offset = 0
        if side == "poll":
            # Join and let the assignment settle before the clock starts: three rounds
            # in which every member polls one message and rolls back (nothing is
            # consumed; the session keeps its membership and its partitions). After the
            # second round all have joined and let go of what is not theirs; in the
            # third each takes its own.
            for _ in range(3):
                barrier.wait()
                sess.execute("BEGIN")
                sess.run("join", reader.group)
                sess.execute("ROLLBACK")
        barrier.wait()
        start = last = time.monotonic()
        n = 0
        kept = []
        progress = (counter.value, start)
        while counter.value < total * (k + 1):
            r = reader.step()
            got = r.ntuples
            if got:
                last = time.monotonic()
                n += got
                kept.append(r)
                with counter.get_lock():
                    counter.value += got
            elif side == "scan":
                break  # its table is read
            elif counter.value != progress[0]:
                progress = (counter.value, time.monotonic())
            elif time.monotonic() - progress[1] > 10:
                raise RuntimeError("nothing read for 10 s, %d of %d messages read"
                                   % (counter.value - total * k, total))
        # Everyone is done: listing what was read no longer competes with the clock.
        barrier.wait()
        clocks.append((start, last, n))
        for r in kept:
            for row in range(r.ntuples):
                p = int(r.get_value(row, 1)) if side == "poll" else i
                seen.setdefault((k, p), []).append(int(r.get_value(row, 2 if side == "poll" else 0)))
        del kept
        if side == "poll":
            sess.execute("SELECT stream.leave('%s', '%s')" % (reader.group, topic))
    sess.close()
    return i, clocks, seen


def members(side, nmembers, total, passes=1, topic="benche"):
    """Section e: NMEMBERS sessions read the NMEMBERS-partition topic concurrently, each
    STEP messages + commit per transaction, until all TOTAL are read, PASSES times (each
    pass as a new group): as members of one group (side poll), or each scanning its own
    partition's table with the upsert of its offset (side scan). Prints "<msgs/s>
    <messages read per pass> <check>": the messages read over the sum of the passes'
    times from the first start to the last commit, and whether every (partition, offset)
    was read exactly once in every pass."""
    import psycopg

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(nmembers)
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    group = new_group(topic)
    procs = [ctx.Process(target=member,
                         args=(side, i, topic, group, total, passes, barrier, counter, results))
             for i in range(nmembers)]
    for p in procs:
        p.start()
    got = []
    while len(got) < nmembers:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit(1)
    for p in procs:
        p.join()
    elapsed = sum(max(r[1][k][1] for r in got) - min(r[1][k][0] for r in got)
                  for k in range(passes))
    n = sum(c[2] for r in got for c in r[1])
    # exactly once: in every pass, per partition, the offsets read are 0 .. end - 1, each once
    conn = psycopg.connect(dbname=DB, autocommit=True)
    ends = dict(conn.execute("SELECT partition, end_offset FROM stream.partitions WHERE topic = %s",
                             (topic,)).fetchall())
    conn.close()
    problems = []
    shared = 0
    for k in range(passes):
        for p, end in sorted(ends.items()):
            readers = [r[0] for r in got if (k, p) in r[2]]
            shared += len(readers) > 1
            offsets = [o for r in got for o in r[2].get((k, p), [])]
            dups = len(offsets) - len(set(offsets))
            missing = end - len(set(offsets) & set(range(end)))
            if dups or missing:
                problems.append("pass %d partition %d: %d duplicates, %d missing" % (k, p, dups, missing))
    if problems:
        check = "EXACTLY-ONCE-VIOLATED:" + ";".join(problems).replace(" ", "_")
    else:
        # how the partitions were shared out (one member per partition when settled)
        check = "exactly-once-ok,%d-partitions-read-by-more-than-one-member" % shared
    print("%.1f %d %s" % (n / elapsed, n // passes, check))


def percentile(sorted_values, q):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def lat_consumer(i, topic, group, ready, finished, stops, partitions, results):
    try:
        results.put(run_lat_consumer(i, topic, group, ready, finished, stops, partitions))
    except Exception as e:
        ready.abort()
        finished.abort()
        print("bench.py latency consumer %d: %s: %s" % (i, type(e).__name__,
                                                      str(e).splitlines()[0]), file=sys.stderr)
        sys.exit(1)


def run_lat_consumer(i, topic, group, ready, finished, stops, partitions):
    sess = Session("bench latency consumer %d" % i)
    sess.prepare("join", "SELECT count(*) FROM stream.poll($1::text, '%s', 1)" % topic)
    sess.prepare("poll", POLL_SQL % (topic, STEP, ", wait => '1 s'"))
    sess.run("join", group)  # the topic is empty: returns at once
    ready.wait()
    got = []
    while stops.value < partitions:
        r = sess.run("poll", group)
        t = time.monotonic()
        for row in range(r.ntuples):
            value = r.get_value(row, 4)
            if value == b'{"end": true}':  # the last message of its partition
                with stops.get_lock():
                    stops.value += 1
            elif value != b'{"wake": true}':
                got.append((int(r.get_value(row, 1)), int(r.get_value(row, 2)), t))
    # Leave only when every consumer is done: a partition given up earlier would be
    # read again from the start by the others (these consumers do not commit).
    finished.wait()
    sess.execute("SELECT stream.leave('%s', '%s')" % (group, topic))
    sess.close()
    return i, got


def latency(partitions, consumers, seconds, rate, warm=1.0, topic="benchd"):
    """Section d: one publisher (this process) publishes 1 message per transaction at
    RATE/s for WARM + SECONDS seconds; CONSUMERS processes, members of one group, each
    loop on stream.poll(group, topic, 1000, wait => '1 s'), without committing. All take
    their times from CLOCK_MONOTONIC (time.monotonic), one clock for the whole machine.
    For every message published after the warm-up: latency = the consumer's time right
    after the poll that returned it came back - the publisher's time right after the
    publish returned (an autocommit statement: libpq returns once the COMMIT is done);
    also from just before the publish was sent. At the end the publisher publishes an
    end marker to every partition and, once the consumers have read all of them, a
    wake-up message to every partition so that none sits out its long poll. Prints
    commit->poll p50 p99 max, send->poll p50 p99 max (ms), messages, the publish rate
    achieved, and the partitions each consumer received messages from after the warm-up
    (a suffix :M-missing,D-duplicates when a message was not read or read twice)."""
    import psycopg

    conn = psycopg.connect(dbname=DB, autocommit=True, application_name="bench latency setup")
    conn.execute("SET client_min_messages = warning")
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (topic, partitions))
    conn.close()

    ctx = mp.get_context("fork")
    ready = ctx.Barrier(consumers + 1)
    finished = ctx.Barrier(consumers)
    stops = ctx.Value("i", 0)
    results = ctx.Queue()
    group = new_group(topic)
    procs = [ctx.Process(target=lat_consumer,
                         args=(i, topic, group, ready, finished, stops, partitions, results))
             for i in range(consumers)]
    for p in procs:
        p.start()
    try:
        sess = Session("bench latency publisher")
        sess.prepare("pub", "SELECT partition, \"offset\" FROM stream.publish('%s', $1::jsonb, key => $2)"
                     % topic)
        sess.prepare("mark", "SELECT partition, \"offset\" FROM stream.publish('%s', "
                     "$1::jsonb, partition => $2::integer)" % topic)
        ready.wait(timeout=60)
        rng = random.Random(77)
        interval = 1.0 / rate
        t0 = time.monotonic()
        measure_from = t0 + warm
        stop_at = measure_from + seconds
        next_t = t0
        sent = []
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            if next_t > now:
                time.sleep(next_t - now)
            key, value = payload(rng)
            ts = time.monotonic()
            r = sess.run("pub", value, key)
            tc = time.monotonic()
            sent.append((int(r.get_value(0, 0)), int(r.get_value(0, 1)), ts, tc))
            next_t += interval
            if next_t < tc - 0.1:
                next_t = tc  # stalled for more than 100 ms: go on at the rate, no burst
        for p in range(partitions):
            sess.run("mark", '{"end": true}', p)
        deadline = time.monotonic() + 30
        while stops.value < partitions:
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("the consumers did not read the end markers")
            time.sleep(0.001)
        for p in range(partitions):
            sess.run("mark", '{"wake": true}', p)
        sess.close()
    except BaseException:
        for p in procs:
            p.kill()
        raise
    received = {}
    by_consumer = []
    while len(by_consumer) < consumers:
        try:
            i, got = results.get(timeout=1)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit(1)
            continue
        by_consumer.append((i, got))
        for p, o, t in got:
            received[(p, o)] = min(t, received.get((p, o), t))  # the first delivery
    for p in procs:
        p.join()

    measured = [s for s in sent if s[2] >= measure_from]
    missing = sum(1 for p, o, _, _ in measured if (p, o) not in received)
    commit_lat = sorted(1000 * (received[(p, o)] - tc) for p, o, _, tc in measured if (p, o) in received)
    send_lat = sorted(1000 * (received[(p, o)] - ts) for p, o, ts, _ in measured if (p, o) in received)
    span = measured[-1][2] - measured[0][2] if len(measured) > 1 else float("nan")
    shares = []
    for i, got in sorted(by_consumer):
        ps = sorted({p for p, o, t in got if t >= measure_from})
        shares.append(",".join(map(str, ps)) or "-")
    # a message of the measured window delivered twice (to two consumers, or again)
    firsts = {}
    for p, o, _, _ in measured:
        firsts[p] = min(o, firsts.get(p, o))
    dup = sum(1 for _, g in by_consumer for p, o, t in g if p in firsts and o >= firsts[p]) - \
        sum(1 for p, o, _, _ in measured if (p, o) in received)
    print("%.3f %.3f %.3f %.3f %.3f %.3f %d %.1f %s%s" % (
        percentile(commit_lat, 50), percentile(commit_lat, 99), commit_lat[-1] if commit_lat else float("nan"),
        percentile(send_lat, 50), percentile(send_lat, 99), send_lat[-1] if send_lat else float("nan"),
        len(commit_lat), (len(measured) - 1) / span, "/".join(shares),
        "" if not (missing or dup) else ":%d-missing,%d-duplicates" % (missing, dup)))


TARGETS = {"a": 0.9, "b1": 0.8, "b2": 0.8, "c1": 0.8, "c2": 0.8}
LATENCY_TARGET_P99_MS = 5.0


def report(path):
    series = {}  # (section, role, name) -> {run: msgs/s}, in file order
    latencies = {}  # (section, name) -> [per-run figures]
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[1] == "lat":
            latencies.setdefault((f[0], f[2]), []).append([float(x) for x in f[4:12]])
            continue
        section, role, name, run, rate, _rows = f[:6]
        series.setdefault((section, role, name), {})[int(run)] = float(rate)
    medians = {k: statistics.median(v.values()) for k, v in series.items()}
    fmt = "%-46s %12s %10s %10s %6s %6s  %s"
    if series:
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
    if latencies:
        if series:
            print()
        # per run: commit->poll p50 p99 max, send->poll p50 p99 max (ms), messages, msg/s
        lfmt = "%-46s %7s %7s %7s %9s %9s %7s  %s"
        print(lfmt % ("latency, median of runs (ms)", "p50", "p99", "max",
                      "send p50", "send p99", "msg/s", "target (p99)"))
        for (section, name), runs in latencies.items():
            med = [statistics.median(r[j] for r in runs) for j in range(8)]
            print(lfmt % ("%-3s %s" % (section, name), "%.2f" % med[0], "%.2f" % med[1],
                          "%.2f" % med[2], "%.2f" % med[3], "%.2f" % med[4], "%.0f" % med[7],
                          "< %g %s" % (LATENCY_TARGET_P99_MS,
                                       "ok" if med[1] < LATENCY_TARGET_P99_MS else "ABOVE")))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "batch":
        batch(a[1], int(a[2]), float(a[3]), int(a[4]) if len(a) > 4 else 1000)
    elif len(a) == 2 and a[0] == "report":
        report(a[1])
    elif len(a) == 4 and a[0] == "prepare":
        prepare(a[1], int(a[2]), int(a[3]))
    elif len(a) in (3, 4) and a[0] == "drain":
        drain(a[1], int(a[2]), int(a[3]) if len(a) > 3 else 1)
    elif len(a) in (4, 5) and a[0] == "members":
        members(a[1], int(a[2]), int(a[3]), int(a[4]) if len(a) > 4 else 1)
    elif len(a) in (5, 6) and a[0] == "latency":
        latency(int(a[1]), int(a[2]), float(a[3]), float(a[4]), float(a[5]) if len(a) > 5 else 1.0)
    else:
        raise SystemExit(__doc__)

"""Invariant 6 under load: crash cycles.

Publishers (autocommit single publishes, transactions of several publishes and
publish_batch, transactions rolled back on purpose, savepoints rolled back and
released) and two consumer groups of two members each (poll + INSERT into their own
table + stream.commit in one transaction) run concurrently on partitions 0-3 of a
5-partition topic.  Partition 4 is the checker's: before each crash it publishes one
message there and rolls back one more, and waits until both groups have committed
past the rolled-back offset (consumers move past rolled-back offsets at a partition's
end), so every recovery must hand out offsets from the committed offset on, not from
the last stored one + 1 (the workers' partitions end like that only by chance).
Each cycle then kills something, in turn:

    0  SIGKILL of a publishing backend (one paused with offsets held by its open
       transaction, or the autocommit publisher wherever it is)
    1  SIGKILL of a consumer backend, paused with its rows and offsets written but
       not committed
    2  immediate shutdown (pg_ctl stop -m immediate) and start, with a publisher and
       a consumer paused as above

A SIGKILL makes the postmaster end every backend and reinitialise shared memory, so
every cycle ends with all sessions lost.  Once the log says recovery finished, the
idle server is checked:

  - every acknowledged publish (its commit returned) is stored exactly once, at the
    partition and offset publish returned; nothing rolled back or aborted is stored;
    a publish whose commit was in flight when its session died ("maybe") is stored at
    most once, and from then on is held to the rules of what it turned out to be;
    nothing unknown is stored; each publisher's messages keep their order per partition
  - offsets are unique and strictly increasing in every partition
  - committed offsets did not go backwards (against a snapshot taken just before the
    kill and against every commit a consumer got acknowledged) and are <= end offsets
  - each group's consumed table holds exactly the stored messages below the group's
    committed offsets, once each (exactly-once in the database)
  - no ownership lock (pg_locks advisory, objsubid 21332) is held by a dead session,
    and a new member of each group gets every partition
  - the LSO state is rebuilt: LSO = end offset in every partition, a new publish gets
    an offset above every stored one and not below any committed offset, holds the
    LSO at its offset until it commits, and is readable after its commit
  - stream.verify() is clean
and the next cycle's consumers make progress (they resume).  At the end the consumers
drain the topic; each group's consumed table must equal the acknowledged set plus the
"maybe" publishes that turned out stored, once each.

STREAM_CRASH_CYCLES (default 3) sets the number of cycles, STREAM_CRASH_SEED the
seed of the workers' choices (the interleaving is the scheduler's).  No timing
assertion: every wait is a bounded poll of a condition.  test/long/crash_cycles.sh
runs it with 20 cycles.
"""
import os
import signal
import time
from collections import Counter

from lib import TAP, connect, pg_ctl, wait_until
from cg_util import OWNER_LOCK_FIELD4, lock_holders
from crash_util import (CONSUMED, GROUPS, ID_SPACE, PARTITIONS, QUIET, TOPIC, Consumer, Ledger,
                        Publisher, choose_keys, committed_offsets, consumed, join_all, log_size,
                        partition_state, reconnect, start_workers, stored)

t = TAP()
CYCLES = int(os.environ.get("STREAM_CRASH_CYCLES", "3"))
SEED = os.environ.get("STREAM_CRASH_SEED", "910")
KINDS = ("kill -9 of a publishing backend", "kill -9 of a consumer backend", "immediate shutdown")
# before a kill, each publisher has this many transactions acknowledged in the cycle,
# and each consumer this many batches (so each member owns partitions and consumed)
MIN_PUBLISHER_UNITS = 5
MIN_CONSUMER_MESSAGES = 1
# the order in which publishers are killed (the autocommit one without a pause)
PUBLISHER_VICTIMS = ("txn1", "savepointer", "single", "rollbacker", "txn2")
# the smallest segments: partitions roll every few dozen messages (by roller background
# workers), so crashes also hit segment rolls and readers cross many segments
SEGMENT_BYTES = 8192

started = time.monotonic()
ledger = Ledger()
tail_gaps = 0       # (group, partition) recovered with a committed offset past the stored end
half_rolls = set()  # segments found with no base offset after a recovery (a roll cut short)
kills = {k: 0 for k in KINDS}

conn = connect()
conn.execute("SELECT stream.drop_topic(%s, true)", (TOPIC,))
conn.execute("SELECT stream.create_topic(%s, %s, segment_bytes => %s)", (TOPIC, PARTITIONS, SEGMENT_BYTES))
conn.execute("DROP TABLE IF EXISTS " + CONSUMED)
conn.execute("CREATE TABLE " + CONSUMED + " (grp text NOT NULL, partition int NOT NULL,"
             " \"offset\" bigint NOT NULL, id bigint NOT NULL, pid int NOT NULL, cycle int NOT NULL)")
choose_keys(conn)
t.diag("seed %s, %d cycles" % (SEED, CYCLES))


def summarize(ids, limit=10):
    ids = sorted(ids)
    return "%d: %s%s" % (len(ids), ids[:limit], " ..." if len(ids) > limit else "")


def progress(workers):
    return all(w.is_alive() and (w.units >= MIN_PUBLISHER_UNITS if isinstance(w, Publisher)
                                 else w.messages >= MIN_CONSUMER_MESSAGES) for w in workers)


def pause(workers, label):
    """Ask workers to stop at their pause point, one after the other; wait (bounded)
    until each is there.  Consumers go first: a publisher paused first could hold the
    LSO of every partition of the consumer, which would then never get a batch."""
    for w in workers:
        w.pause_req.set()
        try:
            wait_until(lambda: w.paused.is_set() or not w.is_alive(), timeout=60,
                       what="%s to reach its pause point" % w.name)
        except TimeoutError:
            pass
    ok = all(w.paused.is_set() for w in workers)
    t.ok(ok, "%s: %s paused before COMMIT with an open transaction"
         % (label, ", ".join("%s (pid %d)" % (w.name, w.pid) for w in workers)))


def release(workers):
    for w in workers:
        w.killed = True
        w.release.set()


def quiet_gap(label):
    """End partition QUIET with a committed message and a rolled-back offset, and wait
    (bounded) until both groups have committed past both."""
    pub = connect(application_name="t_910 quiet")
    i = ledger.new_id(0)
    pub.execute("BEGIN")
    p, o = pub.execute('SELECT partition, "offset" FROM stream.publish(%s, %s::jsonb, partition => %s)',
                       (TOPIC, '{"id": %d, "by": "quiet"}' % i, QUIET)).fetchone()
    pub.execute("COMMIT")
    ledger.ack([(i, p, o)])
    j = ledger.new_id(0)
    pub.execute("BEGIN")
    pub.execute('SELECT stream.publish(%s, %s::jsonb, partition => %s)',
                (TOPIC, '{"id": %d, "by": "quiet"}' % j, QUIET))
    pub.execute("ROLLBACK")
    ledger.roll_back([(j, None, None)])

    def past():
        done = committed_offsets(pub)
        return all(done.get((g, QUIET)) == o + 2 for g in GROUPS)
    try:
        wait_until(past, timeout=60, what="both groups to commit past the rolled-back end of partition %d" % QUIET)
    except TimeoutError:
        pass
    t.ok(past(), "%s: both groups committed offset %d in partition %d, past its rolled-back last offset"
         % (label, o + 2, QUIET))
    pub.close()


def crash(cycle, workers, label):
    """Kill per the cycle's kind; return (log offset before the kill, committed snapshot)."""
    kind = KINDS[cycle % 3]
    turn = cycle // 3
    by_name = {w.name: w for w in workers}
    publishers = [by_name[n] for n in PUBLISHER_VICTIMS]
    pausable = [w for w in publishers if w.pausable]
    consumers = [w for w in workers if isinstance(w, Consumer)]
    if kind == KINDS[0]:
        victim = publishers[turn % len(publishers)]
        paused = [victim] if victim.pausable else []
    elif kind == KINDS[1]:
        victim = consumers[turn % len(consumers)]
        paused = [victim]
    else:
        victim = None
        paused = [consumers[turn % len(consumers)], pausable[turn % len(pausable)]]
    if paused:
        pause(paused, label)
    # the committed offsets just before the kill: the crash must not take them back
    obs = connect(application_name="t_910 snapshot")
    snapshot = committed_offsets(obs)
    obs.close()
    offset = log_size()
    if victim is not None:
        t.diag("%s: SIGKILL %s (pid %d)%s" % (label, victim.name, victim.pid,
                                               "" if paused else " while it runs"))
        os.kill(victim.pid, signal.SIGKILL)
        release(paused)
    else:
        t.diag("%s: immediate shutdown" % label)
        pg_ctl("stop", "-m", "immediate")
        release(paused)
    kills[kind] += 1
    running = join_all(workers)
    t.ok(not running, "%s: every worker saw its session end (%s still running)"
         % (label, [w.name for w in running]))
    lost = [w.name for w in workers if w.ended != "lost"]
    t.ok(not lost, "%s: every session was lost to the crash (not: %s)" % (label, lost))
    if victim is None:
        pg_ctl("start")
    return offset, snapshot


def check_messages(conn, label):
    """The stored messages against the ledger; returns {id: [(p, o)]} and the rows."""
    rows = stored(conn)
    where = {}
    for p, o, i in rows:
        where.setdefault(i, []).append((p, o))
    with ledger.lock:
        acked = dict(ledger.acked)
        acked.update(ledger.maybe_present)
        never = ledger.rolled_back | ledger.aborted | ledger.maybe_absent
        maybe = dict(ledger.maybe)
    missing = [i for i in acked if i not in where]
    twice = [i for i in acked if len(where.get(i, [])) > 1]
    moved = [i for i in acked if len(where.get(i, [])) == 1 and where[i][0] != acked[i]]
    ok = t.ok(not missing and not twice and not moved,
              "%s: all %d acknowledged publishes are stored exactly once, where publish said"
              % (label, len(acked)))
    if not ok:
        t.diag("missing %s" % summarize(missing))
        t.diag("stored more than once %s" % summarize(twice))
        t.diag("stored elsewhere %s" % summarize(moved))
    back = [i for i in never if i in where]
    if not t.ok(not back, "%s: none of the %d rolled-back or aborted publishes is stored"
                % (label, len(never))):
        t.diag("stored although rolled back or aborted %s" % summarize(back))
    maybe_twice = [i for i in maybe if len(where.get(i, [])) > 1]
    maybe_moved = [i for i in maybe if maybe[i] is not None and len(where.get(i, [])) == 1
                   and where[i][0] != maybe[i]]
    t.ok(not maybe_twice and not maybe_moved,
         "%s: publishes of unknown outcome (session lost during COMMIT): %d, each stored at most "
         "once (%d are)" % (label, len(maybe), sum(1 for i in maybe if i in where)))
    unknown = [i for i in where if i not in acked and i not in maybe and i not in never]
    if not t.ok(not unknown, "%s: nothing else is stored" % label):
        t.diag("unknown ids %s" % summarize(unknown))
    bad = []
    for p in range(PARTITIONS):
        offs = [o for q, o, _ in rows if q == p]
        if any(b <= a for a, b in zip(offs, offs[1:])):
            bad.append(p)
    t.ok(not bad, "%s: offsets are unique and strictly increasing in every partition (not in %s)"
         % (label, bad))
    # one publisher's messages to one partition are in the order it published them
    disorder = []
    by_worker = {}
    for i, (p, o) in acked.items():
        by_worker.setdefault((i // ID_SPACE, p), []).append((i, o))
    for key, lst in by_worker.items():
        lst.sort()
        if any(b[1] <= a[1] for a, b in zip(lst, lst[1:])):
            disorder.append(key)
    t.ok(not disorder, "%s: each publisher's acknowledged messages keep its order in each "
         "partition (not (worker, partition) %s)" % (label, disorder))
    return where, rows


def check_offsets(conn, rows, snapshot, label):
    after = committed_offsets(conn)
    state = partition_state(conn)
    back = {k: (v, after.get(k)) for k, v in snapshot.items() if after.get(k) is None or after[k] < v}
    t.ok(not back, "%s: no committed offset went backwards over the crash (%d committed; "
         "went back: %s)" % (label, len(after), back))
    with ledger.lock:
        acked = dict(ledger.consumer_acked)
    lost = {k: (v, after.get(k)) for k, v in acked.items() if after.get(k) is None or after[k] < v}
    t.ok(not lost, "%s: every offset commit a consumer got acknowledged is there (lost: %s)"
         % (label, lost))
    beyond = {k: (v, state[k[1]][0]) for k, v in after.items() if v > state[k[1]][0]}
    # a group that had read past rolled-back offsets at a partition's end: recovery must
    # hand out offsets from its committed offset on, not from the last stored one + 1
    tops = {p: max([o for q, o, _ in rows if q == p] or [-1]) for p in range(PARTITIONS)}
    global tail_gaps
    tail_gaps += sum(1 for (g, p), v in after.items() if v > tops[p] + 1)
    t.ok(not beyond, "%s: committed offsets are <= end offsets (beyond: %s)" % (label, beyond))
    for g in GROUPS:
        got = consumed(conn, g)
        want = sorted((p, o, i) for p, o, i in rows if o < after.get((g, p), 0))
        if not t.ok(got == want, "%s: group %s consumed the %d stored messages below its committed "
                    "offsets exactly once (table has %d rows)" % (label, g, len(want), len(got))):
            gs, ws = set(got), set(want)
            n = Counter(got)
            t.diag("extra or duplicate: %s" % (sorted(x for x in n if x not in ws or n[x] > 1)[:10],))
            t.diag("missing: %s" % (sorted(ws - gs)[:10],))


def check_ownership(conn, label):
    stale = conn.execute(
        "SELECT l.pid, l.classid, l.objid FROM pg_locks l WHERE l.locktype = 'advisory'"
        " AND l.objsubid = %s AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid)",
        (OWNER_LOCK_FIELD4,)).fetchall()
    t.ok(not stale, "%s: no partition ownership lock held by a dead session (%s)" % (label, stale))
    held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = %s",
                        (OWNER_LOCK_FIELD4,)).fetchone()[0]
    t.is_(held, 0, "%s: with no consumer running, no partition is owned" % label)
    for g in GROUPS:
        m = connect(application_name="t_910 new member")
        m.execute("BEGIN")
        m.execute("SELECT count(*) FROM stream.poll(%s, %s, 1)", (g, TOPIC))
        holders = lock_holders(conn, g, TOPIC)
        m.execute("ROLLBACK")
        m.execute("SELECT stream.leave(%s, %s)", (g, TOPIC))
        want = {p: [m.info.backend_pid] for p in range(PARTITIONS)}
        t.is_(holders, want, "%s: a new member of %s owns every partition after one poll" % (label, g))
        m.close()


def check_lso(conn, rows, label):
    state = partition_state(conn)
    t.ok(all(e == l for e, l in state.values()),
         "%s: idle, the LSO equals the end offset in every partition %s" % (label, sorted(state.items())))
    problems = []
    pub = connect(application_name="t_910 probe")
    done = committed_offsets(conn)
    for p in range(PARTITIONS):
        top = max([o for q, o, _ in rows if q == p] or [-1])
        floor = max([v for (g, q), v in done.items() if q == p] or [0])
        i = ledger.new_id(0)
        pub.execute("BEGIN")
        q, o = pub.execute('SELECT partition, "offset" FROM stream.publish(%s, %s::jsonb, partition => %s)',
                           (TOPIC, '{"id": %d, "by": "probe"}' % i, p)).fetchone()
        held = partition_state(conn)[p]
        hidden = conn.execute('SELECT count(*) FROM stream.read(%s, %s, %s)', (TOPIC, p, o)).fetchone()[0]
        pub.execute("COMMIT")
        ledger.ack([(i, q, o)])
        after = partition_state(conn)[p]
        seen = conn.execute('SELECT "offset", (value->>\'id\')::bigint FROM stream.read(%s, %s, %s)',
                            (TOPIC, p, o)).fetchall()
        if not (o > top and o >= floor and held == (o + 1, o) and hidden == 0 and after == (o + 1, o + 1)
                and [tuple(r) for r in seen] == [(o, i)]):
            problems.append("partition %d: stored top %d, highest committed offset %d, new offset %d, "
                            "(end, LSO) while open %s and after commit %s, read before commit %d rows, "
                            "after %s" % (p, top, floor, o, held, after, hidden, seen))
    pub.close()
    t.ok(not problems, "%s: in every partition a new publish gets an offset above every stored one "
         "and not below any committed offset, holds the LSO at it until COMMIT and is readable after"
         % label)
    for x in problems:
        t.diag(x)
    t.is_(conn.execute("SELECT count(*) FROM stream.verify()").fetchone()[0], 0,
          "%s: stream.verify() is clean" % label)


def check_errors(label):
    with ledger.lock:
        errors, ledger.errors = ledger.errors, []
    t.ok(not errors, "%s: no unexpected error in any worker" % label)
    for e in errors[:10]:
        t.diag(e)


for cycle in range(CYCLES):
    label = "cycle %d (%s)" % (cycle + 1, KINDS[cycle % 3])
    workers = start_workers(ledger, cycle, SEED)
    try:
        wait_until(lambda: progress(workers), timeout=60, what="publishers and consumers to make progress")
    except TimeoutError:
        pass
    t.ok(progress(workers), "%s: every publisher committed %d transactions and every consumer consumed "
         "(consumers resume after the previous recovery)" % (label, MIN_PUBLISHER_UNITS))
    if not progress(workers):
        t.diag("; ".join("%s units %d messages %s alive %s" % (w.name, w.units, getattr(w, "messages", "-"),
                                                               w.is_alive()) for w in workers))
    quiet_gap(label)
    offset, snapshot = crash(cycle, workers, label)
    conn = reconnect(offset)
    where, rows = check_messages(conn, label)
    check_offsets(conn, rows, snapshot, label)
    check_ownership(conn, label)
    check_lso(conn, stored(conn), label)
    check_errors(label)
    half_rolls.update(r[0] for r in conn.execute(
        "SELECT s.segment_id FROM stream._segments s JOIN stream._topics t USING (topic_id)"
        " WHERE t.topic = %s AND s.base_offset IS NULL", (TOPIC,)).fetchall())
    here, gone = ledger.resolve(where)
    if here or gone:
        t.diag("%s: %d publishes of unknown outcome turned out stored, %d not" % (label, here, gone))
    conn.close()

# the consumers drain the topic
label = "drain"
workers = start_workers(ledger, CYCLES, SEED, publishers=False)
conn = connect()


def drained():
    state = partition_state(conn)
    done = committed_offsets(conn)
    return all(done.get((g, p), 0) == state[p][0] for g in GROUPS for p in range(PARTITIONS))


try:
    wait_until(drained, timeout=120, what="the consumers to drain the topic")
except TimeoutError:
    pass
t.ok(drained(), "drain: both groups' committed offsets reach the end offsets")
for w in workers:
    w.stop.set()
running = join_all(workers)
t.ok(not running, "drain: the consumers stop (%s still running)" % [w.name for w in running])
check_errors(label)
with ledger.lock:
    expected = sorted(list(ledger.acked) + list(ledger.maybe_present))
    maybe_present, maybe_absent, maybe_open = len(ledger.maybe_present), len(ledger.maybe_absent), len(ledger.maybe)
for g in GROUPS:
    ids = sorted(i for _, _, i in consumed(conn, g))
    if not t.ok(ids == expected, "end: group %s consumed exactly the %d acknowledged publishes (the %d "
                "of unknown outcome that are stored among them), each once (table has %d rows)"
                % (g, len(expected), maybe_present, len(ids))):
        n, want = Counter(ids), set(expected)
        t.diag("missing %s" % summarize(want - set(n)))
        t.diag("unexpected or duplicate %s" % summarize([i for i in n if i not in want or n[i] > 1]))
t.is_(maybe_open, 0, "end: every publish of unknown outcome was resolved by a recovery")

duration = time.monotonic() - started
with ledger.lock:
    consumed_counts = {g: len(consumed(conn, g)) for g in GROUPS}
    by_checker = sum(1 for i in ledger.acked if i // ID_SPACE == 0)
    segments = conn.execute("SELECT sum(segments) FROM stream.partitions WHERE topic = %s",
                            (TOPIC,)).fetchone()[0]
    t.diag("crash cycles: %d cycles (kills of a publisher %d, of a consumer %d, immediate shutdowns %d), "
           "seed %s; acknowledged %d messages in %d transactions (%d by the checker), rolled back on "
           "purpose %d, aborted by a crash %d, unknown outcome %d (%d found stored, %d not); consumed "
           "%s; %d segments (%d seen without a base offset after a recovery); groups committed past "
           "rolled-back partition ends at a crash %d times; %.1f s"
           % (CYCLES, kills[KINDS[0]], kills[KINDS[1]], kills[KINDS[2]], SEED,
              len(ledger.acked), ledger.transactions, by_checker, len(ledger.rolled_back),
              len(ledger.aborted), maybe_present + maybe_absent, maybe_present, maybe_absent,
              " and ".join("%d by %s" % (n, g) for g, n in consumed_counts.items()), segments, len(half_rolls), tail_gaps,
              duration))
if t.failed == 0:
    conn.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
    conn.execute("DROP TABLE " + CONSUMED)
else:
    t.diag("topic %s and table %s are kept for inspection" % (TOPIC, CONSUMED))
conn.close()
t.exit()

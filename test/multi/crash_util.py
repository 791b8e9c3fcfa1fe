"""Workload and bookkeeping of t_910_crash_cycles.py (crash cycles, invariant 6).

Every worker is a thread with a session of its own.  A worker runs until its session
is lost (the crash of the cycle kills every backend), or until it is told to stop.

Publishers record on the client what the server acknowledged: a publish is
*acknowledged* once the COMMIT of its transaction (or its autocommit statement)
returned successfully.  The Ledger keeps, by payload id:

    acked        id -> (partition, offset)   commit returned: must be stored, once, there
    rolled_back  ids rolled back on purpose (ROLLBACK, ROLLBACK TO SAVEPOINT): never stored
    aborted      ids whose session died before COMMIT was sent, or whose statement
                 failed: never stored
    maybe        id -> (partition, offset) or None: the session died while the COMMIT
                 (or the autocommit publish) was in flight, so the client cannot know;
                 stored at most once.  After a recovery the outcome is known and each
                 maybe is resolved to maybe_present (then held to the rules of acked)
                 or maybe_absent (then held to the rules of aborted).

Consumers run poll + INSERT into their own table + stream.commit + COMMIT, one batch
per transaction (exactly-once in the database), and record the offsets they got
acknowledged, to check later that committed offsets never went backwards.

A worker can be asked to stop at a *pause point* (pause_req): a publisher just before
its COMMIT, with offsets held by its open transaction; a consumer just before its
COMMIT, with its rows and offsets written but not committed.  The test then kills the
backend (or the server) while the worker waits there, and sets `killed` before
releasing it, so the worker knows its transaction never committed.
"""
import os
import random
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from lib import connect, pg_log_since, wait_until

TOPIC = "crash_cycles"
PARTITIONS = 5
# The workers publish to partitions 0-3 only.  Partition QUIET is the test's own: before
# each crash it ends with rolled-back offsets that both groups have committed past, the
# case where recovery must not hand out offsets from the last stored one + 1.
WORK_PARTITIONS = 4
QUIET = 4
GROUPS = ("crash_cycles_a", "crash_cycles_b")
MEMBERS_PER_GROUP = 2
CONSUMED = "crash_cycles_consumed"   # (grp, partition, offset, id, pid, cycle), no key: duplicates show
KEYS = []                            # keys routed to partitions 0-3, see choose_keys
ID_SPACE = 100_000_000               # payload id = worker number * ID_SPACE + sequence

# SQLSTATEs with which a server tells a client that its session is over.
LOST_STATES = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}


class Lost(Exception):
    """The worker's session is gone (killed backend, crash restart, shutdown)."""


def session_lost(conn, exc):
    if conn.broken or conn.closed:
        return True
    state = getattr(exc, "sqlstate", None)
    return state in LOST_STATES or (state is None and isinstance(exc, psycopg.OperationalError))


class Ledger:
    """Client-side record of what was acknowledged; shared by all workers (one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}
        self.rolled_back = set()
        self.aborted = set()
        self.maybe = {}
        self.maybe_present = {}
        self.maybe_absent = set()
        self.seq = {}                  # worker number -> last sequence used
        self.consumer_acked = {}       # (group, partition) -> highest acknowledged next offset
        self.consumed_acked = {g: 0 for g in GROUPS}   # messages in acknowledged batches
        self.transactions = 0          # acknowledged publishing transactions
        self.errors = []               # unexpected errors, reported by the test

    def new_id(self, worker_no):
        with self.lock:
            s = self.seq.get(worker_no, 0) + 1
            self.seq[worker_no] = s
            return worker_no * ID_SPACE + s

    def ack(self, entries):
        with self.lock:
            for i, p, o in entries:
                self.acked[i] = (p, o)
            self.transactions += 1

    def roll_back(self, entries):
        with self.lock:
            self.rolled_back.update(i for i, _, _ in entries)

    def abort(self, entries):
        with self.lock:
            self.aborted.update(i for i, _, _ in entries)

    def unknown(self, entries):
        with self.lock:
            for i, p, o in entries:
                self.maybe[i] = (p, o) if p is not None else None

    def consumer_ack(self, group, rows):
        with self.lock:
            for p, o in rows:
                key = (group, p)
                self.consumer_acked[key] = max(self.consumer_acked.get(key, 0), o + 1)
            self.consumed_acked[group] += len(rows)

    def error(self, text):
        with self.lock:
            self.errors.append(text)

    def resolve(self, present):
        """After a recovery: settle the unknown outcomes with what is stored.
        present: id -> [(partition, offset)].  Returns (now present, now absent)."""
        with self.lock:
            here, gone = 0, 0
            for i in list(self.maybe):
                if present.get(i):
                    self.maybe_present[i] = present[i][0]
                    here += 1
                else:
                    self.maybe_absent.add(i)
                    gone += 1
                del self.maybe[i]
            return here, gone


class Worker(threading.Thread):
    """One session running step() in a loop until its session is lost or stop is set."""

    def __init__(self, name, number, ledger, cycle, seed):
        super().__init__(daemon=True, name=name)
        self.number, self.ledger, self.cycle = number, ledger, cycle
        self.rng = random.Random("%s:%s:%s" % (seed, name, cycle))
        self.conn = None
        self.pid = None
        self.ready = threading.Event()
        self.pause_req = threading.Event()
        self.paused = threading.Event()
        self.release = threading.Event()
        self.killed = False
        self.stop = threading.Event()
        self.units = 0          # acknowledged transactions (publisher) or batches (consumer)
        self.ended = None       # 'lost', 'stopped' or 'error'

    def q(self, sql, params=None):
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as e:
            if session_lost(self.conn, e):
                raise Lost(str(e).strip()) from e
            raise

    def pause_point(self):
        """Wait here when asked to; the test kills our backend meanwhile."""
        if not self.pause_req.is_set():
            return
        self.paused.set()
        self.release.wait(120)
        if self.killed:
            raise Lost("killed at the pause point")

    def run(self):
        try:
            self.conn = connect(application_name="t_910 %s" % self.name)
            self.pid = self.conn.info.backend_pid
        except psycopg.Error as e:
            self.ledger.error("%s: cannot connect: %s" % (self.name, e))
            self.ended = "error"
            self.ready.set()
            return
        self.ready.set()
        try:
            while not self.stop.is_set():
                self.step()
            self.ended = "stopped"
        except Lost:
            self.ended = "lost"
        except Exception as e:       # a database error that is not a lost session, or a bug
            self.ledger.error("%s (pid %s, cycle %s): %s: %s"
                              % (self.name, self.pid, self.cycle, type(e).__name__, str(e).strip()))
            self.ended = "error"
        finally:
            try:
                self.conn.close()
            except Exception:
                pass

    def step(self):
        raise NotImplementedError


class Publisher(Worker):
    """Base of the publishers: publish() records each message of the open transaction."""

    pausable = True

    def target(self):
        """A random routing: a key (murmur2) or an explicit partition.  (A NULL key would
        spread over every partition, QUIET included.)"""
        if self.rng.random() < 0.75:
            return self.rng.choice(KEYS), None
        return None, self.rng.randrange(WORK_PARTITIONS)

    def publish(self, pending):
        i = self.ledger.new_id(self.number)
        key, part = self.target()
        pending.append([i, None, None])      # in flight: its id is known, its place not yet
        p, o = self.q('SELECT partition, "offset" FROM stream.publish(%s, %s::jsonb, key => %s,'
                      ' partition => %s)', (TOPIC, Jsonb({"id": i, "by": self.name}), key, part)).fetchone()
        pending[-1][1:] = [p, o]

    def publish_batch(self, pending, n):
        ids = [self.ledger.new_id(self.number) for _ in range(n)]
        keys = [self.rng.choice(KEYS) for _ in range(n)]
        pending.extend([i, None, None] for i in ids)
        rows = self.q('SELECT partition, "offset" FROM stream.publish_batch(%s, %s::jsonb[], %s::text[])',
                      (TOPIC, [Jsonb({"id": i, "by": self.name}) for i in ids], keys)).fetchall()
        if len(rows) != n:
            raise RuntimeError("publish_batch of %d values returned %d rows" % (n, len(rows)))
        for entry, (p, o) in zip(pending[-n:], rows):   # rows come in array order
            entry[1:] = [p, o]

    def transaction(self, body, finish="COMMIT"):
        """BEGIN, body(pending), pause point, finish; record every id's outcome."""
        pending = []
        try:
            self.q("BEGIN")
            body(pending)
            self.pause_point()
        except BaseException:
            # COMMIT was never sent: nothing of this transaction can be stored
            self.ledger.abort(pending)
            raise
        try:
            self.q(finish)
        except Lost:
            (self.ledger.unknown if finish == "COMMIT" else self.ledger.abort)(pending)
            raise
        except BaseException:
            self.ledger.abort(pending)
            raise
        if finish == "COMMIT":
            self.ledger.ack(pending)
        else:
            self.ledger.roll_back(pending)
        self.units += 1


class SinglePublisher(Publisher):
    """One autocommit publish per statement: acknowledged when the statement returns."""

    pausable = False

    def step(self):
        pending = []
        try:
            self.publish(pending)
        except Lost:
            self.ledger.unknown(pending)    # the commit may have happened before the kill
            raise
        except BaseException:
            self.ledger.abort(pending)
            raise
        self.ledger.ack(pending)
        self.units += 1


class TxnPublisher(Publisher):
    """Transactions of 2 to 6 publishes, one in three through publish_batch."""

    def step(self):
        def body(pending):
            if self.rng.random() < 1 / 3:
                self.publish_batch(pending, self.rng.randint(2, 5))
            for _ in range(self.rng.randint(1, 4)):
                self.publish(pending)
        self.transaction(body)


class RollbackPublisher(Publisher):
    """Transactions of 1 to 4 publishes; every other one is rolled back on purpose."""

    def step(self):
        def body(pending):
            for _ in range(self.rng.randint(1, 4)):
                self.publish(pending)
        self.transaction(body, "ROLLBACK" if self.units % 2 == 0 else "COMMIT")


class SavepointPublisher(Publisher):
    """Publish; SAVEPOINT a; publish x2; ROLLBACK TO a; publish; SAVEPOINT b; publish;
    RELEASE b (or ROLLBACK TO b); publish; COMMIT."""

    def step(self):
        def rollback_to(pending, name, mark):
            self.q("ROLLBACK TO SAVEPOINT " + name)
            self.ledger.roll_back(pending[mark:])
            del pending[mark:]

        def body(pending):
            self.publish(pending)
            self.q("SAVEPOINT a")
            mark = len(pending)
            self.publish(pending)
            self.publish(pending)
            rollback_to(pending, "a", mark)
            self.publish(pending)
            self.q("SAVEPOINT b")
            mark = len(pending)
            self.publish(pending)
            if self.rng.random() < 0.5:
                self.q("RELEASE SAVEPOINT b")
            else:
                rollback_to(pending, "b", mark)
            self.publish(pending)
        self.transaction(body)


class Consumer(Worker):
    """poll + INSERT INTO the consumed table + stream.commit + COMMIT, one batch per
    transaction; some in REPEATABLE READ, some after a poll rolled back to a savepoint."""

    def __init__(self, name, number, ledger, cycle, seed, group):
        super().__init__(name, number, ledger, cycle, seed)
        self.group = group
        self.messages = 0

    def poll(self):
        return self.q('SELECT partition, "offset", (value->>\'id\')::bigint FROM stream.poll(%s, %s, %s,'
                      ' %s::interval)', (self.group, TOPIC, self.rng.randint(1, 60), "200 ms")).fetchall()

    def step(self):
        # some batches in REPEATABLE READ (the LSO must hold at any isolation level)
        self.q("BEGIN ISOLATION LEVEL REPEATABLE READ" if self.rng.random() < 0.3 else "BEGIN")
        if self.rng.random() < 0.2:
            # a poll rolled back to a savepoint: its messages come again
            self.q("SAVEPOINT s")
            self.poll()
            self.q("ROLLBACK TO SAVEPOINT s")
        rows = self.poll()
        if rows:
            self.q("INSERT INTO " + CONSUMED + " (grp, partition, \"offset\", id, pid, cycle)"
                   " SELECT %s, unnest(%s::int[]), unnest(%s::bigint[]), unnest(%s::bigint[]),"
                   " pg_backend_pid(), %s",
                   (self.group, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                    self.cycle))
        self.q("SELECT stream.commit(%s, %s)", (self.group, TOPIC))
        if rows:
            self.pause_point()
        self.q("COMMIT")
        self.ledger.consumer_ack(self.group, [(r[0], r[1]) for r in rows])
        self.messages += len(rows)
        self.units += 1


def choose_keys(conn, n=16):
    """Fill KEYS with n keys that Kafka's partitioner sends to partitions 0-3."""
    KEYS[:] = [r[0] for r in conn.execute(
        "SELECT k FROM (SELECT 'k' || i AS k, i FROM generate_series(0, 999) i) s"
        " WHERE stream.partition_for(k, %s) < %s ORDER BY i LIMIT %s",
        (PARTITIONS, WORK_PARTITIONS, n)).fetchall()]


def start_workers(ledger, cycle, seed, publishers=True):
    """Start the cycle's workers (numbers are stable across cycles) once all are connected."""
    workers = []
    if publishers:
        workers += [SinglePublisher("single", 1, ledger, cycle, seed),
                    TxnPublisher("txn1", 2, ledger, cycle, seed),
                    TxnPublisher("txn2", 3, ledger, cycle, seed),
                    RollbackPublisher("rollbacker", 4, ledger, cycle, seed),
                    SavepointPublisher("savepointer", 5, ledger, cycle, seed)]
    n = 10
    for g in GROUPS:
        for m in range(MEMBERS_PER_GROUP):
            workers.append(Consumer("%s/%d" % (g, m), n, ledger, cycle, seed, g))
            n += 1
    for w in workers:
        w.start()
    wait_until(lambda: all(w.ready.is_set() for w in workers), timeout=60,
               what="every worker to connect")
    return workers


def join_all(workers, timeout=60):
    """Wait (bounded) for every worker to end; return the ones still running."""
    deadline = time.monotonic() + timeout
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    return [w for w in workers if w.is_alive()]


def reconnect(log_offset):
    """A new session once the log says the server finished crash recovery, and answers."""
    wait_until(lambda: "database system is ready to accept connections" in pg_log_since(log_offset),
               timeout=120, what="the server to finish crash recovery")

    def attempt():
        try:
            conn = connect(application_name="t_910 checker")
            conn.execute("SELECT 1")
            return conn
        except psycopg.OperationalError:
            return None
    return wait_until(attempt, timeout=60, what="the server to accept connections")


def stored(conn):
    """Every message of the topic as [(partition, offset, id)], each partition in read order."""
    rows = []
    for p in range(PARTITIONS):
        offset = 0
        while True:
            batch = conn.execute('SELECT "offset", (value->>\'id\')::bigint FROM stream.read(%s, %s, %s, 10000)',
                                 (TOPIC, p, offset)).fetchall()
            if not batch:
                break
            rows += [(p, o, i) for o, i in batch]
            offset = batch[-1][0] + 1
    return rows


def committed_offsets(conn):
    """{(group, partition): committed offset} of the test's groups."""
    return {(g, p): o for g, p, o in conn.execute(
        "SELECT o.group_name, o.partition, o.committed_offset FROM stream._offsets o"
        " JOIN stream._topics t USING (topic_id) WHERE t.topic = %s", (TOPIC,)).fetchall()}


def partition_state(conn):
    """{partition: (end_offset, last_stable_offset)}."""
    return {p: (e, l) for p, e, l in conn.execute(
        "SELECT partition, end_offset, last_stable_offset FROM stream.partitions WHERE topic = %s",
        (TOPIC,)).fetchall()}


def consumed(conn, group):
    """The group's consumed table as a sorted list of (partition, offset, id)."""
    return [tuple(r) for r in conn.execute(
        'SELECT partition, "offset", id FROM ' + CONSUMED + ' WHERE grp = %s ORDER BY 1, 2, 3',
        (group,)).fetchall()]


def log_size():
    return os.path.getsize(os.environ["STREAM_PGLOG"])

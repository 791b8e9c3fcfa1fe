"""Helpers for the last-stable-offset (LSO) tests t_010 to t_060.

Sessions are psycopg connections in autocommit mode; a test opens and ends
transactions itself with BEGIN / COMMIT / ROLLBACK, so one thread can drive several
sessions in an exact order.  The storm (run_storm) is the one place with threads:
each thread owns its connection, as psycopg connections must not be shared.

Topics of these tests are named lso_*; fresh_topic drops a leftover of a previous run.
"""
import os
import random
import threading
import time

import psycopg

from lib import connect


def sqlstate(fn):
    """Run fn and return the SQLSTATE of the database error it raised, or None."""
    try:
        fn()
    except psycopg.Error as e:
        return e.sqlstate
    return None


def fresh_topic(conn, topic, partitions=1, segment_bytes=None):
    """Create topic anew (dropping a leftover of an earlier run)."""
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))
    if segment_bytes is None:
        conn.execute("SELECT stream.create_topic(%s, partitions => %s)", (topic, partitions))
    else:
        conn.execute("SELECT stream.create_topic(%s, partitions => %s, segment_bytes => %s)",
                     (topic, partitions, segment_bytes))


def drop_topic(conn, topic):
    conn.execute("SELECT stream.drop_topic(%s, if_exists => true)", (topic,))


def publish(conn, topic, value, key=None, partition=None):
    """Publish one jsonb value; return its (partition, offset)."""
    return conn.execute(
        "SELECT partition, \"offset\" FROM stream.publish(%s, %s::jsonb, key => %s, partition => %s)",
        (topic, psycopg.types.json.Jsonb(value), key, partition)).fetchone()


def publish_batch(conn, topic, values, keys=None):
    """Publish a batch of jsonb values; return their [(partition, offset)]."""
    return conn.execute(
        "SELECT partition, \"offset\" FROM stream.publish_batch(%s, %s::jsonb[], keys => %s)",
        (topic, [psycopg.types.json.Jsonb(v) for v in values], keys)).fetchall()


def read(conn, topic, partition, offset=0, max_messages=1000):
    """Return [(offset, value)] of stream.read, in the order it returned them."""
    return [tuple(r) for r in conn.execute(
        "SELECT \"offset\", value FROM stream.read(%s, %s, %s, %s)",
        (topic, partition, offset, max_messages)).fetchall()]


def read_offsets(conn, topic, partition, offset=0, max_messages=1000):
    return [o for o, _ in read(conn, topic, partition, offset, max_messages)]


def state(conn, topic, partition=0):
    """Return (end_offset, last_stable_offset) from the stream.partitions view."""
    row = conn.execute(
        "SELECT end_offset, last_stable_offset FROM stream.partitions"
        " WHERE topic = %s AND partition = %s", (topic, partition)).fetchone()
    assert row is not None, "no partition %s of topic %s" % (partition, topic)
    return tuple(row)


def fast_state(conn, topic, partition):
    """(end_offset, last_stable_offset) without the view's storage figures (cheap)."""
    return tuple(conn.execute(
        "SELECT end_offset, last_stable_offset FROM stream._partition_state(%s, %s)",
        (topic, partition)).fetchone())


def storm_seed(default=20251123):
    """The storm's seed: STREAM_STORM_SEED when set, else a fixed default."""
    return int(os.environ.get("STREAM_STORM_SEED") or default)


class Publisher(threading.Thread):
    """Run random transactions of 1-5 publishes; record what committed and what did not.

    committed: [(partition, offset, id)] of messages whose COMMIT succeeded;
    rolled_back: [(partition, offset, id)] of messages rolled back (whole transaction or
    to a savepoint).  Ids are unique over the storm.
    """

    def __init__(self, topic, partitions, wid, txns, seed, pad, start_gate):
        super().__init__(name="publisher-%d" % wid, daemon=True)
        self.topic, self.partitions, self.wid, self.txns = topic, partitions, wid, txns
        self.rng = random.Random("%s-%d" % (seed, wid))
        self.pad = "x" * pad
        self.start_gate = start_gate
        self.committed, self.rolled_back, self.errors = [], [], []
        self.stats = {"commit": 0, "rollback": 0, "savepoint_rollback": 0, "held": 0}
        self.seq = 0

    def value(self):
        self.seq += 1
        return "w%d-%d" % (self.wid, self.seq), self.pad

    def one_publish(self, conn):
        """Publish 1 message (or a small batch); return [(partition, offset, id)]."""
        rng = self.rng
        r = rng.random()
        if r < 0.1:
            ids = [self.value() for _ in range(rng.randint(2, 3))]
            rows = publish_batch(conn, self.topic, [{"id": i, "pad": p} for i, p in ids])
            return [(p, o, i) for (p, o), (i, _) in zip(rows, ids)]
        i, pad = self.value()
        if r < 0.6:
            p, o = publish(conn, self.topic, {"id": i, "pad": pad}, key="k%d" % rng.randrange(40))
        elif r < 0.8:
            p, o = publish(conn, self.topic, {"id": i, "pad": pad})
        else:
            p, o = publish(conn, self.topic, {"id": i, "pad": pad},
                           partition=rng.randrange(self.partitions))
        return [(p, o, i)]

    def one_txn(self, conn):
        rng = self.rng
        conn.execute("BEGIN")
        pending, rolled = [], []
        savepoint = None  # index in pending where the open savepoint starts
        for _ in range(rng.randint(1, 5)):
            if savepoint is None and rng.random() < 0.2:
                conn.execute("SAVEPOINT s")
                savepoint = len(pending)
            pending += self.one_publish(conn)
            if savepoint is not None and rng.random() < 0.4:
                if rng.random() < 0.6:
                    conn.execute("ROLLBACK TO SAVEPOINT s")
                    rolled += pending[savepoint:]
                    del pending[savepoint:]
                    self.stats["savepoint_rollback"] += 1
                else:
                    conn.execute("RELEASE SAVEPOINT s")
                savepoint = None
        if rng.random() < 0.1:
            # keep the transaction open a little while the others go on
            conn.execute("SELECT pg_sleep(%s)", (rng.uniform(0.001, 0.008),))
            self.stats["held"] += 1
        if rng.random() < 0.2:
            conn.execute("ROLLBACK")
            rolled += pending
            self.stats["rollback"] += 1
        else:
            conn.execute("COMMIT")  # raises if the commit failed: then nothing is recorded
            self.committed += pending
            self.stats["commit"] += 1
        self.rolled_back += rolled

    def run(self):
        try:
            with connect() as conn:
                self.start_gate.wait(30)
                for _ in range(self.txns):
                    self.one_txn(conn)
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))


class Follower(threading.Thread):
    """Read every partition from its last offset on until told to finish.

    next offset = last returned + 1.  mode "rc" reads in autocommit (one statement per
    transaction); mode "rr" reads in REPEATABLE READ transactions whose snapshot is
    taken before a few rounds of reads.  seen[p] = [(offset, id)] in the order returned.
    """

    def __init__(self, topic, partitions, mode, finish, rounds_per_txn=8):
        super().__init__(name="follower-%s" % mode, daemon=True)
        self.topic, self.partitions, self.mode, self.finish = topic, partitions, mode, finish
        self.rounds_per_txn = rounds_per_txn
        self.seen = {p: [] for p in range(partitions)}
        self.next = {p: 0 for p in range(partitions)}
        self.errors = []
        self.reads = 0
        self.held_seen = 0  # times a partition's LSO was below its end offset

    def drain(self, conn, p):
        """Read partition p from self.next[p] until a read comes back short; return count."""
        total = 0
        while True:
            rows = read(conn, self.topic, p, self.next[p], 500)
            self.reads += 1
            for off, value in rows:
                if off < self.next[p]:
                    self.errors.append("partition %d: offset %d returned after next=%d"
                                       % (p, off, self.next[p]))
                self.seen[p].append((off, value["id"]))
                self.next[p] = off + 1
            total += len(rows)
            if len(rows) < 500:
                return total

    def one_pass(self, conn):
        got = 0
        for p in range(self.partitions):
            end, lso = fast_state(conn, self.topic, p)
            if lso < end:
                self.held_seen += 1
            got += self.drain(conn, p)
        return got

    def run(self):
        try:
            with connect() as conn:
                while True:
                    # decided before the pass: a pass that starts after the publishers
                    # ended reads up to an LSO that equals the end offset
                    last = self.finish.is_set()
                    if self.mode == "rr":
                        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                        conn.execute("SELECT count(*) FROM stream._segments")  # take the snapshot now
                        got = sum(self.one_pass(conn) for _ in range(self.rounds_per_txn))
                        conn.execute("COMMIT")
                    else:
                        got = self.one_pass(conn)
                    if last:
                        break
                    if not got:
                        time.sleep(0.001)  # idle poll interval, not an ordering device
        except Exception as e:
            self.errors.append(repr(e))


def run_storm(t, topic, partitions, seed, txns_total, publishers=4, pad=20,
              follower_modes=("rc", "rr"), timeout=120):
    """Run publishers and followers concurrently; return (publishers, followers)."""
    gate = threading.Barrier(publishers + 1)
    finish = threading.Event()
    pubs = [Publisher(topic, partitions, w, txns_total // publishers, seed, pad, gate)
            for w in range(publishers)]
    fols = [Follower(topic, partitions, m, finish) for m in follower_modes]
    for th in fols + pubs:
        th.start()
    gate.wait(30)
    started = time.monotonic()
    for th in pubs:
        th.join(timeout)
        if th.is_alive():
            raise TimeoutError("%s still running after %ss" % (th.name, timeout))
    t.diag("publishers done in %.1fs" % (time.monotonic() - started))
    finish.set()
    for th in fols:
        th.join(timeout)
        if th.is_alive():
            raise TimeoutError("%s still running after %ss" % (th.name, timeout))
    t.diag("followers done in %.1fs" % (time.monotonic() - started))
    return pubs, fols


def check_storm(t, conn, topic, partitions, pubs, fols):
    """Emit the TAP checks of a storm: every follower saw exactly the committed set."""
    errors = [e for th in pubs + fols for e in th.errors]
    t.is_(errors, [], "publishers and followers ran without errors")
    committed = {}
    for th in pubs:
        for p, o, i in th.committed:
            committed[(p, o)] = i
    rolled = {(p, o): i for th in pubs for p, o, i in th.rolled_back}
    stats = {k: sum(th.stats[k] for th in pubs) for k in pubs[0].stats}
    t.diag("committed messages %d, rolled back %d, transactions %s"
           % (len(committed), len(rolled), stats))
    t.is_(len(committed), sum(len(th.committed) for th in pubs),
          "no offset was handed out twice among committed messages")
    t.ok(not (set(committed) & set(rolled)), "no offset was both committed and rolled back")
    t.ok(stats["rollback"] > 0 and stats["savepoint_rollback"] > 0 and rolled,
         "the storm rolled back whole transactions and savepoints")
    for p in range(partitions):
        end, lso = state(conn, topic, p)
        t.is_(lso, end, "partition %d: LSO equals the end offset once every publisher ended" % p)
    for f in fols:
        t.diag("follower %s: %d reads, LSO seen held back %d times"
               % (f.mode, f.reads, f.held_seen))
        t.ok(f.held_seen > 0, "follower %s saw an LSO held back by an open transaction "
             "(the storm exercised the mechanism)" % f.mode)
        for p in range(partitions):
            offs = [o for o, _ in f.seen[p]]
            t.ok(all(a < b for a, b in zip(offs, offs[1:])),
                 "follower %s, partition %d: offsets strictly increasing (each once, in order)"
                 % (f.mode, p))
            want = sorted((o, i) for (q, o), i in committed.items() if q == p)
            got = sorted(f.seen[p])
            ok = t.is_(len(got), len(want),
                       "follower %s, partition %d: as many messages as committed (%d)"
                       % (f.mode, p, len(want)))
            same = got == want
            t.ok(same, "follower %s, partition %d: exactly the committed (offset, id) set"
                 % (f.mode, p))
            if not same or not ok:
                g, w = set(got), set(want)
                t.diag("missing (committed, never read): %s" % sorted(w - g)[:20])
                t.diag("extra (read, never committed): %s" % sorted(g - w)[:20])
            ghosts = [x for x in f.seen[p] if (p, x[0]) in rolled]
            t.is_(ghosts, [], "follower %s, partition %d: no rolled-back message read"
                  % (f.mode, p))

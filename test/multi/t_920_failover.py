"""Replica failover (issue 7, item 2), and what a hot standby may do.

The test builds its own primary and streaming standby in a temporary directory (the
test cluster and database stream_multi are not used): initdb as postgres with
shared_preload_libraries = 'stream' and wal_level = replica, pg_basebackup -R, then
synchronous_standby_names = 'standby1' so that every acknowledged commit is flushed
on the standby (the no-loss case).  Two publishers (single publishes, transactions of
three, batches of four, rolled-back transactions) and a consumer group of two members
(poll and commit in one transaction) connect as an application would: through a
multi-host connection string with target_session_attrs=read-write.

While they run, every entry point is tried on the hot standby.  Reading and polling
are refused there (the last stable offset lives in the primary's shared memory), and
so is every writer; each refusal must be a clear error: SQLSTATE 25006
(read_only_sql_transaction) or 0A000 (feature_not_supported) with a hint that says to
use the primary, and it must leave nothing behind (no group membership, no partition
ownership, no shared offset state that would be stale after a promotion).  The
catalog views that need no offset state (topics, topic_privileges, retention_runs)
work; partitions, consumer_lag and verify() either work or are refused the same way;
the retention worker does not run until the promotion.

Then the primary is stopped with -m immediate and the standby promoted; the clients
notice, reconnect to the new primary by themselves and carry on.  Checked on the
promoted server: every acknowledged message is stored exactly once at the partition
and offset it was acknowledged with; nothing rolled back or never committed is there;
offsets are unique and increasing per partition and per key in publish order across
the failover; stream.read and stream.partitions agree with the tables (the offset
state is rebuilt from the tables, not taken from stale memory); new publishes get
offsets above every stored one; committed offsets include every acknowledged consumer
commit; the consumers resume exactly at the committed offsets; and the group's
combined output is the stored set, each message once (twice only when a consumer's
commit was in flight at the crash and did not survive it).

STREAM_FAILOVER_PORT sets the first port tried (default PGPORT + 1); the next free
ones are taken.  STREAM_FAILOVER_PROBES=0 skips the standby probes (to tell a failover
problem from one the probes cause).  Runs in 5 to 15 s (about 27 s when the stale
offset state makes the group miss messages: it waits 15 s for them).
"""
import json
import os
import threading
import time
import traceback

import psycopg

from lib import TAP, wait_until
from server_pair import ServerPair, free_ports

t = TAP()
TOPIC = "fo"
GROUP = "fo_g"
PROBE = "fo_probe"     # a group with committed offsets, for the standby probes
PARTITIONS = 3
AFTER = 60             # messages each publisher acknowledges after the failover
TIMEOUT = 30
WORKERS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'stream retention worker'"


def connect_rw(autocommit):
    """Connect as the application does: any host, as long as it takes writes."""
    return psycopg.connect(host="127.0.0.1,127.0.0.1", port="%d,%d" % (PRIMARY.port, STANDBY.port),
                           user="postgres", dbname="postgres", target_session_attrs="read-write",
                           autocommit=autocommit, connect_timeout=3,
                           application_name="t_920_failover")


# ---------------------------------------------------------------------------------
# Clients.  Each records what the server acknowledged.  Phases: "run" (old primary),
# "crash" (the test stopped it: connection errors are expected), "resume" (the
# clients reconnected and the test has checked the promoted server).
# ---------------------------------------------------------------------------------
phase = "run"
resume = threading.Event()
stop = threading.Event()
state_lock = threading.Lock()
lost = set()           # clients that saw their connection die in the crash
reconnected = set()    # clients connected to the new primary


def broken(conn, err):
    return conn.closed or conn.broken or isinstance(err, psycopg.OperationalError)


class Client(threading.Thread):
    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.errors = []       # unexpected errors: (phase, sqlstate, message)
        self.resumed = False

    def error(self, err):
        self.errors.append((phase, getattr(err.diag, "sqlstate", None), str(err).strip()))

    def reconnect(self, autocommit):
        """After a lost connection: connect to whoever takes writes, wait for the test."""
        with state_lock:
            lost.add(self.name)
        conn = wait_until(lambda: self.try_connect(autocommit), timeout=60,
                          what="%s to reconnect to a read-write server" % self.name)
        with state_lock:
            reconnected.add(self.name)
        if not resume.wait(60):
            raise TimeoutError("%s: the test did not resume the clients" % self.name)
        self.resumed = True
        return conn

    @staticmethod
    def try_connect(autocommit):
        try:
            return connect_rw(autocommit)
        except psycopg.OperationalError:
            return None

    def run(self):
        try:
            self.work()
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            self.errors.append((phase, None, "%s: %r" % (self.name, err)))


class Publisher(Client):
    def __init__(self, idx):
        super().__init__("publisher-%d" % idx)
        self.idx = idx
        self.next_id = (idx + 1) * 1000000
        self.acked = {}     # id -> (partition, offset, key)
        self.order = []     # (key, partition, offset) in acknowledgement order
        self.maybe = {}     # id -> key: COMMIT sent, connection lost before the answer
        self.aborted = set()  # rolled back, or the transaction died before COMMIT
        self.after = []     # (partition, offset) acknowledged after the failover

    def new_ids(self, n):
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        return ids

    def work(self):
        conn = connect_rw(autocommit=False)
        k = 0
        while len(self.after) < AFTER and not stop.is_set():
            kind = k % 5
            k += 1
            ids = self.new_ids({0: 1, 1: 1, 2: 3, 3: 2, 4: 4}[kind])
            keys = ["p%d-k%d" % (self.idx, i % 5) for i in ids]
            committing = False
            try:
                if kind == 4:
                    rows = conn.execute(
                        "SELECT partition, \"offset\" FROM stream.publish_batch(%s, %s::jsonb[], %s::text[])",
                        (TOPIC, [json.dumps({"id": i}) for i in ids], keys)).fetchall()
                else:
                    rows = [conn.execute(
                        "SELECT partition, \"offset\" FROM stream.publish(%s, %s::jsonb, key => %s)",
                        (TOPIC, json.dumps({"id": i}), key)).fetchone() for i, key in zip(ids, keys)]
                if kind == 3:
                    conn.rollback()
                    self.aborted.update(ids)
                    continue
                committing = True
                conn.commit()
            except psycopg.Error as err:
                if committing:
                    self.maybe.update(zip(ids, keys))
                else:
                    self.aborted.update(ids)
                if broken(conn, err):
                    if phase != "crash":
                        self.error(err)
                    conn = self.reconnect(autocommit=False)
                else:
                    self.error(err)
                    conn.rollback()
                continue
            with state_lock:
                for i, key, (p, o) in zip(ids, keys, rows):
                    self.acked[i] = (p, o, key)
                    self.order.append((key, p, o))
                    if self.resumed:
                        self.after.append((p, o))


class Consumer(Client):
    def __init__(self, idx):
        super().__init__("consumer-%d" % idx)
        self.delivered = []   # (partition, offset, id, certain, resumed) per message

    def work(self):
        conn = connect_rw(autocommit=False)
        while not stop.is_set():
            rows = []
            committing = False
            try:
                rows = conn.execute(
                    "SELECT partition, \"offset\", (value->>'id')::bigint "
                    "FROM stream.poll(%s, %s, 50, wait => '100 ms')", (GROUP, TOPIC)).fetchall()
                conn.execute("SELECT stream.commit(%s, %s)", (GROUP, TOPIC))
                committing = True
                conn.commit()
            except psycopg.Error as err:
                if committing:
                    # delivered, but whether the offsets were stored is unknown
                    with state_lock:
                        self.delivered += [(p, o, i, False, self.resumed) for p, o, i in rows]
                if broken(conn, err):
                    if phase != "crash":
                        self.error(err)
                    conn = self.reconnect(autocommit=False)
                else:
                    self.error(err)
                    conn.rollback()
                continue
            with state_lock:
                self.delivered += [(p, o, i, True, self.resumed) for p, o, i in rows]


# ---------------------------------------------------------------------------------
# The hot standby
# ---------------------------------------------------------------------------------
def describe(err):
    d = err.diag
    return "%s: %s (hint: %s)" % (d.sqlstate, d.message_primary, d.message_hint)


def refused(conn, sql, args, what):
    """One TAP line: the statement fails with 25006 or 0A000 and a hint naming the primary."""
    try:
        conn.execute(sql, args).fetchall()
    except psycopg.Error as err:
        good = (err.diag.sqlstate in ("25006", "0A000")
                and "primary" in (err.diag.message_hint or "").lower())
        if not t.ok(good, "standby: %s is refused with 25006/0A000 and a hint to use the primary" % what):
            t.diag("got " + describe(err))
        return err
    t.ok(False, "standby: %s is refused with 25006/0A000 and a hint to use the primary" % what)
    t.diag("it succeeded")
    return None


def works_or_refused(conn, sql, what):
    """Monitoring: either rows, or a clear 0A000 with a hint naming the primary."""
    try:
        conn.execute(sql).fetchall()
        t.ok(True, "standby: %s works" % what)
    except psycopg.Error as err:
        good = err.diag.sqlstate == "0A000" and "primary" in (err.diag.message_hint or "").lower()
        if not t.ok(good, "standby: %s works, or is refused with 0A000 and a hint to use the primary"
                    % what):
            t.diag("got " + describe(err))


def standby_probes():
    def probe(sql, args, what):
        with STANDBY.connect() as c:
            refused(c, sql, args, what)

    # what a hot standby is for: the catalog views
    with STANDBY.connect() as c:
        t.is_(c.execute("SELECT topic, partitions FROM stream.topics").fetchall(), [(TOPIC, PARTITIONS)],
              "standby: stream.topics works")
        for view in ("stream.topic_privileges", "stream.retention_runs"):
            c.execute("SELECT * FROM %s" % view).fetchall()
            t.ok(True, "standby: %s works" % view)
        t.is_(c.execute("SELECT stream.has_topic_privilege(%s, 'consume'), stream.partition_for('k', 3)",
                        (TOPIC,)).fetchone(), (True, 2),
              "standby: has_topic_privilege and partition_for work")
    for view in ("stream.partitions", "stream.consumer_lag", "stream.verify()"):
        with STANDBY.connect() as c:
            works_or_refused(c, "SELECT * FROM %s" % view, view)
    t.is_(STANDBY.query(WORKERS)[0][0], 0, "standby: the retention worker does not run during recovery")

    # reading: the last stable offset is known only to the primary
    probe("SELECT * FROM stream.read(%s, 0)", (TOPIC,), "stream.read()")
    probe("SELECT * FROM stream.read_text(%s, 0)", (TOPIC,), "stream.read_text()")
    probe("SELECT * FROM stream.poll(%s, %s, 10, wait => '1 s')", (PROBE, TOPIC), "stream.poll() with a wait")
    with STANDBY.connect() as s, STANDBY.connect() as s2:
        refused(s, "SELECT * FROM stream.poll(%s, %s, 10)", (PROBE, TOPIC), "stream.poll()")
        members = s.execute("SELECT count(*) FROM stream._members() WHERE pid = pg_backend_pid()").fetchone()[0]
        owned = s.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 21332 "
                          "AND pid = pg_backend_pid()").fetchone()[0]
        if not t.ok(members == 0 and owned == 0,
                    "standby: a refused poll leaves no group membership and owns no partition"):
            t.diag("the session is a member %d time(s) and holds %d ownership lock(s)" % (members, owned))
        # if the first session kept the partitions, a second member gets none to read
        refused(s2, "SELECT * FROM stream.poll(%s, %s, 10)", (PROBE, TOPIC),
                "stream.poll() by a second session of the group")
        # the first session may believe it owns partition 0
        refused(s, "SELECT stream.seek(%s, %s, 0, 0)", (PROBE, TOPIC),
                "stream.seek() in the session of the refused poll (partition 0)")
    with STANDBY.connect() as c:
        try:
            left = c.execute("SELECT stream.leave(%s, %s)", (PROBE, TOPIC)).fetchone()[0]
        except psycopg.Error as err:
            left = err.diag.sqlstate
        t.ok(left in (False, "25006", "0A000"),
             "standby: stream.leave() returns false (nothing to leave) or is refused: %r" % (left,))

    # writing
    probe("SELECT * FROM stream.publish(%s, '{\"id\": -1}'::jsonb)", (TOPIC,), "stream.publish()")
    probe("SELECT * FROM stream.publish_batch(%s, ARRAY['{\"id\": -2}'::jsonb])", (TOPIC,),
          "stream.publish_batch()")
    probe("SELECT stream.commit(%s, %s)", (PROBE, TOPIC), "stream.commit(group, topic)")
    probe("SELECT stream.commit(%s, %s, 0, 0)", (PROBE, TOPIC), "stream.commit(group, topic, partition, offset)")
    for p in (1, 2):
        probe("SELECT stream.seek(%s, %s, %s, 0)", (PROBE, TOPIC, p),
              "stream.seek() of an idle group (partition %d)" % p)
    probe("SELECT stream.reset_offsets(%s, %s, 'earliest')", (PROBE, TOPIC),
          "stream.reset_offsets(group, topic, 'earliest')")
    probe("SELECT stream.reset_offsets(%s, %s, now())", (PROBE, TOPIC),
          "stream.reset_offsets(group, topic, timestamptz)")
    probe("SELECT stream.create_topic('fo_new')", None, "stream.create_topic()")
    probe("SELECT stream.alter_topic(%s, 4)", (TOPIC,), "stream.alter_topic()")
    probe("SELECT stream.drop_topic(%s)", (TOPIC,), "stream.drop_topic()")
    probe("SELECT stream.grant(%s, 'postgres', 'publish')", (TOPIC,), "stream.grant()")
    probe("SELECT stream.revoke(%s, 'postgres', 'publish')", (TOPIC,), "stream.revoke()")


# ---------------------------------------------------------------------------------
# What the promoted server holds
# ---------------------------------------------------------------------------------
def table_rows(conn):
    """(partition, offset, id) of every stored message, from the segment tables themselves."""
    rows = []
    for seg, p in conn.execute(
            "SELECT g.segment_id, g.partition FROM stream._segments g JOIN stream._topics t USING (topic_id) "
            "WHERE t.topic = %s ORDER BY g.segment_id", (TOPIC,)).fetchall():
        rows += [(p, o, i) for o, i in conn.execute(
            "SELECT \"offset\", (value->>'id')::bigint FROM stream_data.seg_%s ORDER BY 1" % int(seg))]
    return rows


def read_rows(conn):
    rows = []
    for p in range(PARTITIONS):
        rows += [(p, o, i) for o, i in conn.execute(
            "SELECT \"offset\", (value->>'id')::bigint FROM stream.read(%s, %s, 0, 100000)",
            (TOPIC, p)).fetchall()]
    return rows


def check_offsets_unique(rows, label):
    for p in range(PARTITIONS):
        offs = [o for q, o, _ in rows if q == p]
        if not t.ok(len(offs) == len(set(offs)), "%s: offsets unique in partition %d" % (label, p)):
            t.diag("%d messages, %d distinct offsets" % (len(offs), len(set(offs))))


def main():
    global phase
    # ---- the pair ----
    PAIR.init_primary(PRIMARY)
    p = PRIMARY.connect()
    p.execute("CREATE EXTENSION stream")
    p.execute("SELECT stream.create_topic(%s, %s)", (TOPIC, PARTITIONS))
    seeded = {}
    for i in range(9):
        part, off = p.execute("SELECT partition, \"offset\" FROM stream.publish(%s, %s::jsonb, partition => %s)",
                              (TOPIC, json.dumps({"id": i}), i % PARTITIONS)).fetchone()
        seeded[i] = (part, off)
    # the probe group has committed offsets on the standby
    p.execute("SELECT count(*) FROM stream.poll(%s, %s, 3)", (PROBE, TOPIC))
    p.execute("SELECT stream.commit(%s, %s)", (PROBE, TOPIC))
    p.close()

    PAIR.add_standby(STANDBY, PRIMARY, timeout=TIMEOUT)
    t.ok(True, "a synchronous streaming standby follows the primary")

    # a read-only transaction on the primary cannot publish either
    with PRIMARY.connect(autocommit=False) as c:
        c.execute("SET TRANSACTION READ ONLY")
        try:
            c.execute("SELECT * FROM stream.publish(%s, '{\"id\": -3}'::jsonb)", (TOPIC,))
            t.ok(False, "primary: publish in a READ ONLY transaction fails with 25006")
        except psycopg.Error as err:
            t.is_(err.diag.sqlstate, "25006", "primary: publish in a READ ONLY transaction fails with 25006")

    # ---- traffic ----
    pubs = [Publisher(i) for i in range(2)]
    cons = [Consumer(i) for i in range(2)]
    for c in pubs + cons:
        c.start()

    def acked_per_partition():
        with state_lock:
            counts = [0] * PARTITIONS
            for pub in pubs:
                for part, _, _ in pub.acked.values():
                    counts[part] += 1
            return counts

    def committed_deliveries():
        with state_lock:
            return sum(1 for c in cons for d in c.delivered if d[3])

    wait_until(lambda: sum(acked_per_partition()) >= 150 and committed_deliveries() >= 40,
               timeout=TIMEOUT, what="publishers and consumers to get going")
    wait_until(lambda: STANDBY.query("SELECT count(*) FROM stream._offsets")[0][0] > 0,
               timeout=TIMEOUT, what="the standby to replay committed offsets")

    if os.environ.get("STREAM_FAILOVER_PROBES", "1") != "0":
        standby_probes()

    # more traffic into every partition after the probes: offset state the standby
    # loaded during the probes (if any) is stale by then
    base = acked_per_partition()
    done = committed_deliveries()
    wait_until(lambda: all(n >= b + 10 for n, b in zip(acked_per_partition(), base))
               and committed_deliveries() >= done + 40,
               timeout=TIMEOUT, what="more traffic after the probes")

    # ---- failover ----
    phase = "crash"
    PRIMARY.pg_ctl("stop", "-m", "immediate")
    names = {c.name for c in pubs + cons}
    wait_until(lambda: lost >= names, timeout=TIMEOUT, what="every client to lose its connection")
    STANDBY.pg_ctl("promote")
    wait_until(lambda: reconnected >= names, timeout=TIMEOUT, what="every client to reconnect")
    t.ok(True, "every client lost its connection and reconnected through target_session_attrs=read-write")

    n = STANDBY.connect()
    t.is_(n.execute("SELECT pg_is_in_recovery()").fetchone()[0], False, "the standby is the primary now")
    wait_until(lambda: STANDBY.query(WORKERS)[0][0] == 1, timeout=TIMEOUT,
               what="the retention worker to start on the promoted server")
    t.ok(True, "promoted: the retention worker starts")
    with state_lock:
        acked = dict((i, (part, off)) for i, (part, off) in seeded.items())
        maybe, aborted = {}, set()
        for pub in pubs:
            acked.update((i, (part, off)) for i, (part, off, _) in pub.acked.items())
            maybe.update(pub.maybe)
            aborted |= pub.aborted
        delivered_before = [d for c in cons for d in c.delivered]
    stored = table_rows(n)
    by_id = {}
    for part, off, i in stored:
        by_id.setdefault(i, []).append((part, off))
    missing = [i for i in acked if by_id.get(i) != [acked[i]]]
    if not t.ok(not missing, "promoted: every acknowledged message is stored once, where it was acknowledged"):
        t.diag("%d of %d differ, e.g. %s" % (len(missing), len(acked),
                                             [(i, acked[i], by_id.get(i)) for i in missing[:5]]))
    strays = [i for i in by_id if i not in acked and i not in maybe]
    if not t.ok(not strays, "promoted: nothing rolled back or never committed is stored"):
        t.diag("e.g. %s (%d rolled back among them)" % (strays[:5], len(set(strays) & aborted)))
    t.ok(all(len(by_id.get(i, [])) <= 1 for i in maybe),
         "promoted: the %d messages whose COMMIT was in flight are there at most once" % len(maybe))
    check_offsets_unique(stored, "promoted")

    reads = read_rows(n)
    if not t.is_(sorted(reads), sorted(stored), "promoted: stream.read returns exactly what the tables hold"):
        t.diag("stream.read: %d rows, tables: %d rows" % (len(reads), len(stored)))
    top = {q: max([o for r, o, _ in stored if r == q] or [-1]) for q in range(PARTITIONS)}
    state = n.execute("SELECT partition, end_offset, last_stable_offset FROM stream.partitions "
                      "WHERE topic = %s ORDER BY partition", (TOPIC,)).fetchall()
    if not t.ok(all(e > top[q] and lso == e for q, e, lso in state),
                "promoted: stream.partitions shows end offsets above every stored offset, LSO = end"):
        t.diag("stored max offsets %s, partitions (partition, end, lso) %s" % (top, state))

    committed = dict(n.execute(
        "SELECT o.partition, o.committed_offset FROM stream._offsets o JOIN stream._topics t USING (topic_id) "
        "WHERE t.topic = %s AND o.group_name = %s", (TOPIC, GROUP)).fetchall())
    floor = {}
    for part, off, _, certain, _ in delivered_before:
        if certain:
            floor[part] = max(floor.get(part, 0), off + 1)
    if not t.ok(all(committed.get(q, 0) >= f for q, f in floor.items()),
                "promoted: the group's committed offsets include every acknowledged consumer commit"):
        t.diag("committed %s, acknowledged at least %s" % (committed, floor))
    n.close()

    # ---- after the failover ----
    phase = "resume"
    resume.set()
    wait_until(lambda: all(len(pub.after) >= AFTER or not pub.is_alive() for pub in pubs),
               timeout=TIMEOUT, what="the publishers to finish")
    n = STANDBY.connect()
    final = table_rows(n)
    final_ids = {i for _, _, i in final}

    def caught_up():
        with state_lock:
            seen = {d[2] for c in cons for d in c.delivered}
        if not final_ids <= seen:
            return False
        return n.execute("SELECT count(*) = %s AND bool_and(lag = 0) FROM stream.consumer_lag "
                         "WHERE \"group\" = %s AND topic = %s",
                         (PARTITIONS, GROUP, TOPIC)).fetchone()[0]
    try:
        wait_until(caught_up, timeout=15, what="the group to consume everything")
        t.ok(True, "the group consumed every stored message and committed up to the end offsets")
    except TimeoutError:
        t.ok(False, "the group consumed every stored message and committed up to the end offsets")
        t.diag(n.execute("SELECT partition, committed_offset, end_offset FROM stream.consumer_lag "
                         "WHERE \"group\" = %s AND topic = %s ORDER BY 1", (GROUP, TOPIC)).fetchall())
    stop.set()
    for c in pubs + cons:
        c.join(TIMEOUT)

    errors = [(c.name,) + e for c in pubs + cons for e in c.errors]
    if not t.ok(not errors, "no client had an unexpected error (before or after the failover)"):
        for e in errors[:10]:
            t.diag("%s in phase %s: %s %s" % e)
    with state_lock:
        after = [(pub.name, part, off) for pub in pubs for part, off in pub.after]
        order = [x for pub in pubs for x in pub.order]
        for pub in pubs:
            acked.update((i, (part, off)) for i, (part, off, _) in pub.acked.items())
        delivered = [d for c in cons for d in c.delivered]
    t.ok(len(after) >= 2 * AFTER, "%d messages were acknowledged by the new primary" % len(after))
    low = [(name, part, off) for name, part, off in after if off <= top[part]]
    if not t.ok(not low, "new publishes get offsets above every offset stored before the failover"):
        t.diag("e.g. %s; stored max offsets were %s" % (low[:5], top))

    stored_ids = {}
    for part, off, i in final:
        stored_ids.setdefault(i, []).append((part, off))
    t.ok(all(stored_ids.get(i) == [po] for i, po in acked.items()),
         "final: every acknowledged message is stored once, where it was acknowledged")
    t.ok(all(i in acked or i in maybe for i in stored_ids), "final: nothing else is stored")
    check_offsets_unique(final, "final")
    by_key = {}
    for key, part, off in order:
        by_key.setdefault(key, []).append((part, off))
    bad_keys = [k for k, v in by_key.items() if len({q for q, _ in v}) != 1 or
                [o for _, o in v] != sorted({o for _, o in v})]
    if not t.ok(not bad_keys, "per key: one partition, offsets increasing in publish order across the failover"):
        v = by_key[bad_keys[0]]
        j = next(j for j in range(1, len(v)) if v[j][0] != v[0][0] or v[j][1] <= v[j - 1][1])
        t.diag("e.g. key %s: (partition, offset) ... %s" % (bad_keys[0], v[max(0, j - 3):j + 3]))

    # consumers resume at the committed offsets
    for q in range(PARTITIONS):
        resumed = [o for part, o, _, _, r in delivered if r and part == q]
        expect = [o for part, o, _ in final if part == q and o >= committed.get(q, 0)]
        t.is_(min(resumed or [None]), min(expect or [None]),
              "partition %d: the group resumed at its committed offset %s" % (q, committed.get(q)))

    # the group's combined output is the stored set: once, or twice where a
    # consumer's commit was lost in the crash (its offset was not committed)
    where = {(part, off): i for part, off, i in final}
    count, uncertain = {}, set()
    for part, off, i, certain, _ in delivered:
        count[(part, off, i)] = count.get((part, off, i), 0) + 1
        if not certain:
            uncertain.add((part, off, i))
    wrong = []
    for (part, off), i in where.items():
        m = (part, off, i)
        expect = 1 + (1 if m in uncertain and off >= committed.get(part, 0) else 0)
        if count.get(m, 0) != expect:
            wrong.append((m, count.get(m, 0), expect))
    extra = [m for m in count if where.get(m[:2]) != m[2]]
    if not t.ok(not wrong and not extra,
                "the group's output is every stored message once (redelivered only after a lost commit)"):
        t.diag("%d wrong counts e.g. %s; %d delivered but not stored e.g. %s"
               % (len(wrong), wrong[:5], len(extra), extra[:5]))
    t.ok(set(acked) <= {m[2] for m in count}, "the group received every acknowledged message")
    t.is_(n.execute("SELECT count(*) FROM stream.verify()").fetchone()[0], 0,
          "stream.verify() is clean on the promoted server")
    t.diag("%d acknowledged, %d in flight at the crash, %d rolled back or aborted, %d delivered "
           "(%d uncertain)" % (len(acked), len(maybe), len(aborted), len(delivered), len(uncertain)))
    n.close()


PAIR = ServerPair("stream-failover.", "t_920_failover")
PRIMARY, STANDBY = (PAIR.node(name, port) for name, port in zip(("primary", "standby"), free_ports(2)))
started = time.monotonic()
try:
    main()
except Exception as err:  # noqa: BLE001 - reported as a failed test, then cleaned up
    t.ok(False, "the failover scenario ran to its end")
    t.diag(traceback.format_exc())
    for node in (PRIMARY, STANDBY):
        t.diag("---- %s log (tail) ----\n%s" % (node.name, node.log_tail()))
finally:
    stop.set()
    resume.set()
    PAIR.cleanup()
t.diag("ran in %.1f s" % (time.monotonic() - started))
t.exit()

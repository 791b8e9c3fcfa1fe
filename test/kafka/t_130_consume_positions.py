"""Consuming from the beginning, from an offset, relative to the end and from the tail,
and a long poll woken by an SQL publish.

Ten messages m0..m9 are published from SQL to a one-partition text topic, then:
  - kcat -o beginning -e prints 0..9; -o 4 prints 4..9; -o -3 prints 7..9; -o end -e
    prints nothing and exits 0 (each run ends on the partition EOF: the listener's
    high watermark is right);
  - kcat -o end -c 1 and a confluent consumer assigned at OFFSET_END get only messages
    published after they started (the test publishes one message at a time until
    the consumer has one: it must be one of those, never an old one);
  - long poll: a confluent consumer with fetch.wait.max.ms = 10 s sits at the end; its
    Fetch requests are counted through librdkafka's statistics: in a quiet 2 s no more
    than 3 are sent (the listener parks them rather than answering empty at once),
    and a message published from SQL then arrives in under a second, far below the
    10 s a Fetch that is not woken would take.  Done twice, the second time right
    after a delivery, when the parked Fetch is surely in flight."""
import json
import subprocess
import threading
import time

from kafka_util import BOOT, KCAT, TAP, ck_consumer, create_topic, drop_all, end_offset, kcat_consume, \
    setup, tp

t = TAP()
admin = setup(t)
try:
    T = create_topic(admin, "k1_pos", 1, value_type="text")
    admin.execute("SELECT stream.publish_batch(%s, %s::text[])", (T, ["m%d" % i for i in range(10)]))

    def run(*args):
        rc, got, err = kcat_consume(T, *args)
        t.is_(rc, 0, "kcat -C %s -e exits 0%s" % (" ".join(args), "" if rc == 0 else ": " + err[-300:]))
        return [(o, v) for _, o, _, v in got]

    t.is_(run("-o", "beginning"), [(i, "m%d" % i) for i in range(10)], "kcat -o beginning: offsets 0..9 in order")
    t.is_(run("-o", "4"), [(i, "m%d" % i) for i in range(4, 10)], "kcat -o 4: offsets 4..9")
    t.is_(run("-o", "-3"), [(i, "m%d" % i) for i in range(7, 10)], "kcat -o -3: the last three, 7..9")
    t.is_(run("-o", "end"), [], "kcat -o end -e: nothing")

    published = []

    def publish_until(done, limit=40):
        """Publish tail-N messages one at a time until done() (bounded)."""
        for _ in range(limit):
            off = admin.execute("SELECT \"offset\" FROM stream.publish(%s, %s::text)",
                                (T, "tail-%d" % len(published))).fetchone()[0]
            published.append(off)
            if done():
                return True
        return False

    # kcat from the tail
    proc = subprocess.Popen([KCAT, "-b", BOOT, "-C", "-t", T, "-o", "end", "-c", "1", "-J"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def exited():
        try:
            proc.wait(1.0)
            return True
        except subprocess.TimeoutExpired:
            return False
    first_tail = 10
    ok = publish_until(exited)
    if not ok:
        proc.kill()
        proc.wait()
    out = proc.stdout.read().decode()
    msgs = [json.loads(x) for x in out.split("\n") if x.strip()]
    t.ok(ok and len(msgs) == 1 and msgs[0]["offset"] >= first_tail and msgs[0]["payload"].startswith("tail-"),
         "kcat -o end -c 1: gets a message published after it started, none of m0..m9 (%s)" % msgs)

    # confluent from the tail
    c = ck_consumer()
    c.assign([tp(T, 0, -1)])  # OFFSET_END
    got = []

    def received():
        m = c.poll(1.0)
        while m is not None and m.error():
            m = c.poll(0.1)
        if m is not None:
            got.append((m.offset(), m.value().decode()))
        return bool(got)
    start_end = end_offset(admin, T)
    ok = publish_until(received)
    c.close()
    t.ok(ok and got[0][0] >= start_end and got[0][1].startswith("tail-"),
         "confluent assigned at OFFSET_END gets only new messages (first %s, end was %d)"
         % (got[:1], start_end))

    # ---- long poll ----
    stats = {}
    lock = threading.Lock()

    def stats_cb(js):
        d = json.loads(js)
        n = sum(b.get("req", {}).get("Fetch", 0) for name, b in d.get("brokers", {}).items()
                if not name.startswith("GroupCoordinator"))
        with lock:
            stats["fetch"] = n
            stats["seq"] = stats.get("seq", 0) + 1

    def fetches():
        with lock:
            return stats.get("fetch"), stats.get("seq", 0)

    E = end_offset(admin, T)
    c = ck_consumer(**{"fetch.wait.max.ms": 10000, "statistics.interval.ms": 100, "stats_cb": stats_cb,
                       "socket.timeout.ms": 60000})
    c.assign([tp(T, 0, E)])
    # 2 s to connect and start fetching, then 2 s counted
    deadline = time.monotonic() + 2.0
    early = []
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            early.append(m.offset())
    f0, s0 = fetches()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            early.append(m.offset())
    f1, s1 = fetches()
    t.is_(early, [], "long poll: nothing delivered while nothing is published")
    t.ok(f0 is not None and s1 > s0 and f1 - f0 <= 3,
         "long poll: at most 3 Fetch requests in a quiet 2 s (%s -> %s): the listener parks them" % (f0, f1))

    for rnd in (1, 2):
        t0 = time.monotonic()
        off = admin.execute("SELECT \"offset\" FROM stream.publish(%s, %s::text)", (T, "wake-%d" % rnd)).fetchone()[0]
        t1 = time.monotonic()
        got = None
        while time.monotonic() - t1 < 15:
            m = c.poll(0.05)
            if m is not None and not m.error():
                got = (m.offset(), m.value().decode())
                break
        lat = time.monotonic() - t1
        t.is_(got, (off, "wake-%d" % rnd), "long poll round %d: the published message arrives" % rnd)
        t.ok(lat < 1.0, "long poll round %d: woken %.3f s after the publish committed (publish took %.3f s; "
             "fetch.wait.max.ms is 10 s)" % (rnd, lat, t1 - t0))
        # the consumer sends its next Fetch right after a delivery: let it park there
        stray = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and not m.error():
                stray.append(m.offset())
        t.is_(stray, [], "long poll round %d: nothing more arrives meanwhile" % rnd)
    c.close()
finally:
    drop_all(admin)
t.exit()

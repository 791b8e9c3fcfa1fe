"""A SIGHUP that changes stream.naptime is logged and takes effect.

ALTER SYSTEM SET stream.naptime = '60s' and pg_reload_conf(): the server log says
'parameter "stream.naptime" changed to "60s"'; the worker wakes up for the SIGHUP,
runs a cycle and goes to sleep.  It is asleep on the long nap once pg_stat_activity
shows it waiting (wait_event 'Extension') with the same state_change twice, a second
apart: on a 200 ms nap it would have run a cycle (and changed state) in between.
Then a topic with retention '1 s' gets two closed segments, and they become due;
three seconds later, during which a 200 ms worker would have run about fifteen
cycles, they are still there and the worker's state_change has not moved.  Setting
the nap time back to 200ms (logged too) wakes the worker, which drops them, and
afterwards two witness cycles complete well within the 60 s the old nap time would
have needed.
"""
import time

from lib import TAP, pg_log_since
from ret_util import (WORKER, Witness, create_topic, due, eventually, fill_segments, finish, log_offset,
                      log_start, now, segments, set_naptime, start)

TOPIC, W_TOPIC = "ret_nap", "ret_nap_w"

t = TAP()
admin = start()
witness = Witness(admin, W_TOPIC)


def worker_state():
    return tuple(admin.execute("SELECT pid, state_change, wait_event FROM pg_stat_activity WHERE backend_type = %s",
                               (WORKER,)).fetchone() or (None, None, None))


try:
    log0 = log_offset()
    t0 = now(admin)
    set_naptime(admin, "60s")
    t.ok(eventually(lambda: 'parameter "stream.naptime" changed to "60s"' in pg_log_since(log0), 30),
         'the server log says: parameter "stream.naptime" changed to "60s"')

    def asleep():
        """The worker's state when it sleeps on a nap longer than a second, else None."""
        pid, changed, event = worker_state()
        if event != "Extension" or changed is None or changed <= t0:
            return None
        time.sleep(1)       # an observation window, not a wait for an event
        return (pid, changed, event) if worker_state() == (pid, changed, event) else None
    sleeping = eventually(asleep, 30)
    t.ok(sleeping, "the worker ran a cycle after the reload and sleeps: no activity for a second")

    create_topic(admin, TOPIC, retention="1 s")
    nxt, _ = fill_segments(admin, TOPIC, 2)
    segs = segments(admin, TOPIC)
    t.ok(eventually(lambda: due(admin, TOPIC, segs[1][0], "1 s"), 30), "two closed segments become due")
    time.sleep(3)           # the observation window: a 200 ms worker would run ~15 cycles here
    t.is_([s[0] for s in segments(admin, TOPIC)], [s[0] for s in segs],
          "three seconds later nothing was removed")
    t.is_(worker_state(), sleeping, "the worker did not run a cycle: it sleeps for 60 s now")

    log1 = log_offset()
    set_naptime(admin, "200ms")
    t.ok(eventually(lambda: 'parameter "stream.naptime" changed to "200ms"' in pg_log_since(log1), 30),
         'the server log says: parameter "stream.naptime" changed to "200ms"')
    t.ok(eventually(lambda: log_start(admin, TOPIC) == 20, 30), "the worker wakes up and drops both segments")
    w0 = time.monotonic()
    witness.cycle_mark(timeout=20)
    witness.cycle_mark(timeout=20)
    t.ok(True, "two more witness cycles completed in %.1f s: the worker no longer sleeps 60 s"
         % (time.monotonic() - w0))
    t.is_(worker_state()[0], sleeping[0], "the same worker process throughout")
finally:
    witness.drop()
    finish(admin, [TOPIC])
t.exit()

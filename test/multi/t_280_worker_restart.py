"""A terminated retention worker is restarted by the postmaster and goes on working.

pg_terminate_backend() ends the worker; the postmaster logs its exit and starts a
new one after bgw_restart_time (10 s): a new pid appears in pg_stat_activity with
backend_type 'stream retention worker' within a bounded 30 s, the server log says
'stream retention worker started in database "postgres"', and the new worker drops
the expired segment of a topic created while no worker was running.
"""
import re

from lib import TAP, pg_log_since
from ret_util import (WORKER, create_topic, eventually, fill_segments, finish, log_offset, log_start,
                      segments, start, worker_pid)

TOPIC = "ret_restart"

t = TAP()
admin = start()
try:
    pid0 = worker_pid(admin)
    t.ok(pid0, "the worker runs (pid %s)" % pid0)
    log0 = log_offset()
    t.is_(admin.execute("SELECT pg_terminate_backend(%s)", (pid0,)).fetchone()[0], True,
          "pg_terminate_backend() of the worker")
    t.ok(eventually(lambda: worker_pid(admin) != pid0, 30), "it leaves pg_stat_activity")
    # meanwhile (no worker, or already a new one) a topic gets an expiring segment
    create_topic(admin, TOPIC, retention="1 s")
    fill_segments(admin, TOPIC, 1)
    pid1 = eventually(lambda: (worker_pid(admin) or 0) not in (0, pid0) and worker_pid(admin), 30)
    t.ok(pid1, "a new worker appears within 30 s (pid %s)" % pid1)
    log = pg_log_since(log0)
    t.ok(re.search(r'background worker "%s" \(PID %d\) exited with exit code 1' % (WORKER, pid0), log),
         "the server log shows the old worker's exit")
    t.ok(re.search(r'\[%d\] LOG:  stream retention worker started in database "postgres"' % pid1, log)
         or eventually(lambda: re.search(r'\[%d\] LOG:  stream retention worker started in database "postgres"'
                                         % pid1, pg_log_since(log0)), 10),
         'and the new one\'s "stream retention worker started in database "postgres""')
    t.ok(eventually(lambda: log_start(admin, TOPIC) == 10, 30),
         "the new worker drops the expired segment of a topic created meanwhile")
    t.is_(len(segments(admin, TOPIC)), 1, "one segment left")
finally:
    finish(admin, [TOPIC])
t.exit()

"""Self-test of lib.py: two sessions reach the test database and are distinct."""
from lib import TAP, backend_pid, connect, pg_log_path, wait_until
import os

t = TAP()
a, b = connect(), connect()
t.is_(a.execute("SELECT 1").fetchone()[0], 1, "session a runs SELECT 1")
t.is_(b.execute("SELECT current_database()").fetchone()[0],
      os.environ.get("STREAM_TEST_DB", "stream_multi"), "session b is in the test database")
t.ok(backend_pid(a) != backend_pid(b), "the two sessions have different backend pids")
t.is_(backend_pid(a), a.execute("SELECT pg_backend_pid()").fetchone()[0],
      "backend_pid matches pg_backend_pid()")
t.ok(os.path.isfile(pg_log_path()), "the server log exists at STREAM_PGLOG")

# b sees a's session in pg_stat_activity, waited for with a bounded poll.
seen = wait_until(lambda: b.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                    (backend_pid(a),)).fetchone()[0], timeout=10)
t.is_(seen, 1, "session b sees session a in pg_stat_activity")
try:
    wait_until(lambda: False, timeout=0.2)
    t.ok(False, "wait_until raises on timeout")
except TimeoutError:
    t.ok(True, "wait_until raises on timeout")
t.exit()

"""Helpers for multi-session tests, which print TAP and run under prove.

scripts/test.sh runs each test/multi/t_*.py with /usr/bin/python3 (Debian's psycopg 3)
against the private cluster, in database stream_multi where the extension is created.
A test is a plain script:

    from lib import TAP, connect, wait_until

    t = TAP()
    a, b = connect(), connect()
    t.is_(a.execute("SELECT 1").fetchone()[0], 1, "session a answers")
    t.exit()    # prints the plan; exits non-zero when a test failed

An exception ends the script before the plan is printed, which prove reports as a
failure. Sessions are ordered with locks or bounded waits (wait_until), never sleeps.
"""
import os
import pwd
import subprocess
import sys
import time

import psycopg


def connect(dbname=None, autocommit=True, **kwargs):
    """Open a session; PGHOST, PGPORT and PGUSER come from the environment."""
    kwargs.setdefault("application_name", os.path.basename(sys.argv[0]))
    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(
        dbname=dbname or os.environ.get("STREAM_TEST_DB", "stream_multi"),
        autocommit=autocommit,
        **kwargs,
    )


def backend_pid(conn):
    """Return the server process id of a session."""
    return conn.info.backend_pid


def wait_until(fn, timeout=30, interval=0.05, what=None):
    """Call fn until it returns a true value, and return that; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what or fn))
        time.sleep(interval)


def pg_log_path():
    """Return the path of the server log (STREAM_PGLOG, set by scripts/lib.sh)."""
    try:
        return os.environ["STREAM_PGLOG"]
    except KeyError:
        raise RuntimeError("STREAM_PGLOG is not set: run tests through scripts/test.sh") from None


def pg_log_since(offset):
    """Return the server log written after byte offset (see os.path.getsize)."""
    with open(pg_log_path(), "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def pg_ctl(*args):
    """Run pg_ctl on the test cluster as postgres, e.g. pg_ctl("restart", "-m", "immediate")."""
    cmd = [os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_ctl"),
           "-D", os.environ["STREAM_PGDATA"], "-l", pg_log_path(), "-w", *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    elif pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        cmd = ["sudo", "-n", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, cwd="/", stdout=subprocess.DEVNULL)


def kafka_node_id(conn):
    """The broker node id the Kafka listener reports: stream.kafka_node_id, or by default
    the server's timeline (1 on a cluster that was never promoted)."""
    return conn.execute(
        "SELECT CASE WHEN current_setting('stream.kafka_node_id')::int >= 0"
        " THEN current_setting('stream.kafka_node_id')::int"
        " ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END").fetchone()[0]


class TAP:
    """A TAP producer: ok/is_ print one test line each, exit() prints the plan."""

    def __init__(self):
        self.count = 0
        self.failed = 0

    def ok(self, cond, name=""):
        self.count += 1
        if not cond:
            self.failed += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.count, name), flush=True)
        if not cond:
            caller = sys._getframe(1)
            if caller.f_code.co_name == "is_":
                caller = caller.f_back
            self.diag("Failed test '%s' at %s line %d."
                      % (name, caller.f_code.co_filename, caller.f_lineno))
        return bool(cond)

    def is_(self, got, expected, name=""):
        if self.ok(got == expected, name):
            return True
        self.diag("     got: %r" % (got,))
        self.diag("expected: %r" % (expected,))
        return False

    def diag(self, message):
        for line in str(message).splitlines() or [""]:
            print("# " + line, flush=True)

    def skip_all(self, reason):
        print("1..0 # SKIP " + reason, flush=True)
        sys.exit(0)

    def exit(self):
        print("1..%d" % self.count, flush=True)
        sys.exit(1 if self.failed or not self.count else 0)

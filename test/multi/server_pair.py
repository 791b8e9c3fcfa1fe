"""A private primary/standby pair for the failover tests (t_920, t_925): servers run
as the postgres user in a temporary directory, on free ports, apart from the test
cluster.

    pair = ServerPair("stream-failover.", "t_920_failover")
    primary, standby = pair.node("primary", port), pair.node("standby", port2)
    pair.init_primary(primary, ["stream.database = 'postgres'"])    # initdb, settings, start
    ...                                                             # e.g. CREATE EXTENSION
    pair.add_standby(standby, primary, timeout=30)    # pg_basebackup -R, start, synchronous
    ...
    pair.cleanup()       # immediate stop of whatever runs, then remove the directory
"""
import os
import pwd
import time
import shutil
import signal
import socket
import subprocess
import tempfile

import psycopg

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def as_pg(*cmd):
    """Run a server program as the postgres user; raise with its output on failure."""
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    elif pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        cmd = ("sudo", "-n", "-u", "postgres", "--") + cmd
    r = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), r.stdout))
    return r.stdout


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_ports(n, port=None):
    """n free TCP ports from port on (default: STREAM_FAILOVER_PORT, or PGPORT + 1)."""
    if port is None:
        port = int(os.environ.get("STREAM_FAILOVER_PORT") or int(os.environ.get("PGPORT", 5499)) + 1)
    ports = []
    while len(ports) < n:
        if port_free(port):
            ports.append(port)
        port += 1
    return ports


class Node:
    """One server of the pair, in <dir>/<name>, logging to <dir>/<name>.log."""

    def __init__(self, pair, name, port, **extra):
        self.name, self.port = name, port
        self.app = pair.app
        self.data = os.path.join(pair.dir, name)
        self.log = os.path.join(pair.dir, name + ".log")
        for k, v in extra.items():
            setattr(self, k, v)

    def pg_ctl(self, *args):
        as_pg(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", *args)

    def connect(self, autocommit=True):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=autocommit, connect_timeout=10, application_name=self.app)

    def query(self, sql, args=None):
        with self.connect() as c:
            cur = c.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def log_tail(self, n=15):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class ServerPair:
    """A temporary directory owned by postgres, the nodes made in it, and their cleanup;
    SIGTERM and SIGINT end the test through SystemExit, so that cleanup runs."""

    def __init__(self, prefix, app):
        self.app = app
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.nodes = []
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    @staticmethod
    def _on_signal(signum, frame):
        raise SystemExit("killed by signal %d" % signum)

    def node(self, name, port, **extra):
        n = Node(self, name, port, **extra)
        self.nodes.append(n)
        return n

    def cleanup(self):
        for n in reversed(self.nodes):
            if os.path.exists(os.path.join(n.data, "postmaster.pid")):
                try:
                    n.pg_ctl("stop", "-m", "immediate")
                except Exception:  # noqa: BLE001 - best effort
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def init_primary(self, node, settings=()):
        """initdb node with streaming replication and the extension preloaded, then start it."""
        as_pg(os.path.join(PG_BIN, "initdb"), "-D", node.data, "-A", "trust", "-U", "postgres",
              "--encoding", "UTF8", "--locale", "C", "--no-sync")
        with open(os.path.join(node.data, "postgresql.conf"), "a") as f:
            f.write("\n".join([
                "port = %d" % node.port,
                "listen_addresses = '127.0.0.1'",
                "unix_socket_directories = '%s'" % self.dir,
                "shared_preload_libraries = 'stream'",
                "wal_level = replica",
                "max_wal_senders = 4",
                "hot_standby = on",
                "max_connections = 30",
                "log_line_prefix = '%m [%p] '",
                *settings,
                ""]))
        node.pg_ctl("start")

    def add_standby(self, node, primary, settings=(), timeout=30):
        """Clone primary into node (pg_basebackup -R), start it as the synchronous
        standby 'standby1', and wait until the primary reports it synchronous."""
        as_pg(os.path.join(PG_BIN, "pg_basebackup"), "-D", node.data, "-R", "-X", "stream",
              "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "--no-sync",
              "--checkpoint=fast")
        with open(os.path.join(node.data, "postgresql.conf"), "a") as f:
            f.write("\n".join(["port = %d" % node.port, *settings, ""]))
        with open(os.path.join(node.data, "postgresql.auto.conf"), "a") as f:
            f.write("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'\n"
                    % primary.port)
        node.pg_ctl("start")
        primary.query("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        primary.query("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while primary.query("SELECT sync_state FROM pg_stat_replication "
                            "WHERE application_name = 'standby1'") != [("sync",)]:
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not become synchronous in %s s" % timeout)
            time.sleep(0.05)

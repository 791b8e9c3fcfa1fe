#!/usr/bin/python3
"""Fuzz the SQL surface of the stream extension; prints TAP.

Calls every public function of the extension (pg_proc in schema stream, names not
starting with '_', no trigger functions), plus the trigger stream.publish_trigger()
through INSERT/UPDATE/DELETE on a table, with random and malformed arguments:
NULLs, empty and huge (1 MB) strings, negative and huge numbers, odd Unicode,
over-long and injection-shaped names, invalid jsonb/bytea/array text, wrong types
as text literals with explicit casts, intervals, timestamps, arrays with NULLs, of
mismatched lengths, more than one dimension or other lower bounds.  Calls use
positional or named notation and sometimes leave out defaulted arguments.

First, deterministically, every ordered pair of consumer-group calls (poll, commit,
commit of one offset, seek, reset to earliest, reset to a time, leave) runs in one
transaction, committed or rolled back, by a session that was or was not a member of
the group before, followed by leave.  Then the random calls:

Each call runs in its own transaction (committed or rolled back, sometimes READ ONLY,
REPEATABLE READ or SERIALIZABLE, sometimes as an ordinary role), or in a savepoint of
a transaction holding several calls (which may end in COMMIT, ROLLBACK or PREPARE
TRANSACTION followed by COMMIT/ROLLBACK PREPARED).  Two sessions take turns.

Every call must succeed or fail with a proper SQLSTATE.  The run fails on XX000
(internal_error), XX001/XX002 (data or index corruption), any class XX or 58 error,
a lost connection, a WARNING from the server (leaked resources, lock bookkeeping: the
extension itself raises none), a PANIC, failed assertion (TRAP)
or "terminated by signal" in the server log written during the run (STREAM_PGLOG,
read from the byte offset at start), rows from stream.verify() (before and after
cleanup), or a canary table an injection could have dropped going missing.

Environment:
  FUZZ_SEED       random seed (default 42); printed, so a run can be repeated
  FUZZ_CALLS      number of calls (default 3000)
  FUZZ_DB         database (default STREAM_TEST_DB, then PGDATABASE, then stream_fuzz);
                  created with the extension when it does not exist
  STREAM_PGLOG    server log to scan (skipped with a note when unset)
  FUZZ_QUIET_LOG  1 (default): the fuzz sessions do not log their (expected) errors,
                  SET log_min_messages = fatal; 0 keeps the server's setting
  PGHOST, PGPORT, PGUSER: the connection, as for libpq (a superuser)
"""
import collections
import os
import random
import re
import sys
import time

import psycopg
from psycopg import sql

FAIL_STATES = {"XX000", "XX001", "XX002"}
FAIL_CLASSES = {"XX", "58"}
LOG_PATTERN = re.compile(r"(^|\] )(PANIC|TRAP):|terminated by signal [0-9]+", re.M)
ROLE = "fz_role"   # made per database in Fuzzer()
BASE_TOPICS = [  # name, partitions, value type, segment_bytes, max_message_bytes
    ("fz_j", 3, "jsonb", 8192, 1048576),
    ("fz_t", 1, "text", 65536, 1048576),
    ("fz_b", 2, "bytea", 8192, 1048576),
    ("fz_small", 2, "jsonb", 67108864, 100),
]
DYNAMIC_TOPICS = ["fz_d%d" % i for i in range(6)] + ["fz.odd-name_", "fz-" + "x" * 197]
GROUPS = ["fz_g1", "fz_g2", "fz_g3", "fz.g-4", "fz_" + "g" * 197]
MB = 1024 * 1024


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name), flush=True)
        return cond

    @staticmethod
    def diag(msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed or not self.n else 0


def short(v, limit=120):
    """A value as shown in reports: huge ones abbreviated."""
    if v is None:
        return "NULL"
    r = repr(v)
    if len(r) > limit:
        return "%s...(%d chars)" % (r[: limit // 2], len(v))
    return r


def array_literal(items, dims=1):
    """A PostgreSQL array literal of text items (None is NULL)."""
    def el(x):
        if x is None:
            return "NULL"
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if dims == 2:
        half = max(1, len(items) // 2)
        rows = [items[:half], items[half:2 * half]]
        if len(rows[1]) != len(rows[0]):
            rows[1] = rows[0]
        return "{" + ",".join("{" + ",".join(el(x) for x in row) + "}" for row in rows) + "}"
    return "{" + ",".join(el(x) for x in items) + "}"


class Gen:
    """Argument generators; all values are text literals (or None) cast in SQL."""

    ODD_CHARS = [0x1, 0x7, 0x1b, 0x7f, 0x80, 0x9f, 0xa0, 0xad, 0x300, 0x34f, 0x200b, 0x200d,
                 0x202e, 0x2028, 0x2029, 0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff, 0x1d11e,
                 0x1f525, 0x1f469, 0xe0001, 0x10fffd, 0x10ffff]
    INJECTIONS = ["t; DROP TABLE fz_canary", "x'; DROP TABLE fz_canary; --", "a''b", 'x"y',
                  "$$", "$$; DROP TABLE fz_canary; $$", "%I", "%s", "%L%1$s", "\\", "'", '"',
                  ") OR 1=1 --", "fz_j' OR '1'='1", "fz_j;", "fz_j\n", " fz_j", "FZ_J",
                  "pg_catalog.pg_class", "stream._topics", "seg_1"]

    def __init__(self, rng):
        self.r = rng
        self.small = False   # no huge values (elements of big arrays)

    def chance(self, p):
        return self.r.random() < p

    # -- text ---------------------------------------------------------------
    def unicode(self, n=None):
        n = n or self.r.randint(1, 20)
        out = []
        for _ in range(n):
            k = self.r.random()
            if k < 0.4:
                out.append(chr(self.r.choice(self.ODD_CHARS)))
            elif k < 0.7:
                c = self.r.randint(0x80, 0x10FFFF)
                if 0xD800 <= c <= 0xDFFF:
                    c = 0xFFFD
                out.append(chr(c))
            else:
                out.append(chr(self.r.randint(0x20, 0x7E)))
        return "".join(out)

    def huge(self):
        if self.small:
            return "h" * 100
        k = self.r.random()
        size = self.r.choice([MB, MB - 64, MB + 1, 2 * MB, 100 * 1024])
        if k < 0.5:
            return "x" * size
        if k < 0.8:
            return ("é" * (size // 2))
        return "".join(chr(0x41 + (i * 7919) % 26) for i in range(size // 64)) * 64

    def text(self):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.12:
            return ""
        if k < 0.35:
            return "".join(chr(self.r.randint(0x21, 0x7E)) for _ in range(self.r.randint(1, 30)))
        if k < 0.55:
            return self.unicode()
        if k < 0.70:
            return self.r.choice(self.INJECTIONS)
        if k < 0.78:
            return self.r.choice(["a" * 200, "a" * 201, "." * 200, "a" * 10000])
        if k < 0.80:
            return self.huge()
        return self.r.choice(["a", "key", "0", "-1", "null", "NULL", "true", "1e400",
                              "earliest", "latest", "publish", "consume", "admin", "any"])

    def name(self, pool):
        """A topic or group name: mostly from the pool, else anything."""
        k = self.r.random()
        if k < 0.75:
            return self.r.choice(pool)
        if k < 0.80:
            return None
        if k < 0.85:
            n = self.r.choice(pool)
            return self.r.choice([n.upper(), n + " ", n + "\n", n[:-1], n + "x", n * 2,
                                  n + "." + "y" * 200])
        return self.text()

    # -- numbers ------------------------------------------------------------
    BAD_NUMBERS = ["", " ", "abc", "1.5", "1e3", "0x10", "NaN", "Infinity", "--1", "1 2",
                   "٣", "１", "99999999999999999999999999"]

    def int4(self, small=(0, 5)):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.70:
            return str(self.r.randint(*small))
        if k < 0.90:
            return str(self.r.choice([-1, 0, 1, -2147483648, 2147483647, 2147483646,
                                      10000, 10001, 65535, 65536, 1048576, 1073741823,
                                      1073741824, -1000]))
        if k < 0.95:
            return str(self.r.choice([2147483648, -2147483649, 2 ** 63]))
        return self.r.choice(self.BAD_NUMBERS)

    def int8(self, small=(0, 60)):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.70:
            return str(self.r.randint(*small))
        if k < 0.92:
            return str(self.r.choice([-1, 0, 1, 2 ** 31, 2 ** 32, 2 ** 62, 2 ** 63 - 1,
                                      -(2 ** 63), 8191, 8192, 67108864, 10 ** 12]))
        if k < 0.96:
            return str(self.r.choice([2 ** 63, -(2 ** 63) - 1, 10 ** 30]))
        return self.r.choice(self.BAD_NUMBERS)

    def boolean(self):
        return self.r.choice([None, "true", "false", "t", "f", "yes", "maybe", ""])

    def interval(self, wait=False):
        k = self.r.random()
        if k < 0.05:
            return None
        if wait:
            if k < 0.80:
                return "0"
            if k < 0.95:
                return self.r.choice(["1 ms", "5 ms", "20 ms", "-1 s", "-1 day", "0.0001 ms",
                                      "00:00:00.01", "P0D", "1 microsecond"])
            if k < 0.997:
                return self.r.choice(["abc", "", "1 fortnight", "100000000 years", "1e400 s",
                                      "infinity", "-178000000 years"])
            return self.r.choice(["10 s", "1 day", "178000000 years", "2147483647 days"])
        if k < 0.75:
            return self.r.choice(["1 day", "1 ms", "7 days", "1 hour", "-1", "-1 day", "0",
                                  "0 s", "1 microsecond", "100 years", "-00:00:00.000001"])
        if k < 0.90:
            return self.r.choice(["178000000 years", "-178000000 years", "2147483647 days",
                                  "2147483647 months", "P1Y2M3DT4H5M6S", "1 mon -30 days"])
        return self.r.choice(["abc", "", "1 fortnight", "100000000000 years", "infinity",
                              "1e400 s", "@ 1 minute ago"])

    def timestamptz(self):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.70:
            return self.r.choice(["now", "today", "yesterday", "tomorrow", "epoch",
                                  "-infinity", "infinity", "2000-01-01 00:00:00+00",
                                  "4713-01-01 00:00:00+00 BC", "294276-12-31 23:59:59+00"])
        if k < 0.85:
            return "20%02d-%02d-%02d %02d:%02d:%02d+%02d" % (
                self.r.randint(0, 99), self.r.randint(1, 12), self.r.randint(1, 28),
                self.r.randint(0, 23), self.r.randint(0, 59), self.r.randint(0, 59),
                self.r.randint(0, 14))
        return self.r.choice(["abc", "", "2020-13-01", "294277-01-01", "4714-11-23 BC",
                              "allballs", "2020-02-30", "1e400"])

    # -- jsonb --------------------------------------------------------------
    def json_value(self, depth=0):
        k = self.r.random()
        if depth > 3 or k < 0.3:
            return self.r.choice(['1', '-0', '1e400', '3.14', 'true', 'null', '"s"', '""',
                                  '"\\u00e9"', '"\\ud83d\\ude00"', '123456789012345678901234567890',
                                  '"%s"' % "q" * 3])
        if k < 0.65:
            return "[" + ", ".join(self.json_value(depth + 1)
                                   for _ in range(self.r.randint(0, 4))) + "]"
        return "{" + ", ".join('"k%d": %s' % (i, self.json_value(depth + 1))
                               for i in range(self.r.randint(0, 4))) + "}"

    def jsonb(self):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.70:
            return self.json_value()
        if k < 0.85:
            return self.r.choice(["{", "}", '{"a":}', "{'a': 1}", "NaN", "undefined", "",
                                  " ", "[1,]", '{"a": 1, "a": 2}', '"\\u0000"', '"\\ud800"',
                                  '"\\x41"', "01", "+1", ".5", "1.", "tru", '{"a" 1}',
                                  "[" * 5000 + "]" * 5000, "[" * 100 + "]" * 99])
        if k < 0.95 or self.small:
            return '{"big": "%s"}' % ("b" * self.r.choice([100, 1000, 10000]))
        if k < 0.98:
            return '"%s"' % ("x" * self.r.choice([MB - 100, MB, MB + 100]))
        return "[" * 20000 + "]" * 20000

    def headers(self):
        k = self.r.random()
        if k < 0.5:
            return None
        if k < 0.8:
            return self.r.choice(['{}', '{"trace": "abc"}', '{"n": 1, "nested": {"a": [1]}}'])
        return self.jsonb()

    # -- bytea --------------------------------------------------------------
    def bytea(self):
        k = self.r.random()
        if k < 0.05:
            return None
        if k < 0.70:
            return "\\x" + "".join("%02x" % self.r.randint(0, 255)
                                   for _ in range(self.r.randint(0, 40)))
        if k < 0.85:
            return self.r.choice(["\\x", "\\x0", "\\xzz", "\\xDEADBEEF", "abc", "\\\\", "\\001",
                                  "\\400", "\\", "a\\b", "\\x 00", "\\x00", "é"])
        if self.small:
            return "\\x" + "ab" * 100
        return "\\x" + "ab" * self.r.choice([100, 10000, MB // 2 - 32, MB // 2, MB // 2 + 1])

    # -- arrays -------------------------------------------------------------
    def array(self, elem, n=None):
        """An array literal of elem() values, or a malformed one."""
        k = self.r.random()
        if k < 0.04:
            return None
        if k < 0.08:
            return self.r.choice(["{", "{a", "{{1},{1,2}}", "a", "", "{NULL", '{"}',
                                  "[2:1]={}", "[1:2]={a}", "{{}}"])
        if n is None:
            n = self.r.choice([0, 1, 1, 2, 3, 5, 10, 20, 100] + ([1000] if self.chance(0.05) else []))
        self.small = n > 20
        try:
            items = [None if self.chance(0.1) else elem() for _ in range(n)]
        finally:
            self.small = False
        lit = array_literal(items, dims=2 if self.chance(0.03) else 1)
        if self.chance(0.03) and n > 0:
            lit = "[0:%d]=" % (n - 1) + array_literal(items)
        return lit


class Call:
    def __init__(self, label, query, params):
        self.label = label
        self.query = query
        self.params = params


class Fuzzer:
    def __init__(self, seed, ncalls, dbname, log_path, quiet_log=True):
        global ROLE
        ROLE = ("fz_role_" + re.sub(r"[^a-z0-9_]", "_", dbname.lower()))[:63]   # roles are cluster-wide
        self.seed = seed
        self.ncalls = ncalls
        self.dbname = dbname
        self.log_path = log_path
        self.quiet_log = quiet_log
        self.rng = random.Random(seed)
        self.gen = Gen(self.rng)
        self.counts = collections.defaultdict(collections.Counter)   # label -> sqlstate -> n
        self.states = collections.Counter()
        self.failures = []        # (call index, label, sqlstate, message, query, params)
        self.lost = []
        self.warnings = collections.Counter()
        self.leaks = []
        self.slow = []
        self.calls_done = 0
        self.prepared_seq = 0
        self.warning_examples = []   # (message, statements of the transaction so far)
        self.xact_log = []

    # -- connections --------------------------------------------------------
    def connect(self, dbname=None, autocommit=False):
        conn = psycopg.connect(dbname=dbname or self.dbname, autocommit=autocommit,
                               application_name="stream-fuzz", connect_timeout=10)
        conn.add_notice_handler(self.on_notice)
        return conn

    def on_notice(self, diag):
        if diag.severity_nonlocalized in ("WARNING",):
            msg = diag.message_primary or ""
            key = msg[:100]
            self.warnings[key] += 1
            if self.warnings[key] <= 3:
                self.warning_examples.append((msg, list(self.xact_log)))
            # the extension raises no WARNING; the server's own (leaked resources,
            # "you don't own a lock") mean bookkeeping went wrong.  The one exception
            # is our COMMIT after PREPARE TRANSACTION.
            if msg != "there is no transaction in progress":
                self.leaks.append("%s (during %s)" % (
                    msg, self.xact_log[-1][1].label if self.xact_log else "?"))

    def session(self):
        conn = self.connect()
        with conn.transaction():
            conn.execute("SET statement_timeout = '4s'")
            conn.execute("SET lock_timeout = '4s'")
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            if self.quiet_log:
                conn.execute("SET log_min_messages = fatal")
        return conn

    def ensure_database(self):
        try:
            conn = self.connect(autocommit=True)
        except psycopg.OperationalError as e:
            if "does not exist" not in str(e):
                raise
            admin = self.connect(dbname="postgres", autocommit=True)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
            admin.close()
            conn = self.connect(autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS stream")
        return conn

    # -- setup --------------------------------------------------------------
    def setup(self, admin):
        admin.execute("SET client_min_messages = warning")
        for (gid,) in admin.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'fz\\_%%' "
                                    "AND database = current_database()").fetchall():
            admin.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(ROLE)))
        self.topics_before = {r[0] for r in admin.execute("SELECT topic FROM stream._topics")}
        for t in DYNAMIC_TOPICS + [b[0] for b in BASE_TOPICS]:
            admin.execute("SELECT stream.drop_topic(%s, true)", [t])
        self.topics_before = {r[0] for r in admin.execute("SELECT topic FROM stream._topics")}
        self.maintain(admin, truncate=True)
        admin.execute("DROP TABLE IF EXISTS fz_rows, fz_canary")
        admin.execute("CREATE TABLE fz_canary (i int)")
        admin.execute("INSERT INTO fz_canary VALUES (1)")
        admin.execute("CREATE TABLE fz_rows (id serial PRIMARY KEY, k text, j jsonb, b bytea, "
                      "n numeric, ts timestamptz)")
        for i, (topic, key, events) in enumerate([("fz_j", "k", "INSERT OR UPDATE OR DELETE"),
                                                  ("fz_t", "n", "INSERT OR UPDATE OR DELETE"),
                                                  ("fz_b", None, "INSERT OR DELETE"),
                                                  ("fz_small", "j", "UPDATE")]):
            args = [topic] + ([key] if key else [])
            admin.execute(sql.SQL("CREATE TRIGGER {} AFTER " + events + " ON fz_rows "
                                  "FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger({})").format(
                sql.Identifier("fz_trg%d" % i), sql.SQL(", ").join(sql.Literal(a) for a in args)))
        admin.execute(sql.SQL("GRANT ALL ON fz_rows, fz_rows_id_seq TO {}").format(sql.Identifier(ROLE)))
        self.functions = self.load_functions(admin)

    def maintain(self, admin, truncate=False):
        """Recreate base topics the fuzz dropped; keep storage bounded."""
        # topic -> messages + bytes / 1000: big topics are dropped and made again
        existing = {r[0]: r[1] for r in admin.execute(
            "SELECT t.topic, coalesce(sum(p.messages) + sum(p.bytes) / 1000, 0) FROM stream.topics t "
            "LEFT JOIN stream.partitions p USING (topic) GROUP BY t.topic")}
        for name, parts, vtype, seg, maxb in BASE_TOPICS:
            if truncate or existing.get(name, 0) > 20000:
                admin.execute("SELECT stream.drop_topic(%s, true)", [name])
                existing.pop(name, None)
            if name not in existing:
                admin.execute("SELECT stream.create_topic(%s, %s, value_type => %s::regtype, "
                              "segment_bytes => %s, max_message_bytes => %s)",
                              [name, parts, vtype, seg, maxb])
        for name in DYNAMIC_TOPICS:
            if existing.get(name, 0) > 20000:
                admin.execute("SELECT stream.drop_topic(%s, true)", [name])
        if not truncate:
            # TRUNCATE fires no row triggers (a DELETE would publish every row)
            admin.execute("TRUNCATE fz_rows")

    def load_functions(self, admin):
        rows = admin.execute("""
            SELECT p.proname, p.oid::regprocedure::text, p.pronargs, p.pronargdefaults,
                   coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[], '{}'),
                   ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY u(t, o)
                         ORDER BY o)
            FROM pg_proc p
            WHERE p.pronamespace = 'stream'::regnamespace AND p.proname !~ '^_'
              AND p.prorettype <> 'trigger'::regtype
            ORDER BY 2""").fetchall()
        funcs = []
        for proname, signature, nargs, ndefaults, argnames, argmodes, argtypes in rows:
            if argmodes:
                names = [n for n, m in zip(argnames, argmodes) if m in ("i", "b", "v")]
            else:
                names = list(argnames[:nargs])
            names += [None] * (nargs - len(names))
            funcs.append({"name": proname, "signature": signature.replace("stream.", ""),
                          "types": argtypes, "names": names, "ndefaults": ndefaults})
        return funcs

    # -- argument choice ----------------------------------------------------
    def topic_for(self, fn):
        """A plausible topic for fn: base topics of the right value type, or dynamic ones."""
        g = self.gen
        fname, types = fn["name"], fn["types"]
        if fname in ("create_topic", "drop_topic", "alter_topic") and g.chance(0.7):
            return g.r.choice(DYNAMIC_TOPICS)
        if fname.endswith("_bytea") or (len(types) > 1 and types[1] in ("bytea", "bytea[]")):
            return "fz_b" if g.chance(0.9) else g.r.choice(DYNAMIC_TOPICS)
        if fname in ("read", "poll") or (len(types) > 1 and types[1] in ("jsonb", "jsonb[]")):
            return g.r.choice(["fz_j", "fz_j", "fz_small", "fz_t"] + DYNAMIC_TOPICS[:2])
        return g.r.choice([b[0] for b in BASE_TOPICS] * 2 + DYNAMIC_TOPICS)

    def plausible(self, fn, argname, typ):
        """A value that fits the argument, so that calls get past the checks."""
        g = self.gen
        name = (argname or "").lower()
        if typ == "text":
            if name == "topic":
                return self.topic_for(fn)
            if name == "group":
                return g.r.choice(GROUPS[:3])
            if name == "privilege":
                return g.r.choice(["publish", "consume", "admin", "any"])
            if name == "to":
                return g.r.choice(["earliest", "latest"])
            if name == "value":
                return g.json_value()
            if name == "key":
                return g.r.choice([None, "k1", "k2", "k3", "k4", "key-%d" % g.r.randint(0, 99)])
            return g.r.choice(["k1", "abc", "", g.unicode(3)])
        if typ == "integer":
            if name == "partitions":
                return str(g.r.randint(1, 4))
            if name == "max_messages":
                return str(g.r.choice([1, 2, 10, 100, 1000]))
            if name == "max_message_bytes":
                return g.r.choice([None, "1048576", "100", "200000"])
            if name == "partition":
                return g.r.choice([None, "0", "0", "1", "2"]) if fn["name"] == "publish" else \
                    g.r.choice(["0", "0", "1", "2"])
            return str(g.r.randint(0, 10))
        if typ == "bigint":
            if name == "segment_bytes":
                return g.r.choice([None, "8192", "65536", "67108864"])
            if name == "retention_bytes":
                return g.r.choice([None, "-1", "1000000"])
            return str(g.r.randint(0, 20))
        if typ == "interval":
            return "0" if name == "wait" else g.r.choice([None, "1 day", "-1", "1 hour"])
        if typ == "timestamp with time zone":
            return g.r.choice(["now", "-infinity", "2000-01-01 00:00:00+00", "infinity"])
        if typ == "boolean":
            return g.r.choice(["true", "false"])
        if typ == "jsonb":
            return g.r.choice([None, "{}", '{"trace": "t1"}']) if name == "headers" else g.json_value()
        if typ == "bytea":
            return "\\x" + "".join("%02x" % g.r.randint(0, 255) for _ in range(g.r.randint(0, 16)))
        if typ == "regtype":
            return g.r.choice(["jsonb", "text", "bytea"])
        if typ == "regrole":
            return g.r.choice([ROLE, "postgres"])
        if typ in ("jsonb[]", "text[]", "bytea[]"):
            n = self.batch_n
            if name == "keys":
                return None if g.chance(0.3) else array_literal(
                    [g.r.choice([None, "k1", "k2", "k3", "k%d" % g.r.randint(0, 50)]) for _ in range(n)])
            if name == "headers":
                return None if g.chance(0.5) else array_literal(
                    [g.r.choice([None, "{}", '{"h": 1}']) for _ in range(n)])
            if typ == "bytea[]":
                return array_literal(["\\x%02x" % g.r.randint(0, 255) for _ in range(n)])
            return array_literal([g.json_value() for _ in range(n)])
        return g.text()

    def arg(self, fn, argname, typ):
        g = self.gen
        if not g.chance(self.p_bad):
            return self.plausible(fn, argname, typ)
        name = (argname or "").lower()
        if typ == "text":
            if name == "topic":
                return g.name([self.topic_for(fn)])
            if name == "group":
                return g.name(GROUPS)
            if name == "privilege":
                return g.r.choice(["publish", "consume", "admin", "any", "ADMIN", "Publish"]) \
                    if g.chance(0.8) else g.text()
            if name == "to":
                return g.r.choice(["earliest", "latest", "LATEST"]) if g.chance(0.8) else g.text()
            if name == "value":
                return g.r.choice([g.json_value, g.text, g.jsonb, g.bytea])()
            return g.text()
        if typ == "integer":
            if name in ("partitions",):
                return g.int4((1, 4))
            if name == "max_messages":
                return g.int4((1, 200))
            if name == "max_message_bytes":
                return g.r.choice([None, "100", "1048576", "1", "0", "-1", "1073741823",
                                   "1073741824", "200000"]) if g.chance(0.8) else g.int4()
            if name == "partition":
                return g.int4((0, 3))
            return g.int4()
        if typ == "bigint":
            if name == "segment_bytes":
                return g.r.choice([None, "8192", "8191", "65536", "67108864", "0", "-1",
                                   str(2 ** 63 - 1)]) if g.chance(0.8) else g.int8()
            if name == "retention_bytes":
                return g.r.choice([None, "-1", "0", "1", "100000", str(2 ** 63 - 1)]) \
                    if g.chance(0.8) else g.int8()
            return g.int8()
        if typ == "interval":
            return g.interval(wait=(name == "wait"))
        if typ == "timestamp with time zone":
            return g.timestamptz()
        if typ == "boolean":
            return g.boolean()
        if typ == "jsonb":
            return g.headers() if name == "headers" else g.jsonb()
        if typ == "bytea":
            return g.bytea()
        if typ == "regtype":
            return g.r.choice([None, "jsonb", "text", "bytea", "json", "integer", "regtype",
                               "text[]", "pg_catalog.bytea", "no_such_type", "jsonb; DROP TABLE fz_canary",
                               "", "\"jsonb\"", "varchar"])
        if typ == "regrole":
            return g.r.choice([None, ROLE, ROLE, "postgres", "stream_admin", "public",
                               "no_such_role", "", "\"fz_role\"", "-", "pg_read_all_data"])
        if typ == "jsonb[]":
            return g.array(g.headers if name == "headers" else g.jsonb, n=self.batch_n)
        if typ == "text[]":
            if name == "keys":
                n = self.batch_n if g.chance(0.8) else g.r.choice([0, 1, 7])
                return g.array(lambda: g.text() if g.chance(0.3) else g.r.choice(["k1", "k2", "k3"]), n=n)
            return g.array(lambda: g.r.choice([g.json_value, g.text, g.bytea])(), n=self.batch_n)
        if typ == "bytea[]":
            return g.array(g.bytea, n=self.batch_n)
        return g.text()

    WRONG_CASTS = ["integer", "text", "jsonb", "bytea", "bigint", "boolean", "interval",
                   "numeric", "json", "text[]", "name", "regclass", "\"char\""]

    def make_call(self, fn):
        g = self.gen
        self.batch_n = g.r.choice([0, 1, 2, 3, 5, 10, 50]) if g.chance(0.95) else g.r.choice([1000, 5000])
        # half of the calls are plausible (to get past the checks), the others hostile
        self.p_bad = 0.0 if g.chance(0.5) else g.r.choice([0.1, 0.3, 0.6, 1.0])
        types = fn["types"]
        n = len(types)
        omit = 0
        if fn["ndefaults"] and g.chance(0.3):
            omit = g.r.randint(1, fn["ndefaults"])
        named = g.chance(0.2) and all(fn["names"])
        idx = list(range(n - omit))
        if named:
            # named notation may leave out any defaulted argument, in any order
            first_default = n - fn["ndefaults"]
            idx = [i for i in range(n) if i < first_default or g.chance(0.6)]
            g.r.shuffle(idx)
        parts, params = [], []
        for i in idx:
            typ = types[i]
            cast = typ
            if g.chance(0.01):
                cast = g.r.choice(self.WRONG_CASTS)
            value = self.arg(fn, fn["names"][i], typ)
            if typ.endswith("[]") and cast == typ:
                expr = sql.SQL("{}::text[]::{}").format(sql.Placeholder(), sql.SQL(typ))
            else:
                expr = sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(cast))
            if named:
                expr = sql.SQL("{} => {}").format(sql.Identifier(fn["names"][i]), expr)
            parts.append(expr)
            params.append(value)
        query = sql.SQL("SELECT count(*) FROM stream.{}({}) AS r").format(
            sql.Identifier(fn["name"]), sql.SQL(", ").join(parts))
        return Call(fn["signature"], query, params)

    def make_trigger_call(self):
        g = self.gen
        k = g.r.random()
        if g.chance(0.6):
            vals = [g.r.choice([None, "k1", "k2", g.unicode(4)]), g.json_value(),
                    "\\x0102", str(g.r.randint(-5, 5)), "now"]
        else:
            vals = [g.text(), g.jsonb(), g.bytea(),
                    g.r.choice([None, "1", "-1.5", "1e100", "NaN", "abc", "123456789012345678901234567890"]),
                    g.timestamptz()]
        if k < 0.6:
            q = sql.SQL("INSERT INTO fz_rows (k, j, b, n, ts) VALUES "
                        "({}::text, {}::jsonb, {}::bytea, {}::numeric, {}::timestamptz)").format(
                *[sql.Placeholder()] * 5)
            return Call("publish_trigger() INSERT", q, vals)
        if k < 0.85:
            q = sql.SQL("UPDATE fz_rows SET k = {}::text, j = {}::jsonb WHERE id IN "
                        "(SELECT id FROM fz_rows ORDER BY id DESC LIMIT 3)").format(
                sql.Placeholder(), sql.Placeholder())
            return Call("publish_trigger() UPDATE", q, vals[:2])
        q = sql.SQL("DELETE FROM fz_rows WHERE id IN (SELECT id FROM fz_rows ORDER BY id LIMIT 2)")
        return Call("publish_trigger() DELETE", q, [])

    def pick_call(self):
        if self.gen.chance(0.07):
            return self.make_trigger_call()
        fn = self.rng.choice(self.functions)
        if fn["name"] == "verify" and not self.gen.chance(0.1):
            fn = self.rng.choice(self.functions)
        return self.make_call(fn)

    # -- execution ----------------------------------------------------------
    def record(self, i, call, state, msg):
        self.counts[call.label][state] += 1
        self.states[state] += 1
        if state in FAIL_STATES or state[:2] in FAIL_CLASSES:
            self.failures.append((i, call.label, state, msg, call.query, call.params))

    def execute(self, conn, i, call):
        """Run one call; return the SQLSTATE ('00000' on success) or None if the connection died."""
        t0 = time.monotonic()
        self.xact_log.append((id(conn), call))
        try:
            conn.execute(call.query, call.params)
            state, msg = "00000", None
        except psycopg.Error as e:
            state = e.sqlstate
            msg = e.diag.message_primary if e.diag else str(e)
            if state is None:
                if conn.broken or conn.closed:
                    self.lost.append((i, call.label, str(e), call.query, call.params))
                    self.counts[call.label]["lost connection"] += 1
                    self.states["lost connection"] += 1
                    return None
                state = "client:" + type(e).__name__
        elapsed = time.monotonic() - t0
        if elapsed > 3:
            self.slow.append((elapsed, call.label, state, call.params))
        self.record(i, call, state, msg)
        return state

    def transaction(self, conn, first_index):
        """Run one transaction of 1 or more calls; returns how many calls ran, or None."""
        g = self.gen
        self.xact_log = []
        grouped = g.chance(0.2)
        ncalls = g.r.randint(2, 6) if grouped else 1
        ncalls = min(ncalls, self.ncalls - first_index)
        setup = []
        k = g.r.random()
        if k < 0.05:
            setup.append("SET TRANSACTION READ ONLY")
        elif k < 0.10:
            setup.append("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        elif k < 0.13:
            setup.append("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        if g.chance(0.1):
            setup.append("SET LOCAL ROLE %s" % ROLE)
        try:
            for s in setup:
                self.xact_log.append((id(conn), Call("setup", sql.SQL(s), [])))
                conn.execute(s)
        except psycopg.Error:
            conn.rollback()
        ran = 0
        for j in range(ncalls):
            call = self.pick_call()
            if grouped:
                try:
                    self.xact_log.append((id(conn), Call("SAVEPOINT fz", sql.SQL("SAVEPOINT fz"), [])))
                    conn.execute("SAVEPOINT fz")
                except psycopg.Error:
                    conn.rollback()
                    return ran or 1
            state = self.execute(conn, first_index + j, call)
            ran += 1
            if state is None:
                return None
            try:
                if grouped:
                    stmt = "ROLLBACK TO SAVEPOINT fz" if state != "00000" or g.chance(0.3) \
                        else "RELEASE SAVEPOINT fz"
                    self.xact_log.append((id(conn), Call(stmt, sql.SQL(stmt), [])))
                    conn.execute(stmt)
            except psycopg.Error:
                if conn.broken:
                    return None
                conn.rollback()
                return ran
            if not grouped and state != "00000":
                conn.rollback()
                return ran
        end = g.r.random()
        try:
            if end < 0.72:
                conn.commit()
            elif end < 0.95:
                conn.rollback()
            else:
                self.prepared_seq += 1
                gid = "fz_%d_%d" % (os.getpid(), self.prepared_seq)
                conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))
                conn.commit()  # the server ended the block: warns, no transaction in progress
                finish = "COMMIT PREPARED" if g.chance(0.5) else "ROLLBACK PREPARED"
                conn.autocommit = True
                try:
                    conn.execute(sql.SQL(finish + " {}").format(sql.Literal(gid)))
                finally:
                    conn.autocommit = False
        except psycopg.Error as e:
            if conn.broken or conn.closed:
                self.lost.append((first_index, "transaction end", str(e), None, None))
                return None
            self.record(first_index, Call("(transaction end)", None, None), e.sqlstate or "client", str(e))
            conn.rollback()
        return ran

    # every ordered pair of consumer-group calls in one transaction, committed or
    # rolled back, by a session that was or was not a member before, then leave
    GROUP_CALLS = [
        ("poll", "SELECT count(*) FROM stream.poll({g}, 'fz_j', 10)"),
        ("commit", "SELECT stream.commit({g}, 'fz_j')"),
        ("commit_offset", "SELECT stream.commit({g}, 'fz_j', 0, 0)"),
        ("seek", "SELECT stream.seek({g}, 'fz_j', 0, 0)"),
        ("reset", "SELECT stream.reset_offsets({g}, 'fz_j', 'earliest')"),
        ("reset_time", "SELECT stream.reset_offsets({g}, 'fz_j', '-infinity'::timestamptz)"),
        ("leave", "SELECT stream.leave({g}, 'fz_j')"),
    ]

    def sequences(self, conn):
        """Deterministic: the consumer-group calls pairwise in one transaction."""
        conn.execute("SELECT count(*) FROM stream.publish_batch('fz_j', "
                     "ARRAY['1', '2', '3', '4', '5', '6']::jsonb[], ARRAY['a', 'b', 'c', 'd', 'e', 'f'])")
        conn.commit()
        n = 0
        for member_before in (False, True):
            for a_name, a_sql in self.GROUP_CALLS:
                for b_name, b_sql in self.GROUP_CALLS:
                    for end in ("commit", "rollback"):
                        n += 1
                        group = sql.Literal("fz_seq%d" % n)
                        label = "sequence %s%s + %s, %s" % ("(member) " if member_before else "",
                                                           a_name, b_name, end)
                        self.xact_log = []
                        # the group exists (committed offsets); we may still be a member
                        for stmt in (self.GROUP_CALLS[0][1], self.GROUP_CALLS[1][1]) + \
                                (() if member_before else (self.GROUP_CALLS[6][1],)):
                            self.execute(conn, -n, Call("sequence setup", sql.SQL(stmt).format(g=group), []))
                            conn.commit()
                        for stmt in (a_sql, b_sql):
                            conn.execute("SAVEPOINT fz")
                            state = self.execute(conn, -n, Call(label, sql.SQL(stmt).format(g=group), []))
                            if state is None:
                                return
                            conn.execute("ROLLBACK TO SAVEPOINT fz" if state != "00000"
                                         else "RELEASE SAVEPOINT fz")
                        if end == "commit":
                            conn.commit()
                        else:
                            conn.rollback()
                        self.execute(conn, -n, Call(label + ", then leave",
                                                    sql.SQL(self.GROUP_CALLS[6][1]).format(g=group), []))
                        conn.commit()

    def run(self, tap):
        admin = self.ensure_database()
        self.setup(admin)
        tap.ok(len(self.functions) > 0,
               "found %d public functions of the extension in database %s"
               % (len(self.functions), self.dbname))
        tap.diag("functions: " + ", ".join(f["signature"] for f in self.functions))
        sessions = [self.session(), self.session()]
        t0 = time.monotonic()
        self.sequences(sessions[0])
        i = 0
        last_maintain = 0
        while i < self.ncalls:
            s = self.rng.randrange(len(sessions))
            ran = self.transaction(sessions[s], i)
            if ran is None:
                try:
                    sessions[s].close()
                except Exception:
                    pass
                sessions[s] = self.session()
                ran = 1
            i += ran
            if i - last_maintain >= 500:
                last_maintain = i
                try:
                    self.maintain(admin)
                except psycopg.Error as e:
                    self.record(i, Call("(maintenance)", None, None), e.sqlstate or "client", str(e))
            if i and i % 10000 < ran:
                tap.diag("%d calls, %.0f s" % (i, time.monotonic() - t0))
        self.calls_done = i
        self.elapsed = time.monotonic() - t0
        for s in sessions:
            s.close()
        return admin

    # -- report -------------------------------------------------------------
    def report(self, tap, admin, log_offset):
        tap.ok(self.calls_done >= self.ncalls,
               "ran %d calls in %.1f s (seed %d)" % (self.calls_done, self.elapsed, self.seed))
        # per function
        width = max([len(k) for k in self.counts if not k.startswith("sequence")] + [36])
        tap.diag("calls per function: total, ok, then failures by SQLSTATE")
        seq = collections.Counter()
        for label in sorted(self.counts):
            c = self.counts[label]
            if label.startswith("sequence"):
                seq.update(c)
                continue
            total = sum(c.values())
            fails = ", ".join("%s %d" % (s, n) for s, n in c.most_common() if s != "00000")
            tap.diag("  %-*s %6d %6d  %s" % (width, label, total, c.get("00000", 0), fails))
        if seq:
            tap.diag("  %-*s %6d %6d  %s" % (width, "(pairs of group calls, in sequences)", sum(seq.values()),
                                             seq.get("00000", 0), ", ".join(
                "%s %d" % kv for kv in seq.most_common() if kv[0] != "00000")))
        tap.diag("calls per SQLSTATE:")
        for state, n in sorted(self.states.items()):
            try:
                cname = psycopg.errors.lookup(state).__name__ if state[:1] != "c" else ""
            except (KeyError, TypeError):
                cname = ""
            if state == "00000":
                cname = "successful_completion"
            tap.diag("  %-16s %7d  %s" % (state, n, cname))
        called = {f["signature"] for f in self.functions} - set(self.counts)
        tap.ok(not called, "every public function was called")
        if called:
            tap.diag("never called: " + ", ".join(sorted(called)))
        never_ok = sorted(f["signature"] for f in self.functions
                          if self.counts[f["signature"]].get("00000", 0) == 0)
        if never_ok:
            tap.diag("note: never succeeded: " + ", ".join(never_ok))
        tap.ok(not self.failures, "no internal error (XX000, XX001, XX002, class XX or 58)")
        for i, label, state, msg, query, params in self.failures[:30]:
            tap.diag("call %d %s: %s %s" % (i, label, state, msg))
            if query is not None:
                tap.diag("  %s" % query.as_string(admin))
                tap.diag("  params: [%s]" % ", ".join(short(p) for p in params))
        tap.ok(not self.lost, "no lost connection")
        for i, label, err, query, params in self.lost[:30]:
            tap.diag("call %d %s: %s" % (i, label, err))
            if query is not None:
                tap.diag("  %s" % query.as_string(admin))
                tap.diag("  params: [%s]" % ", ".join(short(p) for p in params))
        tap.ok(not self.leaks, "no WARNING from the server (leaked resources, lock bookkeeping)")
        for w, n in collections.Counter(self.leaks).most_common(20):
            tap.diag("  %s x%d" % (w, n))
        if self.warnings:
            tap.diag("warnings seen: " + "; ".join("%s (%d)" % kv for kv in self.warnings.most_common(10)))
            for msg, log in self.warning_examples[:6]:
                tap.diag("  WARNING %s, in the transaction of:" % msg)
                for conn_id, call in log:
                    tap.diag("    [session %x] %s  params: [%s]" % (
                        conn_id % 0xffff, call.query.as_string(admin) if call.query is not None else call.label,
                        ", ".join(short(p, 60) for p in call.params or [])))
        if self.slow:
            tap.diag("calls slower than 3 s: %d, e.g. %s" % (
                len(self.slow), "; ".join("%s %.1fs %s" % (l, e, s) for e, l, s, _ in self.slow[:5])))
        # the canary an injection would have dropped
        canary = admin.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'fz_canary'").fetchone()[0]
        tap.ok(canary == 1 and admin.execute("SELECT count(*) FROM fz_canary").fetchone()[0] == 1,
               "canary table intact")
        # consistency with the fuzzed state
        problems = admin.execute("SELECT problem, detail FROM stream.verify()").fetchall()
        tap.ok(not problems, "stream.verify() returns no rows after the run")
        for p in problems[:30]:
            tap.diag("  %s: %s" % p)
        # cleanup: drop what the run created, then check again
        after = {r[0] for r in admin.execute("SELECT topic FROM stream._topics")}
        for t in sorted(after - self.topics_before):
            admin.execute("SELECT stream.drop_topic(%s)", [t])
        admin.execute("DROP TABLE IF EXISTS fz_rows, fz_canary")
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(ROLE)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))
        problems = admin.execute("SELECT problem, detail FROM stream.verify()").fetchall()
        left = admin.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'fz\\_%%'").fetchone()[0]
        tap.ok(not problems and left == 0,
               "cleanup: %d topics dropped, stream.verify() still returns no rows" % len(after - self.topics_before))
        for p in problems[:30]:
            tap.diag("  %s: %s" % p)
        # the server log written during the run
        if self.log_path:
            with open(self.log_path, "rb") as f:
                f.seek(log_offset)
                text = f.read().decode("utf-8", "replace")
            hits = [m.group(0) for m in LOG_PATTERN.finditer(text)]
            lines = [l for l in text.splitlines() if LOG_PATTERN.search(l)]
            tap.ok(not hits, "server log: no PANIC, TRAP or 'terminated by signal' (%d bytes read)"
                   % len(text.encode()))
            for l in lines[:30]:
                tap.diag("  " + l)
        else:
            tap.ok(True, "server log not scanned # SKIP STREAM_PGLOG is not set")


def main(default_calls=3000, default_seed=42):
    seed = int(os.environ.get("FUZZ_SEED", default_seed))
    ncalls = int(os.environ.get("FUZZ_CALLS", default_calls))
    dbname = (os.environ.get("FUZZ_DB") or os.environ.get("STREAM_TEST_DB")
              or os.environ.get("PGDATABASE") or "stream_fuzz")
    log_path = os.environ.get("STREAM_PGLOG")
    quiet = os.environ.get("FUZZ_QUIET_LOG", "1") != "0"
    log_offset = os.path.getsize(log_path) if log_path else 0
    tap = TAP()
    tap.diag("stream fuzz: seed %d, %d calls, database %s (FUZZ_SEED=%d FUZZ_CALLS=%d to repeat)"
             % (seed, ncalls, dbname, seed, ncalls))
    fz = Fuzzer(seed, ncalls, dbname, log_path, quiet)
    try:
        admin = fz.run(tap)
        fz.report(tap, admin, log_offset)
        admin.close()
    except Exception as e:  # the driver itself failed: report it as a failed test
        tap.ok(False, "fuzz driver error: %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        import traceback
        tap.diag(traceback.format_exc())
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())

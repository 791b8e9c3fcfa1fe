#!/usr/bin/python3
"""A consumer of the blog_published topic, as a user would run it.

    worker.py --group search  [--dsn DSN]   keeps blog_search (full-text index) in step
    worker.py --group counter [--dsn DSN]   keeps users.total_blogs in step

Run as many as you like per group: the group's partitions are shared among its live
workers, and when one dies the others take its partitions over on their next poll.

The loop is one transaction per batch:

    BEGIN
    SELECT ... FROM stream.poll(group, 'blog_published', 100, wait => '1 s')
    -- apply the batch to this group's table
    SELECT stream.commit(group, 'blog_published')
    COMMIT

so the group's write and its offset commit happen together or not at all: a worker
killed at any point leaves either both or neither, and whoever takes the partition over
starts exactly after the last committed batch (exactly-once effects). The poll waits on
the server until a publish commits to one of this worker's partitions; nothing sleeps
in a loop.

SIGINT or SIGTERM: finish the current transaction, give the partitions back
(stream.leave) and exit 0. A lost connection (server restart, network, a terminated
backend): reconnect with exponential backoff and resume from the committed offsets.

The connection comes from --dsn, else from the libpq environment (PGHOST, PGPORT,
PGUSER, PGDATABASE, ...). The worker needs a session of its own for as long as it runs
(a direct connection or session pooling, not transaction pooling): its partition
ownership lives in the session. Needs Debian's python3-psycopg (psycopg 3).
"""
import argparse
import logging
import os
import random
import signal
import sys
import threading
import time

import psycopg
from psycopg import errors

TOPIC = "blog_published"
log = logging.getLogger("worker")


# -- what each group does with a batch ----------------------------------------------

def apply_search(cur, messages):
    """Upsert the posts' text vectors, delete the deleted posts.

    One post's events are all in one partition (the key is its author), in the
    order of the changes, so the last event of a post in the batch is its state.
    """
    last = {}
    for m in messages:
        op, row = m["op"], m["new"] if m["op"] != "DELETE" else m["old"]
        last.pop(row["id"], None)           # keep the order of last events
        last[row["id"]] = (op, row)
    upserts = [row for op, row in last.values() if op != "DELETE"]
    deletes = [blog_id for blog_id, (op, _) in last.items() if op == "DELETE"]
    if upserts:
        cur.execute(
            """
            INSERT INTO blog_search (blog_id, author_id, title, document)
            SELECT id, author_id, title, to_tsvector('english', title || ' ' || body)
            FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[])
                 AS p(id, author_id, title, body)
            ON CONFLICT (blog_id) DO UPDATE
               SET author_id = excluded.author_id, title = excluded.title,
                   document = excluded.document
            """,
            ([r["id"] for r in upserts], [r["author_id"] for r in upserts],
             [r["title"] for r in upserts], [r["body"] for r in upserts]))
    if deletes:
        cur.execute("DELETE FROM blog_search WHERE blog_id = ANY(%s::bigint[])", (deletes,))


def apply_counter(cur, messages):
    """Add one to the author's total_blogs per new post, subtract one per deleted post."""
    delta = {}
    for m in messages:
        old, new = m["old"], m["new"]
        if old is not None:
            delta[old["author_id"]] = delta.get(old["author_id"], 0) - 1
        if new is not None:
            delta[new["author_id"]] = delta.get(new["author_id"], 0) + 1
    delta = {a: d for a, d in delta.items() if d != 0}    # an UPDATE in place is no change
    if delta:
        authors = sorted(delta)
        cur.execute(
            """
            UPDATE users u SET total_blogs = u.total_blogs + d.delta
            FROM unnest(%s::int[], %s::int[]) AS d(id, delta)
            WHERE u.id = d.id
            """,
            (authors, [delta[a] for a in authors]))


GROUPS = {"search": apply_search, "counter": apply_counter}


# -- the consumer loop ---------------------------------------------------------------

class Worker:
    def __init__(self, args):
        self.args = args
        self.apply = GROUPS[args.group]
        self.stopping = threading.Event()
        self.consumed = 0

    def request_stop(self, signum, _frame):
        if not self.stopping.is_set():
            log.info("%s: finishing the current batch, then leaving the group",
                     signal.Signals(signum).name)
        self.stopping.set()

    def report(self, line):
        """Machine-readable progress on stdout (--report), for examples/blog/story.py."""
        if self.args.report:
            print(line, flush=True)

    def connect(self):
        conn = psycopg.connect(self.args.dsn, autocommit=True,
                               application_name="blog-%s" % self.args.name)
        log.info("connected (backend pid %d)", conn.info.backend_pid)
        self.report("backend %d" % conn.info.backend_pid)
        return conn

    def consume(self, conn):
        """Poll, apply and commit batches until asked to stop."""
        group, batch, wait = self.args.group, self.args.batch, self.args.wait
        logged_at, logged = time.monotonic(), self.consumed
        while not self.stopping.is_set():
            try:
                with conn.transaction():
                    cur = conn.execute(
                        "SELECT partition, \"offset\", value"
                        " FROM stream.poll(%s, %s, %s, wait => %s::interval)",
                        (group, TOPIC, batch, wait))
                    rows = cur.fetchall()
                    events = [v for _, _, v in rows if v and v.get("table") == "blogs"]
                    if events:
                        self.apply(conn.cursor(), events)
                    # also after an empty poll: the position may have moved past
                    # offsets of rolled-back transactions, which return no message
                    conn.execute("SELECT stream.commit(%s, %s)", (group, TOPIC))
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:
                # the transaction rolled back and so did the positions: poll again
                log.warning("batch rolled back (%s), retrying", e.sqlstate)
                continue
            if rows:
                self.consumed += len(rows)
                self.report("committed %d" % len(rows))
            if time.monotonic() - logged_at >= 10 and self.consumed > logged:
                log.info("%d messages in the last %.0f s", self.consumed - logged,
                         time.monotonic() - logged_at)
                logged_at, logged = time.monotonic(), self.consumed

    def leave(self, conn):
        try:
            conn.execute("SELECT stream.leave(%s, %s)", (self.args.group, TOPIC))
            conn.close()
        except psycopg.OperationalError:
            pass    # the connection is gone, and with it the membership

    def run(self):
        backoff = 0.5
        while not self.stopping.is_set():
            conn = None
            try:
                conn = self.connect()
                backoff = 0.5
                self.consume(conn)
                self.leave(conn)
            except psycopg.OperationalError as e:
                if conn is not None:
                    conn.close()
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning("%s (%s); reconnecting in %.1f s",
                            "connection lost" if conn is not None else "cannot connect",
                            str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
                            delay)
                self.stopping.wait(delay)     # a signal ends the wait early
                backoff = min(backoff * 2, 10)
        log.info("stopped after %d messages", self.consumed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", required=True, choices=sorted(GROUPS),
                        help="consumer group: search or counter")
    parser.add_argument("--dsn", default="",
                        help="libpq connection string (default: the PG* environment)")
    parser.add_argument("--batch", type=int, default=100, help="messages per poll (100)")
    parser.add_argument("--wait", default="1 s", help="long-poll wait (1 s)")
    parser.add_argument("--name", default=None, help="name in logs and application_name")
    parser.add_argument("--report", action="store_true",
                        help="print progress lines on stdout (used by story.py)")
    args = parser.parse_args()
    args.name = args.name or "%s-%d" % (args.group, os.getpid())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s " + args.name + ": %(message)s")

    worker = Worker(args)
    signal.signal(signal.SIGINT, worker.request_stop)
    signal.signal(signal.SIGTERM, worker.request_stop)
    try:
        worker.run()
    except psycopg.Error as e:
        log.error("giving up: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

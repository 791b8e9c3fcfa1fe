#!/usr/bin/python3
"""The blog story, end to end (run it with examples/blog/run.sh).

1. Create the schema (schema.sql): users, blogs with a trigger that publishes every
   change to topic blog_published (4 partitions, keyed by author), blog_search.
2. Start 2 workers (worker.py) per consumer group: search and counter.
3. Publish posts from several concurrent writers: INSERTs of a few posts per
   transaction, some transactions rolled back on purpose, some UPDATEs and DELETEs.
4. Halfway, SIGKILL one worker and start a replacement.
5. Wait until both groups' lag is 0, stop the workers with SIGTERM.
6. Check that blog_search equals blogs (same ids, titles and text vectors) and that
   every author's total_blogs is the number of their posts: print "consistent" and
   exit 0, or print what differs and exit 1 (2 when the story could not run).

Settings (environment): BLOG_POSTS (20000), BLOG_WRITERS (4), BLOG_WORKERS (2 per
group), BLOG_AUTHORS (200), BLOG_ROLLBACK (0.1, the share of writer transactions rolled
back), BLOG_TIMEOUT (300 s to catch up), BLOG_SEED. The connection comes from the libpq
environment (PGHOST, PGPORT, PGUSER, PGDATABASE).
"""
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "blog_published"
GROUPS = ("search", "counter")

WORDS = """postgres stream kafka partition offset consumer group commit transaction
trigger index search vector replica backup vacuum query planner lock latch segment
retention publish subscribe event order key hash murmur worker signal reconnect lag
throughput latency durable crash recovery snapshot isolation tuple heap btree gin
json schema table column row insert update delete rollback savepoint""".split()


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        sys.exit("%s must be an integer" % name)


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        sys.exit("%s must be a number" % name)


def connect(**kw):
    return psycopg.connect(autocommit=True, application_name="blog-story", **kw)


def fmt(n):
    return "{:,}".format(int(n))


def check_tables(db):
    """Compare both groups' tables with blogs; return a list of differences."""
    problems = []
    diff = db.execute(
        """
        SELECT coalesce(b.id, s.blog_id),
               CASE WHEN s.blog_id IS NULL THEN 'missing from blog_search'
                    WHEN b.id IS NULL THEN 'in blog_search but not in blogs'
                    WHEN s.title <> b.title THEN format('title %L, expected %L', s.title, b.title)
                    WHEN s.author_id <> b.author_id THEN format('author %s, expected %s', s.author_id, b.author_id)
                    ELSE 'text vector differs' END
        FROM blogs b FULL JOIN blog_search s ON s.blog_id = b.id
        WHERE s.blog_id IS NULL OR b.id IS NULL OR s.title <> b.title OR s.author_id <> b.author_id
           OR s.document <> to_tsvector('english', b.title || ' ' || b.body)
        ORDER BY 1
        """).fetchall()
    if diff:
        problems.append("blog_search differs from blogs in %s posts, e.g.:\n%s" % (
            fmt(len(diff)), "\n".join("    post %s: %s" % r for r in diff[:10])))
    counters = db.execute(
        """
        SELECT u.id, u.total_blogs, count(b.id)
        FROM users u LEFT JOIN blogs b ON b.author_id = u.id
        GROUP BY u.id HAVING u.total_blogs <> count(b.id)
        ORDER BY u.id
        """).fetchall()
    if counters:
        problems.append("total_blogs is wrong for %s authors, e.g.:\n%s" % (
            fmt(len(counters)), "\n".join("    author %s: total_blogs %s, has %s posts" % r
                                         for r in counters[:10])))
    return problems


def report(db, problems):
    """Print the verdict; return the exit status."""
    if problems:
        print("NOT consistent:")
        for p in problems:
            print("  " + p)
        return 1
    blogs, authors = db.execute("SELECT (SELECT count(*) FROM blogs), (SELECT count(*) FROM users)").fetchone()
    print("blog_search = blogs: %s posts, same ids, titles and text vectors" % fmt(blogs))
    print("users.total_blogs = count(*) of blogs for all %s authors" % fmt(authors))
    print("consistent", flush=True)
    return 0


# -- writers -----------------------------------------------------------------------

class Writers:
    """W threads publishing posts by plain INSERTs; the trigger does the publishing."""

    def __init__(self, posts, writers, authors, rollback_share, seed):
        self.total = posts
        self.n = writers
        self.authors = authors
        self.rollback_share = rollback_share
        self.seed = seed
        self.lock = threading.Lock()
        self.posts = 0              # committed INSERTs
        self.events = 0             # committed INSERTs + UPDATEs + DELETEs
        self.updates = 0
        self.deletes = 0
        self.rolled_back = 0        # transactions
        self.rolled_back_rows = 0
        self.errors = []
        self.half = threading.Event()   # set once half the posts are committed
        self.started = self.finished = None
        self.threads = []

    def start(self):
        self.started = time.monotonic()
        share = [self.total // self.n + (1 if i < self.total % self.n else 0) for i in range(self.n)]
        for i in range(self.n):
            t = threading.Thread(target=self.write, args=(i, share[i]), daemon=True)
            t.start()
            self.threads.append(t)

    def alive(self):
        return any(t.is_alive() for t in self.threads)

    def join(self):
        for t in self.threads:
            t.join()
        self.finished = time.monotonic()

    def write(self, i, quota):
        rnd = random.Random(self.seed * 1000 + i)
        try:
            with connect() as conn:
                mine = []               # committed post ids of this writer
                done = 0
                while done < quota:
                    k = min(rnd.randint(1, 5), quota - done)
                    rows = []
                    for _ in range(k):
                        title = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 6))).capitalize()
                        body = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(10, 40))) + "."
                        rows.append((rnd.randint(1, self.authors), title, body))
                    rollback = rnd.random() < self.rollback_share
                    update = delete = None
                    if mine and rnd.random() < 0.05:
                        update = rnd.choice(mine)
                    if len(mine) > 1 and rnd.random() < 0.02:
                        delete = mine.pop(rnd.randrange(len(mine)))
                        if delete == update:
                            update = None
                    try:
                        with conn.transaction():
                            cur = conn.cursor()
                            ids = self.insert(cur, rows)
                            if update is not None:
                                cur.execute("UPDATE blogs SET title = title || ' (edited)' WHERE id = %s",
                                            (update,))
                            if delete is not None:
                                cur.execute("DELETE FROM blogs WHERE id = %s", (delete,))
                            if rollback:
                                raise psycopg.Rollback()
                    except psycopg.Rollback:
                        pass
                    if rollback:
                        if delete is not None:
                            mine.append(delete)
                        with self.lock:
                            self.rolled_back += 1
                            self.rolled_back_rows += k
                        continue
                    mine.extend(ids)
                    done += k
                    with self.lock:
                        self.posts += k
                        if self.posts >= self.total // 2:
                            self.half.set()
                        self.events += k + (update is not None) + (delete is not None)
                        self.updates += update is not None
                        self.deletes += delete is not None
        except Exception as e:      # reported by the story, which then fails
            with self.lock:
                self.errors.append("writer %d: %s" % (i, e))

    @staticmethod
    def insert(cur, rows):
        """One multi-row INSERT; returns the new ids."""
        values = ", ".join(["(%s, %s, %s)"] * len(rows))
        cur.execute("INSERT INTO blogs (author_id, title, body) VALUES " + values + " RETURNING id",
                    [v for r in rows for v in r])
        return [r[0] for r in cur.fetchall()]


# -- workers -----------------------------------------------------------------------

class WorkerProc:
    """One worker.py process; a thread reads its progress lines."""

    def __init__(self, group, name, logfile, counts, lock):
        self.group, self.name = group, name
        self.backend = None
        self.consumed = 0
        self.counts, self.lock = counts, lock
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py"), "--group", group,
             "--name", name, "--report"],
            stdout=subprocess.PIPE, stderr=logfile, text=True, bufsize=1)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.proc.stdout:
            word, _, n = line.strip().partition(" ")
            if word == "committed":
                with self.lock:
                    self.consumed += int(n)
                    self.counts[self.group] += int(n)
            elif word == "backend":
                self.backend = int(n)


# -- the story ---------------------------------------------------------------------

class Story:
    def __init__(self):
        self.posts = env_int("BLOG_POSTS", 20000)
        self.writers_n = env_int("BLOG_WRITERS", 4)
        self.workers_n = env_int("BLOG_WORKERS", 2)
        self.authors = env_int("BLOG_AUTHORS", 200)
        self.rollback = env_float("BLOG_ROLLBACK", 0.1)
        self.timeout = env_float("BLOG_TIMEOUT", 300)
        self.seed = env_int("BLOG_SEED", int(time.time()))
        if self.posts < 2 or self.writers_n < 1 or self.workers_n < 1 or self.authors < 1:
            sys.exit("BLOG_POSTS must be at least 2, BLOG_WRITERS, BLOG_WORKERS and BLOG_AUTHORS at least 1")
        self.tty = sys.stdout.isatty()
        self.lock = threading.Lock()
        self.counts = {g: 0 for g in GROUPS}
        self.workers = []
        self.max_lag = {g: 0 for g in GROUPS}
        self.lag = {g: None for g in GROUPS}
        self.kill = None
        self.logdir = tempfile.mkdtemp(prefix="blog-story-")
        self.logpath = os.path.join(self.logdir, "workers.log")
        self.logfile = open(self.logpath, "a")
        self.t0 = time.monotonic()
        self.last_line = 0.0
        self.line_shown = False

    def say(self, text=""):
        self.end_line()
        print(text, flush=True)

    def end_line(self):
        if self.line_shown:
            sys.stdout.write("\n")
            self.line_shown = False

    def elapsed(self):
        return time.monotonic() - self.t0

    def start_worker(self, group):
        k = sum(1 for w in self.workers if w.group == group) + 1
        w = WorkerProc(group, "%s-%d" % (group, k), self.logfile, self.counts, self.lock)
        self.workers.append(w)
        return w

    # progress ---------------------------------------------------------------------

    def sample(self, db):
        """Read each group's lag (end offset - committed offset, summed over partitions)."""
        rows = db.execute(
            """
            SELECT g."group",
                   sum(l.end_offset - coalesce(l.committed_offset, l.log_start_offset))::bigint
            FROM unnest(%s::text[]) AS g("group")
            LEFT JOIN stream.consumer_lag l ON l."group" = g."group" AND l.topic = %s
            GROUP BY g."group"
            """, (list(GROUPS), TOPIC)).fetchall()
        for g, lag in rows:
            self.lag[g] = lag
            if lag is not None:
                self.max_lag[g] = max(self.max_lag[g], lag)

    def progress(self, force=False):
        now = time.monotonic()
        with self.lock:
            counts = dict(self.counts)
        w = self.writers
        parts = ["%5.1f s" % self.elapsed(),
                 "published %s/%s posts (%s events)" % (fmt(w.posts), fmt(self.posts), fmt(w.events))]
        for g in GROUPS:
            lag = "?" if self.lag[g] is None else fmt(self.lag[g])
            parts.append("%s %s lag %s" % (g, fmt(counts[g]), lag))
        line = " | ".join(parts)
        if self.tty:
            sys.stdout.write("\r" + line.ljust(getattr(self, "_width", 0)))
            sys.stdout.flush()
            self._width = len(line)
            self.line_shown = True
        elif force or now - self.last_line >= 3:
            print(line, flush=True)
            self.last_line = now

    # steps ------------------------------------------------------------------------

    def setup(self, db):
        db.execute("SET client_min_messages = warning")
        db.execute("CREATE EXTENSION IF NOT EXISTS stream")
        with open(os.path.join(HERE, "schema.sql")) as f:
            db.execute(f.read())
        db.execute("INSERT INTO users (id, name) SELECT i, 'author ' || i FROM generate_series(1, %s) i",
                   (self.authors,))

    def kill_one(self, db):
        """SIGKILL the first search worker (mid-batch or in its long poll) and replace it."""
        victim = next(w for w in self.workers if w.group == "search" and w.proc.poll() is None)
        deadline = time.monotonic() + 30
        while victim.consumed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)        # kill a worker that is consuming, not one still starting
        state = db.execute(
            """
            SELECT CASE WHEN state = 'idle in transaction' THEN 'mid-batch, its transaction open'
                        WHEN state = 'active' AND query LIKE '%%stream.poll%%'
                        THEN 'in stream.poll, its transaction open'
                        WHEN state = 'active' THEN 'running a statement of its batch, its transaction open'
                        WHEN state = 'idle' THEN 'between two transactions'
                        ELSE state END
            FROM pg_stat_activity WHERE pid = %s
            """, (victim.backend,)).fetchone()
        at = self.elapsed()
        victim.proc.kill()
        victim.proc.wait()
        replacement = self.start_worker(victim.group)
        self.kill = {"victim": victim, "at": at, "replacement": replacement, "handover": None,
                     "backend": victim.backend, "posts": self.writers.posts,
                     "joined": None,
                     "state": state[0] if state else "gone"}

    def check_handover(self, db):
        """Note when the killed worker's partitions are owned again, and when the
        replacement has its share."""
        k = self.kill
        if k is None or k["joined"] is not None:
            return
        free, replacement = db.execute(
            """
            SELECT count(*) FILTER (WHERE owner_pid IS NULL OR owner_pid = %s),
                   count(*) FILTER (WHERE owner_pid = %s)
            FROM stream.consumer_lag WHERE "group" = %s AND topic = %s
            """, (k["backend"] or 0, k["replacement"].backend or 0, k["victim"].group, TOPIC)).fetchone()
        if free == 0 and k["handover"] is None:
            k["handover"] = self.elapsed() - k["at"]
        if free == 0 and replacement > 0:
            k["joined"] = self.elapsed() - k["at"]

    def run_workload(self, db):
        self.writers = Writers(self.posts, self.writers_n, self.authors, self.rollback, self.seed)
        for g in GROUPS:
            for _ in range(self.workers_n):
                self.start_worker(g)
        self.wait_for_members(db)
        self.writers.start()
        while self.writers.alive():
            self.tick(db)
            if self.kill is None:
                if self.writers.half.wait(0.25):
                    self.kill_one(db)
            else:
                time.sleep(0.25)
        self.writers.join()
        if self.writers.errors:
            raise StoryError("writers failed:\n  " + "\n  ".join(self.writers.errors))
        if self.kill is None:       # a tiny run can finish between two samples
            self.kill_one(db)

    def wait_for_members(self, db):
        """Wait until the workers own every partition of the topic in both groups."""
        deadline = time.monotonic() + 60
        while True:
            self.tick(db)
            owned = db.execute(
                """
                SELECT count(*) FROM stream.consumer_lag
                WHERE topic = %s AND "group" = ANY(%s) AND owner_pid IS NOT NULL
                """, (TOPIC, list(GROUPS))).fetchone()[0]
            partitions = db.execute("SELECT partitions FROM stream.topics WHERE topic = %s",
                                    (TOPIC,)).fetchone()[0]
            if owned == partitions * len(GROUPS):
                return
            if time.monotonic() > deadline:
                raise StoryError("the workers did not take the partitions within 60 s (log: %s)"
                                 % self.logpath)
            time.sleep(0.1)

    def tick(self, db):
        self.sample(db)
        self.check_handover(db)
        self.progress()
        dead = [w for w in self.workers if w.proc.poll() not in (None, -signal.SIGKILL)]
        if dead:
            raise StoryError("worker %s exited with status %s (log: %s)"
                             % (dead[0].name, dead[0].proc.returncode, self.logpath))

    def catch_up(self, db):
        deadline = time.monotonic() + self.timeout
        while True:
            self.tick(db)
            if all(self.lag[g] == 0 for g in GROUPS) and \
                    (self.kill is None or self.kill["joined"] is not None):
                self.caught_up = self.elapsed()
                with self.lock:     # lag 0: every event is consumed (see summary())
                    self.counts.update({g: self.writers.events for g in GROUPS})
                self.progress(force=True)
                return
            if time.monotonic() > deadline:
                self.progress(force=True)
                raise StoryError("the groups did not catch up within %g s (BLOG_TIMEOUT):\n%s"
                                 % (self.timeout, self.lag_detail(db)))
            time.sleep(0.25)

    def lag_detail(self, db):
        """Each partition's offsets, and whether any message is left to read after the commit."""
        rows = db.execute(
            """
            SELECT l."group", l.partition, l.committed_offset, l.end_offset, l.lag, l.owner_pid,
                   l.committed_offset IS NOT NULL AND l.lag > 0 AND NOT EXISTS
                       (SELECT FROM stream.read(l.topic, l.partition, l.committed_offset, 1))
            FROM stream.consumer_lag l
            WHERE l.topic = %s ORDER BY 1, 2
            """, (TOPIC,)).fetchall()
        lines = []
        for g, p, c, e, lag, o, only_gaps in rows:
            line = "  %-8s partition %d: committed %s, end %s, lag %s, owner pid %s" % (g, p, c, e, lag, o)
            if only_gaps:
                line += (" -- no message at or after offset %s: the lag counts only offsets"
                         " of rolled-back transactions" % c)
            lines.append(line)
        return "\n".join(lines)

    def stop_workers(self, db):
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        bad = []
        for w in self.workers:
            if w is self.kill["victim"]:
                continue
            try:
                rc = w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                rc = "no exit within 30 s of SIGTERM"
            w.reader.join(timeout=5)
            if rc != 0:
                bad.append("%s: %s" % (w.name, rc))
        if bad:
            raise StoryError("workers did not shut down cleanly (log: %s): %s" % (self.logpath, ", ".join(bad)))
        members = db.execute(
            "SELECT count(*) FROM stream.consumer_lag WHERE topic = %s AND owner_pid IS NOT NULL",
            (TOPIC,)).fetchone()[0]
        if members:
            raise StoryError("%d partitions still owned after every worker left" % members)

    def verify(self, db):
        """The writers' own count, then the tables; return a list of differences."""
        problems = []
        blogs = db.execute("SELECT count(*) FROM blogs").fetchone()[0]
        if blogs != self.writers.posts - self.writers.deletes:
            problems.append("blogs has %s rows, the writers committed %s posts and deleted %s"
                            % (fmt(blogs), fmt(self.writers.posts), fmt(self.writers.deletes)))
        return problems + check_tables(db)

    def summary(self, db):
        w = self.writers
        write_s = max(w.finished - w.started, 1e-6)
        span = max(self.caught_up - (w.started - self.t0), 1e-6)
        events, partitions = db.execute(
            "SELECT sum(messages)::bigint, count(*) FROM stream.partitions WHERE topic = %s",
            (TOPIC,)).fetchone()
        k = self.kill
        hit = db.execute(
            "SELECT count(*) FROM blog_search WHERE document @@ to_tsquery('english', 'kafka & partition')"
        ).fetchone()[0]
        self.say()
        self.say("summary")
        self.say("  writers:   %s posts in %.1f s = %s posts/s, %d writers; %s transactions rolled back"
                 " on purpose (%s posts never published); %s updates, %s deletes"
                 % (fmt(w.posts), write_s, fmt(w.posts / write_s), self.writers_n,
                    fmt(w.rolled_back), fmt(w.rolled_back_rows), fmt(w.updates), fmt(w.deletes)))
        self.say("  topic:     %s events in %s (%d partitions)" % (fmt(events), TOPIC, partitions))
        # Lag 0 in every partition: each group committed every event. (The workers'
        # own reports can miss the victim's last batch: its COMMIT may complete on the
        # server after the client died, before it could report it.)
        for g in GROUPS:
            self.say("  %-11s%s events consumed in %.1f s = %s/s by %d workers; max lag %s"
                     % (g + ":", fmt(events), span, fmt(events / span),
                        sum(1 for x in self.workers if x.group == g), fmt(self.max_lag[g])))
        self.say("  the kill:  SIGKILL of %s (pid %d, backend %s) at %.1f s, after %s posts, when it had"
                 " reported %s committed messages; its partitions were owned again %s, %s had its share %s"
                 % (k["victim"].name, k["victim"].proc.pid, k["backend"], k["at"], fmt(k["posts"]),
                    fmt(k["victim"].consumed),
                    "after %.2f s" % k["handover"], k["replacement"].name,
                    "after %.2f s" % k["joined"]))
        self.say("             (it was %s)" % k["state"])
        self.say("  full text: %s posts match 'kafka & partition'" % fmt(hit))
        self.say("  worker logs: %s" % self.logpath)

    def run(self):
        try:
            with connect() as db:
                self.say("== blog story: %s posts from %d writers, %d workers per group, "
                         "%.0f%% of writer transactions rolled back (database %s)"
                         % (fmt(self.posts), self.writers_n, self.workers_n, self.rollback * 100,
                            db.info.dbname))
                self.setup(db)
                self.run_workload(db)
                self.catch_up(db)
                self.stop_workers(db)
                problems = self.verify(db)
                self.summary(db)
                self.say()
                return report(db, problems)
        except StoryError as e:
            self.say("error: %s" % e)
            return 2
        except psycopg.Error as e:
            self.say("error: %s" % e)
            return 2
        finally:
            for w in self.workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
            self.end_line()


class StoryError(Exception):
    pass


def main():
    if sys.argv[1:] == ["--check"]:
        # check an existing story database again, e.g. after playing with it in psql
        with connect() as db:
            return report(db, check_tables(db))
    if sys.argv[1:]:
        sys.exit("usage: %s [--check]   (settings: see the environment variables in the source)"
                 % sys.argv[0])
    story = Story()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        return story.run()
    except KeyboardInterrupt:
        story.say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

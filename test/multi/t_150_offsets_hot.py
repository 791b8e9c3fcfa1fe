"""Consumer groups: the committed-offsets table stays small under constant commits.

One session commits N offsets, one transaction each (a procedure with COMMIT in its
loop: stream.seek of the partition it owns, then stream.commit).  Every commit
updates the same stream._offsets row; with HOT updates and page pruning the table
(with its primary key index) stays a few pages.  Without them it would grow by a
row version and an index entry per commit: several MB for N = 100,000.  (A
transaction holding an old snapshot in the same database during the run blocks the
pruning, and the table then reaches about 7 MB: the test needs the database to itself.)
"""
import time

from lib import TAP, connect
from cg_util import committed, drop_topic, fresh_topic, owned_by, pid, poll, publish

N = 100000
LIMIT = 1024 * 1024

t = TAP()
admin = connect()
TOPIC, GROUP = "cg_hot", "cg_hot_g"
fresh_topic(admin, TOPIC, 1)
for i in range(10):
    publish(admin, TOPIC, {"i": i})
admin.execute("""
CREATE OR REPLACE PROCEDURE cg_hot_commits(g text, tp text, n int)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM stream.seek(g, tp, 0, i % 11);
        PERFORM stream.commit(g, tp);
        COMMIT;
    END LOOP;
END
$$""")


def stats():
    admin.execute("SELECT pg_stat_clear_snapshot()")
    return admin.execute(
        "SELECT pg_total_relation_size('stream._offsets'), n_tup_upd, n_tup_hot_upd"
        " FROM pg_stat_user_tables WHERE relid = 'stream._offsets'::regclass").fetchone()


c = connect()
c.execute("SET synchronous_commit = off")  # a WAL flush per commit is not what is measured
t.is_(len(poll(c, GROUP, TOPIC)), 10, "the committing session is a member and read the partition")
t.is_(owned_by(admin, GROUP, TOPIC, pid(c)), {0}, "it owns the partition")
size0, upd0, hot0 = stats()
t.diag("before: stream._offsets %d bytes (with indexes), n_tup_upd %d, n_tup_hot_upd %d"
       % (size0, upd0, hot0))
t0 = time.monotonic()
c.execute("CALL cg_hot_commits(%s, %s, %s)", (GROUP, TOPIC, N))
took = time.monotonic() - t0
c.execute("SELECT pg_stat_force_next_flush()")
c.execute("SELECT 1")  # the flush happens when the session goes idle
t.is_(committed(admin, GROUP, TOPIC), {0: N % 11}, "the last of the %d commits is stored" % N)
size, upd, hot = stats()
t.diag("%d single-row commits in %.1f s" % (N, took))
t.diag("after: stream._offsets %d bytes (with indexes), n_tup_upd %d, n_tup_hot_upd %d"
       % (size, upd, hot))
t.diag("updates during the run: %d, of which HOT: %d" % (upd - upd0, hot - hot0))
t.ok(size < LIMIT, "stream._offsets (with its index) stays under %d bytes: %d" % (LIMIT, size))
# the first commit inserts the row, the other N - 1 update it
t.ok(upd - upd0 >= N - 1, "the statistics count the %d updates" % (N - 1))
t.ok(hot - hot0 >= 0.9 * (upd - upd0), "at least 90% of them were HOT updates")

c.close()
admin.execute("DROP PROCEDURE cg_hot_commits(text, text, int)")
drop_topic(admin, TOPIC)
t.exit()

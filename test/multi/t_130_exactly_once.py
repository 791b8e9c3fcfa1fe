"""Consumer groups: poll + own writes + commit in one transaction is exactly-once.

A consumer transaction polls, inserts what it processed into its own results
table and stores its offsets with stream.commit.  Rolled back (whole or to a
savepoint), the positions rewind and the same messages come again; committed,
they never come again, also to a new session.  A consumer terminated in the
middle of such a transaction is replaced by another that processes every message
exactly once overall.  Commit works in a REPEATABLE READ transaction, also for a
new owner whose snapshot predates the previous owner's last commit.

ROLLBACK TO SAVEPOINT rewinds only what the savepoint polled: messages the
transaction polled before the savepoint stay consumed (else they would be
processed twice by one committed transaction).
"""
from lib import TAP, connect, wait_until
from cg_util import (ExclusiveWatch, commit_all, committed, drop_topic, fresh_topic, owned_by, pid,
                     poll, publish, sqlstate)

t = TAP()
admin = connect()
obs = connect()
TOPIC, GROUP = "cg_eo", "cg_eo_g"
RESULTS = "cg_eo_results"
fresh_topic(admin, TOPIC, 1)
admin.execute("DROP TABLE IF EXISTS %s" % RESULTS)
admin.execute("CREATE TABLE %s (id int NOT NULL, consumer int NOT NULL)" % RESULTS)
for i in range(20):
    publish(admin, TOPIC, {"id": i})


def ids(rows):
    return [v["id"] for _, _, v in rows]


def results():
    return [r[0] for r in admin.execute("SELECT id FROM %s ORDER BY id" % RESULTS).fetchall()]


def consume(conn, group, topic, n, finish="COMMIT"):
    """One consumer transaction: poll n, insert into results, stream.commit, finish."""
    conn.execute("BEGIN")
    rows = poll(conn, group, topic, max_messages=n)
    for r in rows:
        conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % RESULTS, (r[2]["id"], pid(conn)))
    commit_all(conn, group, topic)
    if finish:
        conn.execute(finish)
    return rows


c = connect()
# --- rollback: the same messages again -----------------------------------------
rows = consume(c, GROUP, TOPIC, 5, finish="ROLLBACK")
t.is_(ids(rows), [0, 1, 2, 3, 4], "first transaction polls messages 0-4")
t.is_(results(), [], "its rollback removed its results")
t.is_(committed(obs, GROUP, TOPIC), {0: None}, "and its offset commit")
rows = consume(c, GROUP, TOPIC, 5, finish="ROLLBACK")
t.is_(ids(rows), [0, 1, 2, 3, 4], "after the rollback the next poll returns messages 0-4 again")

# --- commit: never again ---------------------------------------------------------
rows = consume(c, GROUP, TOPIC, 5)
t.is_(ids(rows), [0, 1, 2, 3, 4], "a transaction polls 0-4 again and commits")
t.is_(results(), [0, 1, 2, 3, 4], "its results are stored")
t.is_(committed(obs, GROUP, TOPIC), {0: 5}, "its committed offset is 5 (the next to read)")
c.execute("BEGIN")
t.is_(ids(poll(c, GROUP, TOPIC, 3)), [5, 6, 7], "the next poll starts after the committed messages")
c.execute("ROLLBACK")
c.close()
c = connect()
c.execute("BEGIN")
t.is_(ids(poll(c, GROUP, TOPIC, 3)), [5, 6, 7],
      "a new session of the group starts at the committed offset (0-4 never come again)")
c.execute("ROLLBACK")

# --- savepoints ----------------------------------------------------------------------
c.execute("BEGIN")
c.execute("SAVEPOINT s1")
t.is_(ids(poll(c, GROUP, TOPIC, 3)), [5, 6, 7], "poll inside a savepoint returns 5-7")
c.execute("ROLLBACK TO SAVEPOINT s1")
t.is_(ids(poll(c, GROUP, TOPIC, 3)), [5, 6, 7],
      "after ROLLBACK TO SAVEPOINT the same messages come again")
commit_all(c, GROUP, TOPIC)
c.execute("COMMIT")
t.is_(committed(obs, GROUP, TOPIC), {0: 8}, "the transaction commits offset 8")

# a savepoint released keeps its messages consumed
c.execute("BEGIN")
c.execute("SAVEPOINT s3")
t.is_(ids(poll(c, GROUP, TOPIC, 2)), [8, 9], "poll inside a savepoint returns 8, 9")
c.execute("RELEASE SAVEPOINT s3")
t.is_(ids(poll(c, GROUP, TOPIC, 2)), [10, 11], "after RELEASE SAVEPOINT polling continues")
c.execute("ROLLBACK")

# a poll before the savepoint stays consumed: only the savepoint's messages rewind
admin.execute("TRUNCATE %s" % RESULTS)
c.execute("BEGIN")
rows = poll(c, GROUP, TOPIC, 2)
t.is_(ids(rows), [8, 9], "poll before a savepoint returns 8, 9")
for r in rows:
    c.execute("INSERT INTO %s VALUES (%%s, 0)" % RESULTS, (r[2]["id"],))
c.execute("SAVEPOINT s2")
rows = poll(c, GROUP, TOPIC, 2)
t.is_(ids(rows), [10, 11], "poll inside the savepoint returns 10, 11")
for r in rows:
    c.execute("INSERT INTO %s VALUES (%%s, 0)" % RESULTS, (r[2]["id"],))
c.execute("ROLLBACK TO SAVEPOINT s2")
rows = poll(c, GROUP, TOPIC, 2)
t.is_(ids(rows), [10, 11],
      "after ROLLBACK TO SAVEPOINT the savepoint's messages come again, not the ones the "
      "transaction polled before it")
for r in rows:
    c.execute("INSERT INTO %s VALUES (%%s, 0)" % RESULTS, (r[2]["id"],))
commit_all(c, GROUP, TOPIC)
c.execute("COMMIT")
t.is_(results(), [8, 9, 10, 11], "the transaction's results hold 8-11, each once")
t.is_(committed(obs, GROUP, TOPIC), {0: 12}, "and it committed offset 12")
c.close()

# --- a consumer terminated mid-transaction; its replacement: exactly once ------------
TOPIC2, GROUP2 = "cg_eo_kill", "cg_eo_kill_g"
fresh_topic(admin, TOPIC2, 2)
admin.execute("TRUNCATE %s" % RESULTS)
N = 40
for i in range(N):
    publish(admin, TOPIC2, {"id": 100 + i}, partition=i % 2)
k = connect()
consume(k, GROUP2, TOPIC2, 6)
consume(k, GROUP2, TOPIC2, 6)
rows = consume(k, GROUP2, TOPIC2, 6, finish=None)  # transaction left open
t.is_(len(rows), 6, "the doomed consumer polled, wrote and committed 6 more in an open transaction")
t.is_(len(results()), 12, "before it dies, only its first two transactions' 12 results are visible")
k_pid = pid(k)
r = connect()
poll(r, GROUP2, TOPIC2, 1)  # joins; owns nothing while k holds everything
t.is_(owned_by(obs, GROUP2, TOPIC2, pid(r)), set(), "the replacement owns nothing while k lives")
t.ok(obs.execute("SELECT pg_terminate_backend(%s)", (k_pid,)).fetchone()[0],
     "the consumer is terminated in the middle of its transaction")
# no wait for k's exit: the replacement polls at once, racing k's abort


watch = ExclusiveWatch(obs, GROUP2, TOPIC2)


def drain():
    rows = consume(r, GROUP2, TOPIC2, 7)
    watch.check()
    return not rows and owned_by(obs, GROUP2, TOPIC2, pid(r)) == {0, 1}


# the replacement's first poll above read nothing (it owned nothing), so no commit of it
wait_until(drain, timeout=20, what="the replacement to drain the topic")
watch.report(t, "replacement's polls")
res = results()
t.is_(res, sorted(set(res)), "no message was processed twice")
t.is_(res, list(range(100, 100 + N)), "every message was processed exactly once")
t.is_(committed(obs, GROUP2, TOPIC2), {0: N // 2, 1: N // 2}, "the group's offsets are at the end")
r.close()

# --- REPEATABLE READ ---------------------------------------------------------------------
TOPIC3, GROUP3 = "cg_eo_rr", "cg_eo_rr_g"
fresh_topic(admin, TOPIC3, 1)
for i in range(10):
    publish(admin, TOPIC3, {"id": 200 + i})
c = connect()
c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
rows = poll(c, GROUP3, TOPIC3, 3)
t.is_(ids(rows), [200, 201, 202], "REPEATABLE READ: poll returns the first 3")
t.is_(sqlstate(lambda: commit_all(c, GROUP3, TOPIC3)), None, "REPEATABLE READ: stream.commit works")
c.execute("COMMIT")
t.is_(committed(obs, GROUP3, TOPIC3), {0: 3}, "REPEATABLE READ: the offset is committed")
c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
t.is_(ids(poll(c, GROUP3, TOPIC3, 3)), [203, 204, 205], "REPEATABLE READ: the next poll continues")
commit_all(c, GROUP3, TOPIC3)
c.execute("COMMIT")
t.is_(committed(obs, GROUP3, TOPIC3), {0: 6}, "REPEATABLE READ: and commits again")

# hand-over to a REPEATABLE READ transaction whose snapshot predates the old owner's
# last commit: the new owner reads the fresh committed offset and must be able to
# store its own
d = connect()
d.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
d.execute("SELECT 1")          # takes the transaction snapshot
c.execute("BEGIN")
t.is_(ids(poll(c, GROUP3, TOPIC3, 1)), [206], "the old owner polls one more")
commit_all(c, GROUP3, TOPIC3)
c.execute("COMMIT")
c.execute("SELECT stream.leave(%s, %s)", (GROUP3, TOPIC3))
t.is_(ids(poll(d, GROUP3, TOPIC3, 2)), [207, 208],
      "REPEATABLE READ: the new owner resumes from the offset committed after its snapshot")
state = sqlstate(lambda: commit_all(d, GROUP3, TOPIC3))
t.is_(state, None, "REPEATABLE READ: the new owner's stream.commit works (no serialization failure)")
if state is None:
    d.execute("COMMIT")
    t.is_(committed(obs, GROUP3, TOPIC3), {0: 9}, "REPEATABLE READ: the new owner's offset is stored")
else:
    d.execute("ROLLBACK")
c.close()
d.close()

for tp in (TOPIC, TOPIC2, TOPIC3):
    drop_topic(admin, tp)
admin.execute("DROP TABLE %s" % RESULTS)
t.exit()

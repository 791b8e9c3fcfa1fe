"""stream.commit writes only the partitions whose position moved since the offset the
table holds, and that shortcut never loses a commit.

A member owning 4 partitions that consumed from one writes one row of stream._offsets
per commit, not four (counted with pg_stat_xact_user_tables); a commit with nothing
new writes nothing. The table's value is tracked through savepoints and rollbacks:
after ROLLBACK TO SAVEPOINT undoes a commit's write, and after a rolled-back
transaction, the same position is written again and committed.
"""
from lib import TAP, connect
from cg_util import commit_all, committed, fresh_topic, poll, publish

t = TAP()
admin = connect()
TOPIC, GROUP = "cw_t", "cw_g"
fresh_topic(admin, TOPIC, 4)
for p in range(4):
    publish(admin, TOPIC, {"p": p}, partition=p)   # every partition gets a committed offset below

m = connect()
WRITES = "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_xact_user_tables WHERE relid = 'stream._offsets'::regclass"


# pending statistics may carry counts of earlier transactions: count differences
def writes():
    return int(m.execute(WRITES).fetchone()[0])


def commit_writes():
    """Run stream.commit in a transaction; return (partitions committed, rows written)."""
    m.execute("BEGIN")
    base = writes()
    n = commit_all(m, GROUP, TOPIC)
    w = writes() - base
    m.execute("COMMIT")
    return n, w


t.is_(len(poll(m, GROUP, TOPIC)), 4, "the member owns the 4 partitions and read one message from each")
t.is_(commit_writes(), (4, 4), "the first commit writes the 4 partitions")
t.is_(commit_writes(), (4, 0), "a commit with nothing new writes nothing")
publish(admin, TOPIC, {"p": 2, "n": 2}, partition=2)
t.is_(len(poll(m, GROUP, TOPIC)), 1, "one new message, in partition 2")
t.is_(commit_writes(), (4, 1), "the next commit writes that partition only")
t.is_(committed(admin, GROUP, TOPIC), {0: 1, 1: 1, 2: 2, 3: 1}, "committed offsets")

# --- ROLLBACK TO SAVEPOINT undoes a commit's write: the position is written again ----
publish(admin, TOPIC, {"p": 0, "n": 2}, partition=0)
m.execute("BEGIN")
base = writes()
m.execute("SAVEPOINT a")
t.is_(len(poll(m, GROUP, TOPIC)), 1, "savepoint: one new message in partition 0")
commit_all(m, GROUP, TOPIC)
m.execute("ROLLBACK TO SAVEPOINT a")
t.is_(len(poll(m, GROUP, TOPIC)), 1, "after ROLLBACK TO SAVEPOINT the message comes again")
commit_all(m, GROUP, TOPIC)
t.is_(writes() - base, 2, "and the second commit writes it again (one write each time)")
m.execute("COMMIT")
t.is_(committed(admin, GROUP, TOPIC)[0], 2, "the offset is committed")

# --- a commit after RELEASE SAVEPOINT keeps the written value ------------------------
publish(admin, TOPIC, {"p": 1, "n": 2}, partition=1)
m.execute("BEGIN")
base = writes()
m.execute("SAVEPOINT b")
poll(m, GROUP, TOPIC)
commit_all(m, GROUP, TOPIC)
m.execute("RELEASE SAVEPOINT b")
commit_all(m, GROUP, TOPIC)
t.is_(writes() - base, 1, "after RELEASE the value is known: one write in all")
m.execute("COMMIT")
t.is_(committed(admin, GROUP, TOPIC)[1], 2, "the offset is committed")

# --- a rolled-back transaction: its write is gone, the next commit writes again ------
publish(admin, TOPIC, {"p": 3, "n": 2}, partition=3)
m.execute("BEGIN")
poll(m, GROUP, TOPIC)
commit_all(m, GROUP, TOPIC)
m.execute("ROLLBACK")
t.is_(committed(admin, GROUP, TOPIC)[3], 1, "the rolled-back commit left offset 1")
t.is_(len(poll(m, GROUP, TOPIC)), 1, "the message comes again")
t.is_(commit_writes(), (4, 1), "and the next commit writes it")
t.is_(committed(admin, GROUP, TOPIC)[3], 2, "the offset is committed")

# --- commit of one offset: the same shortcut, the same table value -------------------
m.execute("BEGIN")
base = writes()
m.execute("SELECT stream.commit(%s, %s, 3, 2)", (GROUP, TOPIC))
t.is_(writes() - base, 0, "committing the offset the table holds writes nothing")
m.execute("SELECT stream.commit(%s, %s, 3, 1)", (GROUP, TOPIC))
t.is_(writes() - base, 1, "committing another one writes it")
m.execute("COMMIT")
t.is_(committed(admin, GROUP, TOPIC)[3], 1, "and it is committed")

m.close()
admin.execute("SELECT stream.drop_topic(%s)", (TOPIC,))
t.exit()

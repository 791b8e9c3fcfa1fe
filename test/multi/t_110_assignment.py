"""Consumer groups: partition assignment, exclusivity and fan-out.

Sessions act in an explicit order from one thread.  Before every poll a fresh
message is published to every partition, so the partitions a poll returns data
from are exactly the partitions the polling session reads (owns).  After every
poll, pg_locks and stream.consumer_lag are checked: no partition of the group has
two owners, both sources agree, and every owner is a live member.
"""
from lib import TAP, connect
from cg_util import (check_exclusive, commit_all, drop_topic, fresh_topic, members,
                     owned_by, parts_of, pid, poll, publish)

t = TAP()
admin = connect()
obs = connect()

# --- 4 partitions, members A and B ------------------------------------------
TOPIC, GROUP = "cg_assign4", "cg_assign_g"
fresh_topic(admin, TOPIC, 4)
a, b = connect(), connect()
seq = [0]


def publish_each(n=4):
    for p in range(n):
        seq[0] += 1
        publish(admin, TOPIC, {"id": seq[0]}, partition=p)


def step(conn, name, expect_owned, topic=TOPIC, group=GROUP, nparts=4):
    """Publish to every partition, poll with conn, check what it owns and reads."""
    for p in range(nparts):
        seq[0] += 1
        publish(admin, topic, {"id": seq[0]}, partition=p)
    rows = poll(conn, group, topic)
    owners = check_exclusive(t, obs, group, topic, "after %s polls" % name)
    mine = {p for p, o in owners.items() if o == pid(conn)}
    t.is_(mine, expect_owned, "%s owns partitions %s" % (name, sorted(expect_owned)))
    t.is_(parts_of(rows), mine, "%s's poll returns data from exactly the partitions it owns" % name)
    return rows


step(a, "A (alone)", {0, 1, 2, 3})
t.is_(members(obs, GROUP, TOPIC), {pid(a)}, "A is the only live member")
step(b, "B (joining; A still holds everything)", set())
t.is_(members(obs, GROUP, TOPIC), {pid(a), pid(b)}, "A and B are live members")
step(a, "A (second round)", {0, 2})
step(b, "B (second round)", {1, 3})
own_a = owned_by(obs, GROUP, TOPIC, pid(a))
own_b = owned_by(obs, GROUP, TOPIC, pid(b))
t.ok(len(own_a) == 2 and len(own_b) == 2 and own_a | own_b == {0, 1, 2, 3},
     "after A, B, A, B polls each owns exactly 2 of the 4 partitions (consumer_lag)")
# stable: further polls keep the assignment
step(a, "A (third round)", own_a)
step(b, "B (third round)", own_b)

# partitions added to the topic are shared out too
admin.execute("SELECT stream.alter_topic(%s, partitions => 6)", (TOPIC,))
step(a, "A (after alter_topic to 6 partitions)", {0, 2, 4}, nparts=6)
step(b, "B (after alter_topic to 6 partitions)", {1, 3, 5}, nparts=6)

# --- 3 members, 2 partitions: the third gets nothing --------------------------
TOPIC2, GROUP2 = "cg_assign2", "cg_assign_g2"
fresh_topic(admin, TOPIC2, 2)
c, d, e = connect(), connect(), connect()


def step2(conn, name, expect_owned):
    return step(conn, name, expect_owned, topic=TOPIC2, group=GROUP2, nparts=2)


step2(c, "C (alone)", {0, 1})
step2(d, "D (joining)", set())
step2(e, "E (joining, third member)", set())
step2(c, "C (second round)", {0})
step2(d, "D (second round)", {1})
for r in range(3):
    rows = step2(e, "E (third member, round %d)" % (r + 2), set())
    t.is_(rows, [], "E's poll returns no rows although both partitions have new data")
t.is_(members(obs, GROUP2, TOPIC2), {pid(c), pid(d), pid(e)}, "C, D and E are all live members")
t.is_(owned_by(obs, GROUP2, TOPIC2, pid(e)), set(), "consumer_lag shows no partition owned by E")
step2(c, "C (third round)", {0})
step2(d, "D (third round)", {1})

# --- fan-out: two groups both receive every message ---------------------------
TOPIC3 = "cg_fanout"
G_ONE, G_TWO = "cg_fan_one", "cg_fan_two"
fresh_topic(admin, TOPIC3, 3)
x = connect()            # the only member of G_ONE
y, z = connect(), connect()  # the two members of G_TWO
# settle G_TWO's assignment first (on an empty topic: nothing to read yet)
for s in (x, y, z, y, z):
    poll(s, G_ONE if s is x else G_TWO, TOPIC3)
check_exclusive(t, obs, G_ONE, TOPIC3, "fan-out group one settled")
check_exclusive(t, obs, G_TWO, TOPIC3, "fan-out group two settled")
t.is_(owned_by(obs, G_ONE, TOPIC3, pid(x)), {0, 1, 2}, "group one's only member owns all 3 partitions")
t.ok(owned_by(obs, G_TWO, TOPIC3, pid(y)) | owned_by(obs, G_TWO, TOPIC3, pid(z)) == {0, 1, 2}
     and not owned_by(obs, G_TWO, TOPIC3, pid(y)) & owned_by(obs, G_TWO, TOPIC3, pid(z)),
     "group two's members share the 3 partitions")

ids = []
for i in range(60):
    ids.append("m%d" % i)
    publish(admin, TOPIC3, {"id": ids[-1]}, key="k%d" % i)
got = {G_ONE: [], G_TWO: []}
for rnd in range(20):
    n = 0
    for s, g in ((x, G_ONE), (y, G_TWO), (z, G_TWO)):
        s.execute("BEGIN")
        rows = poll(s, g, TOPIC3, max_messages=7)
        commit_all(s, g, TOPIC3)
        s.execute("COMMIT")
        got[g] += [r[2]["id"] for r in rows]
        n += len(rows)
        check_exclusive(t, obs, g, TOPIC3, "fan-out round %d" % rnd)
    if n == 0:
        break
t.is_(sorted(got[G_ONE]), sorted(ids), "group one received every message exactly once")
t.is_(sorted(got[G_TWO]), sorted(ids), "group two received every message exactly once")

for s in (a, b, c, d, e, x, y, z):
    s.close()
for tp in (TOPIC, TOPIC2, TOPIC3):
    drop_topic(admin, tp)
t.exit()

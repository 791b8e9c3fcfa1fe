"""The Kafka group coordinator, frame by frame (raw requests, group_raw.py).

FindCoordinator; JoinGroup/SyncGroup/Heartbeat/LeaveGroup of three members
(MEMBER_ID_REQUIRED, generations, the leader's protocol preference, followers'
SyncGroup parked until the leader's assignment, rebalance on join and leave,
a new leader when the leader leaves); generation and unknown-member errors;
session-timeout and rebalance-timeout expiry; a parked join whose connection
closes; static membership refused.  Waits are bounded; nothing is timed.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "multi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import TAP, connect, kafka_node_id, pg_log_path, pg_log_since, wait_until  # noqa: E402
import group_raw as k  # noqa: E402

t = TAP()
db = connect(dbname="postgres")
db.execute("CREATE EXTENSION IF NOT EXISTS stream")
db.execute("SELECT stream.drop_topic('k2_raw', if_exists => true)")
db.execute("SELECT stream.create_topic('k2_raw', 3)")
port = int(os.environ["STREAM_KAFKA_PORT"])
log_start = os.path.getsize(pg_log_path())
SUB = k.subscription(["k2_raw"])


class Member:
    """A group member on its own connection."""

    def __init__(self, group, version=5, session_ms=30000, rebalance_ms=30000,
                 protocols=(("range", SUB),), name="m"):
        self.conn = k.Conn(client_id=name)
        self.group = group
        self.version = version
        self.session_ms = session_ms
        self.rebalance_ms = rebalance_ms
        self.protocols = list(protocols)
        self.member_id = ""
        self.generation = -1
        self.join_answer = None

    def send_join(self):
        """Send a JoinGroup (first getting a member id with v4+); answer with recv_join."""
        if self.member_id == "" and self.version >= 4:
            r = self.conn.call(k.join_group(self.version, self.group, self.session_ms,
                                            self.rebalance_ms, "", self.protocols))
            assert r["error"] == k.MEMBER_ID_REQUIRED, r
            self.member_id = r["member_id"]
        self.conn.send(k.join_group(self.version, self.group, self.session_ms,
                                    self.rebalance_ms, self.member_id, self.protocols))

    def recv_join(self, timeout=30):
        r = self.conn.recv(timeout)
        if r["error"] == 0:
            self.member_id = r["member_id"]
            self.generation = r["generation"]
        self.join_answer = r
        return r

    def join(self):
        self.send_join()
        return self.recv_join()

    def heartbeat(self, generation=None, member_id=None):
        return self.conn.call(k.heartbeat(min(self.version, 3), self.group,
                                          self.generation if generation is None else generation,
                                          self.member_id if member_id is None else member_id))

    def send_sync(self, assignments=()):
        self.conn.send(k.sync_group(min(self.version, 3), self.group, self.generation,
                                    self.member_id, assignments))

    def recv_sync(self, timeout=30):
        return self.conn.recv(timeout)

    def leave(self):
        return self.conn.call(k.leave_group(min(self.version, 1), self.group, self.member_id))


def wait_rebalance(m, what):
    """Heartbeat until the coordinator says a rebalance is in progress."""
    return wait_until(lambda: m.heartbeat() == k.REBALANCE_IN_PROGRESS, timeout=30,
                      interval=0.1, what=what)


# ---- FindCoordinator ----
c = k.Conn()
NODE = kafka_node_id(connect("postgres"))
for v in (0, 1, 2):
    r = c.call(k.find_coordinator(v, "k2_group"))
    t.ok(r["error"] == 0 and r["node_id"] == NODE and r["port"] == port and r["host"],
         "FindCoordinator v%d names this broker (%s:%d)" % (v, r["host"], r["port"]))
r = c.call(k.find_coordinator(2, "k2_tx", key_type=1))
t.is_(r["error"], k.COORDINATOR_NOT_AVAILABLE, "FindCoordinator of a transaction: not available")
t.ok(r["message"] and "transaction" in r["message"], "... and it says why: %r" % r["message"])
r = c.call(k.find_coordinator(1, "not a group!"))
t.is_(r["error"], k.INVALID_GROUP_ID, "FindCoordinator of an invalid group id: INVALID_GROUP_ID")

# ---- three members ----
G = "k2_g3"
a = Member(G, version=5, name="a",
           protocols=[("range", SUB + b"a"), ("roundrobin", SUB)])
r = a.join()
t.is_((r["error"], r["generation"], r["leader"], r["protocol"]),
      (0, 1, a.member_id, "range"), "the first member joins: generation 1, its own leader")
t.is_(r["members"], [(a.member_id, SUB + b"a")], "the leader gets the members' metadata")
t.ok(a.member_id.startswith("a-"), "member ids start with the client id: %s" % a.member_id)
a.send_sync([(a.member_id, k.assignment({"k2_raw": [0, 1, 2]}))])
r = a.recv_sync()
t.is_((r["error"], k.parse_assignment(r["assignment"])), (0, {"k2_raw": [0, 1, 2]}),
      "the leader's SyncGroup returns its own assignment")
t.is_(a.heartbeat(), 0, "heartbeat of a stable member: NONE")

# b (v2: no MEMBER_ID_REQUIRED) prefers roundrobin; the leader's order decides
b = Member(G, version=2, name="b", protocols=[("roundrobin", SUB + b"b"), ("range", SUB + b"b")])
b.send_join()
wait_rebalance(a, "a's heartbeat to report the rebalance b started")
t.ok(True, "b's JoinGroup put the group in a rebalance (a's heartbeat: REBALANCE_IN_PROGRESS)")
a.send_join()
ra = a.recv_join()
rb = b.recv_join()
t.is_((ra["error"], ra["generation"], rb["error"], rb["generation"]), (0, 2, 0, 2),
      "both rejoined: generation 2 for both")
t.is_((ra["protocol"], rb["protocol"]), ("range", "range"),
      "protocol: the first of the leader's that every member supports")
t.is_((ra["leader"], rb["leader"]), (a.member_id, a.member_id), "the leader is still a")
t.is_(sorted(ra["members"]), sorted([(a.member_id, SUB + b"a"), (b.member_id, SUB + b"b")]),
      "the leader sees both members with their metadata for that protocol")
t.is_(rb["members"], [], "a follower gets no member list")

# c: a protocol nobody shares is refused
x = Member(G, version=5, name="x", protocols=[("nothing-in-common", SUB)])
r = x.conn.call(k.join_group(5, G, 30000, 30000, "", x.protocols))
t.is_(r["error"], k.INCONSISTENT_GROUP_PROTOCOL, "a member sharing no protocol: INCONSISTENT_GROUP_PROTOCOL")

# sync of generation 2, then c joins (v0)
b.send_sync()
a.send_sync([(a.member_id, k.assignment({"k2_raw": [0, 1]})),
             (b.member_id, k.assignment({"k2_raw": [2]}))])
t.is_(k.parse_assignment(a.recv_sync()["assignment"]), {"k2_raw": [0, 1]}, "generation 2: a gets 0, 1")
t.is_(k.parse_assignment(b.recv_sync()["assignment"]), {"k2_raw": [2]},
      "generation 2: b's SyncGroup, sent before the leader's, got b's part")

cm = Member(G, version=0, name="c", protocols=[("range", SUB + b"c")])
cm.send_join()
wait_rebalance(a, "a to see c's rebalance")
t.is_(b.heartbeat(), k.REBALANCE_IN_PROGRESS, "b sees the rebalance too")
a.send_join()
b.send_join()
ra, rb, rc = a.recv_join(), b.recv_join(), cm.recv_join()
t.is_([r["generation"] for r in (ra, rb, rc)], [3, 3, 3], "three members: generation 3")
t.is_(len(ra["members"]), 3, "the leader lists three members")
t.is_(len({a.member_id, b.member_id, cm.member_id}), 3, "three distinct member ids")
# followers first: their SyncGroups wait for the leader's
b.send_sync()
cm.send_sync()
a.send_sync([(a.member_id, k.assignment({"k2_raw": [0]})),
             (b.member_id, k.assignment({"k2_raw": [1]})),
             (cm.member_id, k.assignment({"k2_raw": [2]}))])
got = [k.parse_assignment(m.recv_sync()["assignment"]) for m in (a, b, cm)]
t.is_(got, [{"k2_raw": [0]}, {"k2_raw": [1]}, {"k2_raw": [2]}],
      "generation 3: each member gets its own part of the leader's assignment")
t.is_([m.heartbeat() for m in (a, b, cm)], [0, 0, 0], "all three heartbeat: NONE")

# ---- errors ----
t.is_(b.heartbeat(generation=2), k.ILLEGAL_GENERATION, "heartbeat of an old generation: ILLEGAL_GENERATION")
t.is_(b.heartbeat(member_id="nobody"), k.UNKNOWN_MEMBER_ID, "heartbeat of an unknown member: UNKNOWN_MEMBER_ID")
r = b.conn.call(k.sync_group(1, G, 2, b.member_id))
t.is_(r["error"], k.ILLEGAL_GENERATION, "SyncGroup of an old generation: ILLEGAL_GENERATION")
r = b.conn.call(k.join_group(2, G, 30000, 30000, "nobody", b.protocols))
t.is_(r["error"], k.UNKNOWN_MEMBER_ID, "JoinGroup with an unknown member id: UNKNOWN_MEMBER_ID")
r = b.conn.call(k.join_group(2, G, 10, 30000, b.member_id, b.protocols))
t.is_(r["error"], k.INVALID_SESSION_TIMEOUT, "a 10 ms session timeout: INVALID_SESSION_TIMEOUT")
r = b.conn.call(k.heartbeat(1, "k2_no_such_group", 1, "nobody"))
t.is_(r, k.UNKNOWN_MEMBER_ID, "heartbeat to a group that does not exist: UNKNOWN_MEMBER_ID")
r = b.conn.call(k.offset_commit(2, G, 2, b.member_id, {"k2_raw": {1: 0}}))
t.is_(r, {("k2_raw", 1): k.ILLEGAL_GENERATION}, "OffsetCommit of an old generation: ILLEGAL_GENERATION")
r = b.conn.call(k.offset_commit(7, G, 3, "nobody", {"k2_raw": {1: 0}}))
t.is_(r, {("k2_raw", 1): k.UNKNOWN_MEMBER_ID}, "OffsetCommit of an unknown member: UNKNOWN_MEMBER_ID")
r = b.conn.call(k.offset_commit(2, G, -1, "", {"k2_raw": {1: 0}}))
t.is_(r, {("k2_raw", 1): k.UNKNOWN_MEMBER_ID},
      "a commit from outside (generation -1) into a group with members: UNKNOWN_MEMBER_ID")
r = b.conn.call(k.offset_commit(3, G, 3, b.member_id, {"k2_raw": {1: 0}}))
t.is_(r, {("k2_raw", 1): 0}, "OffsetCommit of the current generation by its member: NONE")
z = Member(G, version=5, name="z")
r = z.conn.call(k.join_group(5, G, 30000, 30000, "", z.protocols, instance_id="static-1"))
t.is_(r["error"], k.UNSUPPORTED_VERSION, "static membership (group.instance.id) is refused")

# ---- b leaves, then the leader leaves ----
t.is_(b.leave(), 0, "b leaves: NONE")
wait_rebalance(a, "a to see b's leave")
a.send_join()
cm.send_join()
ra, rc = a.recv_join(), cm.recv_join()
t.is_((ra["generation"], len(ra["members"]), ra["leader"]), (4, 2, a.member_id),
      "after b left: generation 4, two members, a still leads")
t.is_(b.heartbeat(), k.UNKNOWN_MEMBER_ID, "b, gone, is an unknown member")
a.send_sync([(a.member_id, k.assignment({"k2_raw": [0, 1]})),
             (cm.member_id, k.assignment({"k2_raw": [2]}))])
cm.send_sync()
a.recv_sync()
cm.recv_sync()
t.is_(a.leave(), 0, "the leader leaves")
wait_rebalance(cm, "c to see the leader's leave")
rc = cm.join()
t.is_((rc["generation"], rc["leader"], [m for m, _ in rc["members"]]),
      (5, cm.member_id, [cm.member_id]), "c, the last one, is the new leader of generation 5")
t.is_(cm.leave(), 0, "c leaves: the group is empty")
for m in (a, b, cm, x, z):
    m.conn.close()

# ---- session timeout ----
G = "k2_gsess"
s1 = Member(G, version=1, session_ms=3000, name="short")
s2 = Member(G, version=4, session_ms=30000, name="long")
s1.join()
s1.send_sync([(s1.member_id, k.assignment({"k2_raw": [0, 1, 2]}))])
s1.recv_sync()
s2.send_join()
wait_rebalance(s1, "s1 to see s2's join")
s1.send_join()
r1, r2 = s1.recv_join(), s2.recv_join()
s2.send_sync()
s1.send_sync([(s1.member_id, k.assignment({"k2_raw": [0, 1]})),
              (s2.member_id, k.assignment({"k2_raw": [2]}))])
s1.recv_sync()
s2.recv_sync()
t.is_((r1["generation"], r2["generation"]), (2, 2), "two members, one with a 3 s session timeout")
# s1 goes silent; s2 heartbeats until told to rejoin
wait_rebalance(s2, "the coordinator to expire the silent member")
r2 = s2.join()
t.is_((r2["generation"], r2["leader"], [m for m, _ in r2["members"]]),
      (3, s2.member_id, [s2.member_id]),
      "the silent member's session expired: generation 3 has only the other, now leader")
t.is_(s1.heartbeat(), k.UNKNOWN_MEMBER_ID, "the expired member is unknown")
t.ok("session timeout" in pg_log_since(log_start), "the server log says why it was removed")
t.is_(s2.leave(), 0, "the survivor leaves")

# ---- rebalance timeout: a member that heartbeats but never rejoins ----
G = "k2_grebal"
r1 = Member(G, version=1, session_ms=30000, rebalance_ms=1500, name="lazy")
r2 = Member(G, version=1, session_ms=30000, rebalance_ms=1500, name="eager")
r1.join()
r1.send_sync([(r1.member_id, b"")])
r1.recv_sync()
r2.send_join()
wait_rebalance(r1, "r1 to see r2's join")
got = r2.recv_join(timeout=30)
t.is_((got["error"], got["generation"], [m for m, _ in got["members"]]),
      (0, 2, [r2.member_id]),
      "a member that did not rejoin within the rebalance timeout is left out of generation 2")
t.is_(r1.heartbeat(), k.UNKNOWN_MEMBER_ID, "... and removed from the group")
t.is_(r2.leave(), 0, "r2 leaves")

# ---- a parked JoinGroup whose connection closes ----
G = "k2_gclose"
w1 = Member(G, version=5, session_ms=30000, name="w1")
w2 = Member(G, version=5, session_ms=5000, name="w2")
w1.join()
w1.send_sync([(w1.member_id, b"")])
w1.recv_sync()
w2.send_join()
wait_rebalance(w1, "w1 to see w2's join")
w2.conn.close()
r = w1.join()
t.is_((r["generation"], sorted(m for m, _ in r["members"])),
      (2, sorted([w1.member_id, w2.member_id])),
      "a member whose parked join lost its connection still counts as joined (as in Kafka)")
w1.send_sync([(w1.member_id, b""), (w2.member_id, b"")])
t.is_(w1.recv_sync()["error"], 0, "the leader syncs generation 2")
wait_rebalance(w1, "the member without a connection to expire")
r = w1.join()
t.is_((r["generation"], [m for m, _ in r["members"]]), (3, [w1.member_id]),
      "its session expired: generation 3 without it")
t.is_(w1.leave(), 0, "w1 leaves")
w1.conn.close()

# the listener still serves
r = k.Conn().call(k.find_coordinator(0, "k2_after"))
t.is_(r["error"], 0, "the listener still answers")

db.execute("SELECT stream.drop_topic('k2_raw')")
t.exit()

"""Raw Kafka frames for the group coordinator tests (test/kafka/t_2*_*.py).

A small, explicit client: each request is encoded by hand from Kafka's
protocol schema, so a test states exactly which version it sends and checks
every field of the answer.  Only what the group tests need: FindCoordinator,
JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, and
the consumer protocol's subscription and assignment encodings.

    c = Conn()                      # 127.0.0.1:$STREAM_KAFKA_PORT
    r = c.call(join_group(5, "g", 10000, 10000, "", [("range", b"")]))
    c.send(...); ...; c.recv()      # a request that parks: answer later
"""
import os
import socket
import struct

API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
API_FIND_COORDINATOR = 10
API_JOIN_GROUP = 11
API_HEARTBEAT = 12
API_LEAVE_GROUP = 13
API_SYNC_GROUP = 14

NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
TOPIC_AUTHORIZATION_FAILED = 29
UNSUPPORTED_VERSION = 35
MEMBER_ID_REQUIRED = 79


# ---- encoding ----

def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def bytes_(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items, enc):
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(enc(x) for x in items)


# ---- decoding ----

class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short response: %d bytes wanted at %d of %d"
                             % (n, self.pos, len(self.data)))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def array(self, dec):
        n = self.i32()
        return None if n < 0 else [dec(self) for _ in range(n)]

    def end(self):
        if self.pos != len(self.data):
            raise ValueError("%d bytes left over in the response" % (len(self.data) - self.pos))


# ---- connection ----

class Conn:
    """One TCP connection to the listener; requests are (api_key, version, body, parser)."""

    def __init__(self, host="127.0.0.1", port=None, client_id="k2-raw", timeout=30):
        port = port or int(os.environ["STREAM_KAFKA_PORT"])
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.client_id = client_id
        self.corr = 0
        self.pending = []

    def send(self, req):
        api_key, version, body, parser = req
        self.corr += 1
        header = i16(api_key) + i16(version) + i32(self.corr) + string(self.client_id)
        frame = header + body
        self.sock.sendall(i32(len(frame)) + frame)
        self.pending.append((self.corr, parser))
        return self.corr

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the listener")
            buf += chunk
        return buf

    def recv(self, timeout=30):
        """The answer of the oldest request sent and not yet received, parsed."""
        self.sock.settimeout(timeout)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        corr = struct.unpack(">i", data[:4])[0]
        want, parser = self.pending.pop(0)
        if corr != want:
            raise ValueError("correlation id %d, expected %d" % (corr, want))
        r = Reader(data[4:])
        result = parser(r)
        r.end()
        return result

    def call(self, req, timeout=30):
        self.send(req)
        return self.recv(timeout)

    def close(self):
        self.sock.close()


# ---- consumer protocol payloads ----

def subscription(topics, user_data=b""):
    """ConsumerProtocolSubscription v0: version, topics, user data."""
    return i16(0) + array(topics, string) + bytes_(user_data)


def assignment(parts, user_data=b""):
    """ConsumerProtocolAssignment v0 from {topic: [partitions]}."""
    items = sorted(parts.items())
    return i16(0) + array(items, lambda kv: string(kv[0]) + array(kv[1], i32)) + bytes_(user_data)


def parse_assignment(b):
    r = Reader(b)
    r.i16()
    parts = r.array(lambda r: (r.string(), r.array(lambda r: r.i32())))
    r.bytes_()
    return dict(parts)


# ---- requests ----

def find_coordinator(version, key, key_type=0):
    body = string(key) + (i8(key_type) if version >= 1 else b"")

    def parse(r):
        out = {}
        if version >= 1:
            out["throttle"] = r.i32()
        out["error"] = r.i16()
        if version >= 1:
            out["message"] = r.string()
        out["node_id"] = r.i32()
        out["host"] = r.string()
        out["port"] = r.i32()
        return out
    return (API_FIND_COORDINATOR, version, body, parse)


def join_group(version, group, session_ms, rebalance_ms, member_id, protocols,
               protocol_type="consumer", instance_id=None):
    """protocols: [(name, metadata bytes)], in preference order."""
    body = string(group) + i32(session_ms)
    if version >= 1:
        body += i32(rebalance_ms)
    body += string(member_id)
    if version >= 5:
        body += string(instance_id)
    body += string(protocol_type)
    body += array(protocols, lambda p: string(p[0]) + bytes_(p[1]))

    def parse(r):
        out = {}
        if version >= 2:
            out["throttle"] = r.i32()
        out["error"] = r.i16()
        out["generation"] = r.i32()
        out["protocol"] = r.string()
        out["leader"] = r.string()
        out["member_id"] = r.string()

        def member(r):
            mid = r.string()
            if version >= 5:
                r.string()
            return (mid, r.bytes_())
        out["members"] = r.array(member)
        return out
    return (API_JOIN_GROUP, version, body, parse)


def sync_group(version, group, generation, member_id, assignments=()):
    """assignments: [(member_id, bytes)] (the leader's), empty for followers."""
    body = string(group) + i32(generation) + string(member_id)
    if version >= 3:
        body += string(None)
    body += array(list(assignments), lambda a: string(a[0]) + bytes_(a[1]))

    def parse(r):
        out = {}
        if version >= 1:
            out["throttle"] = r.i32()
        out["error"] = r.i16()
        out["assignment"] = r.bytes_()
        return out
    return (API_SYNC_GROUP, version, body, parse)


def _error_only(version):
    def parse(r):
        if version >= 1:
            r.i32()
        return r.i16()
    return parse


def heartbeat(version, group, generation, member_id):
    body = string(group) + i32(generation) + string(member_id)
    if version >= 3:
        body += string(None)
    return (API_HEARTBEAT, version, body, _error_only(version))


def leave_group(version, group, member_id):
    return (API_LEAVE_GROUP, version, string(group) + string(member_id), _error_only(version))


def offset_commit(version, group, generation, member_id, offsets):
    """offsets: {topic: {partition: offset}}; answers {(topic, partition): error}."""
    body = string(group) + i32(generation) + string(member_id)
    if version >= 7:
        body += string(None)
    if 2 <= version <= 4:
        body += i64(-1)

    def part(kv):
        b = i32(kv[0]) + i64(kv[1])
        if version >= 6:
            b += i32(-1)
        return b + string("meta")
    body += array(sorted(offsets.items()),
                  lambda t: string(t[0]) + array(sorted(t[1].items()), part))

    def parse(r):
        if version >= 3:
            r.i32()
        out = {}
        for name, parts in r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16())))):
            for p, e in parts:
                out[(name, p)] = e
        return out
    return (API_OFFSET_COMMIT, version, body, parse)


def offset_fetch(version, group, topics):
    """topics: {topic: [partitions]} or None (v2+: all); answers
    {"offsets": {(topic, partition): (offset, error)}, "error": top-level error}."""
    if topics is None:
        body = string(group) + i32(-1)
    else:
        body = string(group) + array(sorted(topics.items()),
                                     lambda t: string(t[0]) + array(t[1], i32))

    def parse(r):
        if version >= 3:
            r.i32()

        def part(r):
            p = r.i32()
            off = r.i64()
            if version >= 5:
                r.i32()
            r.string()
            return (p, off, r.i16())
        out = {}
        for name, parts in r.array(lambda r: (r.string(), r.array(part))):
            for p, off, e in parts:
                out[(name, p)] = (off, e)
        err = r.i16() if version >= 2 else None
        return {"offsets": out, "error": err}
    return (API_OFFSET_FETCH, version, body, parse)

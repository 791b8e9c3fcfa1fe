"""Garbage, truncated and oversized frames close only their own connection: the
listener keeps serving a connection opened before them and new ones, its process is
the same one throughout, and the server log shows no crash.

On raw sockets: 30 connections each send random bytes (fixed seed) then shut their
write side: each must be closed by the server.  A size prefix announcing more than
follows, left open: another connection is still answered meanwhile (the one loop does
not block on a slow peer); then closed by the client mid-frame.  A negative size, a
zero size, and a size over stream.kafka_max_request_bytes (no body sent): closed by
the server without more input.  A complete frame for an unknown API key and a
Metadata request whose body is cut short: closed, or answered with the request's
correlation id, never a hang.  A client that sends a valid request and closes before
reading the answer does no harm."""
import os
import random
import socket
import struct

from kafka_util import TAP, api_versions, closed_by_peer, frame, listener_pid, pg_log_path, pg_log_since, \
    raw_connect, recv_frame, serving, setup

t = TAP()
admin = setup(t)
log_at = os.path.getsize(pg_log_path()) if os.environ.get("STREAM_PGLOG") else None
pid0 = listener_pid(admin)
t.diag("listener pid %s" % pid0)
try:
    maxreq = int(admin.execute("SELECT setting FROM pg_settings WHERE name = 'stream.kafka_max_request_bytes'")
                 .fetchone()[0])
except (TypeError, Exception):
    maxreq = 100 * 1024 * 1024
    t.diag("stream.kafka_max_request_bytes not found; assuming %d" % maxreq)

A = raw_connect()
t.ok(bool(api_versions(A, 1)), "connection A: ApiVersions answered")
cid = [100]


def a_ok(what):
    cid[0] += 1
    try:
        ok = bool(api_versions(A, cid[0]))
    except (OSError, ConnectionError, AssertionError, struct.error) as e:
        t.diag(str(e))
        ok = False
    t.ok(ok, "connection A still answered after %s" % what)
    t.ok(serving(), "a new connection is answered after %s" % what)


# random garbage, then EOF
rng = random.Random(20240909)
closed = 0
for i in range(30):
    s = raw_connect()
    n = rng.randint(1, 300)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    if i % 3 == 0:
        # a size that matches what follows: a complete frame of garbage
        data = struct.pack(">i", len(data)) + data
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    closed += closed_by_peer(s)
    s.close()
t.is_(closed, 30, "30 connections of random bytes then EOF: all closed by the server")
a_ok("random garbage")

# a frame announced longer than what follows, left open
B = raw_connect()
B.sendall(struct.pack(">i", 1000) + b"0123456789")
a_ok("a partial frame on another open connection")
B.close()
a_ok("a client closed mid-frame")

# negative, zero and oversized sizes: closed without further input
for name, data in (("a negative size", struct.pack(">i", -5) + b"abcd"),
                   ("a zero size", struct.pack(">i", 0)),
                   ("a size over stream.kafka_max_request_bytes (%d)" % maxreq, struct.pack(">i", maxreq + 1)),
                   ("a size of 2^31-1", struct.pack(">i", 2 ** 31 - 1))):
    s = raw_connect()
    s.sendall(data)
    t.ok(closed_by_peer(s), "%s: the server closes the connection" % name)
    s.close()
    a_ok(name)


def closed_or_answered(s, correlation_id):
    try:
        resp = recv_frame(s)
    except (ConnectionError, OSError):
        return "closed"
    if struct.unpack(">i", resp[:4])[0] == correlation_id:
        return "answered"
    return "answered with a wrong correlation id"


# an unknown API key in a well-formed frame
s = raw_connect()
s.sendall(frame(0x7777, 0, 4242))
r = closed_or_answered(s, 4242)
t.ok(r in ("closed", "answered"), "unknown API key: %s" % r)
s.close()
a_ok("an unknown API key")

# Metadata v1 whose topic array claims 5 topics and has none
s = raw_connect()
s.sendall(frame(3, 1, 4343, struct.pack(">i", 5)))
r = closed_or_answered(s, 4343)
t.ok(r in ("closed", "answered"), "truncated Metadata body: %s" % r)
s.close()
a_ok("a truncated Metadata body")

# a Metadata v1 whose topic name length runs past the frame
s = raw_connect()
s.sendall(frame(3, 1, 4444, struct.pack(">ih", 1, 3000) + b"k1_"))
r = closed_or_answered(s, 4444)
t.ok(r in ("closed", "answered"), "a string longer than its frame: %s" % r)
s.close()
a_ok("a string longer than its frame")

# a valid request, then the client goes away before the answer
for _ in range(5):
    s = raw_connect()
    s.sendall(frame(3, 1, 4545, struct.pack(">i", -1)))  # Metadata v1, all topics
    s.close()
a_ok("clients that left before their answer")

A.close()
t.is_(listener_pid(admin), pid0, "the listener is the same process as at the start")
if log_at is not None:
    log = pg_log_since(log_at)
    t.ok("terminated by signal" not in log and "PANIC" not in log and "TRAP:" not in log,
         "the server log shows no crash")
t.exit()

"""A small Kafka client that builds frames by hand, for exact protocol tests.

Only what the t_05* tests need: Produce v3-7, Fetch v4-5, ListOffsets v1-2 and
Metadata v0-4 requests, their responses decoded into plain dicts and lists, and
RecordBatch v2 encoding/decoding with a CRC-32C written here (so a test can
corrupt any byte on purpose).  Nothing here comes from a Kafka library: the
tests must not share a bug with the client they check.
"""
import gzip
import os
import socket
import struct

PORT = int(os.environ.get("STREAM_KAFKA_PORT", "9499"))

# ---- CRC-32C (Castagnoli), reflected, as Kafka's RecordBatch uses ----

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---- varints ----

def uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def varint(v):
    return uvarint((v << 1) ^ (v >> 63))


def read_uvarint(buf, pos):
    shift = 0
    v = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7


def read_varint(buf, pos):
    v, pos = read_uvarint(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


# ---- RecordBatch v2 ----

def _varbytes(b):
    if b is None:
        return varint(-1)
    return varint(len(b)) + b


def encode_record(key, value, headers=(), offset_delta=0, ts_delta=0):
    body = b"\x00" + varint(ts_delta) + varint(offset_delta) + _varbytes(key) + _varbytes(value)
    body += varint(len(headers))
    for hk, hv in headers:
        body += _varbytes(hk) + _varbytes(hv)
    return varint(len(body)) + body


def encode_batch(records, compression=0, attributes_extra=0, magic=2, base_timestamp=0,
                 producer_id=-1, records_blob=None, crc=None):
    """records: list of (key, value, headers) with bytes or None."""
    if records_blob is None:
        records_blob = b"".join(encode_record(k, v, h, i) for i, (k, v, h) in enumerate(records))
        if compression == 1:
            records_blob = gzip.compress(records_blob)
    attributes = compression | attributes_extra
    after_crc = struct.pack(">hiqqqhii", attributes, max(len(records) - 1, 0), base_timestamp,
                            base_timestamp, producer_id, -1, -1, len(records)) + records_blob
    if crc is None:
        crc = crc32c(after_crc)
    after_len = struct.pack(">ibI", -1, magic, crc) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def decode_batches(blob):
    """Decode a Fetch records blob: a list of batch dicts with their records."""
    batches = []
    pos = 0
    while pos + 12 <= len(blob):
        base, length = struct.unpack_from(">qi", blob, pos)
        end = pos + 12 + length
        if end > len(blob):
            break                 # a partial batch at the end is allowed
        epoch, magic, crc = struct.unpack_from(">ibI", blob, pos + 12)
        (attributes, last_delta, first_ts, max_ts, pid, pepoch, bseq,
         count) = struct.unpack_from(">hiqqqhii", blob, pos + 21)
        b = dict(base_offset=base, magic=magic, crc_ok=(crc == crc32c(blob[pos + 21:end])),
                 attributes=attributes, last_offset_delta=last_delta, first_timestamp=first_ts,
                 max_timestamp=max_ts, producer_id=pid, producer_epoch=pepoch,
                 base_sequence=bseq, records=[])
        rpos = pos + 61
        for _ in range(count):
            rlen, rpos = read_varint(blob, rpos)
            rend = rpos + rlen
            rpos += 1
            ts_delta, rpos = read_varint(blob, rpos)
            off_delta, rpos = read_varint(blob, rpos)
            vals = []
            for _ in range(2):
                n, rpos = read_varint(blob, rpos)
                if n < 0:
                    vals.append(None)
                else:
                    vals.append(bytes(blob[rpos:rpos + n]))
                    rpos += n
            nh, rpos = read_varint(blob, rpos)
            headers = []
            for _ in range(nh):
                n, rpos = read_varint(blob, rpos)
                hk = bytes(blob[rpos:rpos + n])
                rpos += n
                n, rpos = read_varint(blob, rpos)
                hv = None if n < 0 else bytes(blob[rpos:rpos + n])
                rpos += max(n, 0)
                headers.append((hk, hv))
            assert rpos == rend, "record length mismatch"
            b["records"].append(dict(offset=base + off_delta, timestamp=first_ts + ts_delta,
                                     key=vals[0], value=vals[1], headers=headers))
        assert rpos == end, "batch length mismatch"
        batches.append(b)
        pos = end
    return batches


# ---- framing ----

def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">h", len(b)) + b


def _bytes(b):
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def array(self, fn):
        n = self.take(">i")
        if n < 0:
            return None
        return [fn() for _ in range(n)]

    def done(self):
        return self.pos == len(self.data)


class Conn:
    def __init__(self, port=None, client_id="k05"):
        self.sock = socket.create_connection(("127.0.0.1", port or PORT), timeout=30)
        self.corr = 0
        self.client_id = client_id

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def send(self, api, version, body):
        self.corr += 1
        hdr = struct.pack(">hhi", api, version, self.corr) + _string(self.client_id)
        frame = hdr + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self.corr

    def recv(self, corr):
        size = struct.unpack(">i", self._recv_exact(4))[0]
        data = self._recv_exact(size)
        got = struct.unpack(">i", data[:4])[0]
        assert got == corr, "correlation id %d, expected %d" % (got, corr)
        return Reader(data[4:])

    def call(self, api, version, body):
        return self.recv(self.send(api, version, body))

    # ---- APIs ----

    def produce(self, topic_parts, acks=-1, version=7, transactional_id=None, timeout_ms=5000):
        """topic_parts: {topic: {partition: records_blob}} -> {topic: {partition: dict}}."""
        body = _string(transactional_id) + struct.pack(">hii", acks, timeout_ms, len(topic_parts))
        for topic, parts in topic_parts.items():
            body += _string(topic) + struct.pack(">i", len(parts))
            for p, blob in parts.items():
                body += struct.pack(">i", p) + _bytes(blob)
        if acks == 0:
            self.send(0, version, body)
            return None
        r = self.call(0, version, body)

        def part():
            d = dict(partition=r.take(">i"), error=r.take(">h"), base_offset=r.take(">q"),
                     log_append_time=r.take(">q"))
            if version >= 5:
                d["log_start_offset"] = r.take(">q")
            return d

        topics = r.array(lambda: (r.string(), r.array(part)))
        r.take(">i")              # throttle_time_ms
        assert r.done(), "trailing bytes in Produce response"
        return {t: {p["partition"]: p for p in ps} for t, ps in topics}

    def fetch(self, topic_parts, max_wait_ms=0, min_bytes=1, max_bytes=50 << 20,
              isolation=1, version=5, partition_max_bytes=1 << 20):
        """topic_parts: {topic: {partition: offset}} -> {topic: {partition: dict}}."""
        body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, isolation)
        body += struct.pack(">i", len(topic_parts))
        for topic, parts in topic_parts.items():
            body += _string(topic) + struct.pack(">i", len(parts))
            for p, off in parts.items():
                body += struct.pack(">iq", p, off)
                if version >= 5:
                    body += struct.pack(">q", -1)
                body += struct.pack(">i", partition_max_bytes)
        r = self.call(1, version, body)
        r.take(">i")              # throttle_time_ms

        def part():
            d = dict(partition=r.take(">i"), error=r.take(">h"), high_watermark=r.take(">q"),
                     last_stable_offset=r.take(">q"))
            if version >= 5:
                d["log_start_offset"] = r.take(">q")
            d["aborted"] = r.array(lambda: r.take(">qq"))
            d["records_raw"] = r.bytes()
            d["batches"] = decode_batches(d["records_raw"] or b"")
            d["records"] = [rec for b in d["batches"] for rec in b["records"]]
            return d

        topics = r.array(lambda: (r.string(), r.array(part)))
        assert r.done(), "trailing bytes in Fetch response"
        return {t: {p["partition"]: p for p in ps} for t, ps in topics}

    def list_offsets(self, topic_parts, version=2, isolation=1):
        """topic_parts: {topic: {partition: timestamp}} -> {topic: {partition: dict}}."""
        body = struct.pack(">i", -1)
        if version >= 2:
            body += struct.pack(">b", isolation)
        body += struct.pack(">i", len(topic_parts))
        for topic, parts in topic_parts.items():
            body += _string(topic) + struct.pack(">i", len(parts))
            for p, ts in parts.items():
                body += struct.pack(">iq", p, ts)
        r = self.call(2, version, body)
        if version >= 2:
            r.take(">i")

        def part():
            return dict(partition=r.take(">i"), error=r.take(">h"), timestamp=r.take(">q"),
                        offset=r.take(">q"))

        topics = r.array(lambda: (r.string(), r.array(part)))
        assert r.done(), "trailing bytes in ListOffsets response"
        return {t: {p["partition"]: p for p in ps} for t, ps in topics}

    def metadata(self, topics, version=4):
        """topics: list of names, or None for all -> dict."""
        if topics is None:
            body = struct.pack(">i", 0 if version == 0 else -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(_string(t) for t in topics)
        if version >= 4:
            body += b"\x00"
        r = self.call(3, version, body)
        if version >= 3:
            r.take(">i")

        def broker():
            d = dict(node_id=r.take(">i"), host=r.string(), port=r.take(">i"))
            if version >= 1:
                d["rack"] = r.string()
            return d

        brokers = r.array(broker)
        cluster_id = r.string() if version >= 2 else None
        controller = r.take(">i") if version >= 1 else None

        def part():
            return dict(error=r.take(">h"), partition=r.take(">i"), leader=r.take(">i"),
                        replicas=r.array(lambda: r.take(">i")), isr=r.array(lambda: r.take(">i")))

        def topic():
            d = dict(error=r.take(">h"), name=r.string())
            if version >= 1:
                d["internal"] = r.take(">b")
            d["partitions"] = r.array(part)
            return d

        topics = r.array(topic)
        assert r.done(), "trailing bytes in Metadata response"
        return dict(brokers=brokers, cluster_id=cluster_id, controller=controller,
                    topics={t["name"]: t for t in topics})

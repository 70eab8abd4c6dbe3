"""Hand-written Kafka requests for the real-cluster tests: just enough of the
wire format to ask a broker (directly, or through kgate) something a client
library would not show, and to decode the answer independently of kgate.

- `produce_v11`: one record to one partition, acks=1. Sent to a broker that
  does not lead the partition, Kafka 3.7+ answers NOT_LEADER_OR_FOLLOWER with
  the KIP-951 `current_leader` and top-level `node_endpoints` (tag 0): the
  address of the real leader on the listener the request came in on.
- `fetch_v16`: a consumer fetch of one partition by topic id; to a non-leader
  the broker answers the same way, with `node_endpoints` in the response.
- `metadata_v12`, `describe_quorum`: for the address and version checks.
- `find_coordinator_v4`: group or transaction coordinators, by key.
- `api_versions_v3`.

`Conn` speaks plain TCP, or TLS with a given SNI name.

Every decoder checks lengths against the bytes it was given.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Optional

import crc32c as _crc32c


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    return uvarint((n << 1) ^ (n >> 63))


def cstr(s: Optional[str]) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def i8(n): return struct.pack(">b", n)
def i16(n): return struct.pack(">h", n)
def i32(n): return struct.pack(">i", n)
def i64(n): return struct.pack(">q", n)


TAGS0 = uvarint(0)


def header_v2(api_key: int, version: int, corr: int, client_id: str = "kgate-e2e-wire") -> bytes:
    cid = client_id.encode()
    return i16(api_key) + i16(version) + i32(corr) + i16(len(cid)) + cid + TAGS0


def header_v1(api_key: int, version: int, corr: int, client_id: str = "kgate-e2e-wire") -> bytes:
    cid = client_id.encode()
    return i16(api_key) + i16(version) + i32(corr) + i16(len(cid)) + cid


def record_batch(value: bytes, key: Optional[bytes] = None) -> bytes:
    """One record in a v2 batch, no producer id (not idempotent)."""
    now = int(time.time() * 1000)
    rec = i8(0) + varint(0) + varint(0)
    rec += varint(-1) if key is None else varint(len(key)) + key
    rec += varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    after_crc = i16(0) + i32(0) + i64(now) + i64(now) + i64(-1) + i16(-1) + i32(-1) + i32(1) + rec
    crc = struct.pack(">I", _crc32c.crc32c(after_crc))
    body = i32(-1) + i8(2) + crc + after_crc  # partition leader epoch, magic, crc
    return i64(0) + i32(len(body)) + body


def produce_v11(topic: str, partition: int, value: bytes, acks: int = 1, timeout_ms: int = 10000) -> bytes:
    batch = record_batch(value)
    part = i32(partition) + uvarint(len(batch) + 1) + batch + TAGS0
    topic_data = cstr(topic) + uvarint(2) + part + TAGS0
    return cstr(None) + i16(acks) + i32(timeout_ms) + uvarint(2) + topic_data + TAGS0


def fetch_v16(topic_id: bytes, partition: int, offset: int = 0, max_wait_ms: int = 100,
              current_leader_epoch: int = -1) -> bytes:
    assert len(topic_id) == 16
    part = i32(partition) + i32(current_leader_epoch) + i64(offset) + i32(-1) + i64(-1) + i32(1 << 20) + TAGS0
    topics = uvarint(2) + topic_id + uvarint(2) + part + TAGS0
    return (i32(max_wait_ms) + i32(1) + i32(1 << 20) + i8(0) + i32(0) + i32(-1) + topics
            + uvarint(1) + cstr("") + TAGS0)


def metadata_v12(topics: Optional[list[str]] = None) -> bytes:
    if topics is None:
        t = uvarint(0)  # null: all topics
    else:
        t = uvarint(len(topics) + 1) + b"".join(bytes(16) + cstr(n) + TAGS0 for n in topics)
    return t + i8(0) + i8(0) + TAGS0  # allow_auto_topic_creation, include_topic_authorized_operations


def find_coordinator_v4(keys: list[str], key_type: int = 0) -> bytes:
    """key_type 0: group, 1: transaction."""
    return i8(key_type) + uvarint(len(keys) + 1) + b"".join(cstr(k) for k in keys) + TAGS0


def describe_quorum_body() -> bytes:
    # __cluster_metadata, partition 0 (same body for v1 and v2)
    return uvarint(2) + cstr("__cluster_metadata") + uvarint(2) + i32(0) + TAGS0 + TAGS0 + TAGS0


def api_versions_v3() -> bytes:
    return cstr("kgate-e2e-wire") + cstr("1.0") + TAGS0


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


class Reader:
    def __init__(self, b: bytes):
        self.b = b
        self.i = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.b):
            raise ValueError(f"truncated: want {n} bytes at {self.i}, have {len(self.b) - self.i}")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        n = shift = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def cstr(self) -> Optional[str]:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def cbytes(self) -> Optional[bytes]:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)

    def carray_len(self) -> int:
        n = self.uvarint()
        return -1 if n == 0 else n - 1

    def tags(self) -> dict[int, bytes]:
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self.take(self.uvarint())
        return out

    def done(self) -> bool:
        return self.i == len(self.b)


@dataclass
class Endpoint:
    node_id: int
    host: str
    port: int
    rack: Optional[str]

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


def node_endpoints(tag0: bytes) -> list[Endpoint]:
    r = Reader(tag0)
    out = []
    for _ in range(max(0, r.carray_len())):
        nid = r.i32()
        host = r.cstr()
        port = r.i32()
        rack = r.cstr()
        r.tags()
        out.append(Endpoint(nid, host or "", port, rack))
    if not r.done():
        raise ValueError("trailing bytes in node_endpoints")
    return out


@dataclass
class LeaderAnswer:
    """A Produce or Fetch answer for one partition."""

    error_code: int
    current_leader: Optional[tuple[int, int]]  # (leader id, epoch)
    node_endpoints: list[Endpoint] = field(default_factory=list)
    has_node_endpoints: bool = False


def parse_produce_v11(body: bytes) -> LeaderAnswer:
    r = Reader(body)
    ans = None
    for _ in range(r.carray_len()):
        r.cstr()
        for _ in range(r.carray_len()):
            r.i32()
            err = r.i16()
            r.i64(); r.i64(); r.i64()
            for _ in range(max(0, r.carray_len())):
                r.i32(); r.cstr(); r.tags()
            r.cstr()
            tags = r.tags()
            leader = None
            if 0 in tags:
                lr = Reader(tags[0])
                leader = (lr.i32(), lr.i32())
            ans = LeaderAnswer(err, leader)
        r.tags()
    r.i32()  # throttle
    tags = r.tags()
    if not r.done():
        raise ValueError("trailing bytes after the Produce response")
    if ans is None:
        raise ValueError("no partition in the Produce response")
    if 0 in tags:
        ans.has_node_endpoints = True
        ans.node_endpoints = node_endpoints(tags[0])
    return ans


def parse_fetch_v16(body: bytes) -> LeaderAnswer:
    r = Reader(body)
    r.i32()
    top_err = r.i16()
    r.i32()
    ans = LeaderAnswer(top_err, None)
    for _ in range(r.carray_len()):
        r.take(16)
        for _ in range(r.carray_len()):
            r.i32()
            err = r.i16()
            r.i64(); r.i64(); r.i64()
            for _ in range(max(0, r.carray_len())):
                r.i64(); r.i64(); r.tags()
            r.i32()
            r.cbytes()
            tags = r.tags()
            leader = None
            if 1 in tags:
                lr = Reader(tags[1])
                leader = (lr.i32(), lr.i32())
            ans = LeaderAnswer(err, leader)
        r.tags()
    tags = r.tags()
    if not r.done():
        raise ValueError("trailing bytes after the Fetch response")
    if 0 in tags:
        ans.has_node_endpoints = True
        ans.node_endpoints = node_endpoints(tags[0])
    return ans


def parse_metadata_v12_brokers(body: bytes) -> list[Endpoint]:
    r = Reader(body)
    r.i32()
    out = []
    for _ in range(r.carray_len()):
        nid = r.i32()
        host = r.cstr()
        port = r.i32()
        rack = r.cstr()
        r.tags()
        out.append(Endpoint(nid, host or "", port, rack))
    return out


@dataclass
class Coordinator:
    key: str
    node_id: int
    host: str
    port: int
    error_code: int
    error_message: Optional[str]


def parse_find_coordinator_v4(body: bytes) -> list[Coordinator]:
    r = Reader(body)
    r.i32()  # throttle_time_ms
    out = []
    for _ in range(r.carray_len()):
        key = r.cstr() or ""
        nid = r.i32()
        host = r.cstr() or ""
        port = r.i32()
        err = r.i16()
        msg = r.cstr()
        r.tags()
        out.append(Coordinator(key, nid, host, port, err, msg))
    r.tags()
    if not r.done():
        raise ValueError("trailing bytes after the FindCoordinator response")
    return out


# --------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------


class Conn:
    """One TCP connection; request() sends a framed request and returns the
    response body (after the header), or raises ConnectionError when the peer
    closes instead of answering."""

    def __init__(self, host: str, port: int, timeout: float = 15, tls=None, server_hostname: Optional[str] = None):
        """`tls`: an ssl.SSLContext; then `server_hostname` is the SNI name
        (and the name the certificate is checked against)."""
        self.s = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            self.s = tls.wrap_socket(self.s, server_hostname=server_hostname)
        self.corr = 100

    def close(self) -> None:
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def request(self, api_key: int, version: int, body: bytes, flexible: bool = True,
                response_header_flexible: Optional[bool] = None) -> bytes:
        self.corr += 1
        hdr = header_v2(api_key, version, self.corr) if flexible else header_v1(api_key, version, self.corr)
        frame = hdr + body
        self.s.sendall(i32(len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        if size < 4 or size > 64 << 20:
            raise ValueError(f"bad response size {size}")
        resp = self._read(size)
        r = Reader(resp)
        corr = r.i32()
        if corr != self.corr:
            raise ValueError(f"correlation id {corr}, expected {self.corr}")
        if response_header_flexible if response_header_flexible is not None else flexible:
            r.tags()
        return resp[r.i:]


def api_versions(host: str, port: int) -> dict[int, tuple[int, int]]:
    with Conn(host, port) as c:
        body = c.request(18, 3, api_versions_v3(), flexible=True, response_header_flexible=False)
    r = Reader(body)
    err = r.i16()
    if err:
        raise ValueError(f"ApiVersions error {err}")
    out = {}
    for _ in range(r.carray_len()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.tags()
        out[k] = (lo, hi)
    return out

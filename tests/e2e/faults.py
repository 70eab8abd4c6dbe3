"""Helpers for the fault suite (test_faults.py): a canary client, a Metadata
injecting man-in-the-middle in front of a real broker, process numbers from
/proc, a Prometheus scrape, and running a scenario inside a private network
namespace.

- `Canary`: a confluent-kafka producer (acks=all) and consumer that run in
  threads for the whole scenario; `window(t0, t1)` says how many records were
  acked in a time window, `finish()` reads the topic back and returns what was
  acked but is missing.
- `MetadataInjector`: an asyncio proxy in front of tansu (which must
  advertise the injector's address). Requests and responses pass through byte
  for byte, except Metadata responses: their `brokers` array is decoded and
  re-encoded with extra brokers appended (any version, 0-12, flexible or
  not); topics and everything after are copied unchanged. It is the
  "malicious broker": a real broker whose answers name whatever the test
  wants. A real client (librdkafka) decoding its answers is the check of its
  encoding (test_faults checks that, directly, without kgate).
- `proc_rss_kb`, `proc_fds`: from /proc/PID.
- `scrape(admin_port)`: {metric name with labels: value}.
- `run_in_netns(argv)`: `unshare -n` with only `lo` up, plus 10.99.0.1/32 on
  `lo` (a non-loopback address that still never leaves the namespace).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional

LOOPBACK = "127.0.0.1"
NETNS_ADDR = "10.99.0.1"


# --------------------------------------------------------------------------
# /proc and the admin endpoint
# --------------------------------------------------------------------------


def proc_rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    c = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(admin_port: int) -> dict[str, float]:
    """`name{labels}` and `name` (the sum over labels) -> value."""
    code, body = http_get(admin_port, "/metrics")
    if code != 200:
        raise RuntimeError(f"/metrics answered {code}")
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        name, labels = m.group(1), m.group(2) or ""
        if labels:
            out[name + labels] = v
            out[name] = out.get(name, 0.0) + v
        else:
            out[name] = v
    return out


def wait_until(what: str, fn, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_lines(path, since: int = 0) -> list[str]:
    with open(path, "rb") as f:
        f.seek(since)
        return f.read().decode("utf-8", "replace").splitlines()


def file_size(path) -> int:
    return os.path.getsize(path)


# --------------------------------------------------------------------------
# The canary: a well-behaved producer and consumer
# --------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 30) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=15, request_timeout=30)
    try:
        fs[topic].result(timeout=timeout)
    except Exception as e:  # noqa: BLE001
        if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
            raise

    def ready():
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        return md is not None and md.error is None and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values())

    wait_until(f"topic {topic}", ready, timeout, 0.2)


class Canary:
    """Produces one record every `interval` s (acks=all) and consumes the topic
    (partition 0, or the whole topic in a group with use_group) from the
    beginning, both in threads, until stop()."""

    def __init__(self, bootstrap: str, topic: str, name: str = "canary", interval: float = 0.05,
                 create: bool = True, extra: Optional[dict] = None, producer_extra: Optional[dict] = None,
                 consumer_extra: Optional[dict] = None, flush_s: float = 60, use_group: bool = False):
        from confluent_kafka import Consumer, Producer

        self.bootstrap, self.topic, self.name, self.interval = bootstrap, topic, name, interval
        self.flush_s = flush_s
        self.use_group = use_group
        if create:
            create_topic(bootstrap, topic)
        common = {"bootstrap.servers": bootstrap, "client.id": name, "socket.timeout.ms": 10000, "log_level": 3,
                  "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000,
                  "topic.metadata.refresh.interval.ms": 5000, **(extra or {})}
        self.producer = Producer({**common, "acks": "all", "linger.ms": 0, "message.timeout.ms": 120000,
                                  "retries": 1000000, "retry.backoff.ms": 100, **(producer_extra or {})})
        self.consumer = Consumer({**common, "group.id": f"{name}-{uuid.uuid4().hex[:6]}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                  "fetch.wait.max.ms": 200, **(consumer_extra or {})})
        self.lock = threading.Lock()
        self.sent = 0
        self.acked: dict[str, float] = {}  # value -> ack time (monotonic)
        self.ack_times: list[float] = []
        self.errors: list[str] = []
        self.consumed: dict[str, float] = {}
        self.consume_errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._produce, daemon=True, name=f"{name}-produce"),
                         threading.Thread(target=self._consume, daemon=True, name=f"{name}-consume")]
        self.started = time.monotonic()
        for t in self._threads:
            t.start()

    def _cb(self, err, msg):
        v = msg.value().decode()
        with self.lock:
            if err is not None:
                self.errors.append(f"{v}: {err}")
            else:
                now = time.monotonic()
                self.acked[v] = now
                self.ack_times.append(now)

    def _produce(self):
        seq = 0
        while not self._stop.is_set():
            v = f"{self.name}-{seq:07d}"
            try:
                self.producer.produce(self.topic, value=v, on_delivery=self._cb)
                seq += 1
                with self.lock:
                    self.sent = seq
            except BufferError:
                pass
            self.producer.poll(0)
            time.sleep(self.interval)
        self.producer.flush(self.flush_s)

    def _consume(self):
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        if self.use_group:
            self.consumer.subscribe([self.topic])
        else:  # no group: only Metadata, ListOffsets and Fetch, so a stall is the data path's
            self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        while not self._stop.is_set():
            for m in self.consumer.consume(num_messages=200, timeout=0.2):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        with self.lock:
                            self.consume_errors.append(str(m.error()))
                    continue
                with self.lock:
                    self.consumed[m.value().decode()] = time.monotonic()
        self.consumer.close()

    def acked_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.ack_times if t0 <= t < t1)

    def consumed_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.consumed.values() if t0 <= t < t1)

    def max_ack_gap(self, t0: float, t1: float) -> float:
        """The longest time without an ack between t0 and t1 (the outage a
        producer saw, recovery included)."""
        with self.lock:
            ts = [t0] + sorted(x for x in self.ack_times if t0 <= x <= t1) + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def wait_acks(self, n: int, timeout: float) -> float:
        """Waits until n more records are acked; returns the seconds it took."""
        t0 = time.monotonic()
        with self.lock:
            base = len(self.ack_times)
        wait_until(f"{self.name}: {n} more acks", lambda: len(self.ack_times) >= base + n, timeout, 0.05)
        return time.monotonic() - t0

    def first_ack_after(self, t: float, timeout: float) -> float:
        """Seconds from t to the first ack after t (waiting up to timeout)."""
        def find():
            with self.lock:
                later = [x for x in self.ack_times if x >= t]
            return min(later) if later else None
        return wait_until(f"{self.name}: an ack", find, timeout, 0.05) - t

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def summary(self) -> dict:
        with self.lock:
            return {"sent": self.sent, "acked": len(self.acked), "errors": len(self.errors),
                    "first_errors": self.errors[:3], "consumed": len(self.consumed),
                    "consume_errors": self.consume_errors[:3]}


def read_all(bootstrap: str, topic: str, expect: set, timeout: float = 60) -> set:
    """Every value in `topic` (a fresh consumer from the beginning), reading
    until `expect` is covered, the end of every partition is reached, or the
    timeout."""
    from confluent_kafka import Consumer, KafkaError

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True, "log_level": 3, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    seen: set = set()
    eof = False
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        idle_eof = 0
        while time.monotonic() < deadline:
            ms = c.consume(num_messages=500, timeout=0.5)
            for m in ms:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof = True
                    continue
                seen.add(m.value().decode())
            if expect <= seen:
                break
            if eof and not ms:
                idle_eof += 1
                if idle_eof > 6:
                    break
    finally:
        c.close()
    return seen


# --------------------------------------------------------------------------
# Kafka wire bits for the injector
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


def read_uvarint(b: bytes, pos: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        if pos >= len(b):
            raise ValueError("truncated varint")
        x = b[pos]
        pos += 1
        n |= (x & 0x7F) << shift
        if not x & 0x80:
            return n, pos
        shift += 7
        if shift > 35:
            raise ValueError("varint too long")


def decode_with_kafka_python(payload: bytes, version: int):
    """kafka-python's own decoder for a Metadata response payload (with the
    correlation id): an independent check of the injector's encoding."""
    from kafka.protocol.metadata import MetadataResponse

    pos = 4
    if metadata_flexible(version):
        ntags, pos = read_uvarint(payload, pos)
        for _ in range(ntags):
            _, pos = read_uvarint(payload, pos)
            size, pos = read_uvarint(payload, pos)
            pos += size
    import io

    return MetadataResponse[version].decode(io.BytesIO(payload[pos:]))


def metadata_flexible(version: int) -> bool:
    return version >= 9


@dataclass
class Broker:
    node_id: int
    host: str
    port: int
    rack: Optional[str] = None


def encode_broker(b: Broker, version: int) -> bytes:
    flex = metadata_flexible(version)
    host = b.host.encode()
    out = struct.pack(">i", b.node_id)
    out += (uvarint(len(host) + 1) + host) if flex else (struct.pack(">h", len(host)) + host)
    out += struct.pack(">i", b.port)
    if version >= 1:
        if b.rack is None:
            out += b"\x00" if flex else struct.pack(">h", -1)
        else:
            r = b.rack.encode()
            out += (uvarint(len(r) + 1) + r) if flex else (struct.pack(">h", len(r)) + r)
    if flex:
        out += b"\x00"
    return out


def rewrite_metadata_response(payload: bytes, version: int, extra: list[Broker]) -> tuple[bytes, list[Broker]]:
    """payload: a Metadata response without its length prefix. Returns the
    payload with `extra` appended to `brokers`, and the brokers it had."""
    flex = metadata_flexible(version)
    pos = 4  # correlation id
    if flex:  # response header v1: tagged fields
        ntags, pos = read_uvarint(payload, pos)
        for _ in range(ntags):
            _, pos = read_uvarint(payload, pos)
            size, pos = read_uvarint(payload, pos)
            pos += size
    head_end = pos
    if version >= 3:
        pos += 4  # throttle_time_ms
    pre = payload[head_end:pos]
    if flex:
        n1, pos = read_uvarint(payload, pos)
        n = n1 - 1
    else:
        (n,) = struct.unpack_from(">i", payload, pos)
        pos += 4
    had = []
    for _ in range(max(n, 0)):
        (node,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        if flex:
            ln, pos = read_uvarint(payload, pos)
            ln -= 1
        else:
            (ln,) = struct.unpack_from(">h", payload, pos)
            pos += 2
        host = payload[pos:pos + ln].decode()
        pos += ln
        (port,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        rack = None
        if version >= 1:
            if flex:
                ln, pos = read_uvarint(payload, pos)
                ln -= 1
            else:
                (ln,) = struct.unpack_from(">h", payload, pos)
                pos += 2
            if ln >= 0:
                rack = payload[pos:pos + ln].decode()
                pos += ln
        if flex:
            ntags, pos = read_uvarint(payload, pos)
            for _ in range(ntags):
                _, pos = read_uvarint(payload, pos)
                size, pos = read_uvarint(payload, pos)
                pos += size
        had.append(Broker(node, host, port, rack))
    brokers = had + list(extra)
    count = uvarint(len(brokers) + 1) if flex else struct.pack(">i", len(brokers))
    body = b"".join(encode_broker(b, version) for b in brokers)
    return payload[:head_end] + pre + count + body + payload[pos:], had


class MetadataInjector:
    """A byte-for-byte proxy to `upstream` that appends `self.extra` to the
    brokers of every Metadata response. Runs its own event loop in a thread."""

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int]):
        self.upstream, self.listen = upstream, listen
        self.extra: list[Broker] = []
        self.metadata_responses = 0
        self.connections = 0
        self.port: Optional[int] = None
        self._loop = None
        self._thread = None
        self._server = None
        self.errors: list[str] = []
        self.last: dict[int, tuple[bytes, bytes]] = {}  # version -> (original, rewritten) payload

    def set_extra(self, brokers: list[Broker]) -> None:
        self.extra = list(brokers)
        # Only answers rewritten with this set count from now on (kgate's
        # probe asks every few seconds, so an older v4 answer may linger).
        self.last = {}

    async def _pump_requests(self, r, w, pending: dict):
        try:
            while True:
                head = await r.readexactly(4)
                (n,) = struct.unpack(">i", head)
                body = await r.readexactly(n)
                key, ver, corr = struct.unpack_from(">hhi", body, 0)
                pending[corr] = (key, ver)
                w.write(head + body)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _pump_responses(self, r, w, pending: dict):
        try:
            while True:
                head = await r.readexactly(4)
                (n,) = struct.unpack(">i", head)
                body = await r.readexactly(n)
                (corr,) = struct.unpack_from(">i", body, 0)
                key, ver = pending.pop(corr, (None, None))
                if key == 3 and self.extra:
                    try:
                        orig = body
                        body, _ = rewrite_metadata_response(body, ver, self.extra)
                        self.last[ver] = (orig, body)
                        self.metadata_responses += 1
                    except Exception as e:  # noqa: BLE001
                        self.errors.append(f"metadata v{ver}: {e!r}")
                    head = struct.pack(">i", len(body))
                w.write(head + body)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _handle(self, cr, cw):
        self.connections += 1
        try:
            ur, uw = await asyncio.open_connection(*self.upstream)
        except OSError:
            cw.close()
            return
        pending: dict = {}
        await asyncio.gather(self._pump_requests(cr, uw, pending), self._pump_responses(ur, cw, pending))

    def start(self) -> "MetadataInjector":
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, *self.listen,
                                                                         reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="metadata-injector")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the metadata injector did not start")
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


# --------------------------------------------------------------------------
# Private network namespace
# --------------------------------------------------------------------------


def netns_prefix() -> list[str]:
    """argv prefix: a new network namespace with only `lo` up and
    NETNS_ADDR/32 on lo; the command follows as "$@"."""
    for tool in ("unshare", "ip"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} not found: the fault suite needs util-linux unshare and iproute2 ip")
    script = (f"ip link set lo up && ip addr add {NETNS_ADDR}/32 dev lo && "
              "test \"$(ip -o link show | grep -vc ': lo:')\" = 0 && exec \"$@\"")
    # root: a plain network namespace; otherwise a user namespace maps us to root in it
    flags = "-n" if os.geteuid() == 0 else "-rn"
    return ["unshare", flags, "sh", "-c", script, "netns"]


def kill_tree(p: subprocess.Popen, sig=None) -> None:
    import signal as _s

    if p.poll() is None:
        p.send_signal(sig or _s.SIGKILL)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()

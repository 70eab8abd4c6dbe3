"""kgate's operational contract, against the real binary and tansu.

- metrics: /metrics on `admin_listen`, scraped before, during and after
  produce/consume traffic through kgate and after garbage, parsed with
  prometheus_client's parser; counters move by at least the traffic's size,
  the request-duration histogram is well formed.
- probes: /healthz 200; /readyz 503 while the upstream has never been reached,
  200 once it has (kgate probes it by itself, no client involved), 503 while
  draining after SIGTERM; a second SIGTERM exits at once.
- graceful hand-off: an idempotent producer (acks=all) sends continuously
  through kgate; kgate is stopped with SIGTERM and a new one started on the
  same ports right after; every acknowledged record is in tansu exactly once.
- limits: `max_connections_per_listener`, `max_connections` (the connection
  over the limit is closed at once, the others keep working, a freed slot is
  reused), `idle_timeout_ms`.

Configuration keys used: admin_listen, drain_timeout_ms,
max_connections_per_listener, max_connections, idle_timeout_ms. A kgate that
does not accept one of them fails the test with check-config's message.
"""

from __future__ import annotations

import http.client
import logging
import signal
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

import pytest

from harness import (
    DIRECT,
    LOOPBACK,
    Kgate,
    Proc,
    Upstream,
    free_port,
    kgate_bin,
    pick_port_base,
    poll_until,
    run_dir,
    stop_kgate,
    tansu_bin,
    wait_for_port,
)
from tls_support import kgate_env, to_toml

pytestmark = pytest.mark.skipif(DIRECT, reason="KGATE_DIRECT=1: the ops contract is kgate's own")

TANSU_NODE = 111  # tansu's only broker
RECORD_BYTES = 1000


# --------------------------------------------------------------------------
# Starting kgate with an admin endpoint
# --------------------------------------------------------------------------


@dataclass
class OpsKgate:
    kg: Kgate
    admin_port: int
    config: str

    @property
    def proc(self) -> Proc:
        return self.kg.proc

    @property
    def port_base(self) -> int:
        return self.kg.port_base

    @property
    def bootstrap(self) -> str:
        return self.kg.bootstrap_servers

    @property
    def broker_port(self) -> int:
        return self.port_base + 1 + TANSU_NODE

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, str]:
        c = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def status(self, path: str) -> Optional[int]:
        """The HTTP status, or None when the admin endpoint does not answer."""
        try:
            return self.get(path)[0]
        except OSError:
            return None

    def scrape(self) -> "Scrape":
        code, body = self.get("/metrics")
        assert code == 200, f"/metrics answered {code}: {body[:500]}"
        return Scrape(body)

    def stop(self) -> None:
        stop_kgate(self.kg)


def _check_config(path) -> None:
    import subprocess

    r = subprocess.run([str(kgate_bin()), "check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=30, env=kgate_env())
    if r.returncode != 0:
        pytest.fail(f"kgate does not accept this test's configuration (the ops contract):\n"
                    f"{(r.stdout + r.stderr).strip()}\n--- {path} ---\n{path.read_text()}", pytrace=False)


def start_ops_kgate(name: str, upstream: Upstream, cfg: dict, port_base: Optional[int] = None,
                    wait_ready_port: bool = True) -> OpsKgate:
    """kgate run --config FILE with admin_listen on a free port. With
    `port_base`, that exact port base (retrying the bind for a few seconds)."""
    binary = kgate_bin()
    if not binary.exists():
        pytest.fail(f"kgate binary not found at {binary}: build it (cargo build) or set KGATE_BIN", pytrace=False)
    avoid = {p for _, p in upstream.bootstrap}
    deadline = time.monotonic() + 10
    last = None
    while True:
        pb = port_base if port_base is not None else pick_port_base(upstream.node_ids, avoid)
        admin = free_port()
        full = {"bootstrap": [f"{h}:{p}" for h, p in upstream.bootstrap], "port_base": pb,
                "admin_listen": f"{LOOPBACK}:{admin}", **cfg}
        path = run_dir() / f"kgate-{name}.toml"
        path.write_text(to_toml(full))
        _check_config(path)
        proc = Proc(f"kgate-{name}", [binary, "run", "--config", str(path)], env=kgate_env())
        kg = Kgate(upstream, pb, f"{LOOPBACK}:{pb}", proc)
        try:
            wait_for_port(pb, 20, proc)
            wait_for_port(admin, 20, proc)
            return OpsKgate(kg, admin, path.read_text())
        except (RuntimeError, TimeoutError) as e:
            proc.stop()
            last = e
            bind_error = any(s in proc.log_text().lower() for s in ("address already in use", "os error 98"))
            if not bind_error or time.monotonic() > deadline:
                raise RuntimeError(f"kgate-{name} did not start:\n{e}") from None
            if port_base is None:
                avoid.add(pb)
            time.sleep(0.2)
    raise RuntimeError(str(last))


def start_tansu(name: str, port: int) -> Proc:
    url = f"tcp://{LOOPBACK}:{port}"
    proc = Proc(name, [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                       "--storage-engine", "memory://tansu/"])
    wait_for_port(port, 30, proc)
    return proc


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)
    poll_until(f"topic {topic}", lambda: len(admin.list_topics(topic, timeout=5).topics[topic].partitions)
               == partitions, 30)


# --------------------------------------------------------------------------
# Prometheus text
# --------------------------------------------------------------------------


class Scrape:
    def __init__(self, text: str):
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: list[tuple[str, dict, float]] = [
            (s.name, dict(s.labels), s.value) for f in self.families for s in f.samples
        ]

    def find(self, name: str, **labels) -> list[tuple[dict, float]]:
        return [(l, v) for n, l, v in self.samples if n == name and all(l.get(k) == w for k, w in labels.items())]

    def total(self, name: str, **labels) -> float:
        return sum(v for _, v in self.find(name, **labels))

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)

    def label_values(self, name: str, label: str) -> set[str]:
        return {l[label] for l, _ in self.find(name) if label in l}

    def excerpt(self, prefix: str) -> str:
        return "\n".join(l for l in self.text.splitlines() if l.startswith(prefix))[:3000]


def histogram_problems(s: Scrape, name: str) -> list[str]:
    """Every label set of histogram `name`: buckets non-decreasing in le, a
    +Inf bucket equal to _count, a non-negative _sum."""
    problems = []
    series: dict[tuple, dict] = {}
    for n, l, v in s.samples:
        if n == f"{name}_bucket":
            key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
            series.setdefault(key, {"buckets": []})["buckets"].append((float(l["le"]), v))
        elif n in (f"{name}_count", f"{name}_sum"):
            key = tuple(sorted(l.items()))
            series.setdefault(key, {"buckets": []})[n.rsplit("_", 1)[1]] = v
    if not series:
        return [f"no {name} samples at all"]
    for key, d in series.items():
        b = sorted(d["buckets"])
        vals = [v for _, v in b]
        if not b or b[-1][0] != float("inf"):
            problems.append(f"{key}: no +Inf bucket")
            continue
        if any(x > y for x, y in zip(vals, vals[1:])):
            problems.append(f"{key}: buckets decrease: {b}")
        if "count" not in d or d["count"] != vals[-1]:
            problems.append(f"{key}: +Inf bucket {vals[-1]} != _count {d.get('count')}")
        if d.get("sum", -1) < 0:
            problems.append(f"{key}: _sum {d.get('sum')}")
    return problems


# --------------------------------------------------------------------------
# Raw Kafka requests
# --------------------------------------------------------------------------


def kafka_request(api_key: int, version: int, corr: int, body: bytes = b"", client_id: str = "kgate-ops") -> bytes:
    cid = client_id.encode()
    head = struct.pack(">hhih", api_key, version, corr, len(cid)) + cid
    return struct.pack(">i", len(head) + len(body)) + head + body


def api_versions(corr: int) -> bytes:
    return kafka_request(18, 0, corr)


def metadata_all(corr: int) -> bytes:
    return kafka_request(3, 4, corr, struct.pack(">ib", -1, 0))  # all topics, no auto-create


def read_frame(sock: socket.socket, timeout: float) -> Optional[bytes]:
    """One response frame; None on EOF or reset; raises TimeoutError."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while len(buf) < 4:
            chunk = sock.recv(4 - len(buf))
            if not chunk:
                return None
            buf += chunk
        (n,) = struct.unpack(">i", buf)
        body = b""
        while len(body) < n:
            chunk = sock.recv(min(65536, n - len(body)))
            if not chunk:
                return None
            body += chunk
        return body
    except (ConnectionResetError, BrokenPipeError):
        return None
    except socket.timeout:
        raise TimeoutError("no response") from None


class Conn:
    """A raw client connection that speaks ApiVersions v0."""

    def __init__(self, port: int, name: str):
        self.name = name
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self.corr = 0

    def roundtrip(self, timeout: float = 5.0, request=api_versions) -> str:
        """'response', 'closed' or 'timeout'."""
        self.corr += 1
        try:
            self.sock.sendall(request(self.corr))
        except OSError:
            return "closed"
        try:
            frame = read_frame(self.sock, timeout)
        except TimeoutError:
            return "timeout"
        if frame is None:
            return "closed"
        (corr,) = struct.unpack(">i", frame[:4])
        assert corr == self.corr, f"{self.name}: correlation id {corr}, expected {self.corr}"
        return "response"

    def wait_closed(self, timeout: float) -> Optional[float]:
        """Seconds until the peer closed the connection, or None."""
        t0 = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
            return time.monotonic() - t0 if not data else None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        except socket.timeout:
            return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def garbage(port: int, payload: bytes) -> str:
    """Sends `payload` on a new connection; 'closed' when kgate hung up."""
    s = socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        s.sendall(payload)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
            return "closed"
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        except socket.timeout:
            return "open"
    finally:
        s.close()


class RdLog(logging.Handler):
    """librdkafka's log lines (with debug=protocol), searchable."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.logger = logging.getLogger(f"rdkafka-ops-{uuid.uuid4().hex[:6]}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())

    def seen(self, text: str) -> bool:
        return any(text in l for l in list(self.lines))


def fetch_in_flight(bootstrap: str, topic: str, wait_ms: int):
    """A consumer with a Fetch parked at the broker for `wait_ms` (empty
    partition, long fetch.wait.max.ms). Returns (consumer, log, stop event)
    once its first FetchRequest is on the wire; a thread keeps polling."""
    from confluent_kafka import Consumer, TopicPartition

    log = RdLog()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ops-{uuid.uuid4().hex[:6]}",
                  "fetch.wait.max.ms": wait_ms, "socket.timeout.ms": max(60000, wait_ms + 20000),
                  "enable.auto.commit": False, "debug": "protocol", "logger": log.logger})
    c.assign([TopicPartition(topic, 0, 0)])
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            c.poll(0.2)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    poll_until("the consumer's first FetchRequest", lambda: log.seen("Sent FetchRequest"), 20)
    return c, log, stop, t


# ==========================================================================
# Metrics
# ==========================================================================

PRODUCE_REQUESTS = 40


@dataclass
class MetricsRun:
    okg: OpsKgate
    before: Scrape
    during: Scrape
    after: Scrape
    after_garbage: Scrape
    produced: int
    payload_bytes: int
    consumed_bytes: int
    garbage_outcomes: dict = field(default_factory=dict)
    open_after_close: float = -1


@pytest.fixture(scope="module")
def metrics_run(tansu) -> MetricsRun:
    from confluent_kafka import Consumer, Producer, TopicPartition

    okg = start_ops_kgate("metrics", tansu, {})
    try:
        before = okg.scrape()
        topic = f"ops-metrics-{uuid.uuid4().hex[:8]}"
        create_topic(okg.bootstrap, topic, 1)
        # One Produce request per record: acks=1, no batching, flush each time.
        p = Producer({"bootstrap.servers": okg.bootstrap, "acks": 1, "linger.ms": 0, "enable.idempotence": False,
                      "compression.type": "none", "max.in.flight.requests.per.connection": 1})
        value = b"m" * RECORD_BYTES
        for i in range(PRODUCE_REQUESTS):
            p.produce(topic, key=str(i).encode(), value=value)
            assert p.flush(10) == 0
        c = Consumer({"bootstrap.servers": okg.bootstrap, "group.id": f"ops-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, 0, 0)])
        got, deadline = 0, time.monotonic() + 30
        consumed_bytes = 0
        while got < PRODUCE_REQUESTS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
                consumed_bytes += len(m.value())
        assert got == PRODUCE_REQUESTS, f"consumed {got} of {PRODUCE_REQUESTS} through kgate"
        during = okg.scrape()  # producer and consumer still connected
        c.close()
        del p
        import gc

        gc.collect()
        open_after = -1.0

        def closed() -> bool:
            nonlocal open_after
            open_after = okg.scrape().total("kgate_connections_open")
            return open_after <= before.total("kgate_connections_open")

        try:
            poll_until("kgate_connections_open back to its value before the clients", closed, 15, 0.3)
        except TimeoutError:
            pass  # asserted in its own test
        after = okg.scrape()
        outcomes = {
            "negative length": garbage(okg.port_base, b"\xff\xff\xff\xff"),
            "HTTP request": garbage(okg.port_base, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            "2 GiB frame": garbage(okg.port_base, b"\x7f\xff\xff\xff" + b"\x00" * 16),
        }
        time.sleep(0.5)
        after_garbage = okg.scrape()
        yield MetricsRun(okg, before, during, after, after_garbage, PRODUCE_REQUESTS,
                         PRODUCE_REQUESTS * RECORD_BYTES, consumed_bytes, outcomes, open_after)
    finally:
        okg.stop()


def delta(a: Scrape, b: Scrape, name: str, **labels) -> float:
    return b.total(name, **labels) - a.total(name, **labels)


def test_metrics_endpoint_is_prometheus_text(metrics_run: MetricsRun) -> None:
    okg = metrics_run.okg
    c = http.client.HTTPConnection(LOOPBACK, okg.admin_port, timeout=3)
    c.request("GET", "/metrics")
    r = c.getresponse()
    r.read()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/plain"), (
        r.status, r.getheader("Content-Type"))
    names = sorted({f.name for f in metrics_run.after.families})
    assert any(n.startswith("kgate_") for n in names), names


def test_metrics_connections(metrics_run: MetricsRun) -> None:
    b, d, a = metrics_run.before, metrics_run.during, metrics_run.after
    assert d.has("kgate_connections_total"), d.excerpt("kgate_conn")
    grew = delta(b, d, "kgate_connections_total")
    assert grew >= 2, f"kgate_connections_total grew by {grew}; expected the bootstrap and broker connections"
    listeners = d.label_values("kgate_connections_total", "listener")
    assert len(listeners) >= 2, f"listener labels {listeners}: expected the bootstrap and the broker listener"
    assert d.total("kgate_connections_open") >= 2, d.excerpt("kgate_connections_open")
    assert metrics_run.open_after_close <= b.total("kgate_connections_open"), (
        f"kgate_connections_open is {metrics_run.open_after_close} after every client closed "
        f"(was {b.total('kgate_connections_open')} before):\n{a.excerpt('kgate_connections_open')}")


def test_metrics_requests_and_responses(metrics_run: MetricsRun) -> None:
    b, a = metrics_run.before, metrics_run.after
    req = delta(b, a, "kgate_requests_total", api_key="Produce")
    assert req >= metrics_run.produced, f"Produce requests +{req}, expected >= {metrics_run.produced}:\n" + \
        a.excerpt("kgate_requests_total")
    resp = delta(b, a, "kgate_responses_total", api_key="Produce")
    assert resp >= metrics_run.produced, f"Produce responses +{resp} (acks=1), expected >= {metrics_run.produced}"
    assert a.total("kgate_responses_total") <= a.total("kgate_requests_total"), "more responses than requests"
    fetches = delta(b, a, "kgate_requests_total", api_key="Fetch")
    assert fetches >= 1, a.excerpt("kgate_requests_total")


def test_metrics_bytes(metrics_run: MetricsRun) -> None:
    b, a = metrics_run.before, metrics_run.after
    up = delta(b, a, "kgate_bytes_total", direction="client_to_broker")
    down = delta(b, a, "kgate_bytes_total", direction="broker_to_client")
    assert up >= metrics_run.payload_bytes, f"client_to_broker +{up} < produced payload {metrics_run.payload_bytes}"
    assert down >= metrics_run.consumed_bytes, f"broker_to_client +{down} < fetched payload {metrics_run.consumed_bytes}"
    assert len(a.label_values("kgate_bytes_total", "listener")) >= 2, a.excerpt("kgate_bytes_total")


def test_metrics_request_duration_histogram(metrics_run: MetricsRun) -> None:
    a = metrics_run.after
    problems = histogram_problems(a, "kgate_request_duration_seconds")
    assert not problems, "\n".join(problems) + "\n" + a.excerpt("kgate_request_duration_seconds")[:2000]
    n = delta(metrics_run.before, a, "kgate_request_duration_seconds_count", api_key="Produce")
    assert n >= metrics_run.produced, f"Produce durations observed +{n}"


def test_metrics_listeners(metrics_run: MetricsRun) -> None:
    a = metrics_run.after
    assert a.total("kgate_listeners") >= 2, f"kgate_listeners: {a.excerpt('kgate_listeners')!r}; " \
        "expected the bootstrap and tansu's node 111"
    created = a.total("kgate_dynamic_listeners_created_total")
    assert created >= 1, f"kgate_dynamic_listeners_created_total = {created}"


def test_metrics_protocol_errors(metrics_run: MetricsRun) -> None:
    b, a = metrics_run.after, metrics_run.after_garbage
    assert all(v == "closed" for v in metrics_run.garbage_outcomes.values()), metrics_run.garbage_outcomes
    grew = delta(b, a, "kgate_protocol_errors_total")
    assert grew >= 1, f"kgate_protocol_errors_total +{grew} after {list(metrics_run.garbage_outcomes)}:\n" + \
        a.excerpt("kgate_protocol_errors_total")
    kinds = a.label_values("kgate_protocol_errors_total", "kind")
    assert kinds, a.excerpt("kgate_protocol_errors_total")
    print(f"protocol errors +{grew}, kinds {sorted(kinds)}")


# ==========================================================================
# Probes and drain
# ==========================================================================


def test_readyz_follows_the_upstream_and_the_drain() -> None:
    """503 before the upstream was ever reached, 200 once kgate reached it by
    itself, 503 during the drain after SIGTERM; /healthz 200 throughout."""
    tansu_port = free_port()
    upstream = Upstream("tansu-late", [(LOOPBACK, tansu_port)], (TANSU_NODE,), {})
    okg = start_ops_kgate("probes", upstream, {"drain_timeout_ms": 15000, "connect_timeout_ms": 1000})
    tansu_proc = None
    try:
        poll_until("/healthz 200", lambda: okg.status("/healthz") == 200, 10)
        statuses = []
        for _ in range(6):
            statuses.append(okg.status("/readyz"))
            time.sleep(0.3)
        assert statuses == [503] * 6, f"/readyz with no upstream: {statuses}"

        tansu_proc = start_tansu("tansu-late", tansu_port)
        t0 = time.monotonic()
        try:
            poll_until("/readyz 200 after the upstream came up", lambda: okg.status("/readyz") == 200, 30, 0.2)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{okg.proc.log_tail(30)}") from None
        print(f"/readyz turned 200 {time.monotonic() - t0:.1f}s after tansu started")
        assert okg.status("/healthz") == 200

        # Hold a Fetch in flight (8 s) so that the drain has something to wait for.
        topic = f"ops-drain-{uuid.uuid4().hex[:8]}"
        create_topic(f"{LOOPBACK}:{tansu_port}", topic, 1)
        c, log, stop, t = fetch_in_flight(okg.bootstrap, topic, 8000)
        try:
            time.sleep(0.3)
            okg.proc.popen.send_signal(signal.SIGTERM)
            t_term = time.monotonic()
            # Sample /readyz for 2 s: the 8 s fetch keeps kgate draining that
            # long, and the endpoint must answer 503 throughout, not only in
            # the instant before it closes.
            seen: list[tuple[float, Optional[int]]] = []
            while time.monotonic() - t_term < 2 and okg.proc.alive():
                seen.append((time.monotonic() - t_term, okg.status("/readyz")))
                time.sleep(0.1)
            late = [code for at, code in seen if at >= 0.5]
            shown = ", ".join(f"{at:.1f}s: {'no answer' if c is None else c}" for at, c in seen)
            assert late and all(c == 503 for c in late), (
                f"/readyz after SIGTERM (kgate alive: {okg.proc.alive()}): {shown}; expected 503 from an admin "
                f"endpoint that stays up while draining\n{okg.proc.log_tail(20)}")
            try:
                okg.proc.popen.wait(15 + 5)
            except Exception:  # noqa: BLE001
                raise AssertionError(f"kgate still running {time.monotonic() - t_term:.1f}s after SIGTERM with "
                                     f"drain_timeout_ms = 15000\n{okg.proc.log_tail(20)}") from None
            took = time.monotonic() - t_term
            assert okg.proc.popen.returncode == 0, f"exit code {okg.proc.popen.returncode}"
            print(f"drain took {took:.1f}s with an 8 s fetch in flight")
        finally:
            stop.set()
            t.join(5)
            c.close()
    finally:
        okg.proc.stop()
        if tansu_proc:
            tansu_proc.stop()


def test_second_sigterm_exits_at_once(tansu) -> None:
    okg = start_ops_kgate("double-term", tansu, {"drain_timeout_ms": 60000})
    topic = f"ops-term-{uuid.uuid4().hex[:8]}"
    create_topic(tansu.bootstrap_servers, topic, 1)
    c, log, stop, t = fetch_in_flight(okg.bootstrap, topic, 25000)
    try:
        time.sleep(0.3)
        okg.proc.popen.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert okg.proc.alive(), ("kgate exited on the first SIGTERM although a 25 s Fetch was in flight and "
                                  f"drain_timeout_ms = 60000: no drain\n{okg.proc.log_tail(20)}")
        okg.proc.popen.send_signal(signal.SIGTERM)
        t1 = time.monotonic()
        try:
            okg.proc.popen.wait(3)
        except Exception:  # noqa: BLE001
            raise AssertionError(f"kgate still running 3 s after the second SIGTERM\n{okg.proc.log_tail(20)}") from None
        print(f"exited {time.monotonic() - t1:.2f}s after the second SIGTERM, code {okg.proc.popen.returncode}")
    finally:
        stop.set()
        t.join(5)
        c.close()
        okg.proc.stop()


# ==========================================================================
# Graceful hand-off: SIGTERM, a new kgate on the same ports
# ==========================================================================


class ContinuousProducer(threading.Thread):
    """Idempotent producer (acks=all) sending numbered records until stopped."""

    def __init__(self, bootstrap: str, topic: str, run: str):
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.topic, self.tag = topic, run
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                           "linger.ms": 5, "message.timeout.ms": 60000, "reconnect.backoff.ms": 50,
                           "reconnect.backoff.max.ms": 250, "retry.backoff.ms": 50,
                           "topic.metadata.refresh.interval.ms": 1000})
        self.stop_event = threading.Event()
        self.sent = 0
        self.acked: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.left = -1

    def _cb(self, err, msg) -> None:
        seq = int(msg.value().decode().rsplit("-", 1)[1])
        if err is None:
            self.acked.append(seq)
        else:
            self.failed.append((seq, str(err)))

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.p.produce(self.topic, key=str(self.sent % 16).encode(), value=f"{self.tag}-{self.sent}".encode(),
                           on_delivery=self._cb)
            self.sent += 1
            self.p.poll(0)
            time.sleep(0.002)
        self.left = self.p.flush(60)


def read_all(bootstrap: str, topic: str, partitions: int, run: str, expect: int, timeout: float = 30) -> list[int]:
    """Every record of the run in the topic, read directly from the broker.
    (tansu's high watermark is unreliable, so it reads until `expect` records
    have come and then 2 s more.)"""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ops-truth-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            v = m.value().decode()
            if v.startswith(run + "-"):
                seqs.append(int(v.rsplit("-", 1)[1]))
        if len(seqs) >= expect and quiet_until is None:
            quiet_until = time.monotonic() + 2
        if quiet_until and time.monotonic() > quiet_until:
            break
    c.close()
    return seqs


def test_sigterm_hand_off_loses_and_duplicates_nothing(tansu) -> None:
    partitions = 3
    run = uuid.uuid4().hex[:8]
    topic = f"ops-handoff-{run}"
    create_topic(tansu.bootstrap_servers, topic, partitions)
    first = start_ops_kgate("handoff-1", tansu, {"drain_timeout_ms": 10000})
    pb = first.port_base
    prod = ContinuousProducer(first.bootstrap, topic, run)
    prod.start()
    second = None
    try:
        rc, drained, gap = None, 0.0, 0.0
        try:
            poll_until("records acknowledged through the first kgate", lambda: len(prod.acked) >= 200, 30)
            acked_before = len(prod.acked)
            first.proc.popen.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                first.proc.popen.wait(10 + 5)
            except Exception:  # noqa: BLE001
                raise AssertionError(f"the first kgate did not exit within drain_timeout_ms + 5 s\n"
                                     f"{first.proc.log_tail(20)}") from None
            drained = time.monotonic() - t0
            rc = first.proc.popen.returncode
            second = start_ops_kgate("handoff-2", tansu, {"drain_timeout_ms": 10000}, port_base=pb)
            gap = time.monotonic() - t0
            poll_until("records acknowledged through the second kgate",
                       lambda: len(prod.acked) >= acked_before + 300, 60)
        finally:
            prod.stop_event.set()
            prod.join(90)
        assert rc == 0, f"the first kgate exited with {rc}\n{first.proc.log_tail(20)}"
        assert prod.left == 0 and not prod.failed, (f"{prod.left} records undelivered, {len(prod.failed)} failed: "
                                                    f"{prod.failed[:5]}")
        assert len(prod.acked) == prod.sent
        seqs = read_all(tansu.bootstrap_servers, topic, partitions, run, len(prod.acked))
        counts: dict[int, int] = {}
        for s in seqs:
            counts[s] = counts.get(s, 0) + 1
        missing = sorted(set(prod.acked) - set(counts))
        dups = sorted(s for s, n in counts.items() if n > 1)
        assert not missing and not dups, (
            f"{len(prod.acked)} acknowledged; in tansu: {len(seqs)} records, {len(missing)} acknowledged ones "
            f"missing {missing[:10]}, {len(dups)} duplicated {dups[:10]}")
        print(f"hand-off: {len(prod.acked)} records exactly once; first kgate drained in {drained:.2f}s, "
              f"second kgate listening {gap:.2f}s after SIGTERM")
    finally:
        first.proc.stop()
        if second:
            second.stop()


# ==========================================================================
# Limits
# ==========================================================================


def open_served(port: int, n: int, what: str) -> list[Conn]:
    conns = []
    for i in range(n):
        c = Conn(port, f"{what}-{i}")
        r = c.roundtrip()
        assert r == "response", f"{c.name} (within the limit) got {r}"
        conns.append(c)
    return conns


def assert_refused(port: int, what: str) -> None:
    c = Conn(port, what)
    try:
        t0 = time.monotonic()
        r = c.roundtrip(timeout=3)
        took = time.monotonic() - t0
        assert r == "closed", f"{what}: over the limit but got {r!r}"
        assert took < 2, f"{what}: closed only after {took:.1f}s"
    finally:
        c.close()


def create_broker_listener(okg: OpsKgate) -> None:
    """A Metadata request makes kgate bind tansu's broker listener."""
    m = Conn(okg.port_base, "metadata")
    try:
        assert m.roundtrip(request=metadata_all) == "response"
    finally:
        m.close()
    wait_for_port(okg.broker_port, 10, okg.proc)
    time.sleep(0.5)  # let kgate see both short connections close


def test_max_connections_per_listener(tansu) -> None:
    limit = 3
    okg = start_ops_kgate("per-listener", tansu, {"max_connections_per_listener": limit})
    conns: list[Conn] = []
    try:
        create_broker_listener(okg)
        conns = open_served(okg.port_base, limit, "bootstrap")
        assert_refused(okg.port_base, f"bootstrap connection {limit + 1}")
        for c in conns:
            assert c.roundtrip() == "response", f"{c.name} stopped working after a refusal"
        # the limit is per listener: the broker listener still takes connections
        conns += open_served(okg.broker_port, 1, "broker")
        # a freed slot is reused
        conns.pop(0).close()

        def served() -> bool:
            c = Conn(okg.port_base, "bootstrap-after-close")
            r = c.roundtrip(timeout=2)
            if r == "response":
                conns.append(c)
                return True
            c.close()
            return False

        poll_until("a new bootstrap connection once one closed", served, 5, 0.2)
        assert okg.proc.alive()
    finally:
        for c in conns:
            c.close()
        okg.stop()


def test_max_connections_across_listeners(tansu) -> None:
    limit = 2
    okg = start_ops_kgate("max-conn", tansu, {"max_connections": limit})
    conns: list[Conn] = []
    try:
        create_broker_listener(okg)
        conns += open_served(okg.port_base, 1, "bootstrap")
        conns += open_served(okg.broker_port, 1, "broker")
        assert_refused(okg.broker_port, "broker connection over max_connections")
        assert_refused(okg.port_base, "bootstrap connection over max_connections")
        for c in conns:
            assert c.roundtrip() == "response", f"{c.name} stopped working after a refusal"
    finally:
        for c in conns:
            c.close()
        okg.stop()


def test_idle_timeout_closes_idle_connections_only(tansu) -> None:
    idle_ms = 1500
    okg = start_ops_kgate("idle", tansu, {"idle_timeout_ms": idle_ms})
    idle, busy = Conn(okg.port_base, "idle"), Conn(okg.port_base, "busy")
    try:
        assert idle.roundtrip() == "response" and busy.roundtrip() == "response"
        t0 = time.monotonic()
        closed_after: list[Optional[float]] = []
        watcher = threading.Thread(target=lambda: closed_after.append(idle.wait_closed(4 * idle_ms / 1000 + 4)))
        watcher.start()
        results = []
        while time.monotonic() - t0 < 4 * idle_ms / 1000:
            results.append(busy.roundtrip())
            time.sleep(0.4)
        watcher.join()
        assert set(results) == {"response"}, f"a connection in use was closed: {results}"
        took = closed_after[0]
        assert took is not None, f"the idle connection is still open {4 * idle_ms / 1000 + 4:.1f}s after its last use"
        assert idle_ms / 1000 * 0.9 <= took <= idle_ms / 1000 + 3, f"closed {took:.2f}s after its last use"
        print(f"idle connection closed {took:.2f}s after its last response (idle_timeout_ms = {idle_ms})")
    finally:
        idle.close()
        busy.close()
        okg.stop()

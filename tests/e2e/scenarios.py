"""The produce / consume / resume scenario, run by each real client.

Every client does the same thing against a bootstrap address (kgate's, or the
upstream's with KGATE_DIRECT=1):

  1. create the topic with 3 partitions, look at the cluster;
  2. produce N keyed records, idempotent, acks=all (some with compression);
  3. consume them in a consumer group, committing offsets, and check every
     record arrived exactly once and in partition order;
  4. close the consumer, produce RESUME_RECORDS more, start a new member of
     the same group and check it gets only the new records;
  5. report every broker address the client was told about or connected to.

The Python clients (confluent-kafka / librdkafka and kafka-python) are driven
here; the Java and KafkaJS programs under clients/ do the same and print one
JSON line, which `run_external` turns into the same `Outcome`.

`broker_truth` then reads the topic and the group's committed offsets from the
upstream directly (not through kgate) as an independent check.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness import HEARTBEAT_INTERVAL_MS, LOOPBACK, SESSION_TIMEOUT_MS, Seen, parse_hostport, poll_until

PARTITIONS = 3
KEYS = 12
RESUME_RECORDS = 50
CONSUME_DEADLINE_S = 60


@dataclass
class Outcome:
    """What one client run did, in the shape of the external programs' JSON."""

    client: str
    records: int
    produced: int = 0
    consumed: int = 0  # phase 1, including duplicates
    duplicates: int = 0  # phase 1
    missing: int = 0  # phase 1
    order_ok: bool = False
    resumed_consumed: int = 0
    resumed_ok: bool = False
    partitions: int = 0
    committed: dict[int, int] = field(default_factory=dict)  # after phase 2
    addresses: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)  # the external program's JSON
    output: str = ""  # the external program's stderr / notes, for failure messages
    timings: dict[str, float] = field(default_factory=dict)

    def explain(self) -> str:
        lines = [f"client {self.client}: " + ", ".join(f"{k}={v}" for k, v in self.summary().items())]
        lines += [f"  problem: {p}" for p in self.problems[:30]]
        if self.raw:
            lines.append("  json: " + json.dumps(self.raw)[:4000])
        if self.output:
            lines.append("  output (tail):\n" + "\n".join(self.output.splitlines()[-60:]))
        return "\n".join(lines)

    def summary(self) -> dict:
        return {
            "produced": self.produced,
            "consumed": self.consumed,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "order_ok": self.order_ok,
            "resumed_consumed": self.resumed_consumed,
            "resumed_ok": self.resumed_ok,
            "partitions": self.partitions,
            "committed": self.committed,
        }


def names(client: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"e2e-{client}-{tag}", f"e2e-{client}-group-{tag}"


# --------------------------------------------------------------------------
# Checking what was consumed against what was produced
# --------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    seq: int  # per-key sequence number
    index: int  # global index in produce order
    partition: int = -1
    offset: int = -1


@dataclass
class Got:
    partition: int
    offset: int
    key: Optional[str]
    value: Optional[str]


def make_records(run: str, first: int, n: int, next_seq: list[int]) -> list[Sent]:
    out = []
    for index in range(first, first + n):
        k = index % KEYS
        out.append(Sent(f"k{k:02d}", next_seq[k], index))
        next_seq[k] += 1
    return out


def value_of(run: str, s: Sent) -> str:
    return f"{run}|{s.key}|{s.seq}|{s.index}"


@dataclass
class PhaseCheck:
    consumed: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0  # records of this run that do not belong to this phase
    order_ok: bool = True
    first_offsets: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_phase(run: str, tag: str, expected: list[Sent], got: list[Got], forbidden: list[Sent]) -> PhaseCheck:
    """Exactly once and in order: every expected record once, at the partition
    and offset the producer was told, offsets and per-key sequences strictly
    increasing per partition, nothing from `forbidden` (earlier phases)."""
    ch = PhaseCheck()
    by_value = {value_of(run, s): s for s in expected}
    old = {value_of(run, s) for s in forbidden}
    counts: Counter = Counter()
    last_offset: dict[int, int] = {}
    last_seq: dict[str, int] = {}
    key_part: dict[str, int] = {}

    def problem(msg: str) -> None:
        if len(ch.problems) < 20:
            ch.problems.append(f"{tag}: {msg}")

    for g in got:
        if g.value is None or not g.value.startswith(run + "|"):
            problem(f"foreign record at {g.partition}/{g.offset}: {g.value!r}")
            ch.unexpected += 1
            continue
        ch.consumed += 1
        ch.first_offsets.setdefault(g.partition, g.offset)
        lo = last_offset.get(g.partition)
        if lo is not None and g.offset <= lo:
            ch.order_ok = False
            problem(f"partition {g.partition}: offset went {lo} -> {g.offset}")
        last_offset[g.partition] = g.offset
        if g.value in old:
            ch.unexpected += 1
            problem(f"record from an earlier phase redelivered: {g.value} at {g.partition}/{g.offset}")
            continue
        s = by_value.get(g.value)
        if s is None:
            ch.unexpected += 1
            problem(f"unknown record {g.value} at {g.partition}/{g.offset}")
            continue
        counts[g.value] += 1
        if counts[g.value] > 1:
            ch.duplicates += 1
            problem(f"duplicate {g.value} at {g.partition}/{g.offset}")
        if g.key != s.key:
            ch.order_ok = False
            problem(f"{g.value}: key {g.key!r}, expected {s.key!r}")
        if (g.partition, g.offset) != (s.partition, s.offset):
            ch.order_ok = False
            problem(f"{g.value} consumed at {g.partition}/{g.offset}, producer was told {s.partition}/{s.offset}")
        kp = key_part.setdefault(s.key, g.partition)
        if kp != g.partition:
            ch.order_ok = False
            problem(f"key {s.key} on partitions {kp} and {g.partition}")
        ls = last_seq.get(s.key)
        if ls is not None and s.seq <= ls:
            ch.order_ok = False
            problem(f"key {s.key}: sequence went {ls} -> {s.seq}")
        last_seq[s.key] = s.seq
    ch.missing = sum(1 for s in expected if counts[value_of(run, s)] == 0)
    if ch.missing:
        problem(f"{ch.missing} of {len(expected)} records never arrived")
    return ch


def fold(out: Outcome, run: str, sent1: list[Sent], got1: list[Got], sent2: list[Sent], got2: list[Got],
         committed_after_1: dict[int, int]) -> None:
    c1 = check_phase(run, "phase 1", sent1, got1, [])
    c2 = check_phase(run, "resume", sent2, got2, sent1)
    out.produced = len(sent1) + len(sent2)
    out.consumed = c1.consumed
    out.duplicates = c1.duplicates
    out.missing = c1.missing
    out.order_ok = c1.order_ok and c1.unexpected == 0
    out.resumed_consumed = c2.consumed
    out.problems += c1.problems + c2.problems
    resumed_ok = c2.order_ok and c2.duplicates == 0 and c2.missing == 0 and c2.unexpected == 0
    # The new member must start exactly at the offsets the first one committed.
    for p, off in sorted(c2.first_offsets.items()):
        if committed_after_1.get(p) != off:
            resumed_ok = False
            out.problems.append(
                f"resume: partition {p} started at offset {off}, the group had committed {committed_after_1.get(p)}"
            )
    out.resumed_ok = resumed_ok


# --------------------------------------------------------------------------
# librdkafka (confluent-kafka)
# --------------------------------------------------------------------------

# librdkafka names brokers "host:port/nodeid" (or "/bootstrap") in its logs.
_HOST = r"((?:\d{1,3}\.){3}\d{1,3}|localhost|\[[0-9A-Fa-f:]+\])"
_RDK_BROKER = re.compile(r"(?<![\w.:])" + _HOST + r":(\d{1,5})/(bootstrap|\d+)\b")
# debug=cgrp: 'Group "g" coordinator is 127.0.0.1:1234 id 2' (the FindCoordinator answer)
_RDK_COORD = re.compile(r"coordinator is " + _HOST + r":(\d{1,5}) id (-?\d+)")


class RdkafkaLog(logging.Handler):
    """Collects librdkafka's log lines (debug=broker,cgrp) and the broker
    names in them, i.e. every broker the client created a connection for, and
    every group coordinator FindCoordinator named."""

    DEBUG_CONTEXTS = "broker,cgrp"

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.brokers: set[tuple[str, int, str]] = set()
        self.coordinators: set[tuple[str, int, int]] = set()
        self.logger = logging.getLogger(f"kgate.e2e.rdkafka.{name}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if len(self.lines) < 200_000:
            self.lines.append(msg)
        for host, port, node in _RDK_BROKER.findall(msg):
            self.brokers.add((host.strip("[]"), int(port), node))
        for host, port, node in _RDK_COORD.findall(msg):
            self.coordinators.add((host.strip("[]"), int(port), int(node)))

    def seen(self) -> list[Seen]:
        out = [
            Seen("rdkafka connection", h, p, None if n == "bootstrap" else int(n), bootstrap=(n == "bootstrap"))
            for h, p, n in sorted(self.brokers)
        ]
        out += [Seen("rdkafka FindCoordinator answer", h, p, n) for h, p, n in sorted(self.coordinators)]
        return out

    def text(self, last: int = 80) -> str:
        return "\n".join(self.lines[-last:])


def rdkafka_conf(bootstrap: str, log: RdkafkaLog, client_id: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "debug": log.DEBUG_CONTEXTS,
        "logger": log.logger,
        "socket.timeout.ms": 15000,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 5000,
    }
    conf.update(extra)
    return conf


def rdkafka_consumer_conf(bootstrap: str, log: RdkafkaLog, client_id: str, group: str) -> dict:
    return rdkafka_conf(
        bootstrap,
        log,
        client_id,
        **{
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            "max.poll.interval.ms": 30000,
        },
    )


def rdkafka_create_topic(admin, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=15, request_timeout=30)
    futures[topic].result(timeout=30)

    def ready():
        admin.poll(0)  # serves the log queue
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        return md is not None and md.error is None and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        )

    poll_until(f"topic {topic} with {partitions} partitions and leaders", ready, 30, 0.2)


def rdkafka_produce(producer, topic: str, run: str, records: list[Sent]) -> None:
    errors = []

    def cb_for(s: Sent) -> Callable:
        def cb(err, msg):
            if err is not None:
                errors.append(f"{value_of(run, s)}: {err}")
            else:
                s.partition, s.offset = msg.partition(), msg.offset()

        return cb

    for s in records:
        while True:
            try:
                producer.produce(topic, key=s.key, value=value_of(run, s), on_delivery=cb_for(s))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(45)
    if left:
        raise AssertionError(f"librdkafka producer: {left} records still undelivered after 45 s")
    if errors:
        raise AssertionError(f"librdkafka producer: {len(errors)} delivery errors, first: {errors[:5]}")


def rdkafka_consume(conf: dict, topic: str, run: str, expected: list[Sent], deadline_s: float) -> tuple[list[Got], dict, list[Seen]]:
    """Consumes until every expected record was seen (or the deadline), commits
    synchronously, and returns (records, committed offsets, metadata brokers)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    want = {value_of(run, s) for s in expected}
    got: list[Got] = []
    seen: set[str] = set()
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and not want <= seen:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"librdkafka consumer error: {m.error()}")
                v = m.value().decode() if m.value() is not None else None
                k = m.key().decode() if m.key() is not None else None
                got.append(Got(m.partition(), m.offset(), k, v))
                if v is not None:
                    seen.add(v)
        if got:
            c.commit(asynchronous=False)
        md = c.list_topics(topic, timeout=15)
        tps = [TopicPartition(topic, p) for p in sorted(md.topics[topic].partitions)]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=15)}
        return got, committed, [Seen("consumer metadata", b.host, b.port, n) for n, b in md.brokers.items()]
    finally:
        c.close()


def run_librdkafka(bootstrap: str, records: int, compression: str) -> Outcome:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    topic, group = names("librdkafka")
    run = uuid.uuid4().hex[:8]
    out = Outcome("librdkafka", records)
    log = RdkafkaLog(run)
    t0 = time.monotonic()
    try:
        admin = AdminClient(rdkafka_conf(bootstrap, log, f"e2e-rdk-admin-{run}"))
        rdkafka_create_topic(admin, topic, PARTITIONS)
        md = admin.list_topics(topic, timeout=15)
        out.partitions = len(md.topics[topic].partitions)
        out.addresses += [Seen("admin metadata", b.host, b.port, n) for n, b in md.brokers.items()]
        out.timings["setup"] = time.monotonic() - t0

        t = time.monotonic()
        producer = Producer(
            rdkafka_conf(
                bootstrap,
                log,
                f"e2e-rdk-producer-{run}",
                **{"enable.idempotence": True, "acks": "all", "compression.type": compression, "linger.ms": 5},
            )
        )
        next_seq = [0] * KEYS
        sent1 = make_records(run, 0, records, next_seq)
        rdkafka_produce(producer, topic, run, sent1)
        out.timings["produce"] = time.monotonic() - t

        t = time.monotonic()
        got1, committed1, md1 = rdkafka_consume(
            rdkafka_consumer_conf(bootstrap, log, f"e2e-rdk-c1-{run}", group), topic, run, sent1, CONSUME_DEADLINE_S
        )
        out.timings["consume"] = time.monotonic() - t
        out.addresses += md1

        # The group's coordinator, and DescribeCluster (librdkafka answers
        # describe_cluster() from a Metadata request, not the DescribeCluster API).
        gd = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
        if gd.coordinator is not None:
            out.addresses.append(Seen("group coordinator", gd.coordinator.host, gd.coordinator.port, gd.coordinator.id))
        else:
            out.problems.append("describe_consumer_groups returned no coordinator")
        dc = admin.describe_cluster(request_timeout=15).result(timeout=30)
        out.addresses += [Seen("describe_cluster node", n.host, n.port, n.id) for n in dc.nodes]
        if dc.controller is not None:
            out.addresses.append(Seen("describe_cluster controller", dc.controller.host, dc.controller.port, dc.controller.id))

        t = time.monotonic()
        sent2 = make_records(run, records, RESUME_RECORDS, next_seq)
        rdkafka_produce(producer, topic, run, sent2)
        got2, committed2, _ = rdkafka_consume(
            rdkafka_consumer_conf(bootstrap, log, f"e2e-rdk-c2-{run}", group), topic, run, sent2, CONSUME_DEADLINE_S
        )
        out.timings["resume"] = time.monotonic() - t
        out.committed = committed2
        fold(out, run, sent1, got1, sent2, got2, committed1)
        producer.flush(10)
    except Exception as e:  # noqa: BLE001 - reported as an outcome problem
        out.problems.append(f"librdkafka run failed: {type(e).__name__}: {e}")
    finally:
        out.addresses += log.seen()
        out.output = log.text()
        out.raw = {"topic": topic, "group": group}
    out.timings["total"] = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------
# kafka-python
# --------------------------------------------------------------------------

_KP_IDENT = re.compile(r"node=([\w-]+)\[([^\]]+):(\d+)\]")


class KafkaPythonConnections(logging.Handler):
    """Records where kafka-python sends every request (its protocol parser
    logs "node=<id>[host:port] Sending request ..." at DEBUG)."""

    LOGGER = "kafka.protocol.parser"

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.targets: set[tuple[str, str, int]] = set()
        self._logger = logging.getLogger(self.LOGGER)

    def __enter__(self):
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, str) or "Sending request" not in record.msg or not record.args:
            return
        m = _KP_IDENT.match(str(record.args[0]))
        if m:
            self.targets.add((m.group(1), m.group(2), int(m.group(3))))

    def seen(self) -> list[Seen]:
        out = []
        for node, host, port in sorted(self.targets):
            if node.startswith("bootstrap"):
                out.append(Seen("kafka-python connection", host, port, None, bootstrap=True))
            else:
                n = node.rsplit("-", 1)[-1]
                out.append(Seen("kafka-python connection", host, port, int(n) if n.lstrip("-").isdigit() else None))
        return out


def kp_consume(bootstrap: str, topic: str, group: str, run: str, expected: list[Sent], client_id: str,
               out: Outcome) -> tuple[list[Got], dict]:
    from kafka import KafkaConsumer, TopicPartition

    want = {value_of(run, s) for s in expected}
    got: list[Got] = []
    seen: set[str] = set()
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=30000,
        request_timeout_ms=20000,
        key_deserializer=lambda b: b.decode() if b is not None else None,
        value_deserializer=lambda b: b.decode() if b is not None else None,
    )
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while time.monotonic() < deadline and not want <= seen:
            for tp, msgs in c.poll(timeout_ms=500).items():
                for m in msgs:
                    got.append(Got(tp.partition, m.offset, m.key, m.value))
                    if m.value is not None:
                        seen.add(m.value)
        if got:
            c.commit()
        committed = {p: c.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
        # What the consumer's cluster view holds: metadata brokers and the
        # group coordinator (kafka-python keys it "coordinator-<id>").
        cluster = c._cluster  # noqa: SLF001 - no public accessor
        for b in cluster.brokers():
            out.addresses.append(Seen("consumer metadata", b.host, b.port, int(b.node_id)))
        for b in list(cluster._coordinator_brokers.values()):  # noqa: SLF001
            nid = str(b.node_id).rsplit("-", 1)[-1]
            out.addresses.append(Seen("consumer coordinator", b.host, b.port, int(nid)))
        return got, committed
    finally:
        c.close(autocommit=False)


def run_kafka_python(bootstrap: str, records: int, compression: str) -> Outcome:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic, group = names("kafka-python")
    run = uuid.uuid4().hex[:8]
    out = Outcome("kafka-python", records)
    conns = KafkaPythonConnections()
    t0 = time.monotonic()
    try:
        with conns:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"e2e-kp-admin-{run}", request_timeout_ms=20000)
            try:
                admin.create_topics([NewTopic(topic, PARTITIONS, 1)])

                def ready():
                    d = admin.describe_topics([topic])
                    return d and d[0]["error_code"] == 0 and len(d[0]["partitions"]) == PARTITIONS and d

                desc = poll_until(f"topic {topic}", ready, 30, 0.2)
                out.partitions = len(desc[0]["partitions"])
                # DescribeCluster API (key 60): kafka-python 3 sends it directly.
                dc = admin.describe_cluster()
                out.raw["describe_cluster"] = dc
                for b in dc["brokers"]:
                    out.addresses.append(Seen("describe_cluster (DescribeCluster API)", b["host"], b["port"], b["broker_id"]))
                out.timings["setup"] = time.monotonic() - t0

                t = time.monotonic()
                producer = KafkaProducer(
                    bootstrap_servers=bootstrap,
                    client_id=f"e2e-kp-producer-{run}",
                    acks="all",
                    enable_idempotence=True,
                    compression_type=compression,
                    linger_ms=5,
                    request_timeout_ms=20000,
                )
                try:
                    next_seq = [0] * KEYS

                    def produce(batch: list[Sent]) -> None:
                        futs = [
                            (s, producer.send(topic, key=s.key.encode(), value=value_of(run, s).encode()))
                            for s in batch
                        ]
                        producer.flush(45)
                        for s, f in futs:
                            md = f.get(timeout=45)
                            s.partition, s.offset = md.partition, md.offset

                    sent1 = make_records(run, 0, records, next_seq)
                    produce(sent1)
                    out.timings["produce"] = time.monotonic() - t

                    t = time.monotonic()
                    got1, committed1 = kp_consume(bootstrap, topic, group, run, sent1, f"e2e-kp-c1-{run}", out)
                    out.timings["consume"] = time.monotonic() - t

                    t = time.monotonic()
                    sent2 = make_records(run, records, RESUME_RECORDS, next_seq)
                    produce(sent2)
                    got2, committed2 = kp_consume(bootstrap, topic, group, run, sent2, f"e2e-kp-c2-{run}", out)
                    out.timings["resume"] = time.monotonic() - t
                    out.committed = committed2
                    fold(out, run, sent1, got1, sent2, got2, committed1)
                finally:
                    producer.close(timeout=10)
            finally:
                admin.close()
    except Exception as e:  # noqa: BLE001
        out.problems.append(f"kafka-python run failed: {type(e).__name__}: {e}")
    finally:
        out.addresses += conns.seen()
        out.raw.update({"topic": topic, "group": group})
    out.timings["total"] = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------
# External programs (Java, KafkaJS)
# --------------------------------------------------------------------------


def run_external(client: str, argv: list[str], bootstrap: str, records: int, compression: str, port_base: int,
                 cwd: Optional[str] = None, timeout: float = 240, env: Optional[dict] = None) -> Outcome:
    """`env`, when given, is added to this process's environment for the program."""
    topic, group = names(client)
    out = Outcome(client, records)
    t0 = time.monotonic()
    cmd = [*argv, bootstrap, topic, group, str(records), compression]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                           env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired as e:
        out.problems.append(f"{client} program did not finish within {timeout}s")
        out.output = (e.stderr or b"").decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        out.raw = {"topic": topic, "group": group}
        return out
    out.timings["total"] = time.monotonic() - t0
    out.output = f"$ {' '.join(cmd)}\nexit {r.returncode}\n--- stderr ---\n{r.stderr}\n--- stdout ---\n{r.stdout[-4000:]}"
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    try:
        j = json.loads(lines[-1])
    except (IndexError, ValueError) as e:
        out.problems.append(f"{client} program printed no JSON line last ({e}); exit {r.returncode}")
        out.raw = {"topic": topic, "group": group}
        return out
    out.raw = j
    out.raw.setdefault("topic", topic)
    out.raw.setdefault("group", group)
    if r.returncode != 0:
        out.problems.append(f"{client} program exited {r.returncode}: {j.get('error')}")
    if j.get("error"):
        out.problems.append(f"{client} program reported: {j['error']}")
    out.produced = int(j.get("produced", 0))
    out.consumed = int(j.get("consumed", 0))
    out.duplicates = int(j.get("duplicates", -1))
    out.missing = int(j.get("missing", -1))
    out.order_ok = j.get("order_ok") is True and int(j.get("unexpected", 0)) == 0
    out.resumed_consumed = int(j.get("resumed_consumed", 0))
    out.resumed_ok = j.get("resumed_ok") is True
    out.partitions = int(j.get("partitions") or 0)
    out.committed = {int(p): o for p, o in (j.get("committed") or {}).items()}
    for k in ("setup_ms", "produce_ms", "consume_ms", "resume_ms"):
        if isinstance(j.get(k), (int, float)):
            out.timings[k[:-3]] = j[k] / 1000
    out.addresses += json_addresses(j, port_base)
    return out


def json_addresses(j: dict, port_base: int) -> list[Seen]:
    """Broker addresses from the external programs' JSON: brokers (no node
    ids), coordinator (+coordinator_id), controller (+controller_id),
    cluster_nodes ("id@host:port"), connected (where requests went; the
    bootstrap listener is allowed there)."""
    seen = []
    for a in j.get("brokers") or []:
        h, p = parse_hostport(a)
        seen.append(Seen("brokers", h, p, None))
    for key in ("coordinator", "controller"):
        if j.get(key):
            h, p = parse_hostport(j[key])
            nid = j.get(f"{key}_id")
            seen.append(Seen(key, h, p, int(nid) if isinstance(nid, int) else None))
    for a in j.get("cluster_nodes") or []:
        nid, _, hp = a.partition("@")
        h, p = parse_hostport(hp)
        seen.append(Seen("describe_cluster node", h, p, int(nid)))
    for a in j.get("connected") or []:
        h, p = parse_hostport(a)
        seen.append(Seen("connected", h, p, None, bootstrap=(h, p) == (LOOPBACK, port_base)))
    return seen


# --------------------------------------------------------------------------
# Ground truth from the upstream
# --------------------------------------------------------------------------


@dataclass
class Truth:
    partitions: int
    records: list[tuple[int, int, Optional[str], Optional[str]]]  # partition, offset, key, value
    high: dict[int, int]
    committed: dict[int, int]

    def duplicates(self) -> list[str]:
        c = Counter((k, v) for _, _, k, v in self.records)
        return [f"{k}={v} x{n}" for (k, v), n in c.items() if n > 1]


def broker_truth(upstream_bootstrap: str, topic: str, group: str, timeout: float = 30) -> Truth:
    """Reads the whole topic and the group's committed offsets straight from
    the upstream, without joining the group (assign), to check what the
    clients did. The end of each partition is where Fetch reports
    end-of-partition: tansu 0.6's ListOffsets(latest) answers the last
    batch's base offset + 1, not the log end offset, so it is not used."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    conf = {
        "bootstrap.servers": upstream_bootstrap,
        "group.id": group,  # only for committed(); this consumer never joins
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
    c = Consumer(conf)
    try:
        md = c.list_topics(topic, timeout=15).topics[topic]
        if md.error is not None:
            raise AssertionError(f"topic {topic} in the upstream: {md.error}")
        parts = sorted(md.partitions)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=15)}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        records = []
        high: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(high) < len(parts) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        high[m.partition()] = m.offset()
                        continue
                    raise AssertionError(f"reading {topic} from the upstream: {m.error()}")
                high.pop(m.partition(), None)
                records.append(
                    (m.partition(), m.offset(), m.key().decode() if m.key() else None,
                     m.value().decode() if m.value() else None)
                )
        if len(high) < len(parts):
            raise AssertionError(f"could not read {topic} to its end from the upstream within {timeout}s")
        return Truth(len(parts), records, high, committed)
    finally:
        c.close()

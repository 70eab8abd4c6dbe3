"""kgate in front of several brokers: librdkafka's built-in mock cluster.

A "holder" client with test.mock.num.brokers=3 runs a 3-broker mock cluster
(node ids 1-3, each on its own loopback port) for as long as it lives. Its
bootstrap addresses come from the holder's own metadata, cross-checked with
librdkafka's "Mock cluster enabled: ... replaced with <addresses>" log line.
kgate gets those as --bootstrap, and separate, ordinary confluent-kafka
clients go through kgate.

The mock cluster answers neither CreateTopics nor DescribeGroups, and has no
controller, so librdkafka's describe_cluster() times out "waiting for
controller" even directly: the topic is auto-created (4 partitions, leaders
spread over the brokers), the group coordinator is taken from the consumer's
FindCoordinator answer (debug=cgrp), and there is no describe_cluster check
here (test_real_clients covers DescribeCluster against tansu).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field

import pytest

from harness import Kgate, Seen, Upstream, poll_until, record_timing, start_kgate, stop_kgate
from scenarios import (
    KEYS,
    Got,
    RdkafkaLog,
    Sent,
    check_phase,
    make_records,
    rdkafka_conf,
    rdkafka_consume,
    rdkafka_consumer_conf,
    rdkafka_produce,
)

MOCK_BROKERS = 3
RECORDS = 300
_REPLACED = re.compile(r"Mock cluster enabled: .*replaced with (\S+)")


@pytest.fixture(scope="module")
def mock_cluster() -> Upstream:
    """A 3-broker librdkafka mock cluster, kept alive by a holder producer."""
    from confluent_kafka import Producer

    log = RdkafkaLog("mock-holder")
    holder = Producer(
        {
            # ignored: the mock cluster replaces it
            "bootstrap.servers": "127.0.0.1:9",
            "test.mock.num.brokers": MOCK_BROKERS,
            "logger": log.logger,
        }
    )
    md = holder.list_topics(timeout=15)
    nodes = {n: (b.host, b.port) for n, b in md.brokers.items()}
    assert sorted(nodes) == list(range(1, MOCK_BROKERS + 1)), f"mock cluster nodes: {nodes}"

    def replaced():
        holder.poll(0)  # serves the log queue
        return next((m.group(1) for m in map(_REPLACED.search, log.lines) if m), None)

    line = poll_until("librdkafka's 'Mock cluster enabled' log line", replaced, 10)
    from_log = sorted(tuple(a.rsplit(":", 1)) for a in line.split(","))
    assert from_log == sorted((h, str(p)) for h, p in nodes.values()), (
        f"mock bootstrap from the log {line} differs from its metadata {nodes}"
    )
    bootstrap = [nodes[n] for n in sorted(nodes)]
    yield Upstream("librdkafka-mock", bootstrap, tuple(sorted(nodes)), nodes)
    holder.flush(1)


@dataclass
class MockRun:
    kgate: Kgate
    topic: str
    group: str
    sent: list[Sent]
    got: list[Got]
    committed: dict[int, int]
    partitions: dict[int, int]  # partition -> leader node id, from metadata through kgate
    metadata_nodes: dict[int, tuple[str, int]]
    addresses: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log_tail: str = ""
    run: str = ""


@pytest.fixture(scope="module")
def mock_run(mock_cluster: Upstream) -> MockRun:
    from confluent_kafka import Producer

    kg = start_kgate(mock_cluster, "mock")
    run = uuid.uuid4().hex[:8]
    topic, group = f"e2e-mock-{run}", f"e2e-mock-group-{run}"
    log = RdkafkaLog(f"mock-{run}")
    t0 = time.monotonic()
    r = MockRun(kg, topic, group, [], [], {}, {}, {}, run=run)
    try:
        producer = Producer(
            rdkafka_conf(
                kg.bootstrap_servers,
                log,
                f"e2e-mock-producer-{run}",
                **{"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 5},
            )
        )
        # The mock cluster auto-creates the topic on the first metadata request.
        def topic_ready():
            producer.poll(0)  # serves the log queue
            md = producer.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            return t is not None and t.error is None and t.partitions and all(p.leader > 0 for p in t.partitions.values()) and md

        md = poll_until(f"auto-created topic {topic}", topic_ready, 30, 0.2)
        r.partitions = {p: pm.leader for p, pm in md.topics[topic].partitions.items()}
        r.metadata_nodes = {n: (b.host, b.port) for n, b in md.brokers.items()}
        r.addresses += [Seen("producer metadata", b.host, b.port, n) for n, b in md.brokers.items()]

        r.sent = make_records(run, 0, RECORDS, [0] * KEYS)
        rdkafka_produce(producer, topic, run, r.sent)
        producer.flush(10)

        r.got, r.committed, seen = rdkafka_consume(
            rdkafka_consumer_conf(kg.bootstrap_servers, log, f"e2e-mock-c1-{run}", group), topic, run, r.sent, 60
        )
        r.addresses += seen

    except Exception as e:  # noqa: BLE001 - asserted on by the tests
        r.problems.append(f"mock run failed: {type(e).__name__}: {e}")
    finally:
        r.addresses += log.seen()
        r.log_tail = log.text()
        record_timing("librdkafka mock cluster (lz4)", {"total": time.monotonic() - t0})
    yield r
    stop_kgate(kg)


def _explain(r: MockRun) -> str:
    return "\n".join(r.problems + ["librdkafka log (tail):", r.log_tail])


def test_mock_cluster_produce_and_consume_through_kgate(mock_run: MockRun) -> None:
    r = mock_run
    problems = list(r.problems)
    assert not problems, _explain(r)
    ch = check_phase(r.run, "mock", r.sent, r.got, [])
    assert ch.consumed == RECORDS and ch.duplicates == 0 and ch.missing == 0 and ch.unexpected == 0, (
        "\n".join(ch.problems) + "\n" + _explain(r)
    )
    assert ch.order_ok, "\n".join(ch.problems)
    ends: dict[int, int] = {}
    for s in r.sent:
        ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    assert {p: o for p, o in r.committed.items() if p in ends} == ends, f"committed {r.committed}, log ends {ends}"


def test_mock_cluster_metadata_lists_all_three_brokers(mock_run: MockRun) -> None:
    r = mock_run
    problems = list(r.problems)
    assert not problems, _explain(r)
    assert sorted(r.metadata_nodes) == [1, 2, 3], r.metadata_nodes
    assert set(r.partitions.values()) <= {1, 2, 3}, r.partitions


@pytest.mark.kgate_addresses
def test_mock_cluster_clients_only_see_kgate_listeners(mock_run: MockRun, mock_cluster: Upstream) -> None:
    r = mock_run
    sources = {s.source for s in r.addresses}
    for need in ("producer metadata", "consumer metadata", "rdkafka FindCoordinator answer", "rdkafka connection"):
        assert need in sources, f"no addresses from {need}; got {sorted(sources)}\n{_explain(r)}"
    r.kgate.check_addresses(r.addresses, forbid=mock_cluster.addresses.values())

"""Six real clients through kgate in front of a real Apache Kafka 4.1 cluster
(3 KRaft nodes, ids 1-3; the kafka_cluster fixture).

For each client one run of the scenario in scenarios.py through its own kgate:
1,000 keyed records produced idempotently with acks=all, consumed in a group
with committed offsets, then 50 more picked up by a new member of the group
(resume after a restart). The clients:

  librdkafka (confluent-kafka, zstd), kafka-python (lz4), the Java client
  3.9 (the jars the tansu tests use, zstd) and 4.1 (kafka-clients from
  Maven, same program, lz4), KafkaJS (gzip), franz-go (clients/go, zstd).

Four tests look at each run: every record exactly once and in partition
order, and Kafka itself (read directly on its PLAINTEXT listeners) holds
exactly the produced records; the new member resumed from the committed
offsets, which Kafka reports at the end of the log; every broker address the
client saw or dialed is a kgate listener, never a Kafka one; the producer
really was idempotent: kgate's /metrics counted InitProducerId requests and
responses through this client's kgate (KafkaJS runs with
KGATE_E2E_STRICT_IDEMPOTENCE=1, so it cannot fall back to a plain producer,
and its JSON must say "idempotent": true).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Optional

import pytest

from harness import REPO, Kgate, kafka_jars_classpath, record_timing, stop_kgate
from kafka_cluster import clients4_classpath, requests_of, responses_of, scrape, start_kgate_with_metrics
from scenarios import (
    PARTITIONS,
    RESUME_RECORDS,
    Outcome,
    Truth,
    broker_truth,
    run_external,
    run_kafka_python,
    run_librdkafka,
)

pytestmark = pytest.mark.kafka_cluster

RECORDS = 1000
CLIENTS = {
    "librdkafka": "zstd",
    "kafka-python": "lz4",
    "java-3.9": "zstd",
    "java-4.1": "lz4",
    "kafkajs": "gzip",
    "franz-go": "zstd",
}
JS_DIR = REPO / "tests" / "e2e" / "clients" / "js"

# Address sources each client must report, so the address check covers them.
REQUIRED_SOURCES = {
    "librdkafka": ["consumer metadata", "group coordinator", "describe_cluster node", "rdkafka connection"],
    "kafka-python": ["describe_cluster (DescribeCluster API)", "consumer metadata", "consumer coordinator",
                     "kafka-python connection"],
    "java-3.9": ["describe_cluster node", "coordinator", "brokers"],
    "java-4.1": ["describe_cluster node", "coordinator", "brokers"],
    "kafkajs": ["describe_cluster node", "coordinator", "brokers", "connected"],
    "franz-go": ["describe_cluster node", "coordinator", "brokers", "connected"],
}


@dataclass
class Run:
    client: str
    kgate: Kgate
    outcome: Outcome
    truth: Optional[Truth]
    truth_error: Optional[str]
    metrics: dict[str, float]  # kgate's /metrics right after the run


def drive(client: str, kg: Kgate, request) -> Outcome:
    comp = CLIENTS[client]
    boot = kg.bootstrap_servers
    if client == "librdkafka":
        return run_librdkafka(boot, RECORDS, comp)
    if client == "kafka-python":
        return run_kafka_python(boot, RECORDS, comp)
    java = shutil.which("java") or pytest.fail("java not found: run tests/setup.sh")
    if client == "java-3.9":
        classes = request.getfixturevalue("java_classes")
        argv = [java, "-Xmx256m", "-cp", f"{classes}:{kafka_jars_classpath()}", "KgateE2E"]
        return run_external("java", argv, boot, RECORDS, comp, kg.port_base)
    if client == "java-4.1":
        classes = request.getfixturevalue("java4_classes")
        argv = [java, "-Xmx256m", "-cp", f"{classes}:{clients4_classpath()}", "KgateE2E"]
        return run_external("java4", argv, boot, RECORDS, comp, kg.port_base)
    if client == "kafkajs":
        if not (JS_DIR / "node_modules" / "kafkajs").exists():
            pytest.fail("kafkajs is not installed: run tests/setup.sh")
        node = shutil.which("node") or pytest.fail("node not found: run tests/setup.sh")
        # kgate_e2e.js takes one bootstrap address (KGATE_DIRECT=1 gives three)
        # Kafka answers InitProducerId v0/v1 (tansu does not): no fallback to a
        # plain producer here.
        return run_external("kafkajs", [node, str(JS_DIR / "kgate_e2e.js")], boot.split(",")[0], RECORDS, comp,
                            kg.port_base, cwd=str(JS_DIR), env={"KGATE_E2E_STRICT_IDEMPOTENCE": "1"})
    if client == "franz-go":
        binary = request.getfixturevalue("franz_bin")
        return run_external("franz-go", [str(binary)], boot, RECORDS, comp, kg.port_base)
    raise ValueError(client)


@pytest.fixture(scope="module", params=list(CLIENTS))
def run(request, kafka_cluster) -> Run:
    client = request.param
    kg = start_kgate_with_metrics(kafka_cluster, f"kafka-{client}")
    try:
        outcome = drive(client, kg, request)
        metrics = scrape(kg.admin_port)
        record_timing(f"Kafka 4.1 cluster: {client} ({CLIENTS[client]})", outcome.timings)
        truth, truth_error = None, None
        try:
            truth = broker_truth(kafka_cluster.bootstrap, outcome.raw["topic"], outcome.raw["group"])
        except Exception as e:  # noqa: BLE001 - asserted on by the tests
            truth_error = f"{type(e).__name__}: {e}"
        yield Run(client, kg, outcome, truth, truth_error, metrics)
    finally:
        stop_kgate(kg)


def test_kafka_every_record_exactly_once_in_partition_order(run: Run) -> None:
    o = run.outcome
    why = o.explain()
    assert not o.problems, why
    assert o.partitions == PARTITIONS, why
    assert o.produced == RECORDS + RESUME_RECORDS, why
    assert o.consumed == RECORDS, why
    assert o.duplicates == 0 and o.missing == 0, why
    assert o.order_ok, why
    assert run.truth is not None, f"reading the topic from Kafka failed: {run.truth_error}\n{why}"
    t = run.truth
    assert t.partitions == PARTITIONS
    assert len(t.records) == o.produced, f"Kafka holds {len(t.records)} records, the client produced {o.produced}"
    assert not t.duplicates(), f"duplicate records in Kafka: {t.duplicates()[:10]}"


def test_kafka_new_group_member_resumes_from_committed_offsets(run: Run) -> None:
    o = run.outcome
    why = o.explain()
    assert o.resumed_ok, why
    assert o.resumed_consumed == RESUME_RECORDS, why
    assert run.truth is not None, f"reading the group from Kafka failed: {run.truth_error}"
    assert run.truth.committed == run.truth.high, (
        f"committed offsets in Kafka {run.truth.committed} != end offsets {run.truth.high}\n{why}"
    )
    if o.committed:
        assert o.committed == run.truth.high, f"client saw committed {o.committed}, Kafka ends at {run.truth.high}"


@pytest.mark.kgate_addresses
def test_kafka_client_only_sees_kgate_listeners(run: Run, kafka_cluster) -> None:
    o = run.outcome
    sources = {s.source for s in o.addresses}
    missing = [s for s in REQUIRED_SOURCES[run.client] if s not in sources]
    assert not missing, f"{run.client} reported no addresses from {missing}; got {sorted(sources)}\n{o.explain()}"
    # Every node of the cluster was seen at its kgate listener.
    nodes = {s.node_id for s in o.addresses if s.node_id is not None}
    assert {1, 2, 3} <= nodes, f"{run.client} saw nodes {nodes}\n{o.explain()}"
    run.kgate.check_addresses(o.addresses)


def test_kafka_producer_was_idempotent_through_kgate(run: Run) -> None:
    o = run.outcome
    why = o.explain()
    m = run.metrics
    init = {k: v for k, v in m.items() if "InitProducerId" in k}
    assert requests_of(m, "InitProducerId") > 0, f"{run.client}: kgate forwarded no InitProducerId request {init}\n{why}"
    assert responses_of(m, "InitProducerId") > 0, f"{run.client}: kgate relayed no InitProducerId response {init}\n{why}"
    assert requests_of(m, "Produce") > 0, f"{run.client}: no Produce request through kgate\n{why}"
    if run.client == "kafkajs":
        assert o.raw.get("idempotent") is True, f"KafkaJS did not run an idempotent producer\n{why}"
        assert not o.raw.get("idempotence_error"), why

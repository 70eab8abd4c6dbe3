"""Four real Kafka clients through kgate in front of a real broker (tansu).

For each client (librdkafka via confluent-kafka, kafka-python, the official
Java client, KafkaJS) one run of the scenario in scenarios.py, through its own
kgate: 1,000 keyed records produced idempotently with acks=all, consumed in a
group with committed offsets, then 50 more picked up by a new member of the
group. Three tests look at each run:

- every record arrived exactly once and in partition order (and the upstream
  holds exactly what was produced);
- the new member resumed from the committed offsets;
- every broker address the client saw is a kgate listener (the test that
  must fail with KGATE_DIRECT=1).

Compression: librdkafka zstd, kafka-python lz4, Java zstd, KafkaJS gzip
(KafkaJS has no lz4/zstd codec without extra packages).
DescribeCluster API: kafka-python's describe_cluster() and the Java
AdminClient's describeCluster() send it; librdkafka and KafkaJS answer
describe_cluster from a Metadata request.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Optional

import pytest

from harness import REPO, Kgate, kafka_jars_classpath, record_timing, start_kgate, stop_kgate
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

RECORDS = 1000

COMPRESSION = {
    "librdkafka": "zstd",
    "kafka-python": "lz4",
    "java": "zstd",
    "kafkajs": "gzip",
}

JS_DIR = REPO / "tests" / "e2e" / "clients" / "js"


@dataclass
class Run:
    client: str
    kgate: Kgate
    outcome: Outcome
    truth: Optional[Truth]
    truth_error: Optional[str]


def drive(client: str, kg: Kgate, request) -> Outcome:
    comp = COMPRESSION[client]
    if client == "librdkafka":
        return run_librdkafka(kg.bootstrap_servers, RECORDS, comp)
    if client == "kafka-python":
        return run_kafka_python(kg.bootstrap_servers, RECORDS, comp)
    if client == "java":
        classes = request.getfixturevalue("java_classes")
        java = shutil.which("java") or pytest.fail("java not found: run tests/setup.sh")
        argv = [java, "-cp", f"{classes}:{kafka_jars_classpath()}", "KgateE2E"]
        return run_external("java", argv, kg.bootstrap_servers, RECORDS, comp, kg.port_base)
    if client == "kafkajs":
        script = JS_DIR / "kgate_e2e.js"
        if not script.exists():
            pytest.fail(f"{script} does not exist yet")
        if not (JS_DIR / "node_modules" / "kafkajs").exists():
            pytest.fail("kafkajs is not installed: run tests/setup.sh")
        node = shutil.which("node") or pytest.fail("node not found: run tests/setup.sh")
        return run_external("kafkajs", [node, str(script)], kg.bootstrap_servers, RECORDS, comp, kg.port_base, cwd=str(JS_DIR))
    raise ValueError(client)


@pytest.fixture(scope="module", params=list(COMPRESSION))
def run(request, tansu) -> Run:
    client = request.param
    kg = start_kgate(tansu, client)
    try:
        outcome = drive(client, kg, request)
        record_timing(f"{client} ({COMPRESSION[client]})", outcome.timings)
        truth, truth_error = None, None
        try:
            truth = broker_truth(tansu.bootstrap_servers, outcome.raw["topic"], outcome.raw["group"])
        except Exception as e:  # noqa: BLE001 - asserted on by the tests
            truth_error = f"{type(e).__name__}: {e}"
        yield Run(client, kg, outcome, truth, truth_error)
    finally:
        stop_kgate(kg)


def test_every_record_arrives_exactly_once_in_partition_order(run: Run) -> None:
    o = run.outcome
    why = o.explain()
    problems = list(o.problems)
    assert not problems, why
    assert o.partitions == PARTITIONS, why
    assert o.produced == RECORDS + RESUME_RECORDS, why
    assert o.consumed == RECORDS, why
    assert o.duplicates == 0 and o.missing == 0, why
    assert o.order_ok, why
    # What the upstream holds, read directly: exactly the produced records.
    assert run.truth is not None, f"reading the topic from tansu failed: {run.truth_error}\n{why}"
    t = run.truth
    assert t.partitions == PARTITIONS
    assert len(t.records) == o.produced, f"tansu holds {len(t.records)} records, the client produced {o.produced}"
    assert not t.duplicates(), f"duplicate records in tansu: {t.duplicates()[:10]}"


def test_new_group_member_resumes_from_committed_offsets(run: Run) -> None:
    o = run.outcome
    why = o.explain()
    assert o.resumed_ok, why
    assert o.resumed_consumed == RESUME_RECORDS, why
    assert run.truth is not None, f"reading the group from tansu failed: {run.truth_error}"
    # The group committed everything, as tansu itself reports it.
    assert run.truth.committed == run.truth.high, (
        f"committed offsets in tansu {run.truth.committed} != end offsets {run.truth.high}\n{why}"
    )
    if o.committed:
        assert o.committed == run.truth.high, f"client saw committed {o.committed}, tansu ends at {run.truth.high}"


# Address sources each client must report, so the check below covers them.
REQUIRED_SOURCES = {
    "librdkafka": ["consumer metadata", "group coordinator", "describe_cluster node", "rdkafka FindCoordinator answer", "rdkafka connection"],
    "kafka-python": ["describe_cluster (DescribeCluster API)", "consumer metadata", "consumer coordinator", "kafka-python connection"],
    "java": ["describe_cluster node", "coordinator", "brokers"],
    "kafkajs": ["describe_cluster node", "coordinator", "brokers", "connected"],
}


@pytest.mark.kgate_addresses
def test_client_only_sees_kgate_listeners(run: Run) -> None:
    o = run.outcome
    sources = {s.source for s in o.addresses}
    missing = [s for s in REQUIRED_SOURCES[run.client] if s not in sources]
    assert not missing, f"{run.client} reported no addresses from {missing}; got {sorted(sources)}\n{o.explain()}"
    run.kgate.check_addresses(o.addresses)

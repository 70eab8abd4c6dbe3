"""Real leader moves on the real Apache Kafka 4.1 cluster, and the KIP-951
`node_endpoints` Kafka sends with them, through kgate.

- test_kip951_node_endpoints_from_kafka_are_rewritten: hand-written Produce
  v11 and Fetch v16 requests (kafka_wire.py) for a partition that lives on
  nodes 2 and 3, sent to node 1. Kafka answers NOT_LEADER_OR_FOLLOWER with
  the leader's endpoint in `node_endpoints`. Sent directly, the endpoint is
  Kafka's own PLAINTEXT address (the ground truth that the field is really
  there); through kgate's listener for node 1 it must be kgate's listener for
  the leader, and never a Kafka address.
- test_leader_moves_with_clients_running: a Java 4.1 idempotent acks=all
  producer and a consumer group run through kgate while the partitions'
  leaders are moved by reassignment + preferred leader election, and then
  the leader of partition 0 is stopped (controlled shutdown) and restarted.
  Every acknowledged record must be consumed and be in Kafka exactly once;
  the client must have been handed real node_endpoints (its NetworkClient
  debug log prints every response), all of them kgate listeners; no Kafka
  address may appear anywhere in what the client logged.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter

import pytest

import kafka_wire as wire
from harness import LOOPBACK, Proc, log_path, poll_until, stop_kgate
from kafka_cluster import (
    NODE_IDS,
    has_family,
    java4,
    java4_argv,
    last_json,
    requests_of,
    scrape,
    start_kgate_with_metrics,
)

pytestmark = pytest.mark.kafka_cluster

NOT_LEADER_OR_FOLLOWER = 6
REWRITES = "kgate_address_rewrites_total"


@pytest.fixture
def kg(kafka_cluster, request):
    kafka_cluster.ensure_all_up()
    kg = start_kgate_with_metrics(kafka_cluster, f"kafka-{request.node.name}")
    yield kg
    stop_kgate(kg)
    kafka_cluster.ensure_all_up()


def describe(cluster, topic: str):
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    return admin.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result(timeout=30)


def uuid_bytes(u) -> bytes:
    return (u.get_most_significant_bits().to_bytes(8, "big", signed=True)
            + u.get_least_significant_bits().to_bytes(8, "big", signed=True))


def kgate_ports(kg) -> set[int]:
    return {kg.port_base} | {kg.listener(n)[1] for n in NODE_IDS}


def test_kip951_node_endpoints_from_kafka_are_rewritten(kg, kafka_cluster):
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"kip951-{uuid.uuid4().hex[:8]}"
    ka = KafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap, request_timeout_ms=20000)
    try:
        ka.create_topics([NewTopic(topic, num_partitions=-1, replication_factor=-1, replica_assignments={0: [2, 3]})])
    finally:
        ka.close()
    d = poll_until(f"a leader for {topic}",
                   lambda: (lambda d: d if d.partitions and d.partitions[0].leader is not None else None)(
                       describe(kafka_cluster, topic)), 30, 0.3)
    leader = d.partitions[0].leader.id
    assert leader in (2, 3)
    tid = uuid_bytes(d.topic_id)
    upstream = {(LOOPBACK, kafka_cluster.ports[n].plain) for n in NODE_IDS}
    want_direct = (LOOPBACK, kafka_cluster.ports[leader].plain)
    want_kgate = kg.listener(leader)

    # Node 1's kgate listener exists once kgate has seen metadata.
    with wire.Conn(LOOPBACK, kg.port_base) as c:
        brokers = wire.parse_metadata_v12_brokers(c.request(3, 12, wire.metadata_v12([topic])))
    assert {b.node_id: b.addr for b in brokers} == {n: kg.listener(n) for n in NODE_IDS}, brokers

    before = scrape(kg.admin_port)
    results = {}
    for via, port in (("direct", kafka_cluster.ports[1].plain), ("kgate", kg.listener(1)[1])):
        with wire.Conn(LOOPBACK, port) as c:
            results[(via, "produce")] = wire.parse_produce_v11(
                c.request(0, 11, wire.produce_v11(topic, 0, b"never-written")))
            results[(via, "fetch")] = wire.parse_fetch_v16(c.request(1, 16, wire.fetch_v16(tid, 0)))
    for (via, api), ans in results.items():
        what = f"{api} {via} to node 1 for a partition led by node {leader}: {ans}"
        assert ans.error_code == NOT_LEADER_OR_FOLLOWER, what
        assert ans.current_leader is not None and ans.current_leader[0] == leader, what
        assert ans.has_node_endpoints and [e.node_id for e in ans.node_endpoints] == [leader], what
        got = ans.node_endpoints[0].addr
        if via == "direct":
            assert got == want_direct, f"Kafka's own node_endpoints: {what}"
        else:
            assert got not in upstream, f"an upstream address leaked through kgate: {what}"
            assert got == want_kgate, f"expected kgate's listener {want_kgate}: {what}"
    after = scrape(kg.admin_port)
    assert requests_of(after, "Produce") - requests_of(before, "Produce") == 1
    assert requests_of(after, "Fetch") - requests_of(before, "Fetch") == 1
    assert has_family(after, REWRITES), f"kgate's /metrics has no {REWRITES}"
    for api in ("produce", "fetch"):
        key = f'{REWRITES}{{api="{api}"}}'
        assert after.get(key, 0) - before.get(key, 0) >= 1, f"{key} did not count the rewrite"
    assert "panicked" not in kg.proc.log_text()


# NetworkClient at DEBUG prints every connection it opens and every response
# it receives (Produce responses with their nodeEndpoints).
CLIENT_LOGS = {"org.apache.kafka.clients.NetworkClient": "debug",
               "org.apache.kafka.clients.Metadata": "debug"}
ENDPOINT = re.compile(r"NodeEndpoint\(nodeId=(\d+), host='([^']*)', port=(\d+)")
HOSTPORT = re.compile(r"(?<![\d.])127\.0\.0\.1[:/](\d{2,5})\b|host='127\.0\.0\.1', port=(\d+)")


def test_leader_moves_with_clients_running(kg, kafka_cluster, java4_classes):
    from confluent_kafka.admin import AdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    topic, group = f"move-{tag}", f"move-g-{tag}"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result(timeout=30)
    before = poll_until("leaders", lambda: (lambda d: d if all(p.leader for p in d.partitions) else None)(
        describe(kafka_cluster, topic)), 30, 0.3)
    replicas = {p.id: [r.id for r in p.replicas] for p in before.partitions}
    leaders0 = {p.id: p.leader.id for p in before.partitions}

    stop = log_path(f"mover-stop-{tag}")
    mover = Proc("java4-mover", java4_argv(java4_classes, "mover", kg.bootstrap_servers, topic, group, str(stop),
                                           log_levels=CLIENT_LOGS))
    timeline = []
    try:
        poll_until("the mover producing through kgate",
                   lambda: requests_of(scrape(kg.admin_port), "Produce") > 50 and mover.alive(), 60, 0.5)
        assert mover.alive(), mover.log_tail(80)
        time.sleep(2)

        # 1. reassignment: rotate every replica list, then elect the new preferred leaders
        spec = ",".join(f"{p}:{'.'.join(map(str, r[1:] + r[:1]))}" for p, r in sorted(replicas.items()))
        j, out = java4(java4_classes, "reassign", kafka_cluster.bootstrap, topic, spec)
        assert j["ok"], out[-4000:]
        leaders1 = {int(p): n for p, n in j["leaders"].items()}
        timeline.append(("reassign+elect", leaders0, leaders1))
        assert all(leaders1[p] != leaders0[p] for p in leaders0), f"leaders did not move: {leaders0} -> {leaders1}"
        time.sleep(4)

        # 2. stop the leader of partition 0 (controlled shutdown), then bring it back
        victim = leaders1[0]
        t = time.monotonic()
        kafka_cluster.stop_node(victim)
        timeline.append((f"stopped node {victim}", round(time.monotonic() - t, 1)))
        after_stop = poll_until("new leaders", lambda: (lambda d: d if all(
            p.leader is not None and p.leader.id != victim for p in d.partitions) else None)(
            describe(kafka_cluster, topic)), 30, 0.5)
        timeline.append(("leaders without the victim", {p.id: p.leader.id for p in after_stop.partitions}))
        time.sleep(4)
        kafka_cluster.ensure_all_up()
        timeline.append((f"node {victim} back",))
        time.sleep(3)
        assert mover.alive(), f"the mover died during the moves\n{mover.log_tail(80)}"
    finally:
        stop.write_text("stop\n")
        deadline = time.monotonic() + 150
        while mover.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        rc = mover.stop()
    text = mover.log_text()
    j = last_json(text)
    why = f"timeline {timeline}\nresult {j}\nrc {rc}\n{mover.log_tail(60)}"

    # No acknowledged record lost, none written twice.
    assert j["ok"] is True and not j["errors"], why
    assert j["acked"] >= 300 and j["send_errors"] == 0 and j["acked_not_consumed"] == 0, why
    from scenarios import broker_truth

    truth = broker_truth(kafka_cluster.bootstrap, topic, group)
    in_kafka = Counter(v for _, _, _, v in truth.records)
    twice = [v for v, n in in_kafka.items() if n > 1]
    assert not twice, f"{len(twice)} records are in Kafka more than once: {twice[:10]}\n{why}"
    assert len(in_kafka) >= j["acked"], f"Kafka holds {len(in_kafka)} distinct records, {j['acked']} were acked\n{why}"

    # The client was handed real KIP-951 node_endpoints, all of them kgate's.
    endpoints = {(int(n), h, int(p)) for n, h, p in ENDPOINT.findall(text)}
    assert endpoints, f"the producer never received node_endpoints (no NOT_LEADER answer?)\n{why}"
    bad = [e for e in endpoints if (e[1], e[2]) != kg.listener(e[0])]
    assert not bad, f"node_endpoints that are not kgate listeners: {bad}\n{why}"

    # No Kafka address anywhere in what the client logged (connections,
    # metadata, responses); and it did connect to every kgate listener.
    ports = {int(a or b) for a, b in HOSTPORT.findall(text)}
    leaked = ports & {p for n in NODE_IDS for p in kafka_cluster.ports[n].all()}
    assert not leaked, f"Kafka ports {sorted(leaked)} appear in the client's log\n{why}"
    unknown = ports - kgate_ports(kg)
    assert not unknown, f"ports {sorted(unknown)} in the client's log are not kgate listeners\n{why}"
    connected = {int(p) for p in re.findall(r"Initiating connection to node 127\.0\.0\.1:(\d+)", text)}
    assert {kg.listener(n)[1] for n in NODE_IDS} <= connected, f"connections: {sorted(connected)}\n{why}"

    m = scrape(kg.admin_port)
    assert has_family(m, REWRITES), f"kgate's /metrics has no {REWRITES}"
    assert m.get(f'{REWRITES}{{api="produce"}}', 0) > 0, {k: v for k, v in m.items() if REWRITES in k}
    assert not any(k.startswith("kgate_protocol_errors_total") and v > 0 for k, v in m.items()), m
    assert "panicked" not in kg.proc.log_text()

"""The Java client 4.1 (kafka-clients from Maven) through kgate against the
real Apache Kafka 4.1 cluster: the KIP-848 consumer group protocol,
transactions, and the admin operations a user runs, each checked against
what src/protocol/decision.rs says kgate does with it.

A refusal as a user sees it: the share-group admin calls (KIP-932 keys that
decision.rs never offers) fail in the Java AdminClient with
UnsupportedVersionException through kgate, and not so against Kafka itself.

Programs: clients/java4/KafkaClusterOps.java (modes kip848, txn, admin,
refusals).
kgate's /metrics (kgate_requests_total / kgate_responses_total by API key)
shows which requests kgate forwarded.
"""

from __future__ import annotations

import uuid

import pytest

import kafka_wire as wire
from harness import LOOPBACK, Seen, parse_hostport, stop_kgate
from kafka_cluster import NODE_IDS, java4, requests_of, responses_of, scrape, start_kgate_with_metrics

pytestmark = pytest.mark.kafka_cluster


@pytest.fixture
def kg(kafka_cluster, request):
    """kgate in front of the cluster's PLAINTEXT listeners, with /metrics."""
    kafka_cluster.ensure_all_up()
    kg = start_kgate_with_metrics(kafka_cluster, f"kafka-{request.node.name}")
    yield kg
    stop_kgate(kg)


def brokers_seen(j: dict) -> list[Seen]:
    out = [Seen("brokers", *parse_hostport(a)) for a in j.get("brokers") or []]
    if j.get("coordinator"):
        out.append(Seen("coordinator", *parse_hostport(j["coordinator"]), j.get("coordinator_id")))
    for a in j.get("cluster_nodes") or []:
        nid, _, hp = a.partition("@")
        out.append(Seen("describe_cluster node", *parse_hostport(hp), int(nid)))
    return out


# --------------------------------------------------------------------------
# KIP-848
# --------------------------------------------------------------------------


def test_kip848_consumer_group_protocol_with_a_two_member_rebalance(kg, java4_classes):
    """group.protocol=consumer: ConsumerGroupHeartbeat through kgate; a second
    member takes over part of the partitions; a new member resumes from the
    committed offsets; the group is a CONSUMER (not classic) group."""
    tag = uuid.uuid4().hex[:8]
    j, output = java4(java4_classes, "kip848", kg.bootstrap_servers, f"kip848-{tag}", f"kip848-g-{tag}")
    why = f"{j}\n{output[-6000:]}"
    assert j["ok"] is True and not j["errors"], why
    assert str(j["group_type"]).upper() == "CONSUMER", why
    assert j["rebalanced"] is True, why
    assert j["second_by_a"] > 0 and j["second_by_b"] > 0 and j["second_missing"] == 0, why
    assert j["resume_consumed"] == 50 and j["resume_redelivered"] == 0, why
    assert j["duplicates"] == 0, why
    m = scrape(kg.admin_port)
    hb = requests_of(m, "ConsumerGroupHeartbeat")
    assert hb > 0 and responses_of(m, "ConsumerGroupHeartbeat") > 0, \
        f"kgate forwarded no ConsumerGroupHeartbeat: the KIP-848 protocol was not used\n{why}"
    # the classic protocol was not used by these consumers
    assert requests_of(m, "JoinGroup") == 0, f"JoinGroup seen: a member fell back to the classic protocol\n{why}"
    kg.check_addresses(brokers_seen(j))


# --------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------


def test_transactions_exactly_once_across_abort_and_commit(kg, java4_classes):
    """A transactional producer aborts 100 records, commits 100, and leaves 10
    in an open transaction: read_committed sees exactly the 100 committed,
    read_uncommitted sees all 210 (the control that the others are there)."""
    tag = uuid.uuid4().hex[:8]
    j, output = java4(java4_classes, "txn", kg.bootstrap_servers, f"txn-{tag}", f"txn-id-{tag}")
    why = f"{j}\n{output[-6000:]}"
    assert j["ok"] is True and not j["errors"], why
    assert (j["read_committed_committed"], j["read_committed_aborted"], j["read_committed_open"]) == (100, 0, 0), why
    assert (j["read_uncommitted_committed"], j["read_uncommitted_aborted"], j["read_uncommitted_open"]) == (100, 100, 10), why
    assert j["txn_state"] == "Ongoing" and j["txn_listed"] == 1, why
    m = scrape(kg.admin_port)
    # Kafka 4 with transaction.version 2 (KIP-890) adds partitions implicitly
    # with Produce v12, so AddPartitionsToTxn is not required here.
    for api in ("InitProducerId", "EndTxn", "DescribeTransactions", "ListTransactions"):
        assert requests_of(m, api) > 0 and responses_of(m, api) > 0, f"kgate forwarded no {api}\n{why}"
    # the transaction coordinator was found through kgate (FindCoordinator, rewritten)
    assert requests_of(m, "FindCoordinator") > 0
    kg.check_addresses(brokers_seen(j))


# --------------------------------------------------------------------------
# Admin operations, forwarded or refused as decision.rs says
# --------------------------------------------------------------------------

# src/protocol/decision.rs DENIED: never offered to clients, a request is
# refused by closing the connection.
DENIED = {
    27: "WriteTxnMarkers", 52: "Vote", 53: "BeginQuorumEpoch", 54: "EndQuorumEpoch", 56: "AlterPartition",
    58: "Envelope", 59: "FetchSnapshot", 62: "BrokerRegistration", 63: "BrokerHeartbeat",
    67: "AllocateProducerIds", 70: "ControllerRegistration", 73: "AssignReplicasToDirs", 80: "AddRaftVoter",
    81: "RemoveRaftVoter", 82: "UpdateRaftVoter", 83: "InitializeShareGroupState", 84: "ReadShareGroupState",
    85: "WriteShareGroupState", 86: "DeleteShareGroupState", 87: "ReadShareGroupStateSummary",
    78: "ShareFetch", 79: "ShareAcknowledge",
}
DESCRIBE_QUORUM = 55


def test_admin_operations_forwarded_or_refused_per_decision_table(kg, kafka_cluster, java4_classes):
    """The Java AdminClient 4.1 runs create/alter/describe/delete topics,
    configs, ACLs, groups, offsets, records, log dirs, quorum, SCRAM users,
    quotas, leader election and reassignment through kgate. Every operation
    uses API keys decision.rs forwards, so each must succeed, and kgate's
    counters must show the request and its response. DescribeQuorum is capped
    at v1 (v2 carries controller endpoints kgate does not rewrite): the client
    gets the quorum without endpoints through kgate, with them directly."""
    tag = uuid.uuid4().hex[:8]
    ids = ",".join(map(str, NODE_IDS))
    j, output = java4(java4_classes, "admin", kg.bootstrap_servers, f"adm-{tag}", ids)
    why = f"{output[-8000:]}"
    failed = [o for o in j["ops"] if not o["ok"]]
    assert not failed, "admin operations failed through kgate:\n" + "\n".join(
        f"  {o['op']} ({o['api']}): {o['detail']}" for o in failed) + f"\n{why}"
    assert len(j["ops"]) >= 30, why
    m = scrape(kg.admin_port)
    not_forwarded = sorted({o["api"] for o in j["ops"]
                            if requests_of(m, o["api"]) == 0 or responses_of(m, o["api"]) == 0})
    assert not not_forwarded, f"kgate's counters show no request+response for {not_forwarded}\n" + \
        "\n".join(k for k in m if k.startswith("kgate_re"))
    # Nothing refused, nothing malformed along the way.
    assert not any(k.startswith("kgate_protocol_errors_total") and v > 0 for k, v in m.items()), \
        {k: v for k, v in m.items() if k.startswith("kgate_protocol_errors_total")}
    # DescribeQuorum through kgate: v1, so no controller endpoints at all.
    assert j["quorum_voters"] == 3 and j["quorum_endpoints"] == [], j
    direct, out2 = java4(java4_classes, "admin", kafka_cluster.bootstrap, f"adm-direct-{tag}", ids)
    ctrl_ports = {kafka_cluster.ports[n].ctrl for n in NODE_IDS}
    assert direct["ok"] is True, out2[-4000:]
    assert {parse_hostport(e.split("@", 1)[1])[1] for e in direct["quorum_endpoints"]} == ctrl_ports, direct
    kg.check_addresses(brokers_seen(j))


def test_refused_keys_and_versions_on_the_wire(kg, kafka_cluster):
    """ApiVersions through kgate lists no denied key and caps DescribeQuorum
    at v1, while Kafka itself offers more; a denied key (WriteTxnMarkers) and
    a version above the cap (DescribeQuorum v2) close the connection through
    kgate, while Kafka answers both directly."""
    n1 = kafka_cluster.ports[1].plain
    direct = wire.api_versions(LOOPBACK, n1)
    via = wire.api_versions(LOOPBACK, kg.port_base)
    offered_denied = sorted(DENIED[k] for k in direct if k in DENIED)
    assert offered_denied, f"Kafka offers none of the denied keys; the check below would prove nothing: {sorted(direct)}"
    leaked = sorted(DENIED[k] for k in via if k in DENIED)
    assert not leaked, f"kgate offers denied keys {leaked}"
    assert direct[DESCRIBE_QUORUM][1] >= 2, direct[DESCRIBE_QUORUM]
    assert via[DESCRIBE_QUORUM] == (0, 1), via.get(DESCRIBE_QUORUM)
    for k, (lo, hi) in via.items():
        assert k in direct and hi <= direct[k][1], f"kgate offers key {k} v{lo}-{hi}, Kafka {direct.get(k)}"

    # DescribeQuorum v1 is forwarded and answered; v2 is refused by kgate.
    with wire.Conn(LOOPBACK, kg.port_base) as c:
        body = c.request(DESCRIBE_QUORUM, 1, wire.describe_quorum_body())
        assert wire.Reader(body).i16() == 0, "DescribeQuorum v1 through kgate answered with an error"
        assert LOOPBACK.encode() not in body, "a v1 DescribeQuorum answer carries a host"
    with wire.Conn(LOOPBACK, n1) as c:
        body = c.request(DESCRIBE_QUORUM, 2, wire.describe_quorum_body())
        assert wire.Reader(body).i16() == 0
        # what the cap keeps away from clients: the controllers' addresses
        assert LOOPBACK.encode() in body, "Kafka's DescribeQuorum v2 answer has no controller endpoints"
    with wire.Conn(LOOPBACK, kg.port_base) as c:
        with pytest.raises((ConnectionError, OSError)):
            c.request(DESCRIBE_QUORUM, 2, wire.describe_quorum_body())
    # WriteTxnMarkers v1 (flexible) with no markers: Kafka answers it directly,
    # kgate refuses it.
    empty = wire.uvarint(1) + wire.TAGS0
    with wire.Conn(LOOPBACK, n1) as c:
        c.request(27, 1, empty)
    with wire.Conn(LOOPBACK, kg.port_base) as c:
        with pytest.raises((ConnectionError, OSError)):
            c.request(27, 1, empty)
    m = scrape(kg.admin_port)
    refused = sum(v for k, v in m.items() if k.startswith("kgate_protocol_errors_total"))
    assert refused >= 2, {k: v for k, v in m.items() if k.startswith("kgate_protocol_errors_total")}
    assert kg.proc.alive()


REFUSED_OPS = {"describeShareGroups": ("ShareGroupDescribe", 77, "SHARE_GROUP_DESCRIBE"),
               "listShareGroupOffsets": ("DescribeShareGroupOffsets", 90, "DESCRIBE_SHARE_GROUP_OFFSETS")}


def test_refused_share_group_admin_seen_by_the_java_admin_client(kg, kafka_cluster, java4_classes):
    """kgate's ApiVersions leaves the share-group keys out, so the AdminClient
    4.1 refuses the calls itself ("The node does not support ...") and never
    sends them. Directly, Kafka offers the keys and the client sends the
    requests: Kafka 4.1 answers them itself (success, or an error of its own:
    with the share.version feature off, as here, UNSUPPORTED_VERSION from the
    broker, "The version of API is not supported")."""
    group = f"share-{uuid.uuid4().hex[:8]}"
    via, out = java4(java4_classes, "refusals", kg.bootstrap_servers, group, timeout=120)
    direct, out2 = java4(java4_classes, "refusals", kafka_cluster.bootstrap, group, timeout=120)
    v = {o["op"]: o for o in via["ops"]}
    d = {o["op"]: o for o in direct["ops"]}
    why = f"through kgate: {via['ops']}\ndirectly: {direct['ops']}\n{out[-3000:]}"
    assert v["listTopics"]["ok"] and d["listTopics"]["ok"], why
    offered_direct = wire.api_versions(LOOPBACK, kafka_cluster.ports[1].plain)
    offered_via = wire.api_versions(LOOPBACK, kg.port_base)
    for op, (api, key, name) in REFUSED_OPS.items():
        assert key in offered_direct and key not in offered_via, (api, sorted(offered_direct), sorted(offered_via))
        assert not v[op]["ok"] and v[op]["detail"].startswith("UnsupportedVersionException"), \
            f"{op} through kgate\n{why}"
        assert f"does not support {name}" in v[op]["detail"], f"{op}: not the client's own refusal\n{why}"
        assert d[op]["ok"] or "does not support" not in d[op]["detail"], \
            f"{op} directly: the client refused it itself, so Kafka did not offer {api}\n{why}"
    m = scrape(kg.admin_port)
    sent = {api: requests_of(m, api) for api, _, _ in REFUSED_OPS.values()}
    assert not any(sent.values()), f"refused keys reached kgate: {sent}"
    assert requests_of(m, "Metadata") > 0

"""Policy per principal, end to end: real clients with mTLS client
certificates (the certificate's CN is the principal) through kgate with a
`[policy]` to a real tansu.

- alice may read, write and describe `orders.*` and use groups `orders-*`;
  carol may also create `orders.*`; admin may use every API; mallory has no
  rule block (denied all but Metadata, which shows her nothing).
- Denials come back as each client's own authorization error, and the same
  client (the same connection, for the raw requests) keeps working.
"""

from __future__ import annotations

import time
import uuid

import pytest

import kafka_wire as kw
from harness import Kgate, poll_until, stop_kgate
from policy_support import (
    TlsConn,
    fetch_v13_errors,
    fetch_v16_many,
    java_policy_client,
    kp_ssl,
    metadata_ids,
    parse_produce_v9,
    produce_v9,
    random_id,
    ssl_conf,
    start_policy_kgate,
)
from tls_support import Pki, java_tls_classes, pki  # noqa: F401 - fixtures used by name

PARTS = 1


@pytest.fixture(scope="module")
def kgate(pki: Pki, tansu) -> Kgate:
    kg = start_policy_kgate(pki, tansu)
    yield kg
    text = kg.proc.log_text()
    stop_kgate(kg)
    assert "panicked" not in text


@pytest.fixture(scope="module")
def topics(pki: Pki, kgate: Kgate) -> dict[str, str]:
    """orders.eu, payments and orders.other, created by admin through kgate
    with librdkafka's AdminClient (an admin API allowed for admin)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    tag = uuid.uuid4().hex[:6]
    t = {"orders": f"orders.eu-{tag}", "payments": f"payments-{tag}", "orders2": f"orders.us-{tag}"}
    admin = AdminClient({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "admin")})
    fs = admin.create_topics([NewTopic(n, PARTS, 1) for n in t.values()], operation_timeout=20)
    for n, f in fs.items():
        f.result(timeout=30)
    return t


def admin_topics(pki: Pki, kgate: Kgate) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "admin")})
    return set(admin.list_topics(timeout=20).topics)


# --------------------------------------------------------------------------
# librdkafka (confluent-kafka)
# --------------------------------------------------------------------------


def test_librdkafka_produce_denied_topic_then_keep_producing(pki: Pki, kgate: Kgate, topics) -> None:
    from confluent_kafka import KafkaError, Producer

    reports: list[tuple[str, object]] = []
    p = Producer({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice"),
                  "acks": "all", "message.timeout.ms": 20000})
    cb = lambda err, msg: reports.append((msg.topic(), err))  # noqa: E731
    p.produce(topics["orders"], b"before", callback=cb)
    p.flush(30)
    p.produce(topics["payments"], b"nope", callback=cb)
    p.flush(30)
    p.produce(topics["orders"], b"after", callback=cb)
    p.flush(30)
    got = [(t, e.code() if e else None) for t, e in reports]
    assert got == [(topics["orders"], None), (topics["payments"], KafkaError.TOPIC_AUTHORIZATION_FAILED),
                   (topics["orders"], None)], got


def test_librdkafka_consume_and_list_topics(pki: Pki, kgate: Kgate, topics) -> None:
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice")})
    want = {f"v{i}-{uuid.uuid4().hex[:4]}".encode() for i in range(5)}
    for v in want:
        p.produce(topics["orders"], v)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice"),
                  "group.id": f"orders-app-{uuid.uuid4().hex[:4]}", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    try:
        listed = set(c.list_topics(timeout=20).topics)
        assert topics["orders"] in listed and topics["orders2"] in listed
        assert all(t.startswith("orders.") for t in listed), f"alice sees {sorted(listed)}"
        assert topics["payments"] in admin_topics(pki, kgate)
        c.subscribe([topics["orders"]])
        seen: set[bytes] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want <= seen:
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.add(m.value())
        assert want <= seen
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_librdkafka_group_rule(pki: Pki, kgate: Kgate, topics) -> None:
    from confluent_kafka import Consumer, KafkaError

    c = Consumer({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice"),
                  "group.id": f"payments-app-{uuid.uuid4().hex[:4]}", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    try:
        c.subscribe([topics["orders"]])
        errors = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not errors:
            m = c.poll(0.5)
            if m is not None and m.error():
                errors.append(m.error().code())
        assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors, errors
    finally:
        c.close()


def test_librdkafka_admin_api_refused_for_non_admin(pki: Pki, kgate: Kgate, topics) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    alice = AdminClient({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice")})
    name = f"orders.adm-{uuid.uuid4().hex[:4]}"
    with pytest.raises(KafkaException) as e:
        alice.create_topics([NewTopic(name, 1, 1)], operation_timeout=10)[name].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        alice.delete_topics([topics["orders2"]], operation_timeout=10)[topics["orders2"]].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert name not in admin_topics(pki, kgate)
    assert topics["orders2"] in admin_topics(pki, kgate)
    # admin may: create and delete one.
    from confluent_kafka.admin import AdminClient as A

    admin = A({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "admin")})
    admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=10)[name].result(timeout=30)
    admin.delete_topics([name], operation_timeout=10)[name].result(timeout=30)


def test_describe_configs_split_for_allowed_and_denied_topics(pki: Pki, kgate: Kgate, topics) -> None:
    """One DescribeConfigs request for an allowed and a denied topic is split
    and merged: the allowed topic's configs and the denied one's error.
    (ListGroups filtering is unit-tested only: tansu 0.6 lists no groups.)"""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    alice = AdminClient({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, "alice")})
    res = [ConfigResource(ConfigResource.Type.TOPIC, topics["orders"]),
           ConfigResource(ConfigResource.Type.TOPIC, topics["payments"])]
    fs = alice.describe_configs(res, request_timeout=20)
    assert isinstance(fs[res[0]].result(timeout=30), dict)
    with pytest.raises(KafkaException) as e:
        fs[res[1]].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_auto_create_only_for_a_principal_allowed_to_create(pki: Pki, kgate: Kgate, topics) -> None:
    from confluent_kafka import Producer

    for who, created in (("alice", False), ("carol", True)):
        name = f"orders.new-{who}-{uuid.uuid4().hex[:4]}"
        p = Producer({"bootstrap.servers": kgate.bootstrap_servers, **ssl_conf(pki, who),
                      "allow.auto.create.topics": True, "message.timeout.ms": 8000})
        p.produce(name, b"x")
        p.flush(15)
        listed = admin_topics(pki, kgate)
        assert (name in listed) == created, f"{who}: {name} in {sorted(listed)}"


# --------------------------------------------------------------------------
# kafka-python
# --------------------------------------------------------------------------


def test_kafka_python_denials_and_same_client_keeps_working(pki: Pki, kgate: Kgate, topics) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    p = KafkaProducer(bootstrap_servers=kgate.bootstrap_servers, **kp_ssl(pki, "alice"), acks="all",
                      max_block_ms=20000)
    try:
        assert p.send(topics["orders"], b"kp-before").get(timeout=30).offset >= 0
        with pytest.raises(TopicAuthorizationFailedError):
            p.send(topics["payments"], b"kp-nope").get(timeout=30)
        assert p.send(topics["orders"], b"kp-after").get(timeout=30).offset >= 0
    finally:
        p.close()
    c = KafkaConsumer(bootstrap_servers=kgate.bootstrap_servers, **kp_ssl(pki, "alice"),
                      group_id=f"other-{uuid.uuid4().hex[:4]}", auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=1000, request_timeout_ms=20000)
    try:
        listed = c.topics()
        assert topics["orders"] in listed and all(t.startswith("orders.") for t in listed), listed
        c.subscribe([topics["orders"]])
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                c.poll(timeout_ms=500)
    finally:
        c.close(autocommit=False)


# --------------------------------------------------------------------------
# The Java client (3.9: Fetch by topic id when offered v13+)
# --------------------------------------------------------------------------


def test_java_client_authorization_errors(pki: Pki, kgate: Kgate, topics, java_tls_classes) -> None:
    tag = uuid.uuid4().hex[:4]
    j, output = java_policy_client(java_tls_classes, pki, "alice", kgate.bootstrap_servers, topics["orders"],
                                   topics["payments"], f"orders-java-{tag}", f"payments-java-{tag}",
                                   f"orders.java-{tag}")
    explain = f"{j}\n{output}\n--- kgate ---\n{kgate.proc.log_tail(30)}"
    assert "error" not in j, explain
    assert j["produce"] == ["ok", "TopicAuthorizationException", "ok"], explain
    assert topics["orders"] in j["topics"] and all(t.startswith("orders.") for t in j["topics"]), explain
    assert {"java-before", "java-after"} <= set(j["consumed"]), explain
    assert j["group"] == "GroupAuthorizationException", explain
    assert j["create"] == "TopicAuthorizationException", explain


# --------------------------------------------------------------------------
# Raw requests: split and merge, Fetch by topic id, mallory
# --------------------------------------------------------------------------


def test_mixed_produce_is_split_and_the_connection_stays_open(pki: Pki, kgate: Kgate, topics) -> None:
    with TlsConn(pki, "alice", kgate.port_base) as c:
        body = c.request(0, 9, produce_v9([topics["orders"], topics["payments"]], b"mixed"))
        got = parse_produce_v9(body)
        assert got[topics["payments"]] == (29, -1), got
        err, base = got[topics["orders"]]
        assert err == 0 and base >= 0, got
        only = parse_produce_v9(c.request(0, 9, produce_v9([topics["payments"]], b"denied")))
        assert only == {topics["payments"]: (29, -1)}
        assert c.is_open()
    assert "policy denied" in kgate.proc.log_text()


def test_fetch_by_topic_id(pki: Pki, kgate: Kgate, topics) -> None:
    with TlsConn(pki, "alice", kgate.port_base) as c:
        c.request(0, 9, produce_v9([topics["orders"]], b"by-id"))
    with TlsConn(pki, "admin", kgate.port_base) as c:
        ids = metadata_ids(c.request(3, 12, kw.metadata_v12([topics["orders"], topics["payments"]])))
    orders_id, payments_id, unknown = ids[topics["orders"]][1], ids[topics["payments"]][1], random_id()
    with TlsConn(pki, "alice", kgate.port_base) as c:
        # The Java 3.9 client takes the highest common version: Fetch v13+
        # names topics by id, so test_java_client_authorization_errors
        # consumes through this path too.
        r = kw.Reader(c.request(18, 3, kw.api_versions_v3(), flexible=True, response_header_flexible=False))
        assert r.i16() == 0
        offered = {}
        for _ in range(r.carray_len()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.tags()
            offered[k] = hi
        assert offered[1] >= 13, offered
        for tid, want in ((orders_id, 0), (payments_id, 29), (unknown, 100)):
            got = fetch_v13_errors(c.request(1, 16, kw.fetch_v16(tid, 0)))
            assert got[tid][0] == want, (tid, got)
        assert fetch_v13_errors(c.request(1, 16, kw.fetch_v16(orders_id, 0)))[orders_id][1] > 0
        # Mixed: split, the allowed topic fetched from tansu, the denied one merged back.
        mixed = fetch_v13_errors(c.request(1, 16, fetch_v16_many([orders_id, payments_id])))
        assert mixed[payments_id] == (29, 0), mixed
        assert mixed[orders_id][0] == 0 and mixed[orders_id][1] > 0, mixed
        assert c.is_open()


def test_unmatched_principal_sees_nothing(pki: Pki, kgate: Kgate, topics) -> None:
    with TlsConn(pki, "mallory", kgate.port_base) as c:
        assert metadata_ids(c.request(3, 12, kw.metadata_v12(None))) == {}
        named = metadata_ids(c.request(3, 12, kw.metadata_v12([topics["orders"]])))
        assert named == {topics["orders"]: (29, bytes(16))}
        assert parse_produce_v9(c.request(0, 9, produce_v9([topics["orders"]], b"m"))) == {topics["orders"]: (29, -1)}
        assert c.is_open()

"""kgate's one SNI port in front of the real 3-broker Apache Kafka cluster
(stage 2). Names resolve through the /etc/hosts entries of test_sni's `hosts`
fixture.

- test_java_through_one_sni_port_to_three_kafka_brokers: the Java client
  produces, consumes in a group and commits, every broker reached by its
  pattern name on the shared port. Then a leak check on the wire
  (kafka_wire over TLS, with the bootstrap name and each broker's name as
  SNI): Metadata and FindCoordinator (group and transaction) advertise only
  pattern names on the shared port, never a Kafka address.
- test_broker_that_appears_later_through_the_sni_port: node 3 is stopped
  before kgate starts; a librdkafka client sees nodes 1 and 2 through the
  port. Node 3 comes back, a topic led by node 3 is created, and the same
  client, then a produce/consume round trip, reach it as b-3 on the same
  port, without restarting kgate. Node 3 is left running for later tests.
"""

from __future__ import annotations

import ssl
import time
import uuid

import pytest

import kafka_wire as wire
from harness import LOOPBACK, Upstream, poll_until, stop_kgate, wait_for_port
from kafka_cluster import NODE_IDS
from test_sni import (  # noqa: F401 - fixtures by name
    BOOT,
    DOMAIN,
    PATTERN,
    check_pattern_addresses,
    downstream,
    hosts,
    pattern_id,
    rdk_ssl,
    roundtrip,
    sni_cert,
    sni_section,
)
from tls_support import (  # noqa: F401 - fixtures are used by name
    free_port_on,
    java_ssl_props,
    java_tls_classes,
    java_tls_client,
    pki,
    start_kgate_toml,
)

pytestmark = pytest.mark.kafka_cluster

RECORDS = 300


def test_java_through_one_sni_port_to_three_kafka_brokers(kafka_cluster, pki, hosts, sni_cert,  # noqa: F811
                                                          java_tls_classes) -> None:  # noqa: F811
    port = free_port_on(LOOPBACK)
    kg = start_kgate_toml("sni-kafka", kafka_cluster.upstream(), {
        "downstream_tls": downstream(sni_cert),
        "sni": sni_section(port),
    })
    try:
        wait_for_port(port, 10, kg.proc)
        props = java_ssl_props(pki, None)
        # DescribeCluster through the port: all three brokers, each by its
        # pattern name on the one shared port.
        j, out = java_tls_client(java_tls_classes, props, "probe", f"{BOOT}:{port}")
        want = sorted(f"{n}@b-{n}.{DOMAIN}:{port}" for n in (1, 2, 3))
        assert j.get("ok") and sorted(j.get("nodes", [])) == want, f"{j}\n{out}\n{kg.proc.log_tail(30)}"
        tag = uuid.uuid4().hex[:6]
        j, out = java_tls_client(java_tls_classes, props, "roundtrip", f"{BOOT}:{port}",
                                 f"sni-kafka-{tag}", f"g-sni-kafka-{tag}", str(RECORDS))
        assert j.get("ok"), f"{j}\n{out}\n--- kgate ---\n{kg.proc.log_tail(40)}"
        assert j.get("consumed") == RECORDS and j.get("duplicates") == 0 and j.get("missing") == 0, j
        # The leak check, on the wire: what the port advertises to any client.
        ctx = ssl.create_default_context(cafile=pki("ca.pem"))
        for name in [BOOT] + [PATTERN.format(node_id=n) for n in NODE_IDS]:
            check_advertised_over_sni(ctx, port, name, f"g-sni-kafka-{tag}", kafka_cluster)
    finally:
        stop_kgate(kg)


def check_advertised_over_sni(ctx: ssl.SSLContext, port: int, sni: str, group: str, cluster) -> None:
    """Metadata v12 and FindCoordinator v4 (the group, and a transactional id)
    over TLS to the SNI port with `sni`: every broker address is b-N on `port`
    for node N, and no Kafka address appears anywhere in the answers."""
    upstream_ports = {p for n in NODE_IDS for p in cluster.ports[n].all()}
    with wire.Conn(LOOPBACK, port, tls=ctx, server_hostname=sni) as c:
        md = c.request(3, 12, wire.metadata_v12(None))
        brokers = wire.parse_metadata_v12_brokers(md)
        answers = [md]

        def coordinators(keys, key_type):
            def ask():
                body = c.request(10, 4, wire.find_coordinator_v4(keys, key_type))
                found = wire.parse_find_coordinator_v4(body)
                return (body, found) if found and all(x.error_code == 0 for x in found) else None

            return poll_until(f"FindCoordinator {keys} via {sni}", ask, 20, 0.3)

        fc_body, group_coords = coordinators([group], 0)
        tx_body, tx_coords = coordinators([f"tx-sni-leak-{uuid.uuid4().hex[:6]}"], 1)
        answers += [fc_body, tx_body]
    what = f"via SNI {sni}: brokers {brokers}, coordinators {group_coords + tx_coords}"
    assert sorted(b.node_id for b in brokers) == list(NODE_IDS), what
    for nid, host, p in [(b.node_id, b.host, b.port) for b in brokers] + \
                        [(x.node_id, x.host, x.port) for x in group_coords + tx_coords]:
        assert host == PATTERN.format(node_id=nid) and p == port, f"node {nid} advertised as {host}:{p}; {what}"
        assert p not in upstream_ports, what
    for body in answers:
        assert b"127.0.0.1" not in body, f"an upstream address in an answer {what}: {body!r}"
        assert not any(f"{LOOPBACK}:{p}".encode() in body for p in upstream_ports), what


def test_broker_that_appears_later_through_the_sni_port(kafka_cluster, pki, hosts, sni_cert) -> None:  # noqa: F811
    from confluent_kafka.admin import AdminClient, NewTopic

    late = 3
    direct = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    kafka_cluster.ensure_all_up()
    kg = None
    try:
        kafka_cluster.stop_node(late)
        poll_until(f"node {late} gone from Kafka's metadata",
                   lambda: late not in direct.list_topics(timeout=5).brokers, 60, 0.5)
        # kgate's bootstrap lists only the running nodes: it learns node 3
        # from Kafka's metadata later, like a broker added to a cluster.
        up = Upstream("kafka", [(LOOPBACK, kafka_cluster.ports[n].plain) for n in NODE_IDS if n != late], NODE_IDS,
                      {n: (LOOPBACK, kafka_cluster.ports[n].plain) for n in NODE_IDS})
        port = free_port_on(LOOPBACK)
        kg = start_kgate_toml("sni-kafka-late", up, {
            "downstream_tls": downstream(sni_cert),
            "sni": sni_section(port),
            "log_level": "kgate=debug",
        }, avoid_ports=kafka_cluster.all_upstream_ports())
        wait_for_port(port, 10, kg.proc)
        boot = f"{BOOT}:{port}"
        client = AdminClient({"bootstrap.servers": boot, "topic.metadata.refresh.interval.ms": 1000, **rdk_ssl(pki)})
        md = client.list_topics(timeout=15)
        before = {n: (b.host, b.port) for n, b in md.brokers.items()}
        assert sorted(before) == [n for n in NODE_IDS if n != late], f"with node {late} down: {before}"
        assert f"sni=b-{late}." not in kg.proc.log_text()

        t0 = time.monotonic()
        kafka_cluster.ensure_all_up()
        back_s = time.monotonic() - t0
        topic = f"sni-late-{uuid.uuid4().hex[:6]}"
        direct.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[late]])])[topic].result(timeout=30)
        # The same client learns node 3, by its pattern name on the same port.
        md = poll_until(f"node {late} through the SNI port", lambda: (lambda m: m if late in m.brokers else None)(
            client.list_topics(timeout=5)), 30, 0.5)
        b = md.brokers[late]
        assert (b.host, b.port) == (PATTERN.format(node_id=late), port), f"node {late} advertised as {b.host}:{b.port}"
        seen, log, leaders = roundtrip(boot, pki, "late", topic=topic)
        assert leaders == {late}, f"the topic's leaders through kgate: {leaders}"
        ids = {pattern_id(s.host) for s in seen if pattern_id(s.host) is not None}
        assert late in ids, f"the client never saw b-{late}: {ids}\n{log[-3000:]}"
        check_pattern_addresses(seen, port, set(up.addresses.values()))
        text = kg.proc.log_text()
        assert f"sni=b-{late}.{DOMAIN}" in text, f"no connection routed by b-{late}\n{kg.proc.log_tail(40)}"
        assert f"broker reachable by SNI name node_id={late}" in text, kg.proc.log_tail(40)
        assert "panicked" not in text
        print(f"node {late} back in {back_s:.1f}s")
    finally:
        if kg is not None:
            stop_kgate(kg)
        kafka_cluster.ensure_all_up()

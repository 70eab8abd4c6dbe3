"""The Java client through kgate's one SNI port against the real 3-broker
Apache Kafka cluster (stage 2): produce, consume in a group and commit, with
every broker reached by its pattern name on the shared port. Names resolve
through the /etc/hosts entries of test_sni's `hosts` fixture.
"""

from __future__ import annotations

import uuid

import pytest

from harness import LOOPBACK, stop_kgate, wait_for_port
from test_sni import BOOT, DOMAIN, downstream, hosts, sni_cert, sni_section  # noqa: F401 - fixtures by name
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
    finally:
        stop_kgate(kg)

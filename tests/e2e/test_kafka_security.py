"""kgate against the real Apache Kafka 4.1 cluster's own TLS and SASL_SSL
listeners (no stunnel): the MSK 9094 and 9096 look-alikes of kafka_cluster.py.

Both listeners advertise b-N.kafka-e2e.test, names that never resolve, so
kgate reaches them only through its [[dial]] mapping to 127.0.0.1, while it
checks the broker certificate (issued for b-1..b-3.kafka-e2e.test by the dev
CA) against the broker's real name.

- test_tls_both_ways_with_dial_mapping: clients -> kgate with TLS and a
  client certificate, kgate -> Kafka's SSL listener with TLS and kgate's
  client certificate (Kafka requires one). Produce, consume, commit. Two
  controls that must fail: a wrong server_name (name mismatch) and no client
  certificate toward Kafka (Kafka refuses the handshake).
- test_scram_reauth_enforced_by_kafka_for_60s: SCRAM-SHA-512 over TLS with
  Kafka's connections.max.reauth.ms at 5 s. For 60 s a librdkafka producer
  and consumer run through kgate in plaintext; kgate must re-authenticate on
  every upstream connection before Kafka closes it, and the clients must see
  no disconnect and lose nothing.
- test_iam_fronts_per_node_with_dial_mapping: the IAM-like listener. One
  iam_front.IamFront per Kafka node (it checks AWS_MSK_IAM signatures with
  botocore, grants 3 s sessions and closes expired ones, like MSK's 9098)
  forwards to that node's PLAINTEXT port; kgate signs AWS_MSK_IAM and dials
  each node's advertised address through a [[dial]] entry to its front.
  librdkafka produces and consumes through kgate for 15 s: every front saw
  first authentications and re-authentications, none failed or expired, and
  the client lost nothing and saw no disconnect.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from harness import LOOPBACK, log_path, stop_kgate
from kafka_cluster import (
    NODE_IDS,
    REAUTH_MS,
    SCRAM_PASSWORD,
    SCRAM_USER,
    admin_port,
    scrape,
    tls_host,
)
from scenarios import RdkafkaLog, rdkafka_conf
from tls_support import (
    downstream_tls,
    rdkafka_metadata_errors,
    rdkafka_ssl,
    rdkafka_tls_roundtrip,
    start_kgate_toml,
    upstream_tls,
    wait_for_log,
)

pytestmark = pytest.mark.kafka_cluster


def kgate_tls(cluster, name: str, kind: str, extra: dict):
    cfg = {"dial": cluster.dial(kind), "admin_listen": f"{LOOPBACK}:{admin_port()}"}
    cfg.update(extra)
    kg = start_kgate_toml(name, cluster.tls_upstream(kind), cfg, avoid_ports=cluster.all_upstream_ports())
    kg.admin_port = int(cfg["admin_listen"].rsplit(":", 1)[1])
    return kg


def test_tls_both_ways_with_dial_mapping(kafka_cluster):
    kafka_cluster.ensure_all_up()
    pki = kafka_cluster.pki
    kg = kgate_tls(kafka_cluster, "kafka-mtls", "ssl", {
        "upstream_tls": upstream_tls(pki, "kgate-client"),
        "downstream_tls": downstream_tls(pki, client_ca=True),
    })
    try:
        rt = rdkafka_tls_roundtrip(kg.bootstrap_servers, rdkafka_ssl(pki, "app-client"), 300)
        assert rt.ok, rt.explain()
        # The names never resolve: the round trip itself proves the dial
        # mapping. kgate's log names each broker by its real name.
        log = kg.proc.log_text()
        for n in NODE_IDS:
            port = kafka_cluster.ports[n].ssl
            assert f"{tls_host(n)}:{port}" in log, f"no sign of {tls_host(n)}:{port} in kgate's log\n{kg.proc.log_tail(60)}"
        m = scrape(kg.admin_port)
        fails = {k: v for k, v in m.items() if k.startswith("kgate_upstream_failures_total") and v > 0}
        assert not fails, fails
    finally:
        stop_kgate(kg)

    # Control 1: the broker's certificate is checked by name. A wrong
    # server_name must fail the handshake with a name mismatch.
    bad = kgate_tls(kafka_cluster, "kafka-mtls-wrongname", "ssl", {
        "upstream_tls": upstream_tls(pki, "kgate-client", server_name="wrong.kafka-e2e.test"),
    })
    try:
        ok, errors, _ = rdkafka_metadata_errors(bad.bootstrap_servers, {}, timeout=6)
        assert not ok, "metadata arrived although kgate expected the wrong server name"
        wait_for_log(bad.proc, r"name mismatch", 15)
    finally:
        stop_kgate(bad)

    # Control 2: Kafka's SSL listener requires a client certificate.
    nocert = kgate_tls(kafka_cluster, "kafka-mtls-nocert", "ssl", {"upstream_tls": upstream_tls(pki, None)})
    try:
        ok, errors, _ = rdkafka_metadata_errors(nocert.bootstrap_servers, {}, timeout=6)
        assert not ok, "metadata arrived although kgate presented no client certificate"
        # Java answers a missing certificate with a bad_certificate alert
        wait_for_log(nocert.proc, r"certificate required|bad certificate", 15)
    finally:
        stop_kgate(nocert)


RUN_S = 60
DISCONNECT = re.compile(r"Disconnected|BROKERFAIL|Receive failed|Send failed|Connection refused|connection reset|"
                        r"transport failure", re.I)


def test_scram_reauth_enforced_by_kafka_for_60s(kafka_cluster, tmp_path):
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    kafka_cluster.ensure_all_up()
    pw = tmp_path / "scram.pass"
    pw.write_text(SCRAM_PASSWORD + "\n")
    kg = kgate_tls(kafka_cluster, "kafka-scram", "sasl", {
        "upstream_tls": upstream_tls(kafka_cluster.pki, None),
        "upstream_sasl": {"mechanism": "SCRAM-SHA-512", "username": SCRAM_USER, "password_file": str(pw)},
    })
    tag = uuid.uuid4().hex[:8]
    topic, group = f"scram-{tag}", f"scram-g-{tag}"
    log = RdkafkaLog(f"scram-{tag}")
    client_errors: list[str] = []
    common = {"error_cb": lambda e: client_errors.append(str(e))}
    try:
        admin = AdminClient(rdkafka_conf(kg.bootstrap_servers, log, "scram-admin", **common))
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(timeout=30)
        del admin  # its connections must not open or close during the run
        producer = Producer(rdkafka_conf(kg.bootstrap_servers, log, "scram-producer", **common, **{
            "enable.idempotence": True, "acks": "all", "linger.ms": 5}))
        consumer = Consumer(rdkafka_conf(kg.bootstrap_servers, log, "scram-consumer", **common, **{
            "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}))
        consumer.subscribe([topic])
        acked, failed, got = set(), [], {}

        def cb(err, msg):
            if err is None:
                acked.add(msg.value().decode())
            else:
                failed.append(str(err))

        t0 = time.monotonic()
        warm = None
        i = 0
        next_send = t0
        while time.monotonic() - t0 < RUN_S:
            now = time.monotonic()
            if now >= next_send:
                producer.produce(topic, key=f"k{i % 9}", value=f"{tag}-{i}", on_delivery=cb)
                i += 1
                next_send += 0.05
            producer.poll(0)
            for m in consumer.consume(num_messages=100, timeout=0.02):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        client_errors.append(f"consume: {m.error()}")
                    continue
                got[m.value().decode()] = got.get(m.value().decode(), 0) + 1
            if warm is None and now - t0 > 8:
                warm = scrape(kg.admin_port)  # connections are up by now
                log_mark = len(log.lines)
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 30
        while not acked <= set(got) and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=500, timeout=0.2):
                if not m.error():
                    got[m.value().decode()] = got.get(m.value().decode(), 0) + 1
        consumer.commit(asynchronous=False)
        consumer.close()
        end = scrape(kg.admin_port)
    finally:
        stop_kgate(kg)

    missing = acked - set(got)
    summary = (f"sent {i}, acked {len(acked)}, failed {failed[:5]}, consumed {len(got)}, missing {len(missing)}, "
               f"client errors {client_errors[:10]}")
    assert i >= RUN_S * 15 and len(acked) == i and not failed, summary
    assert not missing, summary
    assert not client_errors, summary
    drops = [l for l in log.lines[log_mark:] if DISCONNECT.search(l)]
    assert not drops, f"the clients saw disconnects: {drops[:10]}\n{summary}"

    def total(m, prefix):
        return sum(v for k, v in m.items() if k.startswith(prefix))

    reauth = end.get("kgate_reauth_total", 0)
    # Kafka allows REAUTH_MS per session; kgate re-authenticates at 85-90% of
    # it, on every upstream connection: at least RUN_S / (REAUTH_MS/1000) times.
    assert reauth >= RUN_S / (REAUTH_MS / 1000), f"kgate_reauth_total {reauth} over {RUN_S}s\n{summary}"
    assert end.get("kgate_reauth_failures_total", 0) == 0, end
    assert total(end, "kgate_upstream_failures_total") == total(warm, "kgate_upstream_failures_total"), end
    assert total(end, "kgate_connections_total") == total(warm, "kgate_connections_total"), \
        f"clients reconnected after the warm-up: {warm} -> {end}"


IAM_LIFETIME_MS = 3000
IAM_RUN_S = 15


def test_iam_fronts_per_node_with_dial_mapping(kafka_cluster):
    import shutil

    import iam_front
    from test_sasl_iam import ASIA, REGION, assert_rdkafka_clean, clean_env, env_creds, rdkafka_soak, register

    kafka_cluster.ensure_all_up()
    fronts: dict[int, iam_front.IamFront] = {}
    kg = None
    env = clean_env(env_creds(ASIA))
    try:
        for n in NODE_IDS:
            plain = kafka_cluster.ports[n].plain
            # The host kgate signs is the broker's advertised name (here
            # 127.0.0.1, the PLAINTEXT listener's), never the dial address.
            f = iam_front.IamFront((LOOPBACK, plain), listen=(LOOPBACK, 0), broker_host=LOOPBACK, region=REGION,
                                   lifetime_ms=IAM_LIFETIME_MS, mechanisms=("AWS_MSK_IAM",),
                                   log_path=log_path(f"iam-front-kafka-{n}")).start()
            register(f, ASIA)
            fronts[n] = f
        up = kafka_cluster.upstream()
        dial = [{"broker": f"{LOOPBACK}:{kafka_cluster.ports[n].plain}", "connect": f"{LOOPBACK}:{fronts[n].port}"}
                for n in NODE_IDS]
        port = admin_port()
        kg = start_kgate_toml("kafka-iam-fronts", up, {
            "dial": dial,
            "admin_listen": f"{LOOPBACK}:{port}",
            "upstream_sasl": {"mechanism": "AWS_MSK_IAM", "region": REGION},
        }, env=env, avoid_ports=kafka_cluster.all_upstream_ports() | {f.port for f in fronts.values()} | {port})
        r = rdkafka_soak(kg.bootstrap_servers, IAM_RUN_S, 100, name="kafka-iam")
        stats = {n: f.stats() for n, f in fronts.items()}
        m = scrape(port)
    finally:
        if kg is not None:
            stop_kgate(kg)
        for f in fronts.values():
            f.stop()
        shutil.rmtree(env["HOME"], ignore_errors=True)

    def brief(st):
        return {k: st[k] for k in ("connections", "auths", "reauths", "failures", "closes", "expired_closes",
                                   "requests_forwarded", "by_mechanism")}

    why = "\n".join(f"front of node {n}: {brief(st)}" for n, st in stats.items())
    events = "\n".join(f"node {n}: " + "\n  ".join(f.events(15)) for n, f in fronts.items())
    assert_rdkafka_clean(r, "IAM fronts on Kafka:")
    for n, st in stats.items():
        assert st["failures"] == [], f"authentication failures at node {n}'s front\n{why}\n{events}"
        assert st["expired_closes"] == 0, f"node {n}'s front closed expired sessions\n{why}\n{events}"
        assert st["auths"] >= 1 and st["requests_forwarded"] > 0, f"nothing authenticated at node {n}'s front\n{why}"
        assert set(st["by_mechanism"]) == {"AWS_MSK_IAM"}, why
        # Sessions of 3 s over a 15 s run: the connections kept open
        # re-authenticated on their own, several times.
        assert st["reauths"] >= 2, f"node {n}'s front saw too few re-authentications\n{why}"
    assert m.get("kgate_reauth_failures_total", 0) == 0, {k: v for k, v in m.items() if "reauth" in k}
    assert m.get("kgate_reauth_total", 0) >= len(NODE_IDS) * 2, ({k: v for k, v in m.items() if "reauth" in k}, why)

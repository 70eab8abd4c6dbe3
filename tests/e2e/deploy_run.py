"""Helpers shared by the tests that run the deploy kit for real
(test_container.py, test_systemd_sandbox.py): an admin GET, and a produce
then consume through kgate with kafka-python."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

from harness import LOOPBACK


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def produce_consume(bootstrap: str, n: int) -> list[str]:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"container-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = [f"m-{i}" for i in range(n)]
    for v in sent:
        p.send(topic, v.encode())
    p.flush(30)
    p.close()
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"g-{topic}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=20000,
    )
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) >= n:
            break
    c.close()
    return got

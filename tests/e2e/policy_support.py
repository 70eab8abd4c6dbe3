"""Fixtures and helpers for test_policy.py: kgate with mTLS principals
(`principal = "cn"`) and a `[policy]`, client certificates per principal
from the dev CA, and raw Kafka requests over TLS that show what a client
library would hide (a mixed Produce split and merged, Fetch by topic id)."""

from __future__ import annotations

import socket
import ssl
import struct
import uuid
from typing import Optional

import kafka_wire as kw
from harness import LOOPBACK, Kgate
from tls_support import Pki, client_tls_context, downstream_tls, rdkafka_ssl, start_kgate_toml

PRINCIPALS = ("alice", "carol", "admin", "mallory")

# alice: orders.* without create, consumer groups orders-*.
# carol: orders.* with every operation (auto-creation allowed).
# admin: every API, no resource rules. mallory: no block at all.
POLICY = {
    "default": "deny",
    "principal": [
        {"names": ["alice"],
         "topics": [{"prefix": "orders.", "ops": ["read", "write", "describe"]}],
         "groups": [{"glob": "orders-*", "ops": ["read", "describe"]}]},
        {"names": ["carol"], "topics": [{"prefix": "orders.", "ops": ["all"]}]},
        {"names": ["admin"], "apis_allow": ["all"]},
    ],
}


def issue_principals(pki: Pki) -> None:
    for p in PRINCIPALS:
        try:
            pki(f"{p}.pem")
        except FileNotFoundError:
            pki.issue(p, "client", p)


def start_policy_kgate(pki: Pki, upstream, name: str = "policy", policy: Optional[dict] = None) -> Kgate:
    issue_principals(pki)
    return start_kgate_toml(name, upstream, {
        "downstream_tls": downstream_tls(pki, principal="cn"),
        "policy": policy or POLICY,
    })


def ssl_conf(pki: Pki, who: str) -> dict:
    return rdkafka_ssl(pki, who)


def kp_ssl(pki: Pki, who: str) -> dict:
    """kafka-python's TLS settings for principal `who`."""
    return {"security_protocol": "SSL", "ssl_cafile": pki("ca.pem"), "ssl_certfile": pki(f"{who}.pem"),
            "ssl_keyfile": pki(f"{who}.key"), "ssl_check_hostname": False}


class TlsConn(kw.Conn):
    """kafka_wire.Conn over TLS with principal `who`'s certificate."""

    def __init__(self, pki: Pki, who: str, port: int, timeout: float = 15):
        raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
        ctx = client_tls_context(pki, who)
        ctx.check_hostname = False
        self.s = ctx.wrap_socket(raw)
        self.corr = 100

    def is_open(self) -> bool:
        """An ApiVersions round trip on this same connection."""
        try:
            self.request(18, 3, kw.api_versions_v3(), flexible=True, response_header_flexible=False)
            return True
        except (ConnectionError, OSError, ValueError):
            return False


def produce_v9(topics: list[str], value: bytes) -> bytes:
    """One record to partition 0 of each topic, acks=1 (flexible v9)."""
    out = kw.cstr(None) + kw.i16(1) + kw.i32(10000) + kw.uvarint(len(topics) + 1)
    for t in topics:
        batch = kw.record_batch(value)
        part = kw.i32(0) + kw.uvarint(len(batch) + 1) + batch + kw.TAGS0
        out += kw.cstr(t) + kw.uvarint(2) + part + kw.TAGS0
    return out + kw.TAGS0


def parse_produce_v9(body: bytes) -> dict[str, tuple[int, int]]:
    """topic -> (error code, base offset) of partition 0."""
    r = kw.Reader(body)
    out = {}
    for _ in range(r.carray_len()):
        name = r.cstr()
        for _ in range(r.carray_len()):
            r.i32()
            err, base = r.i16(), r.i64()
            r.i64(), r.i64()
            for _ in range(r.carray_len()):
                r.i32(), r.cstr()
                r.tags()
            r.cstr()
            r.tags()
            out[name] = (err, base)
        r.tags()
    return out


def metadata_ids(body: bytes) -> dict[str, tuple[int, bytes]]:
    """Metadata v12 response body: topic -> (error code, topic id)."""
    r = kw.Reader(body)
    r.i32()  # throttle
    for _ in range(r.carray_len()):
        r.i32(), r.cstr(), r.i32(), r.cstr()
        r.tags()
    r.cstr(), r.i32()
    out = {}
    for _ in range(r.carray_len()):
        err, name, tid = r.i16(), r.cstr(), r.take(16)
        r.i8()
        for _ in range(r.carray_len()):
            r.i16(), r.i32(), r.i32(), r.i32()
            for _ in range(3):
                for _ in range(r.carray_len()):
                    r.i32()
            r.tags()
        r.i32()
        r.tags()
        out[name] = (err, tid)
    return out


def fetch_v13_errors(body: bytes) -> dict[bytes, tuple[int, int]]:
    """Fetch v13+ response body: topic id -> (error code, record bytes) of
    the first partition."""
    r = kw.Reader(body)
    r.i32(), r.i16(), r.i32()
    out = {}
    for _ in range(r.carray_len()):
        tid = r.take(16)
        parts = r.carray_len()
        for i in range(parts):
            r.i32()
            err = r.i16()
            r.i64(), r.i64(), r.i64()
            for _ in range(max(r.carray_len(), 0)):
                r.i64(), r.i64()
                r.tags()
            r.i32()
            recs = r.cbytes()
            r.tags()
            if i == 0:
                out[tid] = (err, len(recs or b""))
        r.tags()
    return out


def random_id() -> bytes:
    return uuid.uuid4().bytes


def java_policy_client(classes, pki: Pki, who: str, bootstrap: str, *args: str) -> tuple[dict, str]:
    """Runs KgatePolicyClient as `who` (PEM keystore: key + certificate)."""
    import json
    import shutil
    import subprocess

    from harness import kafka_jars_classpath, run_dir

    java = shutil.which("java")
    if not java:
        raise AssertionError("java not found: run tests/setup.sh")
    ks = run_dir() / f"{who}-java.pem"
    ks.write_text(open(pki(f"{who}.key")).read() + open(pki(f"{who}.pem")).read())
    props = {"security.protocol": "SSL", "ssl.keystore.type": "PEM", "ssl.keystore.location": str(ks),
             "ssl.truststore.type": "PEM", "ssl.truststore.location": pki("ca.pem"),
             "ssl.endpoint.identification.algorithm": ""}
    pf = run_dir() / f"java-policy-{who}-{uuid.uuid4().hex[:6]}.properties"
    pf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    cmd = [java, "-cp", f"{classes}:{kafka_jars_classpath()}", "KgatePolicyClient", str(pf), bootstrap, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    output = f"$ {' '.join(cmd)}\nexit {r.returncode}\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    try:
        return json.loads(lines[-1]), output
    except (IndexError, ValueError):
        return {"error": f"no JSON (exit {r.returncode})"}, output


def fetch_v16_many(topic_ids: list[bytes], partition: int = 0) -> bytes:
    """kafka_wire.fetch_v16 for several topics (by id) in one request."""
    part = (kw.i32(partition) + kw.i32(-1) + kw.i64(0) + kw.i32(-1) + kw.i64(-1) + kw.i32(1 << 20)
            + kw.TAGS0)
    topics = kw.uvarint(len(topic_ids) + 1) + b"".join(t + kw.uvarint(2) + part + kw.TAGS0 for t in topic_ids)
    return (kw.i32(100) + kw.i32(1) + kw.i32(1 << 20) + kw.i8(0) + kw.i32(0) + kw.i32(-1) + topics
            + kw.uvarint(1) + kw.cstr("") + kw.TAGS0)

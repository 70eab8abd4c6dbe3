"""Clients authenticate to kgate ([client_auth]): kgate is the SASL server
before any upstream exists, with tansu (no SASL) behind it.

* librdkafka (confluent-kafka), the Java client and kafka-python authenticate
  with SCRAM-SHA-512 and PLAIN, over plaintext (SASL_PLAINTEXT) and TLS
  (SASL_SSL, dev PKI), and produce and consume through kgate.
* librdkafka, kafka-python and the Java client (through a token endpoint)
  authenticate with OAUTHBEARER, using a JWT the test mints (PyJWT, ES256)
  against a JWKS file it writes.
* A wrong password, an unknown user and an expired token each fail with
  each client's own authentication error.
* KIP-368 toward clients: with 5 s sessions, librdkafka and Java run 60 s of
  produce+consume with no disconnect, re-authenticating by themselves
  (counted in kgate's metrics), and a raw client that does not
  re-authenticate is closed after expiry.
* A raw client driven by scramp (an independent SCRAM implementation)
  checks kgate's server signature; raw sockets check the refusals.

The users file is written by `kgate user add` with the password on stdin.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from scramp import ScramClient

from harness import LOOPBACK, SESSION_TIMEOUT_MS, free_port, kafka_jars_classpath, kgate_bin, poll_until, run_dir, stop_kgate
from kafka_cluster import KAFKA_LIB
from test_sasl_iam import assert_java_clean, assert_rdkafka_clean, java_result, rdkafka_soak, start_java_soak
from tls_support import (  # noqa: F401 - fixtures are used by name
    downstream_tls,
    java_ssl_props,
    java_tls_classes,
    java_tls_client,
    log_mark,
    pki,
    start_kgate_toml,
    wait_for_log,
)

USERS = {"alice": ("alice-pw", "SCRAM-SHA-512"), "bob": ("bob-pw", "SCRAM-SHA-256")}
ISSUER = "https://issuer.kgate.test"
AUDIENCE = "kgate-clients"
LIFETIME_MS = 5000
AUTH_TIMEOUT_MS = 3000


@dataclass
class AuthFiles:
    dir: Path
    users: Path
    jwks: Path
    key: ec.EllipticCurvePrivateKey


def kgate_user_add(users: Path, name: str, password: str, mechanism: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(kgate_bin()), "user", "add", name, "--mechanism", mechanism, "--iterations", "4096",
                           "--file", str(users)], input=password + "\n", capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> AuthFiles:
    d = tmp_path_factory.mktemp("client-auth")
    users = d / "users.toml"
    for name, (pw, mech) in USERS.items():
        r = kgate_user_add(users, name, pw, mech)
        assert r.returncode == 0, r.stderr
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES256", "use": "sig"})
    jwks = d / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return AuthFiles(d, users, jwks, key)


def mint(f: AuthFiles, sub: str = "carol", exp_in: int = 3600, aud: str = AUDIENCE) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iss": ISSUER, "aud": aud, "iat": now, "exp": now + exp_in}, f.key,
                      algorithm="ES256", headers={"kid": "k1"})


def auth_config(f: AuthFiles, admin: int) -> dict:
    return {
        "admin_listen": f"{LOOPBACK}:{admin}",
        "client_auth": {"mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"],
                        "users_file": str(f.users), "session_lifetime_ms": LIFETIME_MS,
                        "auth_timeout_ms": AUTH_TIMEOUT_MS},
        "client_auth.oauthbearer": {"jwks_file": str(f.jwks), "issuer": ISSUER, "audience": AUDIENCE},
    }


@pytest.fixture(scope="module")
def kg(tansu, files):
    admin = free_port()
    k = start_kgate_toml("client-auth", tansu, auth_config(files, admin))
    k.admin = admin
    yield k
    stop_kgate(k)
    assert "alice-pw" not in k.proc.log_text() and "bob-pw" not in k.proc.log_text(), "a password reached the log"


@pytest.fixture(scope="module")
def kg_tls(tansu, files, pki):
    admin = free_port()
    k = start_kgate_toml("client-auth-tls", tansu,
                         {**auth_config(files, admin), "downstream_tls": downstream_tls(pki, client_ca=False)})
    k.admin = admin
    yield k
    stop_kgate(k)


def metric(k, name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://{LOOPBACK}:{k.admin}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{lk}="{lv}"' in line for lk, lv in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------
# The three client libraries
# --------------------------------------------------------------------------


def rdk_conf(k, mech: str, user: str = "", pw: str = "", tls=None) -> dict:
    c = {"bootstrap.servers": k.bootstrap_servers, "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
         "sasl.mechanism": mech}
    if mech != "OAUTHBEARER":
        c.update({"sasl.username": user, "sasl.password": pw})
    if tls:
        c["ssl.ca.location"] = tls("ca.pem")
    return c


def rdk_roundtrip(conf: dict, n: int = 20) -> list[str]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = f"ca-rdk-{uuid.uuid4().hex[:8]}"
    errors = []
    conf = {**conf, "error_cb": lambda e: errors.append(str(e))}
    admin = AdminClient(conf)
    for fut in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=15).values():
        fut.result(timeout=30)
    p = Producer(conf)
    sent = [f"v{i}" for i in range(n)]
    for v in sent:
        p.produce(topic, value=v)
    assert p.flush(30) == 0, errors
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                  "session.timeout.ms": SESSION_TIMEOUT_MS})
    c.subscribe([topic])
    got, deadline = [], time.time() + 40
    while time.time() < deadline and len(got) < n:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert sorted(got) == sorted(sent), errors
    return errors


def rdk_auth_error(conf: dict) -> list:
    """The errors librdkafka reports for a client that cannot authenticate."""
    from confluent_kafka import Producer
    errors = []
    p = Producer({**conf, "error_cb": lambda e: errors.append(e)})
    poll_until("a librdkafka error", lambda: (p.poll(0.2), errors)[1], 20)
    del p
    return errors


def kp_auth_error(conf: dict, caplog) -> list:
    """kafka-python 3 retries a failed bootstrap until its timeout
    (KafkaTimeoutError); the connection's own error is the
    SaslAuthenticationFailedError it logs with each failed attempt."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kafka"):
        with pytest.raises(KafkaTimeoutError):
            KafkaAdminClient(**conf, bootstrap_timeout_ms=4000)
    return [a for r in caplog.records if isinstance(r.args, tuple) for a in r.args
            if isinstance(a, SaslAuthenticationFailedError)]


def kp_conf(k, mech: str, user: str = "", pw: str = "", tls=None, token=None) -> dict:
    c = {"bootstrap_servers": k.bootstrap_servers, "security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
         "sasl_mechanism": mech, "request_timeout_ms": 15000}
    if mech == "OAUTHBEARER":
        c["sasl_oauth_token_provider"] = token
    else:
        c.update({"sasl_plain_username": user, "sasl_plain_password": pw})
    if tls:
        c.update({"ssl_cafile": tls("ca.pem"), "ssl_check_hostname": True})
    return c


def kp_roundtrip(conf: dict, n: int = 20) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"ca-kp-{uuid.uuid4().hex[:8]}"
    a = KafkaAdminClient(**conf)
    a.create_topics([NewTopic(topic, 1, 1)])
    a.close()
    p = KafkaProducer(**conf)
    sent = [f"v{i}".encode() for i in range(n)]
    for v in sent:
        p.send(topic, v)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=1000, **conf)
    got, deadline = [], time.time() + 40
    while time.time() < deadline and len(got) < n:
        for recs in c.poll(500).values():
            got += [r.value for r in recs]
    c.close()
    assert sorted(got) == sorted(sent)


def token_provider(token: str):
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Fixed(AbstractTokenProvider):
        def token(self):
            return token
    return Fixed()


def java_props(mech: str, user: str, pw: str, tls=None) -> dict:
    module = "plain.PlainLoginModule" if mech == "PLAIN" else "scram.ScramLoginModule"
    p = java_ssl_props(tls, None) if tls else {}
    p.update({"security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT", "sasl.mechanism": mech,
              "sasl.jaas.config": f'org.apache.kafka.common.security.{module} required '
                                  f'username="{user}" password="{pw}";'})
    return p


TRANSPORTS = ["plaintext", "tls"]
MECHS = ["SCRAM-SHA-512", "PLAIN"]


def pick(request, transport: str):
    """(kgate, pki-or-None) for a transport."""
    if transport == "tls":
        return request.getfixturevalue("kg_tls"), request.getfixturevalue("pki")
    return request.getfixturevalue("kg"), None


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", MECHS)
def test_librdkafka_authenticates(request, mech, transport):
    k, tls = pick(request, transport)
    before = metric(k, "kgate_client_auth_total", mechanism=mech, result="ok")
    errors = rdk_roundtrip(rdk_conf(k, mech, "alice", "alice-pw", tls))
    assert not [e for e in errors if "AUTH" in e.upper()], errors
    assert metric(k, "kgate_client_auth_total", mechanism=mech, result="ok") > before


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", MECHS)
def test_kafka_python_authenticates(request, mech, transport):
    k, tls = pick(request, transport)
    before = metric(k, "kgate_client_auth_total", mechanism=mech, result="ok")
    kp_roundtrip(kp_conf(k, mech, "alice", "alice-pw", tls))
    assert metric(k, "kgate_client_auth_total", mechanism=mech, result="ok") > before


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", MECHS)
def test_java_authenticates(request, java_tls_classes, mech, transport):
    k, tls = pick(request, transport)
    before = metric(k, "kgate_client_auth_total", mechanism=mech, result="ok")
    topic = f"ca-java-{uuid.uuid4().hex[:8]}"
    res, out = java_tls_client(java_tls_classes, java_props(mech, "alice", "alice-pw", tls), "roundtrip",
                               k.bootstrap_servers, topic, f"g-{topic}", "30")
    assert res.get("ok"), out
    assert metric(k, "kgate_client_auth_total", mechanism=mech, result="ok") > before


def test_oauthbearer_librdkafka_and_kafka_python(kg, files):
    """A JWT minted here (ES256, kid k1) against the JWKS file: the principal
    is its `sub`."""
    token = mint(files, sub="carol")
    conf = {**rdk_conf(kg, "OAUTHBEARER"), "oauth_cb": lambda _c: (token, time.time() + 3600)}
    before = metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="ok")
    rdk_roundtrip(conf)
    kp_roundtrip(kp_conf(kg, "OAUTHBEARER", token=token_provider(mint(files, sub="dave"))))
    assert metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="ok") >= before + 2


class TokenEndpoint:
    """An OAuth token endpoint for the Java client's OAuthBearerLoginCallbackHandler:
    every POST gets `token`."""

    def __init__(self, token: str):
        import http.server
        body = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), H)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def java_oauth(kg, java_tls_classes, monkeypatch, token: str, mode: str) -> tuple[dict, str]:
    """Runs KgateTlsClient with OAUTHBEARER, the token served by a token endpoint."""
    ep = TokenEndpoint(token)
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={ep.url}")
    props = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
             "sasl.login.callback.handler.class":
                 "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
             "sasl.oauthbearer.token.endpoint.url": ep.url,
             "sasl.jaas.config": 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
                                 'clientId="kgate-test" clientSecret="not-checked";'}
    # The Java client's OAuth login handler needs Jackson and jose4j: the
    # Apache Kafka jars from tests/setup.sh carry them.
    extra = sorted(p for p in KAFKA_LIB.glob("*.jar") if p.name.startswith(("jackson-", "jose4j-")))
    assert any(p.name.startswith("jose4j-") for p in extra), f"jose4j missing from {KAFKA_LIB}: run tests/setup.sh"
    pf = run_dir() / f"java-oauth-{uuid.uuid4().hex[:8]}.properties"
    pf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    topic = f"ca-java-oauth-{uuid.uuid4().hex[:8]}"
    cp = ":".join([str(java_tls_classes), kafka_jars_classpath(), *map(str, extra)])
    args = [topic, f"g-{topic}", "20"] if mode == "roundtrip" else []
    try:
        r = subprocess.run([shutil.which("java") or "java", "-cp", cp, "KgateTlsClient", str(pf), mode,
                            kg.bootstrap_servers, *args], capture_output=True, text=True, timeout=150)
    finally:
        ep.close()
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    out = f"exit {r.returncode}\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    try:
        return json.loads(lines[-1]), out
    except (IndexError, ValueError):
        return {"ok": False, "error": "no JSON"}, out


def test_oauthbearer_java(kg, files, java_tls_classes, monkeypatch):
    """The Java client fetches the minted JWT from a token endpoint and
    authenticates with OAUTHBEARER; its `sub` is the principal."""
    before = metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="ok")
    res, out = java_oauth(kg, java_tls_classes, monkeypatch, mint(files, sub="harry"), "roundtrip")
    assert res.get("ok"), out
    assert metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="ok") > before


def test_expired_token_java(kg, files, java_tls_classes, monkeypatch):
    failed = metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="failed")
    res, out = java_oauth(kg, java_tls_classes, monkeypatch, mint(files, exp_in=-600), "probe")
    assert not res.get("ok"), out
    assert res.get("error_class", "").endswith("SaslAuthenticationException"), out
    assert metric(kg, "kgate_client_auth_total", mechanism="OAUTHBEARER", result="failed") > failed, \
        "kgate refused it (not the client itself)"


# --------------------------------------------------------------------------
# Failures: each client's own authentication error
# --------------------------------------------------------------------------

BAD = {"wrong password": ("alice", "not-alice-pw"), "unknown user": ("mallory", "alice-pw")}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("mech", MECHS)
def test_librdkafka_bad_credentials(kg, mech, case):
    from confluent_kafka import KafkaError
    user, pw = BAD[case]
    errors = rdk_auth_error(rdk_conf(kg, mech, user, pw))
    assert errors[0].code() == KafkaError._AUTHENTICATION, [str(e) for e in errors]
    assert "Authentication failed" in errors[0].str()
    assert pw not in kg.proc.log_text()


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("mech", MECHS)
def test_kafka_python_bad_credentials(kg, mech, case, caplog):
    user, pw = BAD[case]
    errors = kp_auth_error(kp_conf(kg, mech, user, pw), caplog)
    assert errors and "Authentication failed" in str(errors[0]), caplog.text[-2000:]


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("mech", MECHS)
def test_java_bad_credentials(kg, java_tls_classes, mech, case):
    user, pw = BAD[case]
    res, out = java_tls_client(java_tls_classes, java_props(mech, user, pw), "probe", kg.bootstrap_servers)
    assert not res.get("ok"), out
    assert res.get("error_class", "").endswith("SaslAuthenticationException"), out


def test_expired_and_foreign_tokens_fail(kg, files, caplog):
    from confluent_kafka import KafkaError
    expired = mint(files, exp_in=-600)
    errors = rdk_auth_error({**rdk_conf(kg, "OAUTHBEARER"), "oauth_cb": lambda _c: (expired, time.time() + 3600)})
    assert errors[0].code() == KafkaError._AUTHENTICATION, [str(e) for e in errors]
    assert "ExpiredSignature" in errors[0].str(), errors[0].str()
    errors = kp_auth_error(kp_conf(kg, "OAUTHBEARER", token=token_provider(expired)), caplog)
    assert errors and "ExpiredSignature" in str(errors[0]), caplog.text[-2000:]
    other_aud = mint(files, aud="someone-else")
    errors = rdk_auth_error({**rdk_conf(kg, "OAUTHBEARER"), "oauth_cb": lambda _c: (other_aud, time.time() + 60)})
    assert errors[0].code() == KafkaError._AUTHENTICATION, [str(e) for e in errors]
    assert expired not in kg.proc.log_text(), "a token reached the log"


# --------------------------------------------------------------------------
# KIP-368 toward clients
# --------------------------------------------------------------------------


def test_clients_reauthenticate_for_a_minute(kg, java_classes):
    """5 s sessions: librdkafka (SCRAM-SHA-512 as alice) and Java (SCRAM-SHA-256
    as bob) produce and consume for 60 s with no disconnect; kgate counts
    their re-authentications by mechanism."""
    secs = 60
    r512 = metric(kg, "kgate_client_auth_total", mechanism="SCRAM-SHA-512", result="ok", kind="reauthenticate")
    r256 = metric(kg, "kgate_client_auth_total", mechanism="SCRAM-SHA-256", result="ok", kind="reauthenticate")
    expired = metric(kg, "kgate_client_sessions_expired_total")
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="bob" password="bob-pw";'
    java = start_java_soak(java_classes, kg.bootstrap_servers, secs, 100, [
        "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=SCRAM-SHA-256", f"sasl.jaas.config={jaas}"],
        "client-auth")
    r = rdkafka_soak(kg.bootstrap_servers, secs, 100, rdk_conf(kg, "SCRAM-SHA-512", "alice", "alice-pw"), "ca-reauth")
    j = java_result(java, 180)
    assert_rdkafka_clean(r, "client reauth")
    assert_java_clean(j)
    got512 = metric(kg, "kgate_client_auth_total", mechanism="SCRAM-SHA-512", result="ok", kind="reauthenticate") - r512
    got256 = metric(kg, "kgate_client_auth_total", mechanism="SCRAM-SHA-256", result="ok", kind="reauthenticate") - r256
    print(f"re-authentications in {secs}s: librdkafka {got512:.0f}, java {got256:.0f}; java says {j['producer_metrics']}")
    assert got512 >= 10 and got256 >= 10, (got512, got256)
    assert (j["producer_metrics"] or {}).get("successful-reauthentication-total", 0) >= 10, j
    assert metric(kg, "kgate_client_sessions_expired_total") == expired, "a session expired during the soak"
    assert metric(kg, "kgate_client_auth_total", result="failed", kind="reauthenticate") == 0


# --------------------------------------------------------------------------
# Raw clients: scramp as the SCRAM oracle, expiry, refusals
# --------------------------------------------------------------------------


class Raw:
    def __init__(self, k):
        host, port = k.bootstrap_servers.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def send(self, api_key: int, version: int, body: bytes) -> int:
        self.corr += 1
        head = struct.pack(">hhih", api_key, version, self.corr, 3) + b"raw"
        self.s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
        return self.corr

    def recv(self) -> bytes:
        """One response body after the correlation id; b"" when closed."""
        head = self._exact(4)
        if not head:
            return b""
        body = self._exact(struct.unpack(">i", head)[0])
        return body[4:]

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            try:
                chunk = self.s.recv(n - len(out))
            except ConnectionResetError:
                return b""
            if not chunk:
                return b""
            out += chunk
        return out

    def handshake(self, mech: str) -> tuple[int, list[str]]:
        self.send(17, 1, struct.pack(">h", len(mech)) + mech.encode())
        b = self.recv()
        err, n = struct.unpack(">hi", b[:6])
        names, off = [], 6
        for _ in range(n):
            ln = struct.unpack(">h", b[off:off + 2])[0]
            names.append(b[off + 2:off + 2 + ln].decode())
            off += 2 + ln
        return err, names

    def authenticate(self, data: bytes) -> tuple[int, bytes, int]:
        """SaslAuthenticate v1: (error, auth bytes, session lifetime)."""
        self.send(36, 1, struct.pack(">i", len(data)) + data)
        b = self.recv()
        err, ml = struct.unpack(">hh", b[:4])
        off = 4 + max(ml, 0)
        n = struct.unpack(">i", b[off:off + 4])[0]
        auth = b[off + 4:off + 4 + n]
        lifetime = struct.unpack(">q", b[off + 4 + n:off + 12 + n])[0]
        return err, auth, lifetime

    def api_versions(self) -> dict[int, tuple[int, int]]:
        self.send(18, 1, b"")
        b = self.recv()
        err, n = struct.unpack(">hi", b[:6])
        assert err == 0
        return {k: (lo, hi) for k, lo, hi in (struct.unpack(">hhh", b[6 + 6 * i:12 + 6 * i]) for i in range(n))}

    def metadata(self) -> bytes:
        self.send(3, 1, struct.pack(">i", -1))
        return self.recv()

    def scram(self, user: str, pw: str, mech: str = "SCRAM-SHA-256") -> int:
        assert self.handshake(mech)[0] == 0
        c = ScramClient([mech], user, pw)
        err, server_first, _ = self.authenticate(c.get_client_first().encode())
        assert err == 0
        c.set_server_first(server_first.decode())
        err, server_final, lifetime = self.authenticate(c.get_client_final().encode())
        assert err == 0, server_final
        c.set_server_final(server_final.decode())  # raises unless kgate proved it knows the key
        return lifetime

    def close(self):
        self.s.close()


def test_scramp_oracle_and_api_versions_before_the_upstream(kg):
    r = Raw(kg)
    before = r.api_versions()
    assert before[17] == (0, 1) and before[36] == (0, 2), before
    assert 0 in before and 3 in before, "the broker's keys are offered before any upstream exists"
    assert r.scram("bob", "bob-pw") == LIFETIME_MS
    after = r.api_versions()  # forwarded to tansu now, filtered by kgate
    assert after == before, "kgate's own answer matches the broker's filtered one"
    assert r.metadata(), "forwarding after authentication"
    r.close()
    r = Raw(kg)
    assert r.scram("alice", "alice-pw", "SCRAM-SHA-512") == LIFETIME_MS
    r.close()


def test_a_client_that_does_not_reauthenticate_is_closed_after_expiry(kg):
    expired = metric(kg, "kgate_client_sessions_expired_total")
    r = Raw(kg)
    r.scram("bob", "bob-pw")
    assert r.metadata()
    time.sleep(LIFETIME_MS / 1000 + 0.5)
    assert r.metadata() == b"", "kgate closes an expired session at its next request"
    r.close()
    assert metric(kg, "kgate_client_sessions_expired_total") == expired + 1
    wait_for_log(kg.proc, "client session expired without re-authentication", 5)


def test_reauthentication_needs_the_same_principal_and_credentials(kg):
    failed = metric(kg, "kgate_client_auth_total", result="failed", kind="reauthenticate")
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0
    assert r.authenticate(b"\0bob\0bob-pw")[0] == 0
    assert r.metadata()
    assert r.handshake("PLAIN")[0] == 0, "re-authentication while forwarding"
    err, _, lifetime = r.authenticate(b"\0bob\0bob-pw")
    assert (err, lifetime) == (0, LIFETIME_MS)
    assert r.metadata()
    assert r.handshake("PLAIN")[0] == 0
    other = b"\0alice\0alice-pw"
    r.send(36, 1, struct.pack(">i", len(other)) + other)
    b = r.recv()
    err, ml = struct.unpack(">hh", b[:4])
    assert err == 58 and b"Cannot change principals" in b[4:4 + ml], b
    assert r.metadata() == b"", "closed after a failed re-authentication"
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0 and r.authenticate(b"\0bob\0bob-pw")[0] == 0
    assert r.handshake("SCRAM-SHA-256")[0] == 33, "re-authentication keeps the mechanism"
    assert r.metadata() == b""
    assert metric(kg, "kgate_client_auth_total", result="failed", kind="reauthenticate") == failed + 2


def test_refusals_close_the_connection(kg):
    r = Raw(kg)
    err, names = r.handshake("GSSAPI")
    assert err == 33 and names == ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"], (err, names)
    assert r.metadata() == b"", "closed after UNSUPPORTED_SASL_MECHANISM"
    r = Raw(kg)
    err, _, _ = r.authenticate(b"\0alice\0alice-pw")
    assert err == 34, "SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE"
    r = Raw(kg)
    assert r.metadata() == b"", "a request before authentication closes the connection"
    r = Raw(kg)
    r.send(17, 0, struct.pack(">h", 5) + b"PLAIN")
    assert struct.unpack(">h", r.recv()[:2])[0] == 35, "SaslHandshake v0 is refused with UNSUPPORTED_VERSION"
    r = Raw(kg)
    r.s.sendall(struct.pack(">i", 600 * 1024) + b"\0" * 1024)
    assert r.recv() == b"", "frames before authentication are bounded at 512 KiB"
    timeouts = metric(kg, "kgate_client_auth_timeouts_total")
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0
    assert r.recv() == b"", "closed at auth_timeout_ms"
    assert metric(kg, "kgate_client_auth_timeouts_total") == timeouts + 1


def plain_ok(k, user: str, pw: str) -> bool:
    r = Raw(k)
    try:
        assert r.handshake("PLAIN")[0] == 0
        return r.authenticate(b"\0" + user.encode() + b"\0" + pw.encode())[0] == 0
    finally:
        r.close()


def test_sighup_rereads_the_users_file(kg, files):
    r = kgate_user_add(files.users, "gina", "gina-pw", "SCRAM-SHA-512")
    assert r.returncode == 0, r.stderr
    assert not plain_ok(kg, "gina", "gina-pw"), "users are read at start-up and on SIGHUP only"
    mark = log_mark(kg.proc)
    os.kill(kg.proc.pid, signal.SIGHUP)
    wait_for_log(kg.proc, "client users file and JWKS re-read", 10, since=mark)
    assert plain_ok(kg, "gina", "gina-pw")
    assert plain_ok(kg, "alice", "alice-pw")


def test_kgate_user_add_replaces_and_keeps_secrets_out(tmp_path):
    users = tmp_path / "u.toml"
    r = kgate_user_add(users, "erin", "first-pw", "SCRAM-SHA-512")
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    r = kgate_user_add(users, "erin", "second-pw", "SCRAM-SHA-256")
    assert r.returncode == 0 and "replaced" in r.stdout, r.stderr
    text = users.read_text()
    assert "first-pw" not in text and "second-pw" not in text and "SCRAM-SHA-256" in text
    assert users.stat().st_mode & 0o777 == 0o600
    r = kgate_user_add(users, "frank", "", "SCRAM-SHA-512")
    assert r.returncode == 2, "an empty password is refused"

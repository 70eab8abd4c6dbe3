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
* The raw-socket checks (scramp as the SCRAM oracle, expiry, refusals,
  SIGHUP) are in test_client_auth_raw.py.

The users file is written by `kgate user add` with the password on stdin.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import uuid

import pytest

from client_auth_support import (  # noqa: F401 - fixtures are used by name
    TokenEndpoint,
    files,
    kg,
    kg_tls,
    metric,
    mint,
)
from harness import SESSION_TIMEOUT_MS, kafka_jars_classpath, poll_until, run_dir
from kafka_cluster import KAFKA_LIB
from test_sasl_iam import assert_java_clean, assert_rdkafka_clean, java_result, rdkafka_soak, start_java_soak
from tls_support import (  # noqa: F401 - fixtures are used by name
    java_ssl_props,
    java_tls_classes,
    java_tls_client,
    pki,
)

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



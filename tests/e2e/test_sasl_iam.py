"""Upstream SASL through kgate: AWS_MSK_IAM, OAUTHBEARER (MSK IAM tokens) and
PLAIN, with KIP-368 re-authentication, against an MSK-like front.

    client --PLAINTEXT--> kgate --SASL--> IamFront (localhost:F) --> tansu

iam_front.IamFront verifies signatures with botocore (sigv4_oracle), gives
sessions a short lifetime (3 s here) and, like an MSK broker, closes a
connection whose session expired at its next request. aws_mocks provides a
rotating container-credentials endpoint and moto's STS behind a recorder.

The first tests validate the front itself (no kgate): the oracle against the
public kafka-go vector, byte-level SASL behaviour, and real clients
(librdkafka, Java) doing their own KIP-368 re-authentication directly
against it, while a client that authenticates only once gets closed. The
kgate tests configure kgate with a TOML file (`kgate run --config`) holding
an `[upstream_sasl]` table, and are skipped while `kgate check-config`
rejects that table.

Run:  bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_sasl_iam.py -q
Env:  SASL_SOAK_S  seconds of the kgate soak (default 62, i.e. > 20 lifetimes)
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

import aws_mocks
import iam_front
import sigv4_oracle as oracle
from harness import (
    DIRECT,
    LOOPBACK,
    Kgate,
    Proc,
    Upstream,
    free_port,
    kafka_jars_classpath,
    kgate_bin,
    log_path,
    pick_port_base,
    poll_until,
    run_dir,
    stop_kgate,
    tansu_bin,
    wait_for_port,
)

REGION = "us-east-1"
BROKER_HOST = "localhost"
LIFETIME_MS = 3000
SOAK_S = int(os.environ.get("SASL_SOAK_S", "62"))
ACCOUNT = aws_mocks.ACCOUNT

# Long-term keys for env-credential tests (AKIA: no session token) and
# temporary ones (ASIA: with a session token).
AKIA = ("AKIAKGATEE2ETEST0001", "kgate/e2e+secret/AKIA0001xxxxxxxxxxxxxxx")
ASIA = ("ASIAKGATEE2ETEST0002", "kgate/e2e+secret/ASIA0002yyyyyyyyyyyyyyy",
        "IQoJb3JpZ2luX2VjEKGATE/session+token==" + "t" * 200)
ENV_PRINCIPAL = f"arn:aws:iam::{ACCOUNT}:user/kgate-e2e"


# --------------------------------------------------------------------------
# The SASL cluster: tansu behind the front
# --------------------------------------------------------------------------


@dataclass
class SaslCluster:
    front: iam_front.IamFront
    tansu: Proc
    tansu_port: int

    @property
    def port(self) -> int:
        return self.front.port

    @property
    def bootstrap(self) -> str:
        return f"{BROKER_HOST}:{self.front.port}"

    def upstream(self) -> Upstream:
        return Upstream("iam-front", [(BROKER_HOST, self.port)], (111,), {111: (BROKER_HOST, self.port)})

    def explain(self, last: int = 60) -> str:
        return "front events:\n  " + "\n  ".join(self.front.events(last))


@pytest.fixture(scope="module")
def cluster() -> SaslCluster:
    tansu_port = free_port()
    front = iam_front.IamFront(
        ("127.0.0.1", tansu_port), listen=("127.0.0.1", 0), broker_host=BROKER_HOST, region=REGION,
        lifetime_ms=LIFETIME_MS, log_path=log_path("iam-front"),
    ).start()
    url = f"tcp://127.0.0.1:{tansu_port}"
    tansu = Proc("tansu-behind-iam-front", [
        tansu_bin(), "broker", "--listener-url", url,
        "--advertised-listener-url", f"tcp://{BROKER_HOST}:{front.port}", "--storage-engine", "memory://tansu/",
    ])
    wait_for_port(tansu_port, 30, tansu)
    yield SaslCluster(front, tansu, tansu_port)
    front.stop()
    tansu.stop()


@pytest.fixture
def front(cluster) -> iam_front.IamFront:
    """The module's front, reset to defaults for this test."""
    f = cluster.front
    f.close_all()
    f.set_secrets({})
    f.set_lifetime_ms(LIFETIME_MS)
    f.set_region(REGION)
    f.set_broker_host(BROKER_HOST)
    f.fail_next(0)
    for u in ("alice", "bob"):
        f.set_user(u, None)
    time.sleep(0.05)
    f.reset_stats()
    return f


def raw(cluster) -> iam_front.RawClient:
    return iam_front.RawClient(BROKER_HOST, cluster.port)


def iam_auth(access_key, secret, token=None, region=REGION, host=BROKER_HOST) -> bytes:
    return oracle.msk_iam_auth_bytes(access_key, secret, token, region, host, user_agent="e2e-raw/1")


# --------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------


def test_oracle_matches_public_vector_and_round_trips():
    assert oracle.selftest() == []


def test_oracle_cli_vector_is_deterministic():
    argv = [sys.executable, str(Path(oracle.__file__)), "vector", "--access-key", "ACCESS_KEY", "--secret",
            "SECRET_KEY", "--region", "us-east-1", "--host", "localhost", "--time", "2021-10-14T13:05:00Z",
            "--expires", "300", "--user-agent", "ua/1"]
    outs = [subprocess.run(argv, capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert outs[0] == outs[1]
    p = json.loads(outs[0])
    assert p["x-amz-signature"] == oracle.KAFKA_GO_VECTOR["signature"]
    assert p["x-amz-expires"] == "300" and p["user-agent"] == "ua/1" and "x-amz-security-token" not in p
    tok = json.loads(subprocess.run(argv + ["--oauth", "--token", "T/+="], capture_output=True, text=True,
                                    check=True).stdout)
    url = oracle.b64url_decode(tok["token"]).decode()
    assert url.startswith("https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect&")
    assert url.endswith("&User-Agent=ua%2F1") and "X-Amz-Security-Token=T%2F%2B%3D" in url


# --------------------------------------------------------------------------
# The front on its own (byte level)
# --------------------------------------------------------------------------


def test_front_advertises_sasl_and_checks_iam(cluster, front):
    front.set_secret(*AKIA, principal=ENV_PRINCIPAL)
    with raw(cluster) as c:
        for v in (0, 3):
            av = c.api_versions(v)
            assert av[17] == (0, 1) and av[36] == (0, 2), av
        err, msg, data, life = c.sasl("AWS_MSK_IAM", iam_auth(*AKIA))
        assert (err, msg, life) == (0, None, LIFETIME_MS)
        body = json.loads(data)
        assert body["version"] == "2020_10_22" and uuid.UUID(body["request-id"])
        assert c.metadata() == [(111, BROKER_HOST, cluster.port)], "tansu must advertise the front"
    bad = {
        "wrong secret": (iam_auth(AKIA[0], "nope"), "signature mismatch"),
        "wrong region": (iam_auth(*AKIA, region="eu-west-1"), "region 'eu-west-1'"),
        "wrong host": (iam_auth(*AKIA, host="b-1.example.com"), "host is 'b-1.example.com'"),
        "unknown key": (iam_auth("AKIAUNKNOWN", "x"), "unknown access key"),
        "not json": (b"{nope", "not JSON"),
    }
    for name, (auth, reason) in bad.items():
        with raw(cluster) as c:
            err, msg, _, _ = c.sasl("AWS_MSK_IAM", auth, auth_ver=1)
            assert err == 58 and msg.startswith("Access denied") and reason in msg, (name, msg)
            with pytest.raises((ConnectionError, OSError)):
                c.metadata()
    st = front.stats()
    assert len(st["failures"]) == len(bad) and st["closes"].get("auth failed") == len(bad), st


def test_front_closes_expired_session_unless_reauthenticated(cluster, front):
    """The negative control for the soak: a client that authenticates once is
    closed at its first request after the session ends; one that
    re-authenticates in time is not."""
    front.set_lifetime_ms(1500)
    front.set_secret(*ASIA[:2], token=ASIA[2], principal=ENV_PRINCIPAL)
    front.set_user("alice", "pw")
    once = raw(cluster)
    assert once.sasl("AWS_MSK_IAM", iam_auth(*ASIA))[0] == 0
    assert once.metadata()
    again = raw(cluster)
    assert again.sasl("PLAIN", b"\0alice\0pw", auth_ver=1)[3] == 1500
    for _ in range(3):
        time.sleep(0.6)
        assert again.metadata()
        assert again.sasl("PLAIN", b"\0alice\0pw")[0] == 0  # re-authentication extends the session
    time.sleep(0.3)
    with pytest.raises((ConnectionError, OSError)):
        once.metadata()
    assert again.metadata()
    st = front.stats()
    assert st["expired_closes"] == 1 and st["reauths"] == 3, cluster.explain()
    # an expired session may still re-authenticate: SaslHandshake is exempt
    time.sleep(1.7)
    assert again.sasl("PLAIN", b"\0alice\0pw")[0] == 0 and again.metadata()
    once.close()
    again.close()


def test_front_reauth_rules(cluster, front):
    front.set_user("alice", "pw")
    front.set_user("bob", "pw")
    front.set_secret(*AKIA)
    with raw(cluster) as c:  # another principal on re-auth
        assert c.sasl("PLAIN", b"\0alice\0pw")[0] == 0
        err, msg, _, _ = c.sasl("PLAIN", b"\0bob\0pw")
        assert err == 58 and msg == "Cannot change principals during re-authentication"
    with raw(cluster) as c:  # another mechanism on re-auth
        assert c.sasl("PLAIN", b"\0alice\0pw")[0] == 0
        assert c.handshake("AWS_MSK_IAM")[0] == 33
    with raw(cluster) as c:  # a request between a re-auth handshake and its authenticate
        assert c.sasl("PLAIN", b"\0alice\0pw")[0] == 0
        assert c.handshake("PLAIN")[0] == 0
        with pytest.raises((ConnectionError, OSError)):
            c.metadata()
    with raw(cluster) as c:  # a request before authentication
        with pytest.raises((ConnectionError, OSError)):
            c.metadata()
    with raw(cluster) as c:  # MSK's connection throttle
        front.fail_next(1, "Too many connects")
        assert c.sasl("AWS_MSK_IAM", iam_auth(*AKIA))[:2] == (58, "Too many connects")
    with raw(cluster) as c:  # legacy SaslHandshake v0: bare tokens
        assert c.handshake("PLAIN", ver=0)[0] == 0
        c.sock.sendall(iam_front.frame(b"\0alice\0pw"))
        assert c.recv_frame() == b""
        assert c.metadata()
    closes = front.stats()["closes"]
    assert closes.get("request during re-authentication") == 1, closes
    assert closes.get("request before authentication") == 1, closes


def test_front_oauthbearer_follows_kafka_error_flow(cluster, front):
    front.set_secret(*ASIA[:2], token=ASIA[2])
    tok = oracle.oauthbearer_token(*ASIA, region=REGION, user_agent="e2e-raw/1")
    with raw(cluster) as c:
        err, msg, data, life = c.sasl("OAUTHBEARER", oracle.oauthbearer_client_first(tok))
        assert (err, data, life) == (0, b"", LIFETIME_MS)
        assert c.metadata()
    bad = oracle.oauthbearer_token(ASIA[0], "wrong", ASIA[2], region=REGION)
    with raw(cluster) as c:
        err, msg, data, _ = c.sasl("OAUTHBEARER", oracle.oauthbearer_client_first(bad))
        assert (err, data) == (0, b'{"status":"invalid_token"}')
        err, msg, _, _ = c.authenticate(b"\x01")
        assert (err, msg) == (58, '{"status":"invalid_token"}')
    # a real client copes with that flow and reports the broker's message
    from confluent_kafka.admin import AdminClient

    errors = []
    admin = AdminClient({
        "bootstrap.servers": cluster.bootstrap, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _c: (bad, time.time() + 900),
        "error_cb": lambda e: errors.append(e.str()), "reconnect.backoff.ms": 5000,
        "reconnect.backoff.max.ms": 5000,
    })
    try:
        with pytest.raises(Exception):
            admin.list_topics(timeout=2)
        admin.poll(0.5)  # serves error_cb
    finally:
        del admin  # destroys the client: it must not keep retrying into the next test
    assert any('SASL authentication error: {"status":"invalid_token"}' in e for e in errors), errors


# --------------------------------------------------------------------------
# Soak helpers: librdkafka in-process, Java in a subprocess
# --------------------------------------------------------------------------


def rdkafka_soak(bootstrap: str, seconds: float, rate: int, extra: Optional[dict] = None, name: str = "rdk",
                 topic: Optional[str] = None) -> dict:
    """Produces about `rate` records/s for `seconds` while a consumer in a new
    group reads them; then checks exactly-once by value. Every librdkafka
    error (error_cb: disconnects, auth failures) is collected."""
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    run = uuid.uuid4().hex[:8]
    topic = topic or f"sasl-{name}-{run}"
    errors: list[str] = []
    stats: dict = {}

    def on_error(err):
        errors.append(f"{err.name()}: {err.str()}")

    def stats_cb(tag):
        return lambda s: stats.__setitem__(tag, json.loads(s))

    base = {"bootstrap.servers": bootstrap, "error_cb": on_error, "socket.timeout.ms": 15000,
            "reconnect.backoff.max.ms": 1000, **(extra or {})}
    admin = AdminClient({**base, "client.id": f"{name}-admin"})
    for f in admin.create_topics([NewTopic(topic, 3, 1)], operation_timeout=15, request_timeout=30).values():
        f.result(timeout=30)

    def ready():
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        return md is not None and md.error is None and len(md.partitions) == 3 and all(
            p.leader >= 0 for p in md.partitions.values())

    poll_until(f"topic {topic}", ready, 30, 0.2)
    p = Producer({**base, "client.id": f"{name}-producer", "enable.idempotence": True, "linger.ms": 5,
                  "statistics.interval.ms": 1000, "stats_cb": stats_cb("producer")})
    c = Consumer({**base, "client.id": f"{name}-consumer", "group.id": f"{name}-{run}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 1000, "statistics.interval.ms": 1000, "stats_cb": stats_cb("consumer")})
    c.subscribe([topic])
    acked: set[str] = set()
    delivery_errors: list[str] = []
    seen: collections.Counter = collections.Counter()

    def dr(err, msg):
        if err is not None:
            delivery_errors.append(str(err))
        else:
            acked.add(msg.value().decode())

    def consume(timeout: float) -> None:
        for m in c.consume(num_messages=1000, timeout=timeout):
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(f"consumer: {m.error()}")
                continue
            v = m.value().decode()
            if v.startswith(run + "-"):
                seen[v] += 1

    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        while n < (time.monotonic() - t0) * rate:
            try:
                p.produce(topic, key=f"k{n % 12}", value=f"{run}-{n}", on_delivery=dr)
                n += 1
            except BufferError:
                break
        p.poll(0)
        consume(0.05)
    left = p.flush(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not acked <= set(seen):
        consume(0.2)
    end = time.monotonic() + 1.5  # late duplicates; one more stats round
    while time.monotonic() < end:
        consume(0.2)
        p.poll(0)
    c.close()

    def disconnects(tag):
        return {b: v.get("disconnects", 0) for b, v in stats.get(tag, {}).get("brokers", {}).items()}

    return {
        "client": name, "topic": topic, "produced": n, "unflushed": left, "acked": len(acked),
        "unique_consumed": len(seen), "duplicates": sum(x - 1 for x in seen.values() if x > 1),
        "missing": len(acked - set(seen)), "delivery_errors": delivery_errors[:10], "errors": errors[:20],
        "disconnects": {"producer": disconnects("producer"), "consumer": disconnects("consumer")},
    }


def assert_rdkafka_clean(r: dict, what: str = "") -> None:
    total_disc = sum(sum(d.values()) for d in r["disconnects"].values())
    assert (r["errors"], r["delivery_errors"], total_disc) == ([], [], 0), f"{what} librdkafka saw trouble: {r}"
    assert r["produced"] > 0 and r["unflushed"] == 0 and r["acked"] == r["produced"], r
    assert (r["missing"], r["duplicates"]) == (0, 0), r
    assert r["unique_consumed"] == r["acked"], r


def start_java_soak(java_classes: Path, bootstrap: str, seconds: int, rate: int, props=(), name="java") -> Proc:
    run = uuid.uuid4().hex[:8]
    return Proc(f"java-soak-{name}", [
        "java", "-cp", f"{kafka_jars_classpath()}:{java_classes}", "KgateSoak", bootstrap,
        f"sasl-java-{run}", f"java-{run}", str(seconds), str(rate), *props,
    ])


def java_result(proc: Proc, timeout: float) -> dict:
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise AssertionError(f"java soak did not finish in {timeout}s\n{proc.log_tail(60)}")
    proc.stop()
    for line in reversed(proc.log_text().splitlines()):
        if line.startswith('{"client":"java-soak"'):
            return json.loads(line)
    raise AssertionError(f"java soak printed no result (exit {proc.returncode})\n{proc.log_tail(60)}")


def assert_java_clean(j: dict) -> None:
    assert j.get("ok") and j["errors"] == [], f"java soak failed: {j}"
    for m in ("producer_metrics", "consumer_metrics", "admin_metrics"):
        assert (j[m] or {}).get("connection-close-total") == 0, f"java {m}: a connection closed: {j}"
        assert (j[m] or {}).get("failed-authentication-total") in (0, None), j


def front_clean(cluster: SaslCluster, min_reauths: int, min_conn_reauths: int = 0) -> dict:
    st = cluster.front.stats()
    why = f"{json.dumps({k: st[k] for k in ('auths', 'reauths', 'failures', 'closes', 'expired_closes')})}\n" \
          f"{cluster.explain()}"
    assert st["failures"] == [], "authentication failures at the front: " + why
    assert st["expired_closes"] == 0, "the front closed expired sessions: " + why
    bad = {k: v for k, v in st["closes"].items() if k not in ("client closed", "client reset", "front stopped")}
    assert not bad, "the front closed connections: " + why
    assert st["reauths"] >= min_reauths, why
    best = max((c["reauths"] for c in st["open"] + st["closed"]), default=0)
    assert best >= min_conn_reauths, f"no connection re-authenticated {min_conn_reauths} times: " + why
    return st


# --------------------------------------------------------------------------
# Real clients re-authenticate against the front by themselves
# --------------------------------------------------------------------------


def test_front_real_clients_reauthenticate(cluster, front, java_classes):
    """librdkafka (PLAIN, and OAUTHBEARER with a botocore-made MSK IAM token)
    and the Java client (PLAIN) run against the front directly, re-authenticating
    on their own: no expired closes, no failures, no disconnects."""
    front.set_user("alice", "pw")
    front.set_secret(*ASIA[:2], token=ASIA[2], principal=ENV_PRINCIPAL)
    # 6 s sessions: clients re-authenticate at 85-95% of the lifetime, and a
    # 3 s session left a margin of ~150 ms that a loaded 2-core CI machine
    # (Java, Python front and librdkafka at once) overran once.
    front.set_lifetime_ms(6000)
    secs = 21
    jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="pw";'
    java = start_java_soak(java_classes, cluster.bootstrap, secs, 150, [
        "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN", f"sasl.jaas.config={jaas}"], "direct-plain")

    def oauth_cb(_cfg):
        return oracle.oauthbearer_token(*ASIA, region=REGION, user_agent="e2e-librdkafka/1"), time.time() + 900

    results = {}
    oauth = threading.Thread(target=lambda: results.__setitem__("oauth", rdkafka_soak(
        cluster.bootstrap, secs, 100, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                                       "oauth_cb": oauth_cb}, "direct-oauth")))
    oauth.start()
    plain = rdkafka_soak(cluster.bootstrap, secs, 100, {
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "alice",
        "sasl.password": "pw"}, "direct-plain")
    oauth.join(120)
    j = java_result(java, 120)
    assert_rdkafka_clean(plain, "PLAIN")
    assert_rdkafka_clean(results["oauth"], "OAUTHBEARER")
    assert_java_clean(j)
    assert j["producer_metrics"]["successful-reauthentication-total"] >= 2, j
    st = front_clean(cluster, min_reauths=10, min_conn_reauths=3)
    assert set(st["by_mechanism"]) == {"PLAIN", "OAUTHBEARER"}, st["by_mechanism"]


# --------------------------------------------------------------------------
# kgate
# --------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def kgate_toml(bootstrap: list[str], port_base: int, sasl: dict, top: Optional[dict] = None) -> str:
    lines = [f"bootstrap = {_toml_value(bootstrap)}", f"port_base = {port_base}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in (top or {}).items()]
    lines += ["", "[upstream_sasl]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sasl.items()]
    return "\n".join(lines) + "\n"


def clean_env(extra: Optional[dict] = None) -> dict:
    """The caller's environment without KGATE_* and AWS_* variables, with an
    empty HOME (no ~/.aws) and IMDS off, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGATE_", "AWS_"))}
    # not under run_dir(): harness prunes old run dirs expecting only files
    home = Path(tempfile.mkdtemp(prefix="kgate-e2e-home-"))
    _TEMP_DIRS.append(home)
    for f in ("aws-config", "aws-creds"):  # empty, so that the SDK has nothing to warn about
        (home / f).touch()
    env.update({"HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-creds"),
                "RUST_BACKTRACE": "1"})
    if os.environ.get("KGATE_RUST_LOG"):
        env["RUST_LOG"] = os.environ["KGATE_RUST_LOG"]
    env.update(extra or {})
    return env


_SASL_SUPPORT: list = []
# Top-level settings every kgate here gets: no admin listener (its fixed
# default port would collide between kgates), when this kgate knows the key.
_TOP: dict = {}
_TEMP_DIRS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _remove_temp_homes():
    yield
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def require_kgate_sasl() -> None:
    """Skips while kgate's config does not know [upstream_sasl]."""
    if DIRECT:
        pytest.skip("KGATE_DIRECT=1: the SASL tests need kgate")
    if not _SASL_SUPPORT:
        binary = kgate_bin()
        if not binary.exists():
            pytest.fail(f"kgate binary not found at {binary}: build it (cargo build) or set KGATE_BIN")
        cfg = run_dir() / "kgate-sasl-probe.toml"

        def check(top):
            cfg.write_text(kgate_toml(["localhost:9092"], 19092, {"mechanism": "AWS_MSK_IAM", "region": REGION}, top))
            r = subprocess.run([str(binary), "check-config", "--config", str(cfg)], capture_output=True, text=True,
                               timeout=30, env=clean_env())
            return r.returncode, (r.stdout + r.stderr).strip()

        rc, out = check({"admin_listen": "off"})
        if rc != 0 and "admin_listen" in out:
            rc, out = check({})
        else:
            _TOP["admin_listen"] = "off"
        _SASL_SUPPORT.append((rc, out))
    rc, out = _SASL_SUPPORT[0]
    if rc != 0 and "upstream_sasl" in out:
        pytest.skip(f"kgate does not accept [upstream_sasl] yet: {out.splitlines()[0] if out else rc}")
    assert rc == 0, f"kgate check-config rejected a minimal [upstream_sasl] config (exit {rc}):\n{out}"


@pytest.fixture
def kgates(cluster):
    """start(name, sasl: dict, env: dict) -> Kgate; all stopped (and checked
    for panics and unexpected exits) at the end of the test."""
    require_kgate_sasl()
    started: list[Kgate] = []

    def start(name: str, sasl: dict, env: Optional[dict] = None) -> Kgate:
        up = cluster.upstream()
        pb = pick_port_base([111], avoid={cluster.port, cluster.tansu_port})
        cfg = run_dir() / f"kgate-{name}.toml"
        cfg.write_text(kgate_toml([cluster.bootstrap], pb, sasl, _TOP))
        proc = Proc(f"kgate-{name}", [kgate_bin(), "run", "--config", cfg], env=clean_env(env))
        kg = Kgate(up, pb, f"{LOOPBACK}:{pb}", proc)
        started.append(kg)
        wait_for_port(pb, 30, proc)
        return kg

    yield start
    failures = []
    for kg in started:
        try:
            stop_kgate(kg)
        except BaseException as e:  # noqa: BLE001 - collect all
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def env_creds(key: tuple) -> dict:
    e = {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}
    if len(key) > 2:
        e["AWS_SESSION_TOKEN"] = key[2]
    return e


def register(front, key: tuple, principal: str = ENV_PRINCIPAL) -> None:
    front.set_secret(key[0], key[1], key[2] if len(key) > 2 else None, principal=principal)


def client_fails(kg: Kgate, timeout: float = 10) -> str:
    """A new client connection through kgate gets no Metadata answer; returns how it failed."""
    try:
        with iam_front.RawClient(LOOPBACK, kg.port_base, client_id="e2e-negative", timeout=timeout) as c:
            c.api_versions(3)
            brokers = c.metadata()
    except (OSError, ConnectionError, iam_front.WireError) as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError(f"a client got metadata through kgate although upstream auth must fail: {brokers}")


def client_works(kg: Kgate) -> iam_front.RawClient:
    c = iam_front.RawClient(LOOPBACK, kg.port_base, client_id="e2e-positive", timeout=15)
    c.api_versions(3)
    brokers = c.metadata()
    assert brokers and all(h == LOOPBACK or h == "localhost" for _, h, _ in brokers), brokers
    return c


def broker_name(cluster) -> re.Pattern:
    """The broker as kgate may name it in a log line: host:port, or the host
    alone (MSK broker host names are unique)."""
    return re.compile(rf"\b{re.escape(BROKER_HOST)}(:{cluster.port})?\b(?!:)")


def wait_log(kg: Kgate, since: int, needles: list, timeout: float = 10) -> str:
    """Waits until one line of kgate's log written after offset `since`
    contains every needle (str: case-insensitive substring; re.Pattern:
    search); returns that line."""

    def has(line: str, n) -> bool:
        return bool(n.search(line)) if isinstance(n, re.Pattern) else n.lower() in line.lower()

    def find():
        for line in kg.proc.log_text()[since:].splitlines():
            if all(has(line, n) for n in needles):
                return line
        return None

    try:
        return poll_until(f"a kgate log line with {needles}", find, timeout, 0.2)
    except TimeoutError:
        raise AssertionError(f"kgate logged no line containing all of {needles}; its log since then:\n"
                             + kg.proc.log_text()[since:][-4000:])


def log_len(kg: Kgate) -> int:
    return len(kg.proc.log_text())


def test_kgate_iam_soak_reauthenticates_without_client_disconnects(cluster, front, kgates, java_classes):
    """>= 20 session lifetimes of continuous produce+consume by Java and
    librdkafka through kgate: kgate re-authenticates every upstream connection
    in time, clients never notice."""
    register(front, ASIA)
    kg = kgates("iam-soak", {"mechanism": "AWS_MSK_IAM", "region": REGION}, env_creds(ASIA))
    java = start_java_soak(java_classes, kg.bootstrap_servers, SOAK_S, 150, name="kgate-iam")
    rdk = rdkafka_soak(kg.bootstrap_servers, SOAK_S, 150, name="kgate-iam")
    j = java_result(java, SOAK_S + 120)
    assert_rdkafka_clean(rdk)
    assert_java_clean(j)
    st = front_clean(cluster, min_reauths=20, min_conn_reauths=int(SOAK_S * 1000 / LIFETIME_MS) - 2)
    assert set(st["by_mechanism"]) == {"AWS_MSK_IAM"}
    assert set(st["principals"]) == {ENV_PRINCIPAL}
    with_token = ["action", "host", "user-agent", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                  "x-amz-expires", "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"]
    assert st["iam_payload_keys"] == [with_token], st["iam_payload_keys"]
    assert st["user_agents"] and all(ua.strip() for ua in st["user_agents"]), st["user_agents"]
    assert set(st["sasl_authenticate_versions"]) <= {1, 2}, "SaslAuthenticate v0 carries no session lifetime"
    print(f"kgate IAM: user-agents {st['user_agents']}, x-amz-expires {st['iam_expires']}, "
          f"SaslAuthenticate versions {st['sasl_authenticate_versions']}")
    assert kg.proc.alive()


MECHANISMS = {
    "AWS_MSK_IAM-long-term-key": ({"mechanism": "AWS_MSK_IAM", "region": REGION}, AKIA, "AWS_MSK_IAM"),
    "OAUTHBEARER": ({"mechanism": "OAUTHBEARER", "region": REGION}, ASIA, "OAUTHBEARER"),
    "PLAIN": ({"mechanism": "PLAIN", "username": "alice"}, None, "PLAIN"),
}


@pytest.mark.parametrize("case", list(MECHANISMS))
def test_kgate_mechanism_reauth_and_failure(cluster, front, kgates, case):
    """Each mechanism: librdkafka for a few lifetimes through kgate, then the
    broker starts refusing the credentials: a new client fails, kgate logs
    the mechanism, the broker and the broker's message, an established
    connection keeps working while its session lasts, and kgate stays up."""
    sasl, key, mech = MECHANISMS[case]
    sasl = dict(sasl)
    if key:
        register(front, key)
        env = env_creds(key)
    else:
        pw_file = run_dir() / f"plain-password-{uuid.uuid4().hex[:6]}"
        pw_file.write_text("s3cret-pw\n")  # a trailing newline must not count
        front.set_user("alice", "s3cret-pw")
        sasl["password_file"] = str(pw_file)
        env = {}
    kg = kgates(f"mech-{case}", sasl, env)
    r = rdkafka_soak(kg.bootstrap_servers, 10, 100, name=f"kgate-{case}")
    assert_rdkafka_clean(r, case)
    st = front_clean(cluster, min_reauths=3, min_conn_reauths=2)
    assert set(st["by_mechanism"]) == {mech}

    # now the broker refuses: long sessions so that the established one survives
    front.set_lifetime_ms(60_000)
    keep = client_works(kg)
    since = log_len(kg)
    if mech == "PLAIN":
        front.set_user("alice", "another-password")
        msg = "Invalid username or password"
    else:
        front.set_secret(key[0], "a-different-secret", key[2] if len(key) > 2 else None)
        msg = '{"status":"invalid_token"}' if mech == "OAUTHBEARER" else "signature mismatch"
    how = client_fails(kg)
    line = wait_log(kg, since, [mech, broker_name(cluster), msg])
    assert keep.metadata(), "an established connection stopped working"
    keep.close()
    assert kg.proc.alive(), f"kgate died after an auth failure ({how}); {line}"


def test_kgate_iam_negatives_keep_kgate_and_other_connections_alive(cluster, front, kgates):
    """Wrong secret, expired credentials, wrong region, throttled: for each,
    a new client fails, kgate logs mechanism + broker + the broker's message,
    an established connection keeps working, and once the broker accepts
    again a new client works."""
    register(front, AKIA)
    front.set_lifetime_ms(120_000)
    kg = kgates("iam-negatives", {"mechanism": "AWS_MSK_IAM", "region": REGION}, env_creds(AKIA))
    keep = client_works(kg)
    broker = broker_name(cluster)
    cases = [
        ("wrong secret", lambda: front.set_secret(AKIA[0], "not-the-secret", principal=ENV_PRINCIPAL),
         "signature mismatch"),
        ("expired credentials", lambda: front.set_secret(*AKIA, expiration=time.time() - 60, principal=ENV_PRINCIPAL),
         "credentials expired"),
        ("wrong region", lambda: front.set_region("eu-west-1"), "region 'us-east-1' in the credential scope"),
        ("throttled", lambda: front.fail_next(1000, "Too many connects"), "Too many connects"),
    ]
    for name, breakit, msg in cases:
        since = log_len(kg)
        breakit()
        client_fails(kg)
        wait_log(kg, since, ["AWS_MSK_IAM", broker, msg])
        assert keep.metadata(), f"{name}: an established connection stopped working"
        assert kg.proc.alive(), f"{name}: kgate died"
        register(front, AKIA)
        front.set_region(REGION)
        front.fail_next(0)
        poll_until(f"a new client works after '{name}' was healed", lambda: client_works(kg).close() or True, 20, 0.5)
    keep.close()


def test_kgate_without_credentials_fails_clearly(cluster, front, kgates):
    kg = kgates("iam-no-creds", {"mechanism": "AWS_MSK_IAM", "region": REGION}, {})
    since = 0
    client_fails(kg)
    wait_log(kg, since, ["AWS_MSK_IAM", "credential"])
    time.sleep(0.5)
    assert kg.proc.alive()
    assert front.stats()["auths"] == 0


def test_kgate_rotating_container_credentials(cluster, front, kgates):
    """Credentials from the container endpoint live 12 s and rotate every 4 s;
    the front accepts a key only while it is valid. kgate keeps every
    connection authenticated, re-authenticating live connections with new keys."""
    with aws_mocks.ContainerCredentials(front, ttl_s=12, rotate_after_s=4) as cc:
        kg = kgates("iam-container", {"mechanism": "AWS_MSK_IAM", "region": REGION}, cc.env())
        r = rdkafka_soak(kg.bootstrap_servers, 20, 100, name="kgate-container")
        assert_rdkafka_clean(r, "container credentials")
        st = front_clean(cluster, min_reauths=5, min_conn_reauths=3)
        used = {k for c in st["open"] + st["closed"] for k in c["access_keys"]}
        assert len(used) >= 2, f"kgate used only {used} of {cc.keys()}"
        assert used <= set(cc.keys())
        assert any(len(c["access_keys"]) >= 2 for c in st["open"] + st["closed"]), \
            "no connection re-authenticated with a newer key: " + cluster.explain()


def test_kgate_credentials_endpoint_down_then_up(cluster, front, kgates):
    with aws_mocks.ContainerCredentials(front, ttl_s=30, rotate_after_s=None) as cc:
        cc.set_failing(500)
        kg = kgates("iam-creds-down", {"mechanism": "AWS_MSK_IAM", "region": REGION}, cc.env())
        client_fails(kg)
        wait_log(kg, 0, ["AWS_MSK_IAM", "credential"])
        assert kg.proc.alive()
        cc.set_failing(None)
        poll_until("a client works once the credentials endpoint is back",
                   lambda: client_works(kg).close() or True, 30, 1)


def test_kgate_assume_role_with_stable_session_name(cluster, front, kgates):
    """kgate assumes a role through STS (moto) with its base credentials; the
    assumed credentials expire after 10 s so it must assume the role again,
    always with the configured RoleSessionName, so the principal never
    changes across re-authentications."""
    base = ("AKIAKGATEBASE0000001", "base-secret-not-valid-for-kafka")
    role = f"arn:aws:iam::{ACCOUNT}:role/kgate-msk"
    with aws_mocks.MotoSts(front, force_ttl_s=10) as sts:
        kg = kgates("iam-assume-role", {
            "mechanism": "AWS_MSK_IAM", "region": REGION, "role_arn": role, "external_id": "ext-123",
            "session_name": "kgate-e2e", "sts_region": REGION, "sts_endpoint": sts.endpoint,
        }, env_creds(base))
        r = rdkafka_soak(kg.bootstrap_servers, 20, 100, name="kgate-assume-role")
        assert_rdkafka_clean(r, "assume-role")
        st = front_clean(cluster, min_reauths=5, min_conn_reauths=3)
        calls = sts.assume_role_calls()
        assert len(calls) >= 2, f"kgate assumed the role {len(calls)} times in 20 s with 10 s credentials: {calls}"
        assert {c["RoleSessionName"] for c in calls} == {"kgate-e2e"}, calls
        assert {c["RoleArn"] for c in calls} == {role}, calls
        assert {c.get("ExternalId") for c in calls} == {"ext-123"}, calls
        assert {c["signed_by"] for c in calls} == {base[0]}, calls
        principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/kgate-msk/kgate-e2e"
        assert set(st["principals"]) == {principal}, st["principals"]
        assert any(len(c["access_keys"]) >= 2 for c in st["open"] + st["closed"]), \
            "no connection re-authenticated with newly assumed credentials: " + cluster.explain()

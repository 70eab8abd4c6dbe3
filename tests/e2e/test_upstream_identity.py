"""Per-principal upstream identity: clients authenticate to kgate with mTLS
client certificates (CN = principal), and kgate reaches the cluster as each
principal's own IAM role (assumed through moto's STS) or its own PLAIN user.

    client (CN=alice) --TLS--> kgate --AWS_MSK_IAM as role A--> IamFront --> tansu
    client (CN=bob)   --TLS--> kgate --AWS_MSK_IAM as role B--> IamFront --> tansu

The front (iam_front) verifies every signature, knows only the credentials
that MotoSts handed out for an AssumeRole (kgate's base credentials are not
registered with it), gives sessions a 3 s lifetime, and closes a connection
whose session expired. Its per-connection principal is the assumed-role ARN
with the session name, so it shows which identity each connection used.

Run:  bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_upstream_identity.py -q
Env:  UPID_SOAK_S  seconds of the two-role soak (default 36: >= 10 re-authentications)
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

import pytest

import aws_mocks
import iam_front
from harness import LOOPBACK, REPO, SESSION_TIMEOUT_MS, Kgate, Proc, Upstream, free_port, kgate_bin, pick_port_base, \
    poll_until, run_dir, stop_kgate, wait_for_port
from test_sasl_iam import (  # noqa: F401 - fixtures
    ENV_PRINCIPAL,
    LIFETIME_MS,
    REGION,
    assert_java_clean,
    assert_rdkafka_clean,
    clean_env,
    cluster,
    front,
    java_result,
    rdkafka_soak,
    start_java_soak,
)
from tls_support import P12_PASS, downstream_tls, java_ssl_props, pki, rdkafka_ssl, to_toml  # noqa: F401

ACCOUNT = aws_mocks.ACCOUNT
ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/msk-alice"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/msk-bob"
BASE = ("AKIAKGATEBASE0000009", "base-secret-never-valid-for-kafka")
SOAK_S = int(os.environ.get("UPID_SOAK_S", "36"))
STS_TTL_S = 15  # kgate renews at a third of the lifetime left: every ~10 s


def assumed(role_arn: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[1]}/{session}"


@pytest.fixture(scope="module")
def certs(pki):  # noqa: F811 - the fixture imported above
    """Client certificates for alice, bob and carol from the dev CA, each also
    as a PKCS#12 keystore for Java."""
    for name in ("alice", "bob", "carol"):
        if not (pki.dir / f"{name}.pem").exists():
            pki.issue(name, "client", name)
            r = subprocess.run(["openssl", "pkcs12", "-export", "-in", pki(f"{name}.pem"), "-inkey", pki(f"{name}.key"),
                                "-certfile", pki("ca.pem"), "-name", name, "-out", str(pki.dir / f"{name}.p12"),
                                "-passout", f"pass:{P12_PASS}"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"openssl pkcs12 for {name}: {r.stderr}"
    return pki


class Running:
    def __init__(self, kg: Kgate, admin: int):
        self.kg = kg
        self.admin = admin

    def log(self) -> str:
        return self.kg.proc.log_text()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin}/metrics", timeout=10) as r:
            return r.read().decode()


@pytest.fixture
def kgates(cluster, certs):  # noqa: F811
    """start(name, sasl, identities, unmapped, env) -> Running: kgate with
    mTLS toward clients (principal = CN) and `[[upstream_identity]]`."""
    started: list[Kgate] = []

    def start(name: str, sasl: dict, identities: list[dict], unmapped: Optional[str] = None,
              env: Optional[dict] = None, upstream: Optional[Upstream] = None) -> Running:
        binary = kgate_bin()
        if not binary.exists():
            pytest.fail(f"kgate binary not found at {binary}: build it (cargo build) or set KGATE_BIN")
        up = upstream or cluster.upstream()
        pb = pick_port_base([111], avoid={cluster.port, cluster.tansu_port} | {p for _, p in up.bootstrap})
        admin = free_port()
        cfg = {"bootstrap": [f"{h}:{p}" for h, p in up.bootstrap], "port_base": pb, "admin_listen": f"{LOOPBACK}:{admin}",
               "upstream_identity_unmapped": unmapped,
               "downstream_tls": downstream_tls(certs, principal="cn"),
               "upstream_sasl": {"region": REGION, **sasl}, "upstream_identity": identities}
        path = run_dir() / f"kgate-upid-{name}.toml"
        path.write_text(to_toml(cfg))
        check = subprocess.run([str(binary), "check-config", "--config", str(path)], capture_output=True, text=True,
                               timeout=30, env=clean_env(env))
        assert check.returncode == 0, f"check-config refused {path}:\n{check.stdout}{check.stderr}"
        proc = Proc(f"kgate-upid-{name}", [binary, "run", "--config", path], env=clean_env(env))
        kg = Kgate(up, pb, f"{LOOPBACK}:{pb}", proc)
        started.append(kg)
        wait_for_port(pb, 30, proc)
        wait_for_port(admin, 30, proc)
        return Running(kg, admin)

    yield start
    failures = []
    for kg in started:
        try:
            stop_kgate(kg)
        except BaseException as e:  # noqa: BLE001 - collect all
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def iam(sts: aws_mocks.MotoSts) -> dict:
    return {"mechanism": "AWS_MSK_IAM", "sts_region": REGION, "sts_endpoint": sts.endpoint}


def env_base() -> dict:
    return {"AWS_ACCESS_KEY_ID": BASE[0], "AWS_SECRET_ACCESS_KEY": BASE[1]}


def by_principal(st: dict) -> dict[str, list[dict]]:
    """Front connections that carried client requests, by principal. kgate's
    own probe connections (only kgate's client id "kgate" in their request
    headers) are left out: they always use kgate's own identity."""
    out: dict[str, list[dict]] = {}
    for c in st["open"] + st["closed"]:
        if c["principal"] and set(c["client_ids"]) - {"kgate"}:
            out.setdefault(c["principal"], []).append(c)
    return out


def probes(st: dict) -> set[str]:
    """The principals of kgate's own probe connections."""
    return {c["principal"] for c in st["open"] + st["closed"] if c["principal"] and set(c["client_ids"]) <= {"kgate"}}


def front_ok(st: dict, cluster) -> None:  # noqa: F811
    why = f"{ {k: st[k] for k in ('auths', 'reauths', 'failures', 'closes', 'expired_closes')} }\n{cluster.explain()}"
    assert st["failures"] == [], "authentication failures at the front: " + why
    assert st["expired_closes"] == 0, "the front closed expired sessions: " + why
    bad = {k: v for k, v in st["closes"].items() if k not in ("client closed", "client reset", "front stopped")}
    assert not bad, "the front closed connections: " + why


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def check_assume_role_calls(calls: list[dict], role: str, session: str, started: float, ended: float) -> None:
    """One AssumeRole per role, then one renewal per ~2/3 of the credentials'
    lifetime, each before the previous credentials expired."""
    mine = [c for c in calls if c["RoleArn"] == role]
    assert mine, f"kgate never assumed {role}: {calls}"
    assert {c["RoleSessionName"] for c in mine} == {session}, mine
    assert {c["signed_by"] for c in mine} == {BASE[0]}, "AssumeRole must be signed with kgate's base credentials"
    assert all(c["status"] == 200 for c in mine), mine
    renewals = int((ended - started) / (STS_TTL_S * 2 / 3)) + 1
    assert len(mine) <= 1 + renewals, f"{role} was assumed {len(mine)} times in {ended - started:.0f} s, " \
                                      f"more than once per credential lifetime: {mine}"
    assert len(mine) >= 2, f"{role}'s {STS_TTL_S} s credentials were never renewed in {ended - started:.0f} s"
    for prev, nxt in zip(mine, mine[1:]):
        assert nxt["time"] < prev["expiration"], f"{role} renewed only after its credentials expired: {prev} {nxt}"
        assert nxt["time"] - prev["time"] >= STS_TTL_S / 2, f"{role} renewed far ahead of need: {prev} {nxt}"


def test_two_principals_reach_the_cluster_as_their_own_roles(cluster, front, kgates, certs, java_classes):  # noqa: F811
    """librdkafka as alice and the Java client as bob produce and consume
    through kgate for SOAK_S seconds: the front sees role A's and role B's
    assumed-role sessions only, with different access keys, each principal's
    connections re-authenticate >= 10 times with no expired close and no
    failure, and each role is assumed once and renewed ahead of expiry, not
    per connection."""
    front.set_secret(*BASE, principal=ENV_PRINCIPAL)  # kgate's own identity, for its probe
    with aws_mocks.MotoSts(front, force_ttl_s=STS_TTL_S) as sts:
        rk = kgates("two-roles", iam(sts), [
            {"principal": "alice", "role_arn": ROLE_A},
            {"principal": "b*", "role_arn": ROLE_B, "external_id": "ext-bob"},
        ], env=env_base())
        started = time.time()
        java = start_java_soak(java_classes, rk.kg.bootstrap_servers, SOAK_S, 100,
                               props=[f"{k}={v}" for k, v in java_ssl_props(certs, "bob.p12").items()], name="bob")
        r = rdkafka_soak(rk.kg.bootstrap_servers, SOAK_S, 100, extra=rdkafka_ssl(certs, "alice"), name="alice")
        j = java_result(java, SOAK_S + 120)
        ended = time.time()
        assert_rdkafka_clean(r, "alice (librdkafka)")
        assert_java_clean(j)
        st = front.stats()
        front_ok(st, cluster)
        pa, pb = assumed(ROLE_A, "kgate-alice"), assumed(ROLE_B, "kgate-bob")
        conns = by_principal(st)
        assert set(conns) == {pa, pb}, f"the front saw principals {sorted(conns)}; expected {pa} and {pb}"
        assert probes(st) <= {ENV_PRINCIPAL}, probes(st)
        keys = {p: {k for c in cs for k in c["access_keys"]} for p, cs in conns.items()}
        assert keys[pa] and keys[pb] and not keys[pa] & keys[pb], keys
        calls = sts.assume_role_calls()
        issued = {p: {c["issued_key"] for c in calls if c["principal"] == p} for p in (pa, pb)}
        assert keys[pa] <= issued[pa] and keys[pb] <= issued[pb], (keys, issued)
        for p, cs in conns.items():
            best = max(c["reauths"] for c in cs)
            assert best >= 10, f"{p}: no connection re-authenticated 10 times ({[c['reauths'] for c in cs]})"
            assert len(cs) >= 2, f"{p}: expected several connections (bootstrap, broker, coordinator): {cs}"
        check_assume_role_calls(calls, ROLE_A, "kgate-alice", started, ended)
        check_assume_role_calls(calls, ROLE_B, "kgate-bob", started, ended)
        assert {c.get("ExternalId") for c in calls if c["RoleArn"] == ROLE_B} == {"ext-bob"}
        assert {c.get("ExternalId") for c in calls if c["RoleArn"] == ROLE_A} == {None}
        print(f"front connections: alice {len(conns[pa])}, bob {len(conns[pb])}; AssumeRole calls: "
              f"A {len([c for c in calls if c['RoleArn'] == ROLE_A])}, B {len([c for c in calls if c['RoleArn'] == ROLE_B])}; "
              f"max reauths per connection: alice {max(c['reauths'] for c in conns[pa])}, "
              f"bob {max(c['reauths'] for c in conns[pb])}")
        m = rk.metrics()
        for role in (ROLE_A, ROLE_B):
            assert metric(m, "kgate_upstream_identity_connections_total", kind="role", identity=role) >= 2, m
            n = len([c for c in calls if c["RoleArn"] == role])
            assert metric(m, "kgate_upstream_identity_assume_role_total", role=role) == n, m
        log = rk.log()
        assert re.search(rf"upstream_identity=role {re.escape(ROLE_A)} \(session kgate-alice\)", log), log[-3000:]
        assert BASE[1] not in log and BASE[1] not in m


def tls_client_closed(port: int, certs, cert: str) -> str:  # noqa: F811
    """Connects with client certificate `cert`, sends ApiVersions, and returns
    how the connection ended; fails if kgate answered."""
    from tls_support import api_versions_request, client_tls_context

    ctx = client_tls_context(certs, cert)
    import socket

    with socket.create_connection((LOOPBACK, port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(api_versions_request())
            try:
                data = s.recv(4)
            except (ConnectionError, OSError) as e:
                return f"{type(e).__name__}: {e}"
            assert data == b"", f"kgate answered a refused principal: {data!r}"
            return "closed"


def list_topics(bootstrap: str, certs, cert: str) -> list[str]:  # noqa: F811
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    a = AdminClient({"bootstrap.servers": bootstrap, "error_cb": lambda e: errors.append(e.str()),
                     **rdkafka_ssl(certs, cert)})
    md = a.list_topics(timeout=15)
    assert md.brokers, errors
    return list(md.topics)


def test_unmapped_principals_are_refused_or_use_kgates_identity(cluster, front, kgates, certs):  # noqa: F811
    """carol has no mapping. With upstream_identity_unmapped = "refuse" her
    connection is closed before kgate dials the cluster, with a log line that
    says why, while alice keeps working as her role; with "default" carol
    reaches the cluster as kgate itself."""
    front.set_lifetime_ms(60_000)
    front.set_secret(*BASE, principal=ENV_PRINCIPAL)  # kgate's own identity is valid at the front
    with aws_mocks.MotoSts(front, force_ttl_s=600) as sts:
        ident = [{"principal": "alice", "role_arn": ROLE_A}]
        strict = kgates("refuse", iam(sts), ident, unmapped="refuse", env=env_base())
        how = tls_client_closed(strict.kg.port_base, certs, "carol")
        line = poll_until("kgate's refusal line", lambda: next(
            (ln for ln in strict.log().splitlines() if 'principal "carol" has no [[upstream_identity]] mapping' in ln),
            None), 10, 0.2)
        assert "refuse" in line, line
        assert by_principal(front.stats()) == {}, "a refused principal must not reach the cluster"
        assert list_topics(strict.kg.bootstrap_servers, certs, "alice") is not None
        m = strict.metrics()
        assert metric(m, "kgate_upstream_identity_connections_total", kind="refused", identity="") >= 1, m
        print(f"carol refused: {how}")

        loose = kgates("default", iam(sts), ident, unmapped="default", env=env_base())
        front.reset_stats()
        list_topics(loose.kg.bootstrap_servers, certs, "carol")
        list_topics(loose.kg.bootstrap_servers, certs, "alice")
        st = front.stats()
        front_ok(st, cluster)
        assert set(by_principal(st)) == {ENV_PRINCIPAL, assumed(ROLE_A, "kgate-alice")}, by_principal(st)
        assert metric(loose.metrics(), "kgate_upstream_identity_connections_total", kind="default", identity="") >= 1


def test_principals_reach_the_cluster_as_their_own_plain_users(cluster, front, kgates, certs):  # noqa: F811
    """[upstream_sasl] PLAIN as kgate; alice and bob map to their own users
    (a password file and a password variable). The front sees User:alice-up
    and User:bob-up only, and their connections re-authenticate as those
    users (a re-authentication as another user would be refused)."""
    pw = {"kgate": "kgate-pw-" + uuid.uuid4().hex[:6], "alice-up": "alice-pw-" + uuid.uuid4().hex[:6],
          "bob-up": "bob-pw-" + uuid.uuid4().hex[:6]}
    for u, p in pw.items():
        front.set_user(u, p)
    files = {}
    for u in ("kgate", "alice-up"):
        files[u] = run_dir() / f"upid-{u}-{uuid.uuid4().hex[:6]}.pw"
        files[u].write_text(pw[u] + "\n")
    rk = kgates("plain-users", {"mechanism": "PLAIN", "username": "kgate", "password_file": str(files["kgate"])}, [
        {"principal": "alice", "username": "alice-up", "password_file": str(files["alice-up"])},
        {"principal": "bob", "username": "bob-up", "password_env": "UPID_BOB_PW"},
    ], unmapped="refuse", env={"UPID_BOB_PW": pw["bob-up"]})
    ra = rdkafka_soak(rk.kg.bootstrap_servers, 10, 100, extra=rdkafka_ssl(certs, "alice"), name="plain-alice")
    rb = rdkafka_soak(rk.kg.bootstrap_servers, 10, 100, extra=rdkafka_ssl(certs, "bob"), name="plain-bob")
    assert_rdkafka_clean(ra, "alice (PLAIN user)")
    assert_rdkafka_clean(rb, "bob (PLAIN user)")
    st = front.stats()
    front_ok(st, cluster)
    conns = by_principal(st)
    assert set(conns) == {"User:alice-up", "User:bob-up"}, sorted(conns)
    assert probes(st) <= {"User:kgate"}, probes(st)
    for p, cs in conns.items():
        assert max(c["reauths"] for c in cs) >= 2, f"{p}: {[c['reauths'] for c in cs]}"
    assert set(st["by_mechanism"]) == {"PLAIN"}
    m = rk.metrics()
    assert metric(m, "kgate_upstream_identity_connections_total", kind="user", identity="alice-up") >= 1, m
    assert metric(m, "kgate_upstream_identity_connections_total", kind="user", identity="bob-up") >= 1, m
    log = rk.log()
    assert "upstream_identity=user bob-up" in log, log[-3000:]
    for secret in pw.values():
        assert secret not in log and secret not in m, "a password reached the log or the metrics"


# --------------------------------------------------------------------------
# SCRAM users against a real broker that enforces SCRAM (tansu-sasl)
# --------------------------------------------------------------------------

TANSU_SASL = Path(os.environ.get("TANSU_SASL_BIN") or REPO.parent / "shared" / "bin" / "tansu-sasl")
SCRAM_USERS = {"kgate-own": "own-pw-" + uuid.uuid4().hex[:8], "alice-up": "alice-pw-" + uuid.uuid4().hex[:8]}
SCRAM_TOPIC = "upid-scram"


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory) -> Upstream:
    """tansu-sasl on sqlite with SCRAM-SHA-512 users kgate-own and alice-up
    (created, with the topic, before authentication is switched on)."""
    if not TANSU_SASL.exists():
        pytest.fail(f"{TANSU_SASL} is missing: it ships in shared/bin beside the repository")
    work = tmp_path_factory.mktemp("tansu-sasl-upid")
    port = free_port()
    env = dict(os.environ, STORAGE_ENGINE="sqlite://tansu.db")
    url = f"tcp://{LOOPBACK}:{port}"

    def start(name: str, extra: list[str]) -> subprocess.Popen:
        p = subprocess.Popen([str(TANSU_SASL), "broker", "--listener-url", url, "--advertised-listener-url", url,
                              *extra], cwd=work, env=env, stdout=open(work / f"{name}.log", "wb"),
                             stderr=subprocess.STDOUT)
        wait_for_port(port, 30)
        return p

    def stop(p: subprocess.Popen) -> None:
        p.terminate()
        p.wait(10)

    setup = start("setup", [])
    try:
        for user, password in SCRAM_USERS.items():
            subprocess.run([str(TANSU_SASL), "user", "create", "--broker", url, "--mechanism", "scram512", user,
                            password], cwd=work, env=env, check=True, capture_output=True, timeout=60)
        subprocess.run([str(TANSU_SASL), "topic", "create", "--broker", url, "--partitions", "2", SCRAM_TOPIC],
                       cwd=work, env=env, check=True, capture_output=True, timeout=60)
    finally:
        stop(setup)
    time.sleep(0.2)
    broker = start("broker", ["--authentication"])
    yield Upstream("tansu-sasl-upid", [(LOOPBACK, port)], (111,), {111: (LOOPBACK, port)})
    stop(broker)


def produce_consume(bootstrap: str, certs, cert: str, n: int = 30) -> list[str]:  # noqa: F811
    from confluent_kafka import Consumer, Producer

    ssl = rdkafka_ssl(certs, cert)
    run = uuid.uuid4().hex[:8]
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **ssl})
    sent = [f"{cert}-{run}-{i}" for i in range(n)]
    for i, v in enumerate(sent):
        p.produce(SCRAM_TOPIC, key=str(i), value=v)
    assert p.flush(30) == 0, f"{cert}: records left unsent"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"upid-{cert}-{run}", "auto.offset.reset": "earliest",
                  "session.timeout.ms": SESSION_TIMEOUT_MS, **ssl})
    c.subscribe([SCRAM_TOPIC])
    got, deadline = [], time.time() + 40
    while time.time() < deadline and not set(sent) <= set(got):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    mine = sorted(g for g in got if g.startswith(f"{cert}-{run}-"))
    assert mine == sorted(sent), f"{cert}: consumed {len(mine)} of {len(sent)}"
    return mine


def test_principals_reach_a_scram_broker_as_their_own_users(scram_broker, kgates, certs, tmp_path):  # noqa: F811
    """kgate is kgate-own (SCRAM-SHA-512) at a tansu that enforces SCRAM.
    alice maps to alice-up and produces and consumes; bob maps to bob-up, a
    user the broker does not know, and fails with a log line naming his
    identity; carol has no mapping and works as kgate-own. So the broker
    checks each principal's own SCRAM credentials."""
    files = {}
    for u, pw in SCRAM_USERS.items():
        files[u] = tmp_path / f"{u}.pw"
        files[u].write_text(pw + "\n")
    rk = kgates("scram-users", {"mechanism": "SCRAM-SHA-512", "username": "kgate-own",
                                "password_file": str(files["kgate-own"])}, [
        {"principal": "alice", "username": "alice-up", "password_file": str(files["alice-up"])},
        {"principal": "bob", "username": "bob-up", "password_env": "UPID_BOB_SCRAM"},
    ], env={"UPID_BOB_SCRAM": "bob-pw-unknown-to-the-broker"}, upstream=scram_broker)
    produce_consume(rk.kg.bootstrap_servers, certs, "alice")
    produce_consume(rk.kg.bootstrap_servers, certs, "carol")
    from confluent_kafka.admin import AdminClient

    bob = AdminClient({"bootstrap.servers": rk.kg.bootstrap_servers, "socket.timeout.ms": 3000,
                       **rdkafka_ssl(certs, "bob")})
    with pytest.raises(Exception):
        bob.list_topics(timeout=5)
    line = poll_until("bob's SCRAM failure in kgate's log", lambda: next(
        (ln for ln in rk.log().splitlines() if "SCRAM-SHA-512 authentication with" in ln and "failed" in ln), None), 15)
    assert "upstream_identity=user bob-up" in line and "principal=bob" in line, line
    m = rk.metrics()
    for user in ("alice-up", "bob-up"):
        assert metric(m, "kgate_upstream_identity_connections_total", kind="user", identity=user) >= 1, m
    assert metric(m, "kgate_upstream_identity_connections_total", kind="default", identity="") >= 1, m
    log = rk.log()
    for secret in [*SCRAM_USERS.values(), "bob-pw-unknown-to-the-broker"]:
        assert secret not in log and secret not in m, "a password reached the log or the metrics"


def test_roles_are_assumed_with_kgates_own_role_over_oauthbearer(cluster, front, kgates, certs):  # noqa: F811
    """kgate's own identity is itself an assumed role (role K); alice's role
    is assumed with K's credentials (role chaining), and her connections sign
    OAUTHBEARER tokens as role A, re-authenticating as A; carol, unmapped,
    reaches the cluster as K."""
    role_k = f"arn:aws:iam::{ACCOUNT}:role/kgate-task"
    with aws_mocks.MotoSts(front, force_ttl_s=600) as sts:
        rk = kgates("chained", {**iam(sts), "mechanism": "OAUTHBEARER", "role_arn": role_k,
                                "session_name": "kgate-own"},
                    [{"principal": "alice", "role_arn": ROLE_A}], env=env_base())
        r = rdkafka_soak(rk.kg.bootstrap_servers, 10, 100, extra=rdkafka_ssl(certs, "alice"), name="chained-alice")
        assert_rdkafka_clean(r, "alice over OAUTHBEARER")
        list_topics(rk.kg.bootstrap_servers, certs, "carol")
        st = front.stats()
        front_ok(st, cluster)
        assert set(st["by_mechanism"]) == {"OAUTHBEARER"}, st["by_mechanism"]
        pa, pk = assumed(ROLE_A, "kgate-alice"), assumed(role_k, "kgate-own")
        conns = by_principal(st)
        assert set(conns) == {pa, pk}, sorted(conns)
        assert max(c["reauths"] for c in conns[pa]) >= 2, [c["reauths"] for c in conns[pa]]
        calls = sts.assume_role_calls()
        own_keys = {c["issued_key"] for c in calls if c["RoleArn"] == role_k}
        mine = [c for c in calls if c["RoleArn"] == ROLE_A]
        assert len(mine) == 1, f"alice's role assumed {len(mine)} times with 600 s credentials: {mine}"
        assert own_keys and mine[0]["signed_by"] in own_keys, \
            f"alice's role must be assumed with kgate's own role's credentials {own_keys}: {mine}"


def test_check_config_refuses_identities_that_do_not_fit_the_mechanism(tmp_path):
    """`kgate check-config` names the entry, the key and the mechanism."""
    binary = kgate_bin()
    if not binary.exists():
        pytest.fail(f"kgate binary not found at {binary}: build it (cargo build) or set KGATE_BIN")
    cases = {
        "role with PLAIN": ({"mechanism": "PLAIN", "username": "k", "password_env": "X"},
                            {"principal": "a", "role_arn": ROLE_A},
                            "upstream_identity[0].role_arn`: upstream_sasl.mechanism is PLAIN"),
        "user with IAM": ({"mechanism": "AWS_MSK_IAM"}, {"principal": "a", "username": "u", "password_env": "X"},
                          "upstream_identity[0].username`: upstream_sasl.mechanism is AWS_MSK_IAM"),
        "unreadable password file": ({"mechanism": "SCRAM-SHA-512", "username": "k", "password_env": "HOME"},
                                     {"principal": "a", "username": "u",
                                      "password_file": str(tmp_path / "missing.pw")},
                                     "upstream_identity[0].password_file"),
    }
    for name, (sasl, entry, want) in cases.items():
        path = tmp_path / "kgate.toml"
        path.write_text(to_toml({"bootstrap": ["localhost:9092"], "upstream_sasl": sasl,
                                 "upstream_identity": [entry]}))
        r = subprocess.run([str(binary), "check-config", "--config", str(path)], capture_output=True, text=True,
                           timeout=30, env=clean_env())
        out = r.stdout + r.stderr
        assert r.returncode != 0 and want in out, f"{name}: exit {r.returncode}: {out}"


def test_an_unreachable_sts_fails_only_that_principal(cluster, front, kgates, certs):  # noqa: F811
    """STS cannot be reached: alice's connections fail with a log line that
    names her identity and the credentials problem, kgate stays up, and carol
    (unmapped, kgate's own long-term keys) keeps working."""
    front.set_secret(*BASE, principal=ENV_PRINCIPAL)
    dead = f"http://{LOOPBACK}:{free_port()}"
    rk = kgates("sts-down", {"mechanism": "AWS_MSK_IAM", "sts_region": REGION, "sts_endpoint": dead},
                [{"principal": "alice", "role_arn": ROLE_A}], env=env_base())
    from confluent_kafka.admin import AdminClient

    alice = AdminClient({"bootstrap.servers": rk.kg.bootstrap_servers, "socket.timeout.ms": 3000,
                         **rdkafka_ssl(certs, "alice")})
    with pytest.raises(Exception):
        alice.list_topics(timeout=5)
    line = poll_until("alice's failure in kgate's log", lambda: next(
        (ln for ln in rk.log().splitlines() if "AWS_MSK_IAM authentication with" in ln and "credentials" in ln), None),
        20, 0.2)
    assert f"upstream_identity=role {ROLE_A} (session kgate-alice)" in line, line
    assert list_topics(rk.kg.bootstrap_servers, certs, "carol") is not None
    assert rk.kg.proc.alive()
    assert set(by_principal(front.stats())) == {ENV_PRINCIPAL}

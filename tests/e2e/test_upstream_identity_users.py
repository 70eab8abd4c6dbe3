"""Per-principal upstream identity with SCRAM/PLAIN users: clients
authenticate to kgate with mTLS client certificates (CN = principal), and
kgate authenticates each principal's upstream connection as its own user:
PLAIN at the IAM front (3 s sessions, so re-authentication is covered), and
SCRAM-SHA-512 at a tansu that enforces SCRAM. Also: `check-config` refuses
identities that do not fit the mechanism.

Run:  bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_upstream_identity_users.py -q
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness import LOOPBACK, REPO, SESSION_TIMEOUT_MS, Upstream, free_port, kgate_bin, poll_until, run_dir, \
    wait_for_port
from test_sasl_iam import assert_rdkafka_clean, clean_env, cluster, front, rdkafka_soak  # noqa: F401 - fixtures
from tls_support import pki, rdkafka_ssl, to_toml  # noqa: F401 - pki is a fixture
from upstream_identity_support import (  # noqa: F401 - certs and kgates are fixtures
    ROLE_A,
    by_principal,
    certs,
    front_ok,
    kgates,
    metric,
    probes,
)


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



"""Per-principal upstream identity with IAM roles: clients authenticate to
kgate with mTLS client certificates (CN = principal), and kgate reaches the
cluster as each principal's own IAM role, assumed through moto's STS.

    client (CN=alice) --TLS--> kgate --AWS_MSK_IAM as role A--> IamFront --> tansu
    client (CN=bob)   --TLS--> kgate --AWS_MSK_IAM as role B--> IamFront --> tansu

The front (iam_front) verifies every signature, knows only the credentials
MotoSts handed out for an AssumeRole (and kgate's own keys where a test
registers them), gives sessions a 3 s lifetime, and closes a connection
whose session expired. Its per-connection principal is the assumed-role ARN
with the session name, so it shows which identity each connection used.
SCRAM/PLAIN users per principal: test_upstream_identity_users.py.

Run:  bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_upstream_identity.py -q
Env:  UPID_SOAK_S  seconds of the two-role soak (default 36: >= 10 re-authentications)
"""

from __future__ import annotations

import os
import re
import time

import pytest

import aws_mocks
from harness import LOOPBACK, free_port, poll_until
from test_sasl_iam import (  # noqa: F401 - fixtures
    ENV_PRINCIPAL,
    REGION,
    assert_java_clean,
    assert_rdkafka_clean,
    cluster,
    front,
    java_result,
    rdkafka_soak,
    start_java_soak,
)
from tls_support import java_ssl_props, pki, rdkafka_ssl  # noqa: F401 - pki is a fixture
from upstream_identity_support import (  # noqa: F401 - certs and kgates are fixtures
    ACCOUNT,
    BASE,
    ROLE_A,
    ROLE_B,
    assumed,
    by_principal,
    certs,
    env_base,
    front_ok,
    iam,
    kgates,
    list_topics,
    metric,
    probes,
    tls_client_closed,
)

SOAK_S = int(os.environ.get("UPID_SOAK_S", "36"))
STS_TTL_S = 15  # kgate renews at a third of the lifetime left: every ~10 s


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


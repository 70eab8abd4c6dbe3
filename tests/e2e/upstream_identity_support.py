"""Shared pieces of the per-principal upstream identity tests
(test_upstream_identity.py, test_upstream_identity_users.py): client
certificates for alice, bob and carol (mTLS, CN = principal), a kgate
fixture with `[[upstream_identity]]`, and readers for the IAM front's and
kgate's view of which identity each connection used."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from typing import Optional

import pytest

import aws_mocks
from harness import LOOPBACK, Kgate, Proc, Upstream, free_port, kgate_bin, pick_port_base, run_dir, stop_kgate, \
    wait_for_port
from test_sasl_iam import REGION, clean_env
from tls_support import P12_PASS, api_versions_request, client_tls_context, downstream_tls, rdkafka_ssl, to_toml

ACCOUNT = aws_mocks.ACCOUNT
ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/msk-alice"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/msk-bob"
BASE = ("AKIAKGATEBASE0000009", "base-secret-never-valid-for-kafka")


def assumed(role_arn: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[1]}/{session}"


@pytest.fixture(scope="module")
def certs(pki):
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
def kgates(cluster, certs):
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


def front_ok(st: dict, cluster) -> None:
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


def tls_client_closed(port: int, certs, cert: str) -> str:
    """Connects with client certificate `cert`, sends ApiVersions, and returns
    how the connection ended; fails if kgate answered."""
    ctx = client_tls_context(certs, cert)
    with socket.create_connection((LOOPBACK, port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(api_versions_request())
            try:
                data = s.recv(4)
            except (ConnectionError, OSError) as e:
                return f"{type(e).__name__}: {e}"
            assert data == b"", f"kgate answered a refused principal: {data!r}"
            return "closed"


def list_topics(bootstrap: str, certs, cert: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    a = AdminClient({"bootstrap.servers": bootstrap, "error_cb": lambda e: errors.append(e.str()),
                     **rdkafka_ssl(certs, cert)})
    md = a.list_topics(timeout=15)
    assert md.brokers, errors
    return list(md.topics)



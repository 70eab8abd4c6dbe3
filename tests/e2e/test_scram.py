"""SCRAM-SHA-256 and SCRAM-SHA-512 from kgate to a real broker that enforces
them (tansu built with SASL support, ../shared/bin/tansu-sasl), with good and
bad passwords. Clients speak plaintext to kgate and never see SASL."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from harness import (
    LOOPBACK,
    REPO,
    SESSION_TIMEOUT_MS,
    Proc,
    Upstream,
    free_port,
    start_kgate,
    stop_kgate,
    wait_for_port,
    poll_until,
)

TANSU_SASL = Path(os.environ.get("TANSU_SASL_BIN") or REPO.parent / "shared" / "bin" / "tansu-sasl")
USERS = {"SCRAM-SHA-256": ("alice", "alice-secret", "scram256"), "SCRAM-SHA-512": ("bob", "bob-secret", "scram512")}
TOPIC = "scram-topic"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    if not TANSU_SASL.exists():
        pytest.fail(f"{TANSU_SASL} is missing: it ships in shared/bin beside the repository")
    work = tmp_path_factory.mktemp("tansu-sasl")
    port = free_port()
    env = dict(os.environ, STORAGE_ENGINE="sqlite://tansu.db")
    url = f"tcp://{LOOPBACK}:{port}"
    args = ["broker", "--listener-url", url, "--advertised-listener-url", url]

    def start(name, extra):
        p = subprocess.Popen([str(TANSU_SASL), *args, *extra], cwd=work, env=env,
                             stdout=open(work / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
        wait_for_port(port, 30)
        return p

    # Users and the topic are created before authentication is switched on
    # (sqlite storage does not auto-create topics).
    setup = start("setup", [])
    try:
        for mech, (user, password, kind) in USERS.items():
            subprocess.run([str(TANSU_SASL), "user", "create", "--broker", url, "--mechanism", kind, user, password],
                           cwd=work, env=env, check=True, capture_output=True, timeout=60)
        subprocess.run([str(TANSU_SASL), "topic", "create", "--broker", url, "--partitions", "2", TOPIC],
                       cwd=work, env=env, check=True, capture_output=True, timeout=60)
    finally:
        setup.terminate()
        setup.wait(10)
    time.sleep(0.2)
    broker = start("broker", ["--authentication"])
    yield Upstream("tansu-sasl", [(LOOPBACK, port)], (111,), {111: (LOOPBACK, port)}), work
    broker.terminate()
    broker.wait(10)


def kgate_with(sasl_broker, mech: str, password: str, name: str):
    upstream, work = sasl_broker
    user = USERS[mech][0]
    pw = work / f"{name}.pass"
    pw.write_text(password + "\n")
    return start_kgate(upstream, name, ["--upstream-sasl-mechanism", mech, "--upstream-sasl-username", user,
                                        "--upstream-sasl-password-file", str(pw)])


@pytest.mark.parametrize("mech", sorted(USERS))
def test_scram_good_password_produces_and_consumes(sasl_broker, mech):
    kg = kgate_with(sasl_broker, mech, USERS[mech][1], f"scram-{mech}")
    try:
        boot = kg.bootstrap_servers
        p = Producer({"bootstrap.servers": boot, "enable.idempotence": True})
        sent = [f"{mech}-{i}" for i in range(50)]
        for i, v in enumerate(sent):
            p.produce(TOPIC, key=str(i), value=v)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": boot, "group.id": f"g-{mech}", "auto.offset.reset": "earliest",
                      "session.timeout.ms": SESSION_TIMEOUT_MS})
        c.subscribe([TOPIC])
        got, deadline = [], time.time() + 40
        while time.time() < deadline and not set(sent) <= set(got):
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value().decode())
        c.close()
        mine = [g for g in got if g.startswith(mech)]
        assert sorted(mine) == sorted(sent)
        assert len(mine) == len(set(mine)), "duplicates"
        assert "authentication with" not in kg.proc.log_text(), kg.proc.log_tail()
    finally:
        stop_kgate(kg)


@pytest.mark.parametrize("mech", sorted(USERS))
def test_scram_bad_password_is_a_clear_error(sasl_broker, mech):
    kg = kgate_with(sasl_broker, mech, "not-the-password", f"scram-bad-{mech}")
    try:
        admin = AdminClient({"bootstrap.servers": kg.bootstrap_servers, "socket.timeout.ms": 3000})
        with pytest.raises(Exception):
            admin.list_topics(timeout=5)
        line = poll_until("a SASL failure in kgate's log",
                          lambda: next((l for l in kg.proc.log_text().splitlines()
                                        if f"{mech} authentication with" in l and "failed" in l), None), 15)
        assert "check username and password" in line, line
        assert "not-the-password" not in kg.proc.log_text(), "a password reached the log"
        assert kg.proc.alive()
    finally:
        stop_kgate(kg)

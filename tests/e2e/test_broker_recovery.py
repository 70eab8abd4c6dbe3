"""Broker pause and restart with clients running (issue 14).

A tansu broker with sqlite storage (it keeps its log across a restart) runs
two idempotent producers (acks=all): one through kgate and one connected
directly, the control. The broker is SIGSTOPped for 10 s, then killed and
restarted on the same port. kgate is never restarted. Asserted: kgate stays
up, both producers carry on after each event without an application
restart, and every record the producer through kgate saw acknowledged is in
the log, as for the control. The recovery times (event to the first new
acknowledgement) are measured and printed, not asserted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness import LOOPBACK, REPO, Proc, Upstream, poll_until, port_is_free, record_timing, wait_for_port
from test_ops import ContinuousProducer, read_all, start_ops_kgate

TANSU_SQLITE = Path(os.environ.get("TANSU_SASL_BIN") or REPO.parent / "shared" / "bin" / "tansu-sasl")
PARTITIONS = 3


def low_free_port() -> int:
    """A free port below the ephemeral range, so the broker can bind the
    same one again after a restart."""
    for _ in range(200):
        p = random.randint(20000, 32000)
        if port_is_free(p):
            return p
    raise RuntimeError("no free port below 32768")


class Broker:
    """tansu on sqlite storage in `work`, restartable on the same port."""

    def __init__(self, work: Path):
        if not TANSU_SQLITE.exists():
            pytest.fail(f"{TANSU_SQLITE} is missing: it ships in shared/bin beside the repository")
        self.work, self.port, self.proc, self.n = work, low_free_port(), None, 0
        self.url = f"tcp://{LOOPBACK}:{self.port}"

    def env(self) -> dict:
        # tansu takes the part after sqlite:// as a URL host and path, so
        # the database is named relative to its working directory.
        return dict(os.environ, STORAGE_ENGINE="sqlite://tansu.db")

    def start(self) -> None:
        self.n += 1
        env = self.env()
        argv = ["env", "-C", self.work, TANSU_SQLITE, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url]
        deadline = time.monotonic() + 20
        while True:
            self.proc = Proc(f"tansu-sqlite-{self.n}", argv, env=env)
            try:
                wait_for_port(self.port, 30, self.proc)
                return
            except (RuntimeError, TimeoutError):
                self.proc.stop()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_topic(self, topic: str) -> None:
        env = self.env()
        subprocess.run([str(TANSU_SQLITE), "topic", "create", "--broker", self.url, "--partitions", str(PARTITIONS),
                        topic], cwd=self.work, env=env, check=True, capture_output=True, timeout=60)

    def upstream(self) -> Upstream:
        return Upstream("tansu-sqlite", [(LOOPBACK, self.port)], (111,), {111: (LOOPBACK, self.port)})


def first_ack_after(prod: ContinuousProducer, t0: float, timeout: float = 90) -> float:
    """Seconds from `t0` until the producer has a new acknowledgement."""
    n = len(prod.acked)
    poll_until(f"a new acknowledgement ({prod.tag})", lambda: len(prod.acked) > n, timeout, interval=0.02)
    return time.monotonic() - t0


def check_log(bootstrap: str, topic: str, prod: ContinuousProducer) -> tuple[list[int], list[int]]:
    seqs = read_all(bootstrap, topic, PARTITIONS, prod.tag, len(prod.acked), timeout=60)
    counts: dict[int, int] = {}
    for s in seqs:
        counts[s] = counts.get(s, 0) + 1
    missing = sorted(set(prod.acked) - set(counts))
    dups = sorted(s for s, n in counts.items() if n > 1)
    return missing, dups


def test_broker_pause_and_restart_recover_through_kgate(tmp_path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    topic = f"recovery-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic)
    okg = start_ops_kgate("recovery", broker.upstream(), {})
    via = ContinuousProducer(okg.bootstrap, topic, "via-" + uuid.uuid4().hex[:6])
    direct = ContinuousProducer(f"{LOOPBACK}:{broker.port}", topic, "direct-" + uuid.uuid4().hex[:6])
    timings: dict[str, float] = {}
    try:
        via.start()
        direct.start()
        poll_until("records acknowledged through kgate and directly",
                   lambda: len(via.acked) >= 200 and len(direct.acked) >= 200, 60)

        # Pause: SIGSTOP for 10 s.
        os.kill(broker.proc.pid, signal.SIGSTOP)
        time.sleep(10)
        os.kill(broker.proc.pid, signal.SIGCONT)
        t0 = time.monotonic()
        timings["pause_kgate_s"] = first_ack_after(via, t0)
        timings["pause_direct_s"] = first_ack_after(direct, t0)
        poll_until("traffic flowing after the pause", lambda: len(via.acked) >= 400, 60)

        # Restart: SIGKILL, then the same port again.
        broker.proc.popen.kill()
        broker.proc.popen.wait(10)
        broker.proc.stop()
        killed = time.monotonic()
        time.sleep(1)
        broker.start()
        t0 = time.monotonic()
        timings["restart_gap_s"] = t0 - killed
        timings["restart_kgate_s"] = first_ack_after(via, t0)
        timings["restart_direct_s"] = first_ack_after(direct, t0)
        before = len(via.acked)
        poll_until("traffic flowing after the restart", lambda: len(via.acked) >= before + 200, 60)
    finally:
        via.stop_event.set()
        direct.stop_event.set()
        via.join(90)
        direct.join(90)
    try:
        assert okg.proc.alive(), "kgate kept running through the pause and the restart"
        problems = []
        for name, prod in (("through kgate", via), ("direct (control)", direct)):
            missing, dups = check_log(f"{LOOPBACK}:{broker.port}", topic, prod)
            print(f"{name}: sent {prod.sent}, acked {len(prod.acked)}, failed {len(prod.failed)}, "
                  f"unflushed {prod.left}, missing {len(missing)}, duplicated {len(dups)}")
            if missing:
                problems.append(f"{name}: {len(missing)} acknowledged records missing: {missing[:10]}")
            timings[f"dups_{name.split()[0]}"] = len(dups)
        assert not problems, "\n".join(problems)
        scrape = okg.scrape()
        rates = scrape.find("kgate_upstream_connect_rate")
        assert rates and all(v > 0 for _, v in rates), f"per-broker rate exposed: {rates}"
        assert scrape.has("kgate_upstream_connect_refusals_total")
        assert len(via.acked) > 600, f"the producer through kgate kept going ({len(via.acked)} acked)"
        print("recovery:", ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in timings.items()))
        record_timing("broker pause/restart recovery", timings)
    finally:
        okg.stop()
        broker.proc.stop()

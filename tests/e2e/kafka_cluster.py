"""A real Apache Kafka 4 cluster (KRaft) on loopback for kgate's end-to-end tests.

Three nodes, ids 1-3 like MSK, each a combined broker+controller (one JVM per
node: quicker to start on 2 cores than separate controllers), formatted with
Kafka's own StorageTool and started once per pytest session (the
`kafka_cluster` fixture in conftest.py). The jars come from Maven Central
through tests/setup.sh (tests/e2e/kafka/broker/pom.xml) into
target/e2e-deps/kafka/broker/lib; nothing else is downloaded.

Listeners per node, mirroring MSK's ports:

  PLAINTEXT  127.0.0.1:<plain>  advertised as 127.0.0.1 (MSK 9092); also the
             inter-broker listener; the tests' ground-truth reads use it
  SSL        127.0.0.1:<ssl>    client certificate required (MSK 9094);
             advertised as b-N.kafka-e2e.test:<ssl>, a name that never
             resolves (.test is reserved), so only a dial mapping reaches it
  SASL_SSL   127.0.0.1:<sasl>   SCRAM-SHA-512 (MSK 9096), advertised like SSL,
             with connections.max.reauth.ms = REAUTH_MS so the broker itself
             enforces KIP-368 re-authentication
  CONTROLLER 127.0.0.1:<ctrl>   the KRaft quorum

The broker's certificate comes from the dev PKI (certs-dev/gen.sh): issued for
b-1..b-3.kafka-e2e.test, as a PKCS#12 keystore; the truststore is the dev CA
(PEM). The SCRAM user is created by StorageTool at format time.
StandardAuthorizer is on (so ACL listing is real) with
allow.everyone.if.no.acl.found=true.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from harness import DEPS, LOOPBACK, REPO, Proc, Upstream, port_is_free, record_timing, wait_for_port

KAFKA_VERSION = "4.1.1"
KAFKA_LIB = DEPS / "kafka" / "broker" / "lib"
CLIENTS4_LIB = DEPS / "kafka" / "clients4" / "lib"
NODE_IDS = (1, 2, 3)
HOST_SUFFIX = "kafka-e2e.test"
SCRAM_USER = "kgate"
SCRAM_PASSWORD = "kgate-scram-secret"
REAUTH_MS = 5000
P12_PASS = "changeit"
HEAP = "-Xmx384m"
GEN_SH = REPO / "certs-dev" / "gen.sh"
# Kafka's ports stay in 10000-19999: kgate's port bases are picked in
# 20000-32767 (harness.pick_port_base), so the two never collide, and both
# stay below the kernel's ephemeral range.
PORT_RANGE = (10000, 19999)


def tls_host(node_id: int) -> str:
    return f"b-{node_id}.{HOST_SUFFIX}"


def java() -> str:
    j = shutil.which("java")
    if not j:
        pytest.fail("java not found: run tests/setup.sh")
    return j


def broker_classpath() -> str:
    if not (KAFKA_LIB / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        pytest.fail(
            f"Apache Kafka {KAFKA_VERSION} jars are missing from {KAFKA_LIB}: run tests/setup.sh "
            "(it fetches them with Maven from tests/e2e/kafka/broker/pom.xml)",
            pytrace=False,
        )
    return str(KAFKA_LIB / "*")


def clients4_classpath() -> str:
    if not (CLIENTS4_LIB / f"kafka-clients-{KAFKA_VERSION}.jar").exists():
        pytest.fail(
            f"kafka-clients {KAFKA_VERSION} is missing from {CLIENTS4_LIB}: run tests/setup.sh "
            "(it fetches it with Maven from tests/e2e/kafka/clients4/pom.xml)",
            pytrace=False,
        )
    return str(CLIENTS4_LIB / "*")


@dataclass
class NodePorts:
    plain: int
    ssl: int
    sasl: int
    ctrl: int

    def all(self) -> list[int]:
        return [self.plain, self.ssl, self.sasl, self.ctrl]


def pick_ports(n: int) -> list[int]:
    chosen: list[int] = []
    lo, hi = PORT_RANGE
    for _ in range(20 * n + 100):
        p = random.randint(lo, hi)
        if p not in chosen and port_is_free(p):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError(f"could not find {n} free ports in {PORT_RANGE}")


@dataclass
class Pki:
    dir: Path

    def __call__(self, name: str) -> str:
        p = self.dir / name
        if not p.exists():
            raise FileNotFoundError(p)
        return str(p)


def make_pki(out: Path) -> Pki:
    """The dev PKI plus the brokers' certificate and PKCS#12 keystore."""
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: run tests/setup.sh")

    def run(argv):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(map(str, argv))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)

    run(["bash", str(GEN_SH), str(out)])
    names = [tls_host(n) for n in NODE_IDS]
    run(["bash", str(GEN_SH), "--issue", str(out), "kafka-broker", "server", *names])
    run(["openssl", "pkcs12", "-export", "-in", str(out / "kafka-broker.pem"), "-inkey", str(out / "kafka-broker.key"),
         "-certfile", str(out / "ca.pem"), "-name", "kafka-broker", "-out", str(out / "kafka-broker.p12"),
         "-passout", f"pass:{P12_PASS}"])
    return Pki(out)


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class KafkaCluster:
    dir: Path
    pki: Pki
    cluster_id: str
    ports: dict[int, NodePorts]
    procs: dict[int, Optional[Proc]] = field(default_factory=dict)
    startup_s: float = 0.0
    format_s: float = 0.0

    # ---- addresses ----------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(f"{LOOPBACK}:{self.ports[n].plain}" for n in NODE_IDS)

    def upstream(self) -> Upstream:
        """The PLAINTEXT listeners as a harness Upstream."""
        return Upstream(
            "kafka",
            [(LOOPBACK, self.ports[n].plain) for n in NODE_IDS],
            NODE_IDS,
            {n: (LOOPBACK, self.ports[n].plain) for n in NODE_IDS},
        )

    def tls_upstream(self, kind: str) -> Upstream:
        """The SSL or SASL_SSL listeners, by their advertised (unresolvable) names."""
        port = {"ssl": lambda p: p.ssl, "sasl": lambda p: p.sasl}[kind]
        return Upstream(
            f"kafka-{kind}",
            [(tls_host(n), port(self.ports[n])) for n in NODE_IDS],
            NODE_IDS,
            {n: (tls_host(n), port(self.ports[n])) for n in NODE_IDS},
        )

    def dial(self, kind: str) -> list[dict]:
        """[[dial]] entries: b-N.kafka-e2e.test:P -> 127.0.0.1:P."""
        port = {"ssl": lambda p: p.ssl, "sasl": lambda p: p.sasl}[kind]
        return [{"broker": f"{tls_host(n)}:{port(self.ports[n])}", "connect": f"{LOOPBACK}:{port(self.ports[n])}"}
                for n in NODE_IDS]

    def all_upstream_ports(self) -> set[int]:
        return {p for n in NODE_IDS for p in self.ports[n].all()}

    # ---- configuration --------------------------------------------------------
    def node_dir(self, n: int) -> Path:
        return self.dir / f"node-{n}"

    def properties(self, n: int) -> Path:
        p = self.ports[n]
        voters = ",".join(f"{i}@{LOOPBACK}:{self.ports[i].ctrl}" for i in NODE_IDS)
        host = tls_host(n)
        props = {
            "process.roles": "broker,controller",
            "node.id": n,
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{p.plain},SSL://{LOOPBACK}:{p.ssl},"
                         f"SASL_SSL://{LOOPBACK}:{p.sasl},CONTROLLER://{LOOPBACK}:{p.ctrl}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{p.plain},SSL://{host}:{p.ssl},SASL_SSL://{host}:{p.sasl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.node_dir(n) / "data",
            "num.partitions": 1,
            "default.replication.factor": 1,
            "offsets.topic.replication.factor": 3,
            "offsets.topic.num.partitions": 6,
            "transaction.state.log.replication.factor": 3,
            "transaction.state.log.min.isr": 2,
            "transaction.state.log.num.partitions": 3,
            "group.initial.rebalance.delay.ms": 0,
            "group.consumer.heartbeat.interval.ms": 1000,
            "group.consumer.min.heartbeat.interval.ms": 1000,
            "group.consumer.session.timeout.ms": 6000,
            "group.consumer.min.session.timeout.ms": 6000,
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.replica.fetchers": 1,
            "background.threads": 2,
            "log.cleaner.enable": "false",
            "auto.leader.rebalance.enable": "false",
            "unclean.leader.election.enable": "false",
            # TLS (SSL and SASL_SSL): the dev PKI
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": self.pki("kafka-broker.p12"),
            "ssl.keystore.password": P12_PASS,
            "ssl.key.password": P12_PASS,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.pki("ca.pem"),
            "listener.name.ssl.ssl.client.auth": "required",
            "listener.name.sasl_ssl.ssl.client.auth": "none",
            # SASL_SSL: SCRAM-SHA-512 with broker-enforced re-authentication
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.connections.max.reauth.ms": REAUTH_MS,
            # ACLs are real (DescribeAcls works), but nothing is denied by default
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "true",
            "super.users": "User:ANONYMOUS",
        }
        path = self.node_dir(n) / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def jvm(self, n: int, main: str, *args: str, heap: str = HEAP) -> list[str]:
        return [
            java(), heap, "-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.node_dir(n)}", "-cp", broker_classpath(), main, *args,
        ]

    # ---- life cycle -----------------------------------------------------------
    def format(self) -> None:
        t0 = time.monotonic()
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        pending = []
        for n in NODE_IDS:
            props = self.properties(n)
            argv = self.jvm(n, "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(props),
                            "--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]",
                            heap="-Xmx256m")
            pending.append((n, argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        for n, argv, p in pending:
            out, _ = p.communicate(timeout=180)
            if p.returncode != 0:
                pytest.fail(f"Kafka StorageTool format of node {n} failed ({p.returncode}):\n$ {' '.join(argv)}\n{out}",
                            pytrace=False)
        self.format_s = time.monotonic() - t0

    def start_node(self, n: int) -> Proc:
        proc = Proc(f"kafka-node-{n}", self.jvm(n, "kafka.Kafka", str(self.node_dir(n) / "server.properties")))
        self.procs[n] = proc
        return proc

    def stop_node(self, n: int, timeout: float = 60) -> None:
        proc = self.procs.get(n)
        if proc is not None:
            proc.stop(timeout=timeout)
        self.procs[n] = None

    def alive(self, n: int) -> bool:
        p = self.procs.get(n)
        return p is not None and p.alive()

    def wait_ready(self, nodes=NODE_IDS, timeout: float = 150) -> None:
        """Every node's listeners accept connections and every node is an
        unfenced broker in the cluster's metadata."""
        deadline = time.monotonic() + timeout
        for n in nodes:
            for port in (self.ports[n].plain, self.ports[n].ssl, self.ports[n].sasl):
                wait_for_port(port, max(1.0, deadline - time.monotonic()), self.procs[n])
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        last = None
        while time.monotonic() < deadline:
            for n in NODE_IDS:
                p = self.procs.get(n)
                if p is not None and not p.alive():
                    raise RuntimeError(f"Kafka node {n} exited with {p.popen.returncode}\n{p.log_tail(80)}")
            try:
                md = admin.list_topics(timeout=5)
                last = sorted(md.brokers)
                if set(nodes) <= set(md.brokers):
                    return
            except Exception as e:  # noqa: BLE001 - retried, reported below
                last = e
            time.sleep(0.3)
        logs = "\n".join(self.procs[n].log_tail(60) for n in nodes if self.procs.get(n))
        raise TimeoutError(f"Kafka nodes {list(nodes)} not all registered within {timeout}s; last metadata: {last}\n{logs}")

    def ensure_all_up(self) -> None:
        """Restarts any node a test left stopped, and waits for all three."""
        down = [n for n in NODE_IDS if not self.alive(n)]
        for n in down:
            self.start_node(n)
        self.wait_ready()

    def stop(self) -> None:
        """All nodes at once (one by one, the last ones wait for a quorum
        that is gone); the data is thrown away anyway."""
        import signal

        for n in NODE_IDS:
            p = self.procs.get(n)
            if p is not None and p.alive():
                p.popen.send_signal(signal.SIGTERM)
        for n in NODE_IDS:
            self.stop_node(n, timeout=15)


def start_cluster(base: Path) -> KafkaCluster:
    t0 = time.monotonic()
    broker_classpath()
    pki = make_pki(base / "pki")
    ports = pick_ports(4 * len(NODE_IDS))
    node_ports = {n: NodePorts(*ports[4 * i: 4 * i + 4]) for i, n in enumerate(NODE_IDS)}
    # A Kafka cluster id is 16 bytes, base64url without padding (22 chars).
    import base64

    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cluster = KafkaCluster(base / "cluster", pki, cid, node_ports)
    cluster.dir.mkdir(parents=True, exist_ok=True)
    cluster.format()
    t_start = time.monotonic()
    for n in NODE_IDS:
        cluster.start_node(n)
    try:
        cluster.wait_ready()
    except Exception as e:  # noqa: BLE001
        cluster.stop()
        pytest.fail(f"the Apache Kafka {KAFKA_VERSION} cluster did not start: {e}", pytrace=False)
    cluster.startup_s = time.monotonic() - t0
    record_timing(f"Apache Kafka {KAFKA_VERSION} cluster (3 KRaft nodes) start-up",
                  {"pki+format": t_start - t0, "nodes up": time.monotonic() - t_start, "total": cluster.startup_s})
    return cluster


# --------------------------------------------------------------------------
# Helpers for the tests: kgate with its admin listener, metrics, Java 4.x
# --------------------------------------------------------------------------


def admin_port() -> int:
    return pick_ports(1)[0]


def scrape(port: int) -> dict[str, float]:
    """kgate's /metrics as {'name{labels}': value}."""
    import urllib.request

    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    out["__families__"] = 0.0
    families = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
    out.update({f"__family__{f}": 1.0 for f in families})
    return out


def has_family(metrics: dict[str, float], name: str) -> bool:
    return f"__family__{name}" in metrics


def requests_of(metrics: dict[str, float], api: str) -> float:
    return metrics.get(f'kgate_requests_total{{api_key="{api}"}}', 0.0)


def responses_of(metrics: dict[str, float], api: str) -> float:
    return metrics.get(f'kgate_responses_total{{api_key="{api}"}}', 0.0)


def java4(classes: Path, *args: str, timeout: float = 240, log_levels: Optional[dict] = None,
          name: str = "java4") -> tuple[dict, str]:
    """Runs KafkaClusterOps with kafka-clients 4.x; returns (its JSON, its output)."""
    import json

    argv = java4_argv(classes, *args, log_levels=log_levels)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    output = f"$ {' '.join(argv)}\nexit {r.returncode}\n--- stderr ---\n{r.stderr[-20000:]}\n--- stdout ---\n{r.stdout[-4000:]}"
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    try:
        return json.loads(lines[-1]), output
    except (IndexError, ValueError):
        raise AssertionError(f"KafkaClusterOps {args[0]} printed no JSON\n{output}") from None


def java4_argv(classes: Path, *args: str, log_levels: Optional[dict] = None) -> list[str]:
    props = ["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true"]
    for logger, level in (log_levels or {}).items():
        props.append(f"-Dorg.slf4j.simpleLogger.log.{logger}={level}")
    return [java(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *props, "-cp",
            f"{classes}:{clients4_classpath()}", "KafkaClusterOps", *args]


def start_kgate_with_metrics(cluster: KafkaCluster, name: str):
    """kgate in front of the cluster's PLAINTEXT listeners with /metrics on
    `kg.admin_port`."""
    from harness import DIRECT, start_kgate

    if DIRECT:  # a harness self-check mode, never used by run-all.sh
        pytest.skip("KGATE_DIRECT=1: this test reads kgate's own metrics and logs")
    port = admin_port()
    kg = start_kgate(cluster.upstream(), name, ["--admin-listen", f"{LOOPBACK}:{port}"],
                     avoid_ports=cluster.all_upstream_ports() | {port})
    kg.admin_port = port
    return kg


def last_json(text: str, key: str = '{"mode"') -> dict:
    import json

    for line in reversed(text.splitlines()):
        if line.startswith(key):
            return json.loads(line)
    raise AssertionError(f"no JSON line starting {key} in the output")

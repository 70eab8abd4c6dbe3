"""One TLS port for every broker (SNI routing), and PROXY protocol.

Real peers only:
- librdkafka (confluent-kafka) against librdkafka's 3-broker mock cluster
  through kgate's one SNI port: produce, consume, commit; every broker
  address any client saw is a pattern name on the shared port.
- The Java client through the same kind of port against tansu behind
  stunnel with mTLS (the mock cluster answers no CreateTopics, which the
  Java admin needs).
- An unknown or missing SNI name gets a TLS alert and a log line naming the
  client and the name.
- Debian's HAProxy with send-proxy-v2 (and send-proxy, v1) in front of the
  SNI port, as an NLB stand-in: kgate logs the original client address,
  counts the headers in /metrics, `required` refuses a direct client, and a
  malformed header closes the connection with a log line naming the client.
- `optional` on a plaintext listener: a client reached once through HAProxy
  send-proxy-v2 and once directly; both are served, and the log shows the
  header's address for the first.

Names resolve to 127.0.0.1 through entries this module writes to /etc/hosts
(and removes afterwards); the tests run as root in CI.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid

import pytest

from harness import (
    LOOPBACK,
    Proc,
    Seen,
    Upstream,
    kgate_bin,
    poll_until,
    run_dir,
    start_kgate,
    stop_kgate,
    wait_for_port,
)
from scenarios import (
    KEYS,
    RdkafkaLog,
    check_phase,
    make_records,
    rdkafka_conf,
    rdkafka_consume,
    rdkafka_consumer_conf,
    rdkafka_produce,
)
from test_librdkafka_mock import mock_cluster  # noqa: F401 - fixture used by name
from test_sasl_iam import cluster  # noqa: F401 - fixture used by name (tansu behind the IAM front)
from tls_support import (  # noqa: F401 - fixtures are used by name
    Pki,
    TlsBroker,
    free_port_on,
    java_ssl_props,
    java_tls_classes,
    java_tls_client,
    log_mark,
    mtls_broker,
    pki,
    start_kgate_toml,
    upstream_tls,
    wait_for_log,
)

DOMAIN = "kafka.e2e-sni.internal"
BOOT = f"bootstrap.{DOMAIN}"
PATTERN = "b-{node_id}." + DOMAIN
HOSTS_MARK = "# kgate-e2e-sni"
NODE_IDS = (1, 2, 3, 4, 111)
RECORDS = 200


def pattern_id(host: str) -> int | None:
    pre, suf = PATTERN.split("{node_id}")
    if host.startswith(pre) and host.endswith(suf) and host[len(pre):-len(suf)].isdigit():
        return int(host[len(pre):-len(suf)])
    return None


@pytest.fixture(scope="module")
def hosts():
    """/etc/hosts entries for the bootstrap name and b-N names."""
    names = [BOOT] + [PATTERN.format(node_id=n) for n in NODE_IDS]
    try:
        with open("/etc/hosts") as f:
            before = f.read()
        with open("/etc/hosts", "a") as f:
            f.write("".join(f"127.0.0.1 {n} {HOSTS_MARK}\n" for n in names))
    except PermissionError:
        pytest.fail("cannot write /etc/hosts: the SNI tests need root (CI runs as root) to resolve "
                    f"{BOOT} and {PATTERN} to 127.0.0.1", pytrace=False)
    for n in names:
        assert socket.gethostbyname(n) == "127.0.0.1", n
    yield names
    with open("/etc/hosts") as f:
        now = f.read()
    with open("/etc/hosts", "w") as f:
        f.write("".join(l for l in now.splitlines(keepends=True) if HOSTS_MARK not in l) or before)


@pytest.fixture(scope="module")
def sni_cert(pki: Pki) -> tuple[str, str]:
    return pki.issue("sni-server", "server", BOOT, f"*.{DOMAIN}")


def sni_section(port: int, **extra) -> dict:
    s = {"listen": f"{LOOPBACK}:{port}", "bootstrap_name": BOOT, "broker_pattern": PATTERN}
    s.update(extra)
    return s


def downstream(cert: tuple[str, str]) -> dict:
    return {"enabled": True, "cert_file": cert[0], "key_file": cert[1]}


def rdk_ssl(pki: Pki) -> dict:
    return {"security.protocol": "SSL", "ssl.ca.location": pki("ca.pem")}


def check_pattern_addresses(seen: list[Seen], port: int, forbid: set) -> None:
    """Every address a client saw is a pattern name on the shared port (or
    the bootstrap name), never an upstream address."""
    assert seen, "the client reported no broker addresses"
    bad = []
    for s in dict.fromkeys(seen):
        nid = pattern_id(s.host)
        ok = s.port == port and (nid is not None or s.host == BOOT)
        if ok and s.node_id is not None and nid is not None:
            ok = nid == s.node_id
        if (s.host, s.port) in forbid:
            ok = False
        if not ok:
            bad.append(str(s))
    assert not bad, f"addresses that are not {PATTERN} on port {port}:\n" + "\n".join(bad)


def roundtrip(bootstrap: str, pki: Pki, tag: str, topic: str | None = None) -> tuple[list[Seen], str, set[int]]:
    """librdkafka: produce RECORDS, consume them in a group, commit. The topic
    is created on first use unless `topic` names one that exists."""
    from confluent_kafka import Producer

    run = uuid.uuid4().hex[:8]
    topic, group = topic or f"sni-{tag}-{run}", f"sni-g-{run}"
    log = RdkafkaLog(f"sni-{run}")
    p = Producer(rdkafka_conf(bootstrap, log, f"sni-p-{run}", **rdk_ssl(pki),
                              **{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))

    def ready():
        p.poll(0)
        md = p.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        return t is not None and t.error is None and t.partitions and all(x.leader > 0 for x in t.partitions.values()) and md

    md = poll_until(f"topic {topic} through the SNI port", ready, 40, 0.3)
    seen = [Seen("producer metadata", b.host, b.port, n) for n, b in md.brokers.items()]
    leaders = {x.leader for x in md.topics[topic].partitions.values()}
    sent = make_records(run, 0, RECORDS, [0] * KEYS)
    rdkafka_produce(p, topic, run, sent)
    assert p.flush(20) == 0, "records left unsent\n" + log.text()
    conf = rdkafka_consumer_conf(bootstrap, log, f"sni-c-{run}", group)
    conf.update(rdk_ssl(pki))
    got, committed, s2 = rdkafka_consume(conf, topic, run, sent, 60)
    ch = check_phase(run, tag, sent, got, [])
    assert ch.consumed == RECORDS and ch.duplicates == 0 and ch.missing == 0, "\n".join(ch.problems) + "\n" + log.text()
    assert committed, "no offsets committed"
    return seen + s2 + log.seen(), log.text(), leaders


# ==========================================================================
# librdkafka, 3 brokers, one port
# ==========================================================================


@pytest.fixture(scope="module")
def mock_sni(mock_cluster: Upstream, hosts, sni_cert):  # noqa: F811
    port = free_port_on(LOOPBACK)
    kg = start_kgate_toml("sni-mock", mock_cluster, {
        "downstream_tls": downstream(sni_cert),
        "sni": sni_section(port),
        "log_level": "kgate=debug",
    })
    wait_for_port(port, 10, kg.proc)
    yield kg, port
    stop_kgate(kg)


def test_librdkafka_three_brokers_through_one_sni_port(mock_sni, mock_cluster: Upstream, pki: Pki) -> None:  # noqa: F811
    kg, port = mock_sni
    seen, log, leaders = roundtrip(f"{BOOT}:{port}", pki, "mock")
    ids = {pattern_id(s.host) for s in seen if pattern_id(s.host) is not None}
    assert ids == {1, 2, 3}, f"pattern names seen: {ids}\n{log[-3000:]}"
    check_pattern_addresses(seen, port, set(mock_cluster.addresses.values()) | set(mock_cluster.bootstrap))
    # Every leader was reached by its name (the debug span shows the SNI);
    # records went to each leader, so the routing was right.
    text = kg.proc.log_text()
    assert leaders and leaders <= {1, 2, 3}, leaders
    for n in leaders:
        assert f"sni=b-{n}.{DOMAIN}" in text, f"no connection routed by b-{n}\n{kg.proc.log_tail(40)}"


@pytest.mark.parametrize("name", ["evil.kafka.e2e-sni.internal", "b-77.kafka.e2e-sni.internal", None])
def test_unknown_or_missing_sni_is_refused_with_an_alert(name, mock_sni, pki: Pki) -> None:
    kg, port = mock_sni
    mark = log_mark(kg.proc)
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    if name is None:
        ctx.check_hostname = False
    raw = socket.create_connection((LOOPBACK, port), timeout=10)
    local = raw.getsockname()
    with pytest.raises(ssl.SSLError) as e:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.recv(1)
    assert "ACCESS_DENIED" in str(e.value).upper(), f"not a TLS alert: {e.value}"
    shown = name or "<none>"
    line = wait_for_log(kg.proc, rf"SNI name .*{shown}.*refused", 5, since=mark)
    assert f"{local[0]}:{local[1]}" in line, f"the log line does not name the client {local}: {line}"
    assert kg.proc.alive()


# ==========================================================================
# Java, against tansu behind stunnel (upstream mTLS)
# ==========================================================================


def test_java_client_through_one_sni_port_with_upstream_mtls(pki: Pki, mtls_broker: TlsBroker, hosts, sni_cert,  # noqa: F811
                                                             java_tls_classes) -> None:  # noqa: F811
    port = free_port_on(LOOPBACK)
    kg = start_kgate_toml("sni-java", mtls_broker.upstream, {
        "upstream_tls": upstream_tls(pki),
        "downstream_tls": downstream(sni_cert),
        "sni": sni_section(port),
    })
    try:
        wait_for_port(port, 10, kg.proc)
        tag = uuid.uuid4().hex[:6]
        j, out = java_tls_client(java_tls_classes, java_ssl_props(pki, None), "roundtrip",
                                 f"{BOOT}:{port}", f"sni-java-{tag}", f"g-sni-java-{tag}", str(RECORDS))
        assert j.get("ok"), f"{j}\n{out}\n--- kgate ---\n{kg.proc.log_tail(40)}"
        assert j.get("consumed") == RECORDS and j.get("duplicates") == 0 and j.get("missing") == 0, j
        # DescribeCluster through the port: the one broker (tansu's 111) by
        # its pattern name on the shared port.
        j, out = java_tls_client(java_tls_classes, java_ssl_props(pki, None), "probe", f"{BOOT}:{port}")
        assert j.get("ok") and j.get("nodes") == [f"111@b-111.{DOMAIN}:{port}"], f"{j}\n{out}"
    finally:
        stop_kgate(kg)


# ==========================================================================
# HAProxy with PROXY protocol in front of the SNI port
# ==========================================================================


def start_haproxy(v2_port: int, v1_port: int, backend_port: int) -> Proc:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not shutil.which(binary):
        pytest.fail("haproxy not found: run tests/setup.sh (apt-get install haproxy)", pytrace=False)
    cfg = run_dir() / f"haproxy-{uuid.uuid4().hex[:6]}.cfg"
    cfg.write_text(f"""
global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend v2
    bind {LOOPBACK}:{v2_port}
    default_backend kgate_v2
backend kgate_v2
    server k {LOOPBACK}:{backend_port} send-proxy-v2
frontend v1
    bind {LOOPBACK}:{v1_port}
    default_backend kgate_v1
backend kgate_v1
    server k {LOOPBACK}:{backend_port} send-proxy
""")
    r = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"haproxy -c: {r.stdout}{r.stderr}"
    p = Proc("haproxy-sni", [binary, "-db", "-f", str(cfg)])
    wait_for_port(v2_port, 10, p)
    wait_for_port(v1_port, 10, p)
    return p


def tls_probe_from(source: str, port: int, pki: Pki) -> tuple[str, int]:
    """A TLS client bound to `source` (a 127/8 address) sends ApiVersions
    with the bootstrap name; returns its local address."""
    raw = socket.create_connection((LOOPBACK, port), timeout=10, source_address=(source, 0))
    local = raw.getsockname()
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    with ctx.wrap_socket(raw, server_hostname=BOOT) as s:
        body = b"\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05probe"
        s.sendall(len(body).to_bytes(4, "big") + body)
        n = int.from_bytes(s.recv(4), "big")
        assert n > 0
    return local


def metric(admin: int, name: str, label: str) -> float:
    text = urllib.request.urlopen(f"http://{LOOPBACK}:{admin}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def behind_haproxy(mock_cluster: Upstream, hosts, sni_cert):  # noqa: F811
    port, v2, v1, admin = (free_port_on(LOOPBACK) for _ in range(4))
    kg = start_kgate_toml("sni-haproxy", mock_cluster, {
        "downstream_tls": downstream(sni_cert),
        # Clients must come back through the load balancer's port.
        "sni": sni_section(port, advertised_port=v2, proxy_protocol="required"),
        "admin_listen": f"{LOOPBACK}:{admin}",
        "log_level": "kgate=debug",
    })
    wait_for_port(port, 10, kg.proc)
    hp = start_haproxy(v2, v1, port)
    yield kg, port, v2, v1, admin
    hp.stop()
    stop_kgate(kg)


def test_haproxy_v2_clients_work_and_the_original_address_is_logged(behind_haproxy, mock_cluster, pki: Pki) -> None:  # noqa: F811
    kg, port, v2, _v1, admin = behind_haproxy
    before = metric(admin, "kgate_proxy_protocol_total", 'result="v2"')
    mark = log_mark(kg.proc)
    local = tls_probe_from("127.0.0.5", v2, pki)
    line = wait_for_log(kg.proc, r"PROXY protocol header.*127\.0\.0\.5", 5, since=mark)
    assert f"127.0.0.5:{local[1]}" in line, line
    # The session's span names the original client, not HAProxy.
    wait_for_log(kg.proc, rf"client=127\.0\.0\.5:{local[1]}", 5, since=mark)
    seen, _, _ = roundtrip(f"{BOOT}:{v2}", pki, "haproxy")
    check_pattern_addresses(seen, v2, set(mock_cluster.addresses.values()))
    after = metric(admin, "kgate_proxy_protocol_total", 'result="v2"')
    assert after >= before + 2, f"v2 headers counted: {before} -> {after}"


def test_haproxy_v1_works_too(behind_haproxy, pki: Pki) -> None:
    kg, _port, _v2, v1, admin = behind_haproxy
    before = metric(admin, "kgate_proxy_protocol_total", 'result="v1"')
    mark = log_mark(kg.proc)
    local = tls_probe_from("127.0.0.6", v1, pki)
    wait_for_log(kg.proc, rf"PROXY protocol header.*127\.0\.0\.6:{local[1]}.*version=1", 5, since=mark)
    assert metric(admin, "kgate_proxy_protocol_total", 'result="v1"') >= before + 1


def test_required_refuses_a_direct_client(behind_haproxy, pki: Pki) -> None:
    kg, port, *_ = behind_haproxy
    admin = behind_haproxy[4]
    before = metric(admin, "kgate_proxy_protocol_total", 'result="missing"')
    mark = log_mark(kg.proc)
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    raw = socket.create_connection((LOOPBACK, port), timeout=10)
    local = raw.getsockname()
    t0 = time.monotonic()
    with pytest.raises((ssl.SSLError, OSError)):
        with ctx.wrap_socket(raw, server_hostname=BOOT) as s:
            s.recv(1)
    assert time.monotonic() - t0 < 5, "not refused promptly"
    line = wait_for_log(kg.proc, r"PROXY protocol.*required", 5, since=mark)
    assert f"{local[0]}:{local[1]}" in line, line
    assert metric(admin, "kgate_proxy_protocol_total", 'result="missing"') >= before + 1


def test_malformed_header_is_closed_and_the_log_names_the_client(behind_haproxy) -> None:
    kg, port, *_ = behind_haproxy
    admin = behind_haproxy[4]
    before = metric(admin, "kgate_proxy_protocol_total", 'result="malformed"')
    mark = log_mark(kg.proc)
    raw = socket.create_connection((LOOPBACK, port), timeout=10, source_address=("127.0.0.8", 0))
    local = raw.getsockname()
    t0 = time.monotonic()
    with raw:
        # a v1 header whose source is no IP address, then a TLS ClientHello's first bytes
        raw.sendall(b"PROXY TCP4 999.1.2.3 127.0.0.1 4000 443\r\n\x16\x03\x01")
        try:
            got = raw.recv(100)
        except ConnectionResetError:
            got = b""
    assert got == b"", f"kgate answered a malformed PROXY header: {got!r}"
    assert time.monotonic() - t0 < 5, "not closed promptly"
    line = wait_for_log(kg.proc, r"connection closed: PROXY protocol.*malformed", 5, since=mark)
    assert f"client=127.0.0.8:{local[1]}" in line, f"the log line does not name the client {local}: {line}"
    assert "999.1.2.3" in line, f"the log line does not say what was wrong: {line}"
    assert metric(admin, "kgate_proxy_protocol_total", 'result="malformed"') >= before + 1
    assert kg.proc.alive()


def plain_api_versions(port: int, source: str = LOOPBACK) -> tuple[str, int]:
    """ApiVersions v0 over plain TCP from `source`; returns the local address
    after checking the answer carries the request's correlation id."""
    import struct

    with socket.create_connection((LOOPBACK, port), timeout=10, source_address=(source, 0)) as s:
        local = s.getsockname()
        cid = b"pp-probe"
        body = struct.pack(">hhih", 18, 0, 4242, len(cid)) + cid
        s.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 8:
            chunk = s.recv(8 - len(head))
            assert chunk, f"kgate closed the connection from {local} after {len(head)} bytes"
            head += chunk
        n, corr = struct.unpack(">ii", head)
        assert n > 4 and corr == 4242, (n, corr)
    return local


def test_optional_on_a_plaintext_listener_serves_both_ways(mock_cluster: Upstream) -> None:  # noqa: F811
    from confluent_kafka.admin import AdminClient

    admin = free_port_on(LOOPBACK)
    kg = start_kgate(mock_cluster, "pp-optional", ["--proxy-protocol", "optional", "--log-level", "kgate=debug",
                                                   "--admin-listen", f"{LOOPBACK}:{admin}"])
    v2, v1 = free_port_on(LOOPBACK), free_port_on(LOOPBACK)
    hp = start_haproxy(v2, v1, kg.port_base)
    try:
        mark = log_mark(kg.proc)
        absent = metric(admin, "kgate_proxy_protocol_total", 'result="absent"')
        got_v2 = metric(admin, "kgate_proxy_protocol_total", 'result="v2"')
        # Through HAProxy: the header's address is the client's.
        via = plain_api_versions(v2, "127.0.0.7")
        line = wait_for_log(kg.proc, r"PROXY protocol header.*127\.0\.0\.7", 5, since=mark)
        assert f"client=127.0.0.7:{via[1]}" in line and "version=2" in line, line
        # Directly, no header: served all the same.
        direct = plain_api_versions(kg.port_base, "127.0.0.9")
        wait_for_log(kg.proc, rf"client=127\.0\.0\.9:{direct[1]}", 5, since=mark)
        # A real client through HAProxy, and one directly: metadata both ways.
        for boot in (f"{LOOPBACK}:{v2}", kg.bootstrap_servers):
            md = AdminClient({"bootstrap.servers": boot}).list_topics(timeout=15)
            assert sorted(md.brokers) == [1, 2, 3], f"{boot}: {md.brokers}"
            assert all((b.host, b.port) == kg.listener(n) for n, b in md.brokers.items()), md.brokers
        assert metric(admin, "kgate_proxy_protocol_total", 'result="v2"') >= got_v2 + 2
        assert metric(admin, "kgate_proxy_protocol_total", 'result="absent"') >= absent + 2
        text = kg.proc.log_text()
        assert "connection closed: PROXY protocol" not in text, kg.proc.log_tail(40)
    finally:
        hp.stop()
        stop_kgate(kg)


# ==========================================================================
# SNI routing with an upstream SASL/IAM front: re-authentication still works
# ==========================================================================


def test_sni_with_upstream_iam_reauthenticates(cluster, hosts,  # noqa: F811
                                                sni_cert, pki: Pki) -> None:
    """librdkafka through the SNI port; kgate signs AWS_MSK_IAM toward the
    front, which grants 3-second sessions and closes expired ones: over
    about four lifetimes every record arrives once, no client sees a
    disconnect, and the front counts re-authentications."""
    from test_sasl_iam import ASIA, REGION, assert_rdkafka_clean, clean_env, env_creds, front_clean, rdkafka_soak, register
    from tls_support import to_toml

    sasl_cluster = cluster
    front = sasl_cluster.front
    front.close_all()
    front.reset_stats()
    register(front, ASIA)
    port = free_port_on(LOOPBACK)
    pb = free_port_on(LOOPBACK)
    cfg = run_dir() / "kgate-sni-iam.toml"
    cfg.write_text(to_toml({
        "bootstrap": [sasl_cluster.bootstrap],
        "port_base": pb,
        "admin_listen": "off",
        "downstream_tls": downstream(sni_cert),
        "sni": sni_section(port),
        "upstream_sasl": {"mechanism": "AWS_MSK_IAM", "region": REGION},
    }))
    proc = Proc("kgate-sni-iam", [str(kgate_bin()), "run", "--config", str(cfg)], env=clean_env(env_creds(ASIA)))
    try:
        wait_for_port(port, 30, proc)
        r = rdkafka_soak(f"{BOOT}:{port}", 12, 100, extra=rdk_ssl(pki), name="sni-iam")
        assert_rdkafka_clean(r, "SNI + IAM")
        st = front_clean(sasl_cluster, min_reauths=3, min_conn_reauths=2)
        assert set(st["by_mechanism"]) == {"AWS_MSK_IAM"}
        assert "sni=b-111." + DOMAIN in proc.log_text(), "no connection routed by the broker's name"
    finally:
        proc.stop()
        assert "panicked at" not in proc.log_text()

"""kgate's TLS, end to end: real clients, stunnel in front of tansu as an MSK
mTLS (9094) stand-in, and a dev PKI from certs-dev/gen.sh.

  harness     stunnel + tansu work directly (openssl-equivalent probes,
              librdkafka, Java), so a kgate failure below is kgate's.
  upstream    plaintext clients -> kgate -> mTLS -> tansu: the Java client and
              librdkafka produce, consume and commit; every client-key format
              loads; bad client certs, a wrong broker name, a rogue broker and
              a wrong passphrase fail fast and clearly, while a good kgate
              keeps working.
  downstream  TLS clients -> kgate: the Java client (PKCS#12) and librdkafka
              with an encrypted PKCS#8 key + passphrase (ClickHouse's set-up);
              rogue-CA, certificate-less and not-allow-listed clients are
              refused.
  rotation    cert files replaced under a continuous idempotent producer: new
              connections present the new certs, nothing is dropped or lost.
  privatelink [[dial]] to 127.0.0.2 while the name (SNI, verification) stays
              localhost; verifying against the dial address fails.

Run: bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_tls.py -q
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid

import pytest

from harness import LOOPBACK, Kgate, kafka_jars_classpath, poll_until, record_timing, stop_kgate
from scenarios import PARTITIONS, RESUME_RECORDS, RdkafkaLog, rdkafka_conf, run_external, run_librdkafka
from tls_support import (  # noqa: F401 - fixtures are used by name
    PRIVATELINK_HOST,
    Pki,
    TlsBroker,
    TlsCaptureProxy,
    _tls_upstream,
    api_versions_request,
    cert_serial,
    free_port_on,
    client_tls_context,
    downstream_tls,
    java_ssl_props,
    java_tls_classes,
    java_tls_client,
    log_mark,
    mtls_broker,
    pki,
    privatelink_broker,
    probe,
    rdkafka_metadata_errors,
    rdkafka_ssl,
    rdkafka_tls_roundtrip,
    s_client_serial,
    start_kgate_toml,
    start_tansu,
    tls_truth,
    upstream_tls,
    wait_for_log,
)

RECORDS = 300
# A refused connection must be refused within this many seconds (no hang).
FAIL_FAST_S = 10


# ==========================================================================
# The harness itself, without kgate
# ==========================================================================


def test_harness_stunnel_requires_a_client_cert_from_the_dev_ca(pki: Pki, mtls_broker: TlsBroker) -> None:
    port = mtls_broker.tls_port
    # openssl s_client with the kgate-client cert sees broker.pem.
    assert s_client_serial(port, pki, cert="kgate-client") == cert_serial(pki("broker.pem"))
    good = probe(port, tls=client_tls_context(pki, "kgate-client"))
    assert good.outcome == "response", f"kgate-client -> stunnel: {good}\n{mtls_broker.stunnel.proc.log_tail(30)}"
    # Also through 127.0.0.2 (for the PrivateLink-style tests).
    alt = probe(port, host=PRIVATELINK_HOST, tls=client_tls_context(pki, "kgate-client"))
    assert alt.outcome == "response", f"via {PRIVATELINK_HOST}: {alt}"
    for cert, why in [(None, "peer did not return a certificate"),
                      ("rogue-client", "unable to get local issuer certificate"),
                      ("expired-client", "certificate has expired")]:
        mark = log_mark(mtls_broker.stunnel.proc)
        r = probe(port, tls=client_tls_context(pki, cert), timeout=FAIL_FAST_S)
        assert r.outcome in ("tls-error", "closed"), f"{cert or 'no cert'} was not refused: {r}"
        wait_for_log(mtls_broker.stunnel.proc, re.escape(why), 5, since=mark)
    # The broken brokers are broken for a verifying client.
    r = probe(mtls_broker.wrongname_port, tls=client_tls_context(pki, "kgate-client"))
    assert r.outcome == "tls-error" and "mismatch" in r.detail.lower(), r
    r = probe(mtls_broker.rogue_port, tls=client_tls_context(pki, "kgate-client"))
    assert r.outcome == "tls-error" and "verify failed" in r.detail.lower(), r


def test_harness_real_clients_over_mtls_directly(pki: Pki, mtls_broker: TlsBroker, java_tls_classes) -> None:
    """librdkafka and the Java client reach the stunnel-fronted tansu with the
    kgate-client certificate, without kgate."""
    rt = rdkafka_tls_roundtrip(mtls_broker.bootstrap, rdkafka_ssl(pki, "kgate-client"), 100)
    assert rt.ok, rt.explain()
    j, out = java_tls_client(java_tls_classes, java_ssl_props(pki, "kgate-client.p12"), "roundtrip",
                             mtls_broker.bootstrap, f"tls-java-direct-{uuid.uuid4().hex[:6]}",
                             f"g-{uuid.uuid4().hex[:6]}", "100")
    assert j.get("ok"), f"{j}\n{out}"
    ok, errors, _ = rdkafka_metadata_errors(mtls_broker.bootstrap, rdkafka_ssl(pki, None), timeout=5)
    assert not ok, "stunnel answered a client without a certificate"


def test_harness_privatelink_broker_only_on_127_0_0_2(pki: Pki, privatelink_broker: TlsBroker) -> None:
    port = privatelink_broker.tls_port
    assert probe(port, host=LOOPBACK, timeout=5).outcome == "refused"
    r = probe(port, host=PRIVATELINK_HOST, tls=client_tls_context(pki, "kgate-client"), server_hostname="localhost")
    assert r.outcome == "response", r


# ==========================================================================
# Upstream mTLS: plaintext clients -> kgate -> stunnel (mTLS) -> tansu
# ==========================================================================


@pytest.fixture(scope="module")
def good_kgate(pki: Pki, mtls_broker: TlsBroker) -> Kgate:
    """A correctly configured kgate, kept running while the negative tests
    start broken ones next to it."""
    kg = start_kgate_toml("upstream-good", mtls_broker.upstream, {"upstream_tls": upstream_tls(pki)})
    yield kg
    stop_kgate(kg)


@pytest.mark.parametrize("client", ["java", "librdkafka"])
def test_upstream_mtls_produce_consume_commit(client: str, pki: Pki, mtls_broker: TlsBroker, request) -> None:
    kg = start_kgate_toml(f"upstream-{client}", mtls_broker.upstream, {"upstream_tls": upstream_tls(pki)})
    try:
        if client == "java":
            classes = request.getfixturevalue("java_classes")
            java = shutil.which("java") or pytest.fail("java not found")
            o = run_external("java", [java, "-cp", f"{classes}:{kafka_jars_classpath()}", "KgateE2E"],
                             kg.bootstrap_servers, RECORDS, "zstd", kg.port_base)
        else:
            o = run_librdkafka(kg.bootstrap_servers, RECORDS, "lz4")
        record_timing(f"tls upstream {client}", o.timings)
        why = o.explain() + "\n--- kgate ---\n" + kg.proc.log_tail(40)
        assert not o.problems, why
        assert o.partitions == PARTITIONS, why
        assert o.consumed == RECORDS and o.duplicates == 0 and o.missing == 0 and o.order_ok, why
        assert o.resumed_ok and o.resumed_consumed == RESUME_RECORDS, why
        truth = tls_truth(mtls_broker.bootstrap, rdkafka_ssl(pki, "kgate-client"), o.raw["topic"], o.raw["group"])
        assert len(truth.records) == RECORDS + RESUME_RECORDS and not truth.duplicates(), why
        assert truth.committed == truth.high, f"committed {truth.committed} != end {truth.high}\n{why}"
        kg.check_addresses(o.addresses)
        # stunnel saw kgate's certificate (CN=kgate).
        assert re.search(r"Certificate accepted at depth=0: .*CN=kgate\b", mtls_broker.stunnel.log_text())
    finally:
        stop_kgate(kg)


# name -> [upstream_tls] cert/key, and the CN stunnel must see
KEY_FORMATS = {
    "pkcs8": (dict(cert="kgate-client"), "kgate"),
    "pkcs1": (dict(cert="kgate-client", key="kgate-client.rsa.key"), "kgate"),
    "sec1-p256": (dict(cert="kgate-client-ec"), "kgate-ec"),
    "sec1-p384": (dict(cert="kgate-client-ec384"), "kgate-ec384"),
    "encrypted-pkcs8-passfile": (dict(cert="client-enc", passfile=True), "clickhouse"),
    "encrypted-pkcs8-passenv": (dict(cert="client-enc", passenv=True), "clickhouse"),
}


@pytest.mark.parametrize("fmt", list(KEY_FORMATS))
def test_upstream_client_key_formats(fmt: str, pki: Pki, mtls_broker: TlsBroker) -> None:
    spec, cn = KEY_FORMATS[fmt]
    spec = dict(spec)
    mark = log_mark(mtls_broker.stunnel.proc)
    extra, env = {}, None
    if spec.pop("passfile", False):
        extra["key_passphrase_file"] = pki("client-enc.pass")
    if spec.pop("passenv", False):
        extra["key_passphrase_env"] = "KGATE_TEST_KEY_PASS"
        env = {"KGATE_TEST_KEY_PASS": pki.passphrase}
    kg = start_kgate_toml(f"keyfmt-{fmt}", mtls_broker.upstream, {"upstream_tls": upstream_tls(pki, **spec, **extra)},
                          env=env)
    try:
        r = probe(kg.port_base, timeout=FAIL_FAST_S)
        assert r.outcome == "response", f"{fmt}: {r}\n{kg.proc.log_tail(30)}\n--- stunnel ---\n" \
                                        f"{mtls_broker.stunnel.proc.log_tail(10)}"
        ok, errors, _ = rdkafka_metadata_errors(kg.bootstrap_servers, {}, timeout=10)
        assert ok, f"{fmt}: metadata through kgate failed: {errors[-5:]}\n{kg.proc.log_tail(30)}"
        assert pki.passphrase not in kg.proc.log_text(), "kgate logged the key passphrase"
        wait_for_log(mtls_broker.stunnel.proc, rf"Certificate accepted at depth=0: .*CN={re.escape(cn)}$", 5, since=mark)
    finally:
        stop_kgate(kg)


# name -> (which stunnel port, [upstream_tls] overrides, kgate log pattern)
UPSTREAM_FAILURES = {
    "no-client-cert": ("tls", dict(cert=None), r"certificate.?required"),
    "rogue-ca-client-cert": ("tls", dict(cert="rogue-client"), r"unknown.?ca|UnknownIssuer|bad.?certificate"),
    "expired-client-cert": ("tls", dict(cert="expired-client"), r"expired"),
    "broker-name-mismatch": ("wrongname", {}, r"name.?mismatch|NotValidForName|not valid for"),
    "rogue-ca-broker": ("rogue", {}, r"unknown.?ca|UnknownIssuer|unknown issuer"),
}


@pytest.mark.parametrize("case", list(UPSTREAM_FAILURES))
def test_upstream_tls_failure_is_fast_and_clear(case: str, pki: Pki, mtls_broker: TlsBroker, good_kgate: Kgate) -> None:
    which, overrides, pattern = UPSTREAM_FAILURES[case]
    port = {"tls": mtls_broker.tls_port, "wrongname": mtls_broker.wrongname_port, "rogue": mtls_broker.rogue_port}[which]
    up = _tls_upstream(f"stunnel {which}", "localhost", port)
    kg = start_kgate_toml(f"bad-{case}", up, {"upstream_tls": upstream_tls(pki, **overrides)})
    try:
        # A good connection through the good kgate, open across the failure.
        held = socket.create_connection((LOOPBACK, good_kgate.port_base), timeout=5)
        r = probe(kg.port_base, timeout=FAIL_FAST_S + 5)
        assert r.outcome != "response", f"{case}: kgate answered although the upstream TLS must fail: {r}"
        assert r.outcome != "timeout" and r.seconds < FAIL_FAST_S, f"{case}: not refused promptly: {r}\n{kg.proc.log_tail(30)}"
        lines = wait_for_log(kg.proc, pattern, 5)
        assert lines, kg.proc.log_tail(30)
        # A real client gets a failure, not a hang.
        ok, errors, took = rdkafka_metadata_errors(kg.bootstrap_servers, {}, timeout=4)
        assert not ok, f"{case}: librdkafka got metadata through a broken upstream"
        assert kg.proc.alive(), f"{case}: kgate died on a per-connection TLS failure\n{kg.proc.log_tail(30)}"
        # The good kgate, and a connection opened before, still work.
        held.settimeout(10)
        held.sendall(api_versions_request())
        assert len(held.recv(8)) > 0, "the held connection through the good kgate broke"
        held.close()
        g = probe(good_kgate.port_base)
        assert g.outcome == "response", f"good kgate: {g}\n{good_kgate.proc.log_tail(30)}"
    finally:
        stop_kgate(kg)
    print(f"{case}: {r}; kgate said:\n{lines[:600]}")


def test_upstream_insecure_skip_verify_accepts_a_wrong_name(pki: Pki, mtls_broker: TlsBroker) -> None:
    """The control for broker-name-mismatch: same broker, verification off."""
    port = mtls_broker.wrongname_port
    up = _tls_upstream("stunnel wrongname", "localhost", port)
    kg = start_kgate_toml("insecure", up, {"upstream_tls": upstream_tls(pki, insecure_skip_verify=True)})
    try:
        r = probe(kg.port_base)
        assert r.outcome == "response", f"{r}\n{kg.proc.log_tail(30)}"
    finally:
        stop_kgate(kg)


def test_upstream_wrong_passphrase_refuses_to_start(pki: Pki, mtls_broker: TlsBroker, tmp_path) -> None:
    bad = tmp_path / "wrong.pass"
    bad.write_text("not-the-passphrase\n")
    kg = start_kgate_toml("wrong-passphrase", mtls_broker.upstream,
                          {"upstream_tls": upstream_tls(pki, cert="client-enc", key_passphrase_file=str(bad))},
                          wait=False)
    try:
        poll_until("kgate to exit on a wrong key passphrase", lambda: not kg.proc.alive(), 15)
    except TimeoutError:
        kg.proc.stop()
        pytest.fail(f"kgate kept running with an undecryptable key:\n{kg.proc.log_tail(30)}", pytrace=False)
    rc = kg.proc.stop()
    text = kg.proc.log_text()
    assert rc != 0, f"kgate exited 0:\n{text[-3000:]}"
    assert re.search(r"passphrase", text, re.I), f"no word about the passphrase:\n{text[-3000:]}"
    assert "not-the-passphrase" not in text, "kgate logged the (wrong) passphrase"
    assert "panicked" not in text, text[-3000:]


# ==========================================================================
# Downstream mTLS: TLS clients -> kgate (client certs, allow-list) -> mTLS upstream
# ==========================================================================


@pytest.fixture(scope="module")
def tls_kgate(pki: Pki, mtls_broker: TlsBroker) -> Kgate:
    kg = start_kgate_toml("downstream", mtls_broker.upstream, {
        "upstream_tls": upstream_tls(pki),
        "downstream_tls": downstream_tls(pki, allowed=["app-client", "clickhouse"]),
    })
    yield kg
    stop_kgate(kg)


def test_downstream_java_pkcs12_client(pki: Pki, tls_kgate: Kgate, mtls_broker: TlsBroker, java_tls_classes) -> None:
    tag = uuid.uuid4().hex[:6]
    j, out = java_tls_client(java_tls_classes, java_ssl_props(pki, "app-client.p12"), "roundtrip",
                             tls_kgate.bootstrap_servers, f"tls-java-{tag}", f"g-java-{tag}", str(RECORDS))
    assert j.get("ok"), f"{j}\n{out}\n--- kgate ---\n{tls_kgate.proc.log_tail(40)}"
    truth = tls_truth(mtls_broker.bootstrap, rdkafka_ssl(pki, "kgate-client"), j["topic"], j["group"])
    assert len(truth.records) == RECORDS and not truth.duplicates()
    assert truth.committed == truth.high


def test_downstream_librdkafka_encrypted_key_with_passphrase(pki: Pki, tls_kgate: Kgate, mtls_broker: TlsBroker) -> None:
    """ClickHouse's Kafka engine: ssl.key.location (encrypted PKCS#8) + ssl.key.password."""
    assert "ENCRYPTED PRIVATE KEY" in open(pki("client-enc.key")).read()
    rt = rdkafka_tls_roundtrip(tls_kgate.bootstrap_servers, rdkafka_ssl(pki, "client-enc", key_password=pki.passphrase),
                               RECORDS)
    assert rt.ok, rt.explain() + "\n--- kgate ---\n" + tls_kgate.proc.log_tail(40)
    truth = tls_truth(mtls_broker.bootstrap, rdkafka_ssl(pki, "kgate-client"), rt.topic, rt.group)
    assert len(truth.records) == RECORDS and not truth.duplicates()


# name -> (client cert for the raw probe and librdkafka, kgate log pattern)
DOWNSTREAM_REFUSALS = {
    "rogue-ca-client": ("rogue-client", r"unknown.?ca|UnknownIssuer|unknown issuer|BadCertificate"),
    "not-allow-listed": ("other-client", r"\bother\b.*(allow|denied|refus|reject|not permitted)|(allow|denied|refus|reject|not permitted).*\bother\b"),
    "no-client-cert": (None, r"certificate.?required|no client cert|sent no certificate|NoCertificatesPresented"),
}


@pytest.mark.parametrize("case", list(DOWNSTREAM_REFUSALS))
def test_downstream_refuses_bad_clients(case: str, pki: Pki, tls_kgate: Kgate) -> None:
    cert, pattern = DOWNSTREAM_REFUSALS[case]
    mark = log_mark(tls_kgate.proc)  # the kgate is shared: only this test's lines count
    r = probe(tls_kgate.port_base, tls=client_tls_context(pki, cert), timeout=FAIL_FAST_S + 5)
    assert r.outcome != "response", f"{case}: kgate served the client: {r}"
    assert r.outcome != "timeout" and r.seconds < FAIL_FAST_S, f"{case}: not refused promptly: {r}"
    lines = wait_for_log(tls_kgate.proc, pattern, 5, since=mark)
    ok, errors, _ = rdkafka_metadata_errors(tls_kgate.bootstrap_servers, rdkafka_ssl(pki, cert), timeout=4)
    assert not ok, f"{case}: librdkafka got metadata"
    assert tls_kgate.proc.alive()
    good = probe(tls_kgate.port_base, tls=client_tls_context(pki, "app-client"))
    assert good.outcome == "response", f"app-client after {case}: {good}\n{tls_kgate.proc.log_tail(30)}"
    print(f"{case}: {r}; kgate said:\n{lines[:600]}")


def test_downstream_java_without_a_trusted_client_cert_is_refused(pki: Pki, tls_kgate: Kgate, java_tls_classes) -> None:
    """The Java client only offers a certificate whose issuer the server asked
    for, so with a rogue-CA keystore it offers none: refused all the same."""
    props = java_ssl_props(pki, "rogue-client.p12")
    props.update({"default.api.timeout.ms": "8000", "request.timeout.ms": "5000"})
    t0 = time.monotonic()
    mark = log_mark(tls_kgate.proc)
    j, out = java_tls_client(java_tls_classes, props, "probe", tls_kgate.bootstrap_servers, timeout=60)
    assert not j.get("ok"), f"the Java client was served: {j}"
    assert "Ssl" in str(j.get("error")) or "SSL" in str(j.get("error_chain")), f"{j}\n{out}"
    assert time.monotonic() - t0 < 30, f"took {time.monotonic() - t0:.1f}s: {j}"
    wait_for_log(tls_kgate.proc, DOWNSTREAM_REFUSALS["no-client-cert"][1], 5, since=mark)


# ==========================================================================
# Rotation under load
# ==========================================================================


def _replace(src: str, dst) -> None:
    """Atomically replaces dst with a copy of src (what a cert agent does)."""
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:6]}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def test_rotation_under_continuous_produce(pki: Pki, tmp_path) -> None:
    from confluent_kafka import Producer

    rot = tmp_path / "rot"
    rot.mkdir()
    up_pem, up_key, srv_pem, srv_key = rot / "up.pem", rot / "up.key", rot / "srv.pem", rot / "srv.key"
    for s, d in [("kgate-client.pem", up_pem), ("kgate-client.key", up_key),
                 ("kgate-server.pem", srv_pem), ("kgate-server.key", srv_key)]:
        _replace(pki(s), d)

    pp = free_port_on(LOOPBACK)
    tansu, tport = start_tansu("tansu-rotation", f"localhost:{pp}")
    proxy = TlsCaptureProxy("rotation", pki("broker.pem"), pki("broker.key"), pki("ca.pem"), tport, port=pp)
    upstream = _tls_upstream("capture proxy", "localhost", pp)
    kg = start_kgate_toml("rotation", upstream, {
        "upstream_tls": {"enabled": True, "ca_file": pki("ca.pem"), "cert_file": str(up_pem), "key_file": str(up_key)},
        "downstream_tls": {"enabled": True, "cert_file": str(srv_pem), "key_file": str(srv_key),
                           "client_ca_file": pki("ca.pem"), "allowed_subjects": ["app-client"]},
    })
    stop = threading.Event()
    delivered, failed, errors = [], [], []
    log = RdkafkaLog("rotation")
    topic = f"tls-rotation-{uuid.uuid4().hex[:6]}"
    producer = Producer(rdkafka_conf(kg.bootstrap_servers, log, "rotation-producer", **rdkafka_ssl(pki, "app-client"),
                                     **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                        "error_cb": lambda e: errors.append(str(e))}))

    def cb(err, msg):
        (failed if err else delivered).append((str(err), msg.value()) if err else msg.value())

    def produce_loop():
        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic, key=f"k{i % 12:02d}", value=f"v{i:07d}", on_delivery=cb)
                i += 1
            except BufferError:
                pass
            producer.poll(0.005)
        producer.flush(30)

    t0 = time.monotonic()
    th = threading.Thread(target=produce_loop, name="rotation-producer", daemon=True)
    try:
        th.start()
        poll_until("200 records delivered before rotation", lambda: len(delivered) >= 200, 30)
        old_up, old_down = cert_serial(pki("kgate-client.pem")), cert_serial(pki("kgate-server.pem"))
        assert old_up in proxy.serials(), f"capture proxy saw {proxy.serials()}, kgate-client is {old_up}"
        assert s_client_serial(kg.port_base, pki) == old_down

        def rotate(n: int, sighup: bool) -> None:
            c_pem, c_key = pki.issue(f"kgate-client{n}", "client", "kgate")
            s_pem, s_key = pki.issue(f"kgate-server{n}", "server", "localhost", "127.0.0.1")
            new_up, new_down = cert_serial(c_pem), cert_serial(s_pem)
            before = len(delivered)
            _replace(c_key, up_key)
            _replace(c_pem, up_pem)
            _replace(s_key, srv_key)
            _replace(s_pem, srv_pem)
            if sighup:
                kg.proc.popen.send_signal(signal.SIGHUP)

            def upstream_rotated():
                # A new client connection makes kgate dial the broker again.
                probe(kg.port_base, tls=client_tls_context(pki, "app-client"), timeout=5)
                return proxy.serials()[-1] == new_up

            poll_until(f"new upstream connections to present serial {new_up} (rotation {n})", upstream_rotated, 30, 0.3)
            poll_until(f"kgate to serve downstream cert {new_down} (rotation {n})",
                       lambda: s_client_serial(kg.port_base, pki) == new_down, 30, 0.3)
            poll_until("production to go on after the rotation", lambda: len(delivered) >= before + 200, 30)
            assert kg.proc.alive(), kg.proc.log_tail(30)

        rotate(2, sighup=False)
        rotate(3, sighup=True)
    finally:
        stop.set()
        th.join(40)
        elapsed = time.monotonic() - t0
        kg_log = kg.proc.log_text()
        stop_kgate(kg)
    # librdkafka decommissions its bootstrap connection once it knows the
    # brokers (UP -> DOWN on ".../bootstrap"): only broker connections count.
    drops = [l for l in log.lines
             if re.search(r"/\d+: .*(Disconnected|-> DOWN|transport failure|Connection refused)", l)]
    try:
        why = f"errors={errors[:10]} failed={failed[:5]} drops={drops[:10]}\n--- kgate ---\n{kg_log[-4000:]}"
        assert not failed, why
        assert not errors, why
        assert not drops, why
        truth = tls_truth(f"localhost:{pp}", rdkafka_ssl(pki, "kgate-client"), topic, f"g-{uuid.uuid4().hex[:6]}")
        stored = [v for _, _, _, v in truth.records]
        assert len(stored) == len(set(stored)) == len(delivered), (
            f"delivered {len(delivered)}, tansu holds {len(stored)} ({len(set(stored))} distinct)")
        assert set(stored) == {v.decode() for v in delivered}
        # Old serials stopped appearing once rotated.
        print(f"rotation: {len(delivered)} records in {elapsed:.1f}s; upstream serials seen: "
              f"{list(dict.fromkeys(proxy.serials()))}")
    finally:
        proxy.stop()
        tansu.stop()


def test_rotation_half_written_pair_keeps_the_old_material(pki: Pki, mtls_broker: TlsBroker, tmp_path) -> None:
    """A cert agent that writes the new certificate before the new key: until
    the pair matches, kgate keeps serving the old pair (and says why), then
    takes the new one."""
    srv_pem, srv_key = tmp_path / "srv.pem", tmp_path / "srv.key"
    _replace(pki("kgate-server.pem"), srv_pem)
    _replace(pki("kgate-server.key"), srv_key)
    kg = start_kgate_toml("half-rotation", mtls_broker.upstream, {
        "upstream_tls": upstream_tls(pki),
        "downstream_tls": {"enabled": True, "cert_file": str(srv_pem), "key_file": str(srv_key),
                           "client_ca_file": pki("ca.pem")},
    })
    try:
        old = cert_serial(pki("kgate-server.pem"))
        assert s_client_serial(kg.port_base, pki) == old
        new_pem, new_key = pki.issue("kgate-server-half", "server", "localhost", "127.0.0.1")
        mark = log_mark(kg.proc)
        _replace(new_pem, srv_pem)  # the key is still the old one
        kg.proc.popen.send_signal(signal.SIGHUP)
        lines = wait_for_log(kg.proc, r"\b(WARN|ERROR)\b.*(match|key|cert)", 10, since=mark)
        assert kg.proc.alive(), kg.proc.log_tail(30)
        assert s_client_serial(kg.port_base, pki) == old, f"kgate dropped the old pair:\n{lines}"
        good = probe(kg.port_base, tls=client_tls_context(pki, "app-client"))
        assert good.outcome == "response", f"{good}\n{kg.proc.log_tail(30)}"
        _replace(new_key, srv_key)
        poll_until("kgate to serve the completed new pair", lambda: s_client_serial(kg.port_base, pki)
                   == cert_serial(new_pem), 30, 0.3)
        print(f"half-written pair: kgate said:\n{lines[:800]}")
    finally:
        stop_kgate(kg)


# ==========================================================================
# PrivateLink-style dial mapping
# ==========================================================================


def test_privatelink_dial_keeps_the_broker_name(pki: Pki, privatelink_broker: TlsBroker) -> None:
    b = privatelink_broker
    dial = [{"broker": f"localhost:{b.tls_port}", "connect": f"{PRIVATELINK_HOST}:{b.tls_port}"}]
    kg = start_kgate_toml("privatelink", b.upstream, {"upstream_tls": upstream_tls(pki), "dial": dial})
    try:
        rt = rdkafka_tls_roundtrip(kg.bootstrap_servers, {}, 100)
        assert rt.ok, rt.explain() + "\n--- kgate ---\n" + kg.proc.log_tail(40)
        assert re.search(r"Service \[privatelink\] accepted connection", b.stunnel.log_text())
    finally:
        stop_kgate(kg)
    # Verifying against the dial address instead of the broker's name fails.
    kg = start_kgate_toml("privatelink-by-address", b.upstream,
                          {"upstream_tls": upstream_tls(pki, server_name=PRIVATELINK_HOST), "dial": dial})
    try:
        r = probe(kg.port_base, timeout=FAIL_FAST_S + 5)
        assert r.outcome != "response" and r.seconds < FAIL_FAST_S, r
        wait_for_log(kg.proc, r"name.?mismatch|NotValidForName|not valid for", 5)
    finally:
        stop_kgate(kg)

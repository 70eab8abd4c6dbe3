"""TLS fixtures and helpers for kgate's end-to-end tests (test_tls.py).

- `pki`: a throw-away PKI from certs-dev/gen.sh, made once per session in
  pytest's temporary directory.
- `mtls_broker`: tansu behind stunnel4, which terminates TLS with broker.pem
  and *requires* a client certificate signed by the dev CA (verify = 2), like
  MSK's mTLS port 9094. tansu advertises localhost:<stunnel port>, stunnel
  accepts on 127.0.0.1 and 127.0.0.2. The same stunnel also serves the
  "wrongname" (cert for wrong.example only) and "rogue" (cert from a rogue CA)
  variants on ports of their own, in front of the same tansu.
- `privatelink_broker`: tansu advertising localhost:<port> while only
  127.0.0.2:<port> listens (stunnel, broker.pem): it is reachable only through
  kgate's [[dial]] mapping.
- `TlsCaptureProxy`: a TLS-terminating proxy in Python (asyncio) that requires
  client certificates and records each peer's serial number.
- `start_kgate_toml`: kgate started from a TOML file written from a dict.
- Raw probes: an ApiVersions request over plain TCP or TLS that tells a
  response from a closed connection or a hang, and `openssl s_client` serials.
- `rdkafka_tls_roundtrip` and `java_tls_client`: librdkafka and the Java
  client (clients/java-tls/KgateTlsClient.java) with TLS settings of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pytest

from harness import (
    DEPS,
    DIRECT,
    LOOPBACK,
    REPO,
    Kgate,
    Proc,
    Upstream,
    kafka_jars_classpath,
    kgate_bin,
    pick_port_base,
    poll_until,
    run_dir,
    tansu_bin,
    wait_for_port,
)
from scenarios import (
    KEYS,
    PARTITIONS,
    RdkafkaLog,
    Truth,
    check_phase,
    make_records,
    names,
    rdkafka_conf,
    rdkafka_consume,
    rdkafka_consumer_conf,
    rdkafka_create_topic,
    rdkafka_produce,
)

GEN_SH = REPO / "certs-dev" / "gen.sh"
JAVA_TLS_DIR = REPO / "tests" / "e2e" / "clients" / "java-tls"
P12_PASS = "changeit"
PRIVATELINK_HOST = "127.0.0.2"


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------


@dataclass
class Pki:
    dir: Path

    def __call__(self, name: str) -> str:
        p = self.dir / name
        if not p.exists():
            raise FileNotFoundError(f"{p} (not made by certs-dev/gen.sh?)")
        return str(p)

    @property
    def passphrase(self) -> str:
        return (self.dir / "client-enc.pass").read_text().strip()

    def issue(self, name: str, kind: str, *names_: str) -> tuple[str, str]:
        """A new cert + key (NAME.pem, NAME.key) from the dev CA; returns the paths."""
        r = subprocess.run(["bash", str(GEN_SH), "--issue", str(self.dir), name, kind, *names_],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"gen.sh --issue failed ({r.returncode}): {r.stderr}")
        return self(f"{name}.pem"), self(f"{name}.key")


def cert_serial(path: str) -> str:
    """The serial of the first certificate in a PEM file, upper-case hex, as
    `openssl x509 -serial` prints it."""
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"openssl x509 {path}: {r.stderr}")
    return norm_serial(r.stdout.strip().split("=", 1)[1])


def norm_serial(s: str) -> str:
    s = s.strip().upper().replace(":", "").lstrip("0")
    return s or "0"


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """The dev PKI, in pytest's temporary directory (the harness's log
    directory must stay flat: its clean-up removes files only)."""
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: run tests/setup.sh")
    out = tmp_path_factory.mktemp("pki")
    r = subprocess.run(["bash", str(GEN_SH), str(out)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail(f"certs-dev/gen.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return Pki(out)


# --------------------------------------------------------------------------
# tansu and stunnel
# --------------------------------------------------------------------------


def free_port_on(*hosts: str) -> int:
    """A port free on every one of `hosts` (127.0.0.0/8 addresses)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def start_tansu(name: str, advertised: str) -> tuple[Proc, int]:
    """tansu on 127.0.0.1:<free port>, advertising `advertised` (host:port)."""
    port = free_port_on(LOOPBACK)
    proc = Proc(
        name,
        [tansu_bin(), "broker", "--listener-url", f"tcp://{LOOPBACK}:{port}",
         "--advertised-listener-url", f"tcp://{advertised}", "--storage-engine", "memory://tansu/"],
    )
    wait_for_port(port, 30, proc)
    return proc, port


@dataclass
class StunnelService:
    name: str
    accept: list[tuple[str, int]]
    connect: int  # 127.0.0.1:<connect>
    cert: str
    key: str
    cafile: Optional[str]  # None: no client certificate required
    verify: int = 2


class Stunnel:
    """One stunnel4 process, logging to a harness Proc log (debug = info:
    one line per accepted or refused peer certificate)."""

    def __init__(self, name: str, services: list[StunnelService]):
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        if not binary:
            pytest.fail("stunnel4 not found: run tests/setup.sh (apt-get install stunnel4)")
        self.services = services
        conf = run_dir() / f"{name}.conf"
        lines = ["foreground = yes", "pid =", "syslog = no", "debug = info", ""]
        for s in services:
            lines.append(f"[{s.name}]")
            lines += [f"accept = {h}:{p}" for h, p in s.accept]
            lines += [f"connect = {LOOPBACK}:{s.connect}", f"cert = {s.cert}", f"key = {s.key}"]
            if s.cafile:
                lines += [f"CAfile = {s.cafile}", f"verify = {s.verify}"]
            lines.append("")
        conf.write_text("\n".join(lines))
        self.proc = Proc(name, [binary, str(conf)])
        for s in services:
            for h, p in s.accept:
                wait_for_port(p, 20, self.proc, host=h)

    def log_text(self) -> str:
        return self.proc.log_text()

    def stop(self) -> None:
        self.proc.stop()


@dataclass
class TlsBroker:
    """tansu behind stunnel. `upstream` is what kgate is pointed at (the TLS
    side); `plain_bootstrap` reaches tansu directly, for checking."""

    upstream: Upstream
    plain_bootstrap: str
    tls_port: int
    wrongname_port: int = 0
    rogue_port: int = 0
    stunnel: Optional[Stunnel] = None
    tansu: Optional[Proc] = None

    @property
    def bootstrap(self) -> str:
        return self.upstream.bootstrap_servers


def _tls_upstream(name: str, host: str, port: int) -> Upstream:
    # tansu 0.6 is one broker, node 111.
    return Upstream(name, [(host, port)], (111,), {111: (host, port)})


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki) -> TlsBroker:
    tls_port = free_port_on(LOOPBACK, PRIVATELINK_HOST)
    wrong_port = free_port_on(LOOPBACK)
    rogue_port = free_port_on(LOOPBACK)
    tansu, plain_port = start_tansu("tansu-mtls", f"localhost:{tls_port}")
    st = Stunnel("stunnel-mtls", [
        StunnelService("mtls", [(LOOPBACK, tls_port), (PRIVATELINK_HOST, tls_port)], plain_port,
                       pki("broker.pem"), pki("broker.key"), pki("ca.pem")),
        StunnelService("wrongname", [(LOOPBACK, wrong_port)], plain_port,
                       pki("wrongname-broker.pem"), pki("wrongname-broker.key"), pki("ca.pem")),
        StunnelService("rogue", [(LOOPBACK, rogue_port)], plain_port,
                       pki("rogue-broker.pem"), pki("rogue-broker.key"), pki("ca.pem")),
    ])
    b = TlsBroker(_tls_upstream("tansu+stunnel mTLS", "localhost", tls_port), f"{LOOPBACK}:{plain_port}",
                  tls_port, wrong_port, rogue_port, st, tansu)
    yield b
    st.stop()
    tansu.stop()


@pytest.fixture(scope="module")
def privatelink_broker(pki: Pki) -> TlsBroker:
    """Advertises localhost:P, but only 127.0.0.2:P listens (nothing on 127.0.0.1:P)."""
    port = free_port_on(LOOPBACK, PRIVATELINK_HOST)
    tansu, plain_port = start_tansu("tansu-privatelink", f"localhost:{port}")
    st = Stunnel("stunnel-privatelink", [
        StunnelService("privatelink", [(PRIVATELINK_HOST, port)], plain_port,
                       pki("broker.pem"), pki("broker.key"), pki("ca.pem")),
    ])
    b = TlsBroker(_tls_upstream("tansu+stunnel on 127.0.0.2 only", "localhost", port), f"{LOOPBACK}:{plain_port}",
                  port, stunnel=st, tansu=tansu)
    yield b
    st.stop()
    tansu.stop()


# --------------------------------------------------------------------------
# A TLS-terminating proxy that records client certificate serials
# --------------------------------------------------------------------------


@dataclass
class Peer:
    serial: str
    subject: str
    at: float
    closed_at: Optional[float] = None


class TlsCaptureProxy:
    """Listens on 127.0.0.1:<port> with `cert`/`key`, requires a client
    certificate signed by `cafile`, records the peer certificate of every
    connection, and forwards the bytes to 127.0.0.1:<upstream_port>."""

    def __init__(self, name: str, cert: str, key: str, cafile: str, upstream_port: int, port: int = 0):
        self.name = name
        self.upstream_port = upstream_port
        self.peers: list[Peer] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._ctx = ctx
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._want_port = port
        self.port = 0
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError(f"capture proxy {name} did not start: {self.errors}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main():
            self._server = await asyncio.start_server(self._handle, LOOPBACK, self._want_port, ssl=self._ctx,
                                                      ssl_handshake_timeout=10)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        try:
            self._loop.run_until_complete(main())
            self._loop.run_forever()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{type(e).__name__}: {e}")
            self._ready.set()

    async def _handle(self, reader, writer) -> None:
        cert = writer.get_extra_info("peercert") or {}
        subject = ",".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
        peer = Peer(norm_serial(cert.get("serialNumber", "")), subject, time.time())
        with self._lock:
            self.peers.append(peer)
        try:
            ur, uw = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError as e:
            self.errors.append(f"upstream connect: {e}")
            writer.close()
            return

        async def pump(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass

        try:
            await asyncio.gather(pump(reader, uw), pump(ur, writer))
        except asyncio.CancelledError:
            pass  # stop(): end quietly
        peer.closed_at = time.time()

    def serials(self) -> list[str]:
        with self._lock:
            return [p.serial for p in self.peers]

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


# --------------------------------------------------------------------------
# kgate from a TOML file
# --------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(cfg: dict) -> str:
    """Top-level scalars and lists, then [tables], then [[arrays of tables]]."""
    lines, tables, arrays = [], [], []
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, t in tables:
        lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items() if vv is not None]
    for k, items in arrays:
        for t in items:
            lines += ["", f"[[{k}]]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items() if vv is not None]
    return "\n".join(lines) + "\n"


def kgate_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGATE_")}
    env.setdefault("RUST_BACKTRACE", "1")
    if os.environ.get("KGATE_RUST_LOG"):
        env["RUST_LOG"] = os.environ["KGATE_RUST_LOG"]
    env.update(extra or {})
    return env


_TLS_SUPPORT: dict[str, Optional[str]] = {}


def require_kgate_tls() -> Path:
    """Fails (or skips, with KGATE_TLS_SKIP_UNSUPPORTED=1) when the kgate
    binary does not accept [upstream_tls] / [downstream_tls] yet."""
    binary = kgate_bin()
    if not binary.exists():
        pytest.fail(f"kgate binary not found at {binary}: build it (cargo build) or set KGATE_BIN")
    key = str(binary)
    if key not in _TLS_SUPPORT:
        cfg = run_dir() / "kgate-tls-support-check.toml"
        cfg.write_text(to_toml({
            "bootstrap": ["localhost:9"],
            "upstream_tls": {"enabled": False},
            "downstream_tls": {"enabled": False},
        }))
        r = subprocess.run([str(binary), "check-config", "--config", str(cfg)], capture_output=True, text=True,
                           timeout=30, env=kgate_env())
        _TLS_SUPPORT[key] = None if r.returncode == 0 else (r.stdout + r.stderr).strip()
    why = _TLS_SUPPORT[key]
    if why is not None:
        msg = f"{binary} has no TLS support yet: `kgate check-config` rejects [upstream_tls]/[downstream_tls]:\n{why}"
        if os.environ.get("KGATE_TLS_SKIP_UNSUPPORTED") == "1":
            pytest.skip(msg)
        pytest.fail(msg, pytrace=False)
    return binary


_ACCEPTS: dict[tuple[str, str], bool] = {}


def kgate_accepts(toml_lines: str) -> bool:
    """Whether `kgate check-config` accepts these extra top-level lines (for
    settings newer than some binaries)."""
    binary = kgate_bin()
    key = (str(binary), toml_lines)
    if key not in _ACCEPTS:
        cfg = run_dir() / "kgate-accepts-check.toml"
        cfg.write_text('bootstrap = ["localhost:9"]\n' + toml_lines + "\n")
        r = subprocess.run([str(binary), "check-config", "--config", str(cfg)], capture_output=True, text=True,
                           timeout=30, env=kgate_env())
        _ACCEPTS[key] = r.returncode == 0
    return _ACCEPTS[key]


_BIND_ERRORS = ("address already in use", "addrinuse", "os error 98")


def start_kgate_toml(name: str, upstream: Upstream, cfg: dict, env: Optional[dict] = None,
                     wait: bool = True, avoid_ports: Iterable[int] = ()) -> Kgate:
    """kgate run --config <run dir>/kgate-<name>.toml, with `bootstrap` and
    `port_base` filled in. With wait=False, returns as soon as the process is
    started (for configurations that must be refused)."""
    if DIRECT:
        pytest.skip("KGATE_DIRECT=1: this TLS test needs kgate itself")
    binary = require_kgate_tls()
    avoid = set(avoid_ports) | {p for _, p in upstream.bootstrap} | {p for _, p in upstream.addresses.values()}
    last = None
    for _ in range(3):
        pb = pick_port_base(upstream.node_ids, avoid)
        full = {"bootstrap": [f"{h}:{p}" for h, p in upstream.bootstrap], "port_base": pb}
        # Several kgates run at once here: none takes the fixed default admin port.
        if "admin_listen" not in cfg and kgate_accepts('admin_listen = "off"'):
            full["admin_listen"] = "off"
        full.update(cfg)
        path = run_dir() / f"kgate-{name}.toml"
        path.write_text(to_toml(full))
        proc = Proc(f"kgate-{name}", [binary, "run", "--config", str(path)], env=kgate_env(env))
        kg = Kgate(upstream, pb, f"{LOOPBACK}:{pb}", proc)
        if not wait:
            return kg
        try:
            wait_for_port(pb, 30, proc)
            return kg
        except (RuntimeError, TimeoutError) as e:
            proc.stop()
            last = e
            if not any(s in proc.log_text().lower() for s in _BIND_ERRORS):
                raise RuntimeError(f"kgate-{name} did not start; config:\n{path.read_text()}\n{e}") from None
            avoid.add(pb)
    raise RuntimeError(f"kgate could not bind its ports three times: {last}")


def upstream_tls(pki: Pki, cert: Optional[str] = "kgate-client", key: Optional[str] = None, **extra) -> dict:
    """An [upstream_tls] table trusting the dev CA, with client cert `cert`."""
    t = {"enabled": True, "ca_file": pki("ca.pem")}
    if cert:
        t["cert_file"] = pki(f"{cert}.pem")
        t["key_file"] = pki(key or f"{cert}.key")
    t.update(extra)
    return t


def downstream_tls(pki: Pki, client_ca: bool = True, allowed: Optional[list[str]] = None, **extra) -> dict:
    t = {"enabled": True, "cert_file": pki("kgate-server.pem"), "key_file": pki("kgate-server.key")}
    if client_ca:
        t["client_ca_file"] = pki("ca.pem")
    if allowed is not None:
        t["allowed_subjects"] = allowed
    t.update(extra)
    return t


def log_excerpt(text: str, pattern: str, context: int = 0, limit: int = 20) -> str:
    lines = text.splitlines()
    rx = re.compile(pattern, re.I)
    out = []
    for i, l in enumerate(lines):
        if rx.search(l):
            out += lines[max(0, i - context): i + context + 1]
            if len(out) >= limit:
                break
    return "\n".join(out)


def log_mark(proc: Proc) -> int:
    """Where the process log ends now: pass it as `since` to wait_for_log to
    look only at what was logged after this point."""
    return proc.log.stat().st_size


def wait_for_log(proc: Proc, pattern: str, timeout: float, since: int = 0) -> str:
    """Polls a process log until a line written after byte `since` matches
    `pattern` (case-insensitive); returns the matching lines. The command
    line Proc writes first ("$ ...") never counts."""
    rx = re.compile(pattern, re.I)

    def found():
        with open(proc.log, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        return "\n".join(l for l in text.splitlines() if rx.search(l) and not l.startswith("$ "))

    try:
        return poll_until(f"{proc.name} log line matching /{pattern}/", found, timeout, 0.1)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n--- {proc.name} log ---\n{proc.log_tail(60)}") from None


# --------------------------------------------------------------------------
# Raw probes
# --------------------------------------------------------------------------


def api_versions_request(correlation_id: int = 7, client_id: str = "kgate-tls-probe") -> bytes:
    cid = client_id.encode()
    body = struct.pack(">hhih", 18, 0, correlation_id, len(cid)) + cid  # ApiVersions v0, empty body
    return struct.pack(">i", len(body)) + body


@dataclass
class ProbeResult:
    outcome: str  # "response" | "closed" | "tls-error" | "refused" | "timeout"
    detail: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.outcome} after {self.seconds:.2f}s: {self.detail}"


def probe(port: int, host: str = LOOPBACK, tls: Optional[ssl.SSLContext] = None, server_hostname: str = "localhost",
          timeout: float = 15.0) -> ProbeResult:
    """Connects, (TLS handshake), sends ApiVersions v0 and reads. "response"
    means a Kafka answer with our correlation id came back; anything else is
    a refusal, and "timeout" a hang."""
    t0 = time.monotonic()

    def res(outcome, detail):
        return ProbeResult(outcome, detail, time.monotonic() - t0)

    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        return res("refused", f"connect: {e}")
    sock = raw
    try:
        sock.settimeout(timeout)
        if tls is not None:
            try:
                sock = tls.wrap_socket(raw, server_hostname=server_hostname)
            except ssl.SSLError as e:
                return res("tls-error", f"handshake: {e}")
            except socket.timeout:
                return res("timeout", "TLS handshake did not finish")
            except OSError as e:
                return res("closed", f"handshake: {e}")
        try:
            sock.sendall(api_versions_request())
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return res("closed", f"EOF after {len(head)} bytes")
                head += chunk
        except ssl.SSLError as e:
            return res("tls-error", str(e))
        except socket.timeout:
            return res("timeout", f"no answer within {timeout}s")
        except OSError as e:
            return res("closed", str(e))
        size, corr = struct.unpack(">ii", head)
        if corr != 7:
            return res("closed", f"unexpected correlation id {corr}")
        return res("response", f"{size}-byte ApiVersions response")
    finally:
        try:
            sock.close()
        except OSError:
            pass


def client_tls_context(pki: Pki, cert: Optional[str], ca: str = "ca.pem", password: Optional[str] = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki(ca))
    if cert:
        key = pki(f"{cert}.key")
        ctx.load_cert_chain(pki(f"{cert}.pem"), key, password=password)
    return ctx


def s_client_serial(port: int, pki: Pki, cert: Optional[str] = "app-client", host: str = LOOPBACK,
                    servername: str = "localhost") -> str:
    """The serial of the certificate a TLS server presents, read with
    `openssl s_client` (with a client certificate, when the server wants one)."""
    argv = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", servername, "-CAfile", pki("ca.pem"),
            "-verify_return_error", "-showcerts"]
    if cert:
        argv += ["-cert", pki(f"{cert}.pem"), "-key", pki(f"{cert}.key")]
    r = subprocess.run(argv, input="", capture_output=True, text=True, timeout=20)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout, re.S)
    if not m:
        raise AssertionError(f"openssl s_client to {host}:{port} got no certificate (exit {r.returncode}):\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=m.group(0), capture_output=True, text=True,
                       timeout=20)
    return norm_serial(x.stdout.strip().split("=", 1)[1])


# --------------------------------------------------------------------------
# librdkafka with TLS settings
# --------------------------------------------------------------------------


def rdkafka_ssl(pki: Pki, cert: Optional[str], key_password: Optional[str] = None, ca: str = "ca.pem") -> dict:
    conf = {"security.protocol": "SSL", "ssl.ca.location": pki(ca)}
    if cert:
        conf["ssl.certificate.location"] = pki(f"{cert}.pem")
        conf["ssl.key.location"] = pki(f"{cert}.key")
    if key_password is not None:
        conf["ssl.key.password"] = key_password
    return conf


@dataclass
class RoundTrip:
    client: str
    ok: bool = False
    produced: int = 0
    consumed: int = 0
    duplicates: int = 0
    missing: int = 0
    committed_ok: bool = False
    topic: str = ""
    group: str = ""
    problems: list[str] = field(default_factory=list)
    output: str = ""
    raw: dict = field(default_factory=dict)

    def explain(self) -> str:
        s = (f"{self.client}: ok={self.ok} produced={self.produced} consumed={self.consumed} "
             f"duplicates={self.duplicates} missing={self.missing} committed_ok={self.committed_ok} "
             f"topic={self.topic} group={self.group}")
        s += "".join(f"\n  problem: {p}" for p in self.problems[:20])
        if self.raw:
            s += "\n  json: " + json.dumps(self.raw)[:3000]
        if self.output:
            s += "\n  output (tail):\n" + "\n".join(self.output.splitlines()[-40:])
        return s


def rdkafka_tls_roundtrip(bootstrap: str, ssl_conf: dict, records: int) -> RoundTrip:
    """Create a topic, produce `records` keyed records (idempotent, acks=all),
    consume them in a group and commit, with librdkafka and `ssl_conf`."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    topic, group = names("rdk-tls")
    run = uuid.uuid4().hex[:8]
    rt = RoundTrip("librdkafka", topic=topic, group=group)
    log = RdkafkaLog(run)
    try:
        admin = AdminClient(rdkafka_conf(bootstrap, log, f"tls-admin-{run}", **ssl_conf))
        rdkafka_create_topic(admin, topic, PARTITIONS)
        producer = Producer(rdkafka_conf(bootstrap, log, f"tls-producer-{run}", **ssl_conf,
                                         **{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
        sent = make_records(run, 0, records, [0] * KEYS)
        rdkafka_produce(producer, topic, run, sent)
        rt.produced = len(sent)
        conf = rdkafka_consumer_conf(bootstrap, log, f"tls-consumer-{run}", group)
        conf.update(ssl_conf)
        got, committed, _ = rdkafka_consume(conf, topic, run, sent, 60)
        ch = check_phase(run, "consume", sent, got, [])
        rt.consumed, rt.duplicates, rt.missing = ch.consumed, ch.duplicates, ch.missing
        rt.problems += ch.problems
        want = {}
        for s in sent:
            want[s.partition] = max(want.get(s.partition, 0), s.offset + 1)
        rt.committed_ok = all(committed.get(p) == off for p, off in want.items())
        if not rt.committed_ok:
            rt.problems.append(f"committed {committed}, expected {want}")
        rt.ok = (ch.consumed == records and ch.duplicates == 0 and ch.missing == 0 and ch.order_ok
                 and ch.unexpected == 0 and rt.committed_ok)
        producer.flush(10)
    except Exception as e:  # noqa: BLE001 - reported in the result
        rt.problems.append(f"{type(e).__name__}: {e}")
    finally:
        rt.output = log.text(60)
    return rt


def rdkafka_metadata_errors(bootstrap: str, ssl_conf: dict, timeout: float = 8.0) -> tuple[bool, list[str], float]:
    """Asks for metadata once; returns (succeeded, errors seen by error_cb and
    the logger, seconds taken)."""
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    log = RdkafkaLog(uuid.uuid4().hex[:8])
    conf = rdkafka_conf(bootstrap, log, "tls-metadata-probe", **ssl_conf)
    conf["error_cb"] = lambda e: errors.append(str(e))
    conf["debug"] = "security,broker"
    t0 = time.monotonic()
    admin = AdminClient(conf)
    ok = False
    try:
        md = admin.list_topics(timeout=timeout)
        ok = bool(md.brokers)
    except Exception as e:  # noqa: BLE001 - the expected outcome
        errors.append(f"list_topics: {e}")
    admin.poll(0)
    took = time.monotonic() - t0
    errors += [l for l in log.lines if re.search(r"ssl|handshake|certificate|alert|disconnect", l, re.I)]
    return ok, errors, took


# --------------------------------------------------------------------------
# The Java client with TLS settings
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def java_tls_classes() -> Path:
    sources = sorted(JAVA_TLS_DIR.glob("*.java"))
    out = DEPS / "java-tls-classes"
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".stamp"
    newest = max(s.stat().st_mtime for s in sources)
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        javac = shutil.which("javac") or pytest.fail("javac not found: run tests/setup.sh")
        r = subprocess.run([javac, "-nowarn", "-d", str(out), "-cp", kafka_jars_classpath(), *map(str, sources)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"javac failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
        stamp.touch()
    return out


def java_ssl_props(pki: Pki, keystore: Optional[str], truststore: str = "truststore.p12") -> dict:
    p = {
        "security.protocol": "SSL",
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": pki(truststore),
        "ssl.truststore.password": P12_PASS,
    }
    if keystore:
        p.update({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": pki(keystore),
                  "ssl.keystore.password": P12_PASS, "ssl.key.password": P12_PASS})
    return p


def java_tls_client(classes: Path, props: dict, mode: str, bootstrap: str, *args: str,
                    timeout: float = 150) -> tuple[dict, str]:
    """Runs KgateTlsClient; returns (its JSON, its output for messages)."""
    java = shutil.which("java") or pytest.fail("java not found: run tests/setup.sh")
    pf = run_dir() / f"java-{uuid.uuid4().hex[:8]}.properties"
    pf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    cmd = [java, "-cp", f"{classes}:{kafka_jars_classpath()}", "KgateTlsClient", str(pf), mode, bootstrap, *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"did not finish within {timeout}s"}, " ".join(cmd)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    output = f"$ {' '.join(cmd)}\nexit {r.returncode}\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    try:
        return json.loads(lines[-1]), output
    except (IndexError, ValueError):
        return {"ok": False, "error": f"no JSON (exit {r.returncode})"}, output


# --------------------------------------------------------------------------
# Ground truth over TLS
# --------------------------------------------------------------------------


def tls_truth(bootstrap: str, ssl_conf: dict, topic: str, group: str, timeout: float = 30) -> Truth:
    """scenarios.broker_truth for a broker behind TLS: reads the whole topic
    (assigned, never joining the group) and the group's committed offsets,
    straight from the broker (not through kgate). tansu advertises the TLS
    port, so its plaintext port alone is not enough."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    log = RdkafkaLog(f"truth-{uuid.uuid4().hex[:6]}")  # keeps librdkafka's complaints off stderr
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "enable.partition.eof": True, "logger": log.logger, **ssl_conf})
    try:
        md = c.list_topics(topic, timeout=15).topics[topic]
        if md.error is not None:
            raise AssertionError(f"topic {topic} in the upstream: {md.error}")
        parts = sorted(md.partitions)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=15)}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        records = []
        high: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(high) < len(parts) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        high[m.partition()] = m.offset()
                        continue
                    raise AssertionError(f"reading {topic} from the upstream: {m.error()}")
                high.pop(m.partition(), None)
                records.append((m.partition(), m.offset(), m.key().decode() if m.key() else None,
                                m.value().decode() if m.value() else None))
        if len(high) < len(parts):
            raise AssertionError(f"could not read {topic} to its end from the upstream within {timeout}s")
        return Truth(len(parts), records, high, committed)
    finally:
        c.close()

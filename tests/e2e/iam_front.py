"""An MSK-like SASL front for tests: terminates SASL, then pipes to tansu.

    client/kgate --(Kafka + SASL)--> IamFront (localhost:P) --(plain Kafka)--> tansu

tansu's memory storage has no SASL, so this front plays the part of an MSK
broker's SASL layer:

- ApiVersions (any time) is forwarded to tansu and the answer gets
  SaslHandshake v0-1 and SaslAuthenticate v0-2 added.
- SaslHandshake v0/v1 with AWS_MSK_IAM, OAUTHBEARER or PLAIN, then
  SaslAuthenticate v0-2 (or, after a v0 handshake, raw SASL tokens), checked
  like MSK: AWS_MSK_IAM JSON payloads and MSK IAM OAUTHBEARER tokens are
  verified with botocore (sigv4_oracle): signed host must be `broker_host`,
  region `region`, not expired, skew within `max_skew_s`, and the secret
  (and session token) must be the *current* one in the front's secrets table
  (tests rotate it). PLAIN checks a users table.
- Success: AWS_MSK_IAM answers {"version":"2020_10_22","request-id":"<uuid>"};
  SaslAuthenticate v1+ carries session_lifetime_ms = `lifetime_ms` (capped by
  the credentials' expiration, as MSK seems to do, and for OAUTHBEARER by the
  token's expiry).
- Failure: error 58 SASL_AUTHENTICATION_FAILED with "Access denied" (plus
  ": <reason>" when verbose_errors), then the connection is closed.
  OAUTHBEARER failures follow Apache Kafka's RFC 7628 flow: the server first
  answers error 0 with auth_bytes {"status":"invalid_token"}, the client
  sends "\x01", and only then comes error 58 (message {"status":"invalid_token"}).
  `fail_next(n, "Too many connects")` makes the next n authentications fail
  with that message (MSK's connection-rate throttle).
- Like Kafka/MSK, the front handles one request at a time per connection (a
  Kafka broker mutes a channel while a request is processed) and closes any
  connection whose session has expired at its next request that is not a
  SaslHandshake. A SaslHandshake+SaslAuthenticate on an authenticated
  connection re-authenticates (KIP-368): same mechanism, same principal
  ("Cannot change principals during re-authentication" otherwise); it extends
  the session. Between a re-auth handshake and its authenticate, any other
  request closes the connection ("request during re-authentication"), as in
  Kafka.
- Before authentication, any request other than ApiVersions, SaslHandshake and
  SaslAuthenticate closes the connection.
- After authentication, every request is forwarded verbatim to tansu over one
  upstream connection per client connection; responses come back in order.
  tansu must advertise the front's address: start it with
  --advertised-listener-url tcp://localhost:<front port>.

Control (in-process, thread-safe): IamFront.stats(), set_secret(),
remove_secret(), set_secrets(), add_resolver(), set_user(), set_lifetime_ms(),
set_region(), set_broker_host(), fail_next(), reset_stats().

CLI for manual runs:
    python tests/e2e/iam_front.py --listen 127.0.0.1:9092 --upstream 127.0.0.1:9093 \
        --secret AKID=SECRET --user alice=secret --lifetime-ms 3000 --region us-east-1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import logging
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

import sigv4_oracle as oracle

log = logging.getLogger("iam_front")

# API keys
PRODUCE, API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 0, 18, 17, 36
# error codes
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58

MECHANISMS = ("AWS_MSK_IAM", "OAUTHBEARER", "PLAIN")
MAX_FRAME = 100 * 1024 * 1024


# --------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------


class WireError(Exception):
    pass


class Reader:
    def __init__(self, b: bytes, pos: int = 0):
        self.b = b
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.b):
            raise WireError(f"need {n} bytes at {self.pos}, have {len(self.b) - self.pos}")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise WireError("uvarint too long")

    def nstring(self) -> Optional[str]:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def cnstring(self) -> Optional[str]:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def bytes32(self) -> bytes:
        n = self.i32()
        return b"" if n < 0 else self.take(n)

    def cbytes(self) -> bytes:
        n = self.uvarint()
        return b"" if n == 0 else self.take(n - 1)

    def tagged(self) -> bytes:
        """Skips a tagged-field section, returning its raw bytes."""
        start = self.pos
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())
        return self.b[start:self.pos]

    def rest(self) -> bytes:
        out = self.b[self.pos:]
        self.pos = len(self.b)
        return out


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def i16(n: int) -> bytes:
    return struct.pack(">h", n)


def i32(n: int) -> bytes:
    return struct.pack(">i", n)


def i64(n: int) -> bytes:
    return struct.pack(">q", n)


def nstring(s: Optional[str]) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def cnstring(s: Optional[str]) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def bytes32(b: bytes) -> bytes:
    return i32(len(b)) + b


def cbytes(b: bytes) -> bytes:
    return uvarint(len(b) + 1) + b


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> Optional[bytes]:
    """One length-prefixed frame, or None on a clean EOF before its first byte."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise WireError("EOF inside a frame length")
    (n,) = struct.unpack(">i", head)
    if n < 0 or n > limit:
        raise WireError(f"bad frame length {n}")
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise WireError("EOF inside a frame")


@dataclass
class ReqHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: Optional[str]
    body_offset: int  # offset of the body for header v1 (v2: after tagged fields, if known)


def parse_header(buf: bytes, flexible: bool) -> ReqHeader:
    r = Reader(buf)
    key, ver, corr = r.i16(), r.i16(), r.i32()
    cid = r.nstring()
    if flexible:
        r.tagged()
    return ReqHeader(key, ver, corr, cid, r.pos)


def peek_header(buf: bytes) -> tuple[int, int, int]:
    if len(buf) < 8:
        raise WireError(f"request of {len(buf)} bytes has no header")
    return struct.unpack(">hhi", buf[:8])


def produce_acks(buf: bytes) -> int:
    """acks of a Produce request (header v1 before v9, v2 from v9)."""
    _, ver, _ = peek_header(buf)
    h = parse_header(buf, flexible=ver >= 9)
    r = Reader(buf, h.body_offset)
    if ver >= 9:
        r.cnstring()
    elif ver >= 3:
        r.nstring()
    return r.i16()


def add_sasl_to_api_versions(body: bytes, version: int) -> bytes:
    """ApiVersions response body (header v0 already stripped): replaces or adds
    SaslHandshake 0-1 and SaslAuthenticate 0-2. Error answers pass unchanged."""
    r = Reader(body)
    err = r.i16()
    if err != 0:
        return body
    flexible = version >= 3
    n = r.uvarint() - 1 if flexible else r.i32()
    if n < 0 or n > 10000:
        raise WireError(f"bad ApiVersions array length {n}")
    entries = {}
    for _ in range(n):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        tags = r.tagged() if flexible else b""
        entries[k] = (lo, hi, tags)
    rest = r.rest()
    empty_tags = b"\x00" if flexible else b""
    entries[SASL_HANDSHAKE] = (0, 1, empty_tags)
    entries[SASL_AUTHENTICATE] = (0, 2, empty_tags)
    out = bytearray(i16(0))
    out += uvarint(len(entries) + 1) if flexible else i32(len(entries))
    for k in sorted(entries):
        lo, hi, tags = entries[k]
        out += i16(k) + i16(lo) + i16(hi) + tags
    return bytes(out) + rest


# --------------------------------------------------------------------------
# Responses the front writes itself
# --------------------------------------------------------------------------


def handshake_response(corr: int, error: int, mechanisms) -> bytes:
    body = i16(error) + i32(len(mechanisms)) + b"".join(nstring(m) for m in mechanisms)
    return frame(i32(corr) + body)


def authenticate_response(corr: int, version: int, error: int, message: Optional[str], auth: bytes,
                          lifetime_ms: int) -> bytes:
    if version >= 2:
        body = i16(error) + cnstring(message) + cbytes(auth) + i64(lifetime_ms) + b"\x00"
        return frame(i32(corr) + b"\x00" + body)  # response header v1: empty tagged fields
    body = i16(error) + nstring(message) + bytes32(auth)
    if version >= 1:
        body += i64(lifetime_ms)
    return frame(i32(corr) + body)


def parse_authenticate_request(buf: bytes) -> tuple[ReqHeader, bytes]:
    _, ver, _ = peek_header(buf)
    h = parse_header(buf, flexible=ver >= 2)
    r = Reader(buf, h.body_offset)
    auth = r.cbytes() if ver >= 2 else r.bytes32()
    return h, auth


def parse_handshake_request(buf: bytes) -> tuple[ReqHeader, str]:
    h = parse_header(buf, flexible=False)
    r = Reader(buf, h.body_offset)
    return h, r.nstring() or ""


# --------------------------------------------------------------------------
# The front
# --------------------------------------------------------------------------


@dataclass
class AuthResult:
    ok: bool
    principal: Optional[str] = None
    message: str = ""  # error message sent to the client on failure
    reason: str = ""  # why, for the stats
    reply: bytes = b""  # auth_bytes on success
    lifetime_cap_ms: Optional[int] = None  # from credential/token expiry
    challenge: bool = False  # OAUTHBEARER: send reply with error 0, fail on the client's \x01
    detail: dict = field(default_factory=dict)


@dataclass
class ConnStats:
    id: int
    peer: str
    opened: float
    mechanism: Optional[str] = None
    principal: Optional[str] = None
    auths: int = 0  # successful authentications, first one included
    reauths: int = 0
    requests: int = 0
    forwarded: int = 0
    session_expires: Optional[float] = None  # monotonic
    last_lifetime_ms: Optional[int] = None
    user_agents: list = field(default_factory=list)
    access_keys: list = field(default_factory=list)  # AWS keys used, in order of first use
    client_ids: list = field(default_factory=list)  # request header client ids, first 8 distinct
    closed: Optional[str] = None
    closed_at: Optional[float] = None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("session_expires", None)
        return d


class Closing(Exception):
    """Close the client connection for `reason` (after writing `last`, if any)."""

    def __init__(self, reason: str, last: bytes = b""):
        super().__init__(reason)
        self.reason = reason
        self.last = last


class IamFront:
    def __init__(
        self,
        upstream: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        broker_host: str = "localhost",
        region: str = "us-east-1",
        lifetime_ms: int = 3000,
        mechanisms=MECHANISMS,
        max_skew_s: float = 300,
        verbose_errors: bool = True,
        cap_lifetime_by_credentials: bool = True,
        log_path=None,
    ):
        self.upstream = upstream
        self.listen = listen
        self.port: Optional[int] = None
        self._lock = threading.RLock()
        self.broker_host = broker_host
        self.region = region
        self.lifetime_ms = lifetime_ms
        self.mechanisms = tuple(mechanisms)
        self.max_skew_s = max_skew_s
        self.verbose_errors = verbose_errors
        self.cap_lifetime_by_credentials = cap_lifetime_by_credentials
        self._secrets: dict[str, oracle.Identity] = {}
        self._resolvers: list[Callable[[str], Optional[oracle.Identity]]] = []
        self._users: dict[str, str] = {}
        self._fail_next: list = []  # [count, message]
        self._log_file = open(log_path, "a", buffering=1) if log_path else None
        self.reset_stats()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server = None
        self._tasks: set = set()
        self._conn_seq = 0

    # ---- control API (any thread) --------------------------------------

    def set_secret(self, access_key: str, secret: str, token: Optional[str] = None,
                   expiration: Optional[float] = None, principal: Optional[str] = None) -> None:
        with self._lock:
            self._secrets[access_key] = oracle.Identity(secret, token, expiration, principal)
            self._event("secret-set", access_key=access_key, expiration=expiration, principal=principal)

    def remove_secret(self, access_key: str) -> None:
        with self._lock:
            self._secrets.pop(access_key, None)
            self._event("secret-removed", access_key=access_key)

    def set_secrets(self, table: dict) -> None:
        """Replaces the whole table: access key -> secret str | dict | Identity."""
        with self._lock:
            self._secrets = {k: oracle.Identity.of(v) for k, v in table.items()}
            self._event("secrets-replaced", keys=sorted(self._secrets))

    def secrets(self) -> dict:
        with self._lock:
            return dict(self._secrets)

    def add_resolver(self, fn: Callable[[str], Optional[oracle.Identity]]) -> None:
        """fn(access_key) -> Identity | None, asked when the table has no entry
        (aws_mocks.MotoSts plugs moto's issued credentials in here)."""
        with self._lock:
            self._resolvers.append(fn)

    def set_user(self, user: str, password: Optional[str]) -> None:
        with self._lock:
            if password is None:
                self._users.pop(user, None)
            else:
                self._users[user] = password

    def set_lifetime_ms(self, ms: int) -> None:
        with self._lock:
            self.lifetime_ms = int(ms)

    def set_region(self, region: str) -> None:
        with self._lock:
            self.region = region

    def set_broker_host(self, host: str) -> None:
        with self._lock:
            self.broker_host = host

    def fail_next(self, n: int, message: str = "Too many connects") -> None:
        with self._lock:
            self._fail_next = [int(n), message]

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = {
                "connections": 0,
                "auths": 0,  # first authentications that succeeded
                "reauths": 0,  # re-authentications that succeeded
                "failures": [],  # {"mechanism","reason","message","reauth"}
                "closes": collections.Counter(),
                "expired_closes": 0,
                "requests_forwarded": 0,
                "by_mechanism": collections.Counter(),
                "principals": collections.Counter(),
                "user_agents": collections.Counter(),
                "iam_payload_keys": set(),
                "iam_expires": collections.Counter(),  # x-amz-expires values seen
                "sasl_authenticate_versions": collections.Counter(),  # -1: bare token after SaslHandshake v0
            }
            self._conns: dict[int, ConnStats] = getattr(self, "_conns", {})
            self._closed_conns: list[ConnStats] = []
            self._events = collections.deque(maxlen=2000)

    def stats(self) -> dict:
        """A snapshot: counters, failures, per-connection records."""
        with self._lock:
            s = dict(self._stats)
            s["failures"] = list(s["failures"])
            s["closes"] = dict(s["closes"])
            s["by_mechanism"] = dict(s["by_mechanism"])
            s["principals"] = dict(s["principals"])
            s["user_agents"] = dict(s["user_agents"])
            s["iam_expires"] = dict(s["iam_expires"])
            s["sasl_authenticate_versions"] = dict(s["sasl_authenticate_versions"])
            s["iam_payload_keys"] = [list(t) for t in sorted(s["iam_payload_keys"])]
            s["open"] = [c.as_dict() for c in self._conns.values()]
            s["closed"] = [c.as_dict() for c in self._closed_conns]
            return s

    def events(self, last: int = 200) -> list[str]:
        with self._lock:
            return list(self._events)[-last:]

    def _event(self, what: str, **kw) -> None:
        line = f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {what} " + " ".join(
            f"{k}={v}" for k, v in kw.items())
        with self._lock:
            self._events.append(line)
        if self._log_file:
            self._log_file.write(line + "\n")
        log.debug(line)

    # ---- lifecycle -----------------------------------------------------

    def start(self) -> "IamFront":
        """Runs the server on its own event loop in a daemon thread."""
        ready = threading.Event()
        err: list = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.listen[0], self.listen[1], reuse_address=True))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # noqa: BLE001
                err.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="iam-front", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        self._event("listening", port=self.port, upstream=f"{self.upstream[0]}:{self.upstream[1]}")
        return self

    def stop(self) -> None:
        if not self._loop:
            return

        async def shutdown():
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.sleep(0)

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def close_all(self, reason: str = "closed by test") -> None:
        """Drops every client connection now."""
        async def go():
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=3)
        if self._loop:
            asyncio.run_coroutine_threadsafe(go(), self._loop).result(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- authentication --------------------------------------------------

    def _lookup(self, access_key: str) -> Optional[oracle.Identity]:
        with self._lock:
            ident = self._secrets.get(access_key)
            resolvers = list(self._resolvers)
        if ident is not None:
            return ident
        for fn in resolvers:
            got = fn(access_key)
            if got is not None:
                return oracle.Identity.of(got)
        return None

    def _denied(self, reason: str, base: str = "Access denied") -> AuthResult:
        msg = f"{base}: {reason}" if self.verbose_errors else base
        return AuthResult(False, message=msg, reason=reason)

    def _authenticate(self, mechanism: str, auth: bytes, now: float) -> AuthResult:
        with self._lock:
            if self._fail_next and self._fail_next[0] > 0:
                self._fail_next[0] -= 1
                return AuthResult(False, message=self._fail_next[1], reason=f"injected: {self._fail_next[1]}")
            region, host, skew = self.region, self.broker_host, self.max_skew_s
        if mechanism == "PLAIN":
            parts = auth.split(b"\x00")
            if len(parts) != 3:
                return AuthResult(False,
                                  message="Authentication failed: Invalid SASL/PLAIN response: expected 3 tokens",
                                  reason="malformed PLAIN message")
            authz, user, pw = (p.decode("utf-8", "replace") for p in parts)
            with self._lock:
                want = self._users.get(user)
            if authz and authz != user:
                return AuthResult(False, message="Authentication failed: Client requested an authorization id that "
                                  "is different from username", reason="authzid differs")
            if want is None or want != pw:
                return AuthResult(False, message="Authentication failed: Invalid username or password",
                                  reason=f"bad password for {user!r}")
            return AuthResult(True, principal=f"User:{user}")
        if mechanism == "AWS_MSK_IAM":
            try:
                payload = json.loads(auth)
            except ValueError as e:
                return self._denied(f"payload is not JSON: {e}")
            v = oracle.verify_msk_iam_payload(payload, self._lookup, dt.datetime.now(dt.timezone.utc),
                                              host, region, skew)
            detail = {"keys": sorted(payload) if isinstance(payload, dict) else [],
                      "user-agent": payload.get("user-agent") if isinstance(payload, dict) else None,
                      "expires": payload.get("x-amz-expires") if isinstance(payload, dict) else None,
                      "access_key": v.access_key}
            if not v.ok:
                r = self._denied(v.reason)
                r.detail = detail
                return r
            reply = json.dumps({"version": oracle.VERSION, "request-id": str(uuid.uuid4())},
                               separators=(",", ":")).encode()
            cap = None
            if self.cap_lifetime_by_credentials and v.credential_expires_at is not None:
                cap = int((v.credential_expires_at - time.time()) * 1000)
            return AuthResult(True, principal=v.principal, reply=reply, lifetime_cap_ms=cap, detail=detail)
        if mechanism == "OAUTHBEARER":
            token = oracle.parse_oauthbearer_client_first(auth)
            if token is None:
                r = AuthResult(False, message='{"status":"invalid_request"}', reason="malformed OAUTHBEARER message",
                               reply=b'{"status":"invalid_request"}', challenge=True)
                return r
            v = oracle.verify_oauthbearer_token(token, self._lookup, dt.datetime.now(dt.timezone.utc), region, skew)
            ua = None
            try:
                from urllib.parse import parse_qs, urlsplit
                ua = parse_qs(urlsplit(oracle.b64url_decode(token).decode()).query).get("User-Agent", [None])[0]
            except Exception:  # noqa: BLE001
                pass
            detail = {"user-agent": ua, "access_key": v.access_key}
            if not v.ok:
                return AuthResult(False, message='{"status":"invalid_token"}', reason=v.reason,
                                  reply=b'{"status":"invalid_token"}', challenge=True, detail=detail)
            caps = [int((v.signature_expires_at - time.time()) * 1000)]
            if self.cap_lifetime_by_credentials and v.credential_expires_at is not None:
                caps.append(int((v.credential_expires_at - time.time()) * 1000))
            return AuthResult(True, principal=v.principal, reply=b"", lifetime_cap_ms=min(caps), detail=detail)
        return AuthResult(False, message=f"Unsupported SASL mechanism {mechanism}", reason="unsupported mechanism")

    # ---- connections -----------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        with self._lock:
            self._conn_seq += 1
            cs = ConnStats(self._conn_seq, f"{peer[0]}:{peer[1]}" if peer else "?", time.time())
            self._conns[cs.id] = cs
            self._stats["connections"] += 1
        self._event("accept", conn=cs.id, peer=cs.peer)
        up: dict = {}  # "conn": (reader, writer) of the tansu connection, once opened
        reason = "?"
        try:
            reason = await self._serve(cs, reader, writer, up)
        except Closing as c:
            reason = c.reason
            if c.last:
                try:
                    writer.write(c.last)
                    await writer.drain()
                except OSError:
                    pass
        except WireError as e:
            reason = f"protocol error: {e}"
        except ConnectionResetError:
            reason = "client reset"  # the client closed with unread data (RST): its choice, like a FIN
        except (ConnectionError, OSError) as e:
            reason = f"io error: {e}"
        except asyncio.CancelledError:
            reason = "front stopped"
        except Exception as e:  # noqa: BLE001
            log.exception("front connection %s", cs.id)
            reason = f"front bug: {e!r}"
        finally:
            for w in (writer, up["conn"][1] if up.get("conn") else None):
                if w is not None:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001
                        pass
            key = reason.split(":")[0]
            with self._lock:
                cs.closed, cs.closed_at = reason, time.time()
                self._conns.pop(cs.id, None)
                self._closed_conns.append(cs)
                self._stats["closes"][key] += 1
                if key == "expired":
                    self._stats["expired_closes"] += 1
            self._event("close", conn=cs.id, reason=repr(reason), auths=cs.auths, reauths=cs.reauths)
            self._tasks.discard(task)

    async def _serve(self, cs: ConnStats, reader, writer, up: dict) -> str:
        """Runs one client connection; returns the close reason (or raises
        Closing). The upstream connection, once opened, is put in up["conn"]."""
        authenticated = False
        pending_mech: Optional[str] = None  # after a handshake, before its authenticate
        raw_mode = False  # after a SaslHandshake v0: next frame is a bare SASL token
        oauth_challenged: Optional[AuthResult] = None

        async def upstream():
            if "conn" not in up:
                try:
                    up["conn"] = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
                except (OSError, asyncio.TimeoutError) as e:
                    raise Closing(f"upstream unreachable: {e}")
            return up["conn"]

        async def forward(buf: bytes, expect_response: bool) -> Optional[bytes]:
            ur, uw = await upstream()
            try:
                uw.write(frame(buf))
                await uw.drain()
                if not expect_response:
                    return None
                resp = await read_frame(ur)
            except (OSError, WireError) as e:
                raise Closing(f"upstream error: {e}")
            if resp is None:
                raise Closing("upstream closed")
            return resp

        def finish_auth(mech: str, res: AuthResult, version: int) -> int:
            """Records a successful (re-)authentication; returns the lifetime to send."""
            nonlocal authenticated
            with self._lock:
                lifetime = self.lifetime_ms
            if res.lifetime_cap_ms is not None:
                lifetime = max(0, min(lifetime, res.lifetime_cap_ms))
            reauth = authenticated
            with self._lock:
                cs.mechanism, cs.principal = mech, res.principal
                cs.auths += 1
                cs.session_expires = time.monotonic() + lifetime / 1000 if lifetime > 0 else None
                cs.last_lifetime_ms = lifetime
                ak = res.detail.get("access_key")
                if ak and ak not in cs.access_keys:
                    cs.access_keys.append(ak)
                ua = res.detail.get("user-agent")
                if ua:
                    cs.user_agents = sorted(set(cs.user_agents) | {ua})
                    self._stats["user_agents"][ua] += 1
                if res.detail.get("expires"):
                    self._stats["iam_expires"][res.detail["expires"]] += 1
                self._stats["sasl_authenticate_versions"][version] += 1
                if res.detail.get("keys"):
                    self._stats["iam_payload_keys"].add(tuple(res.detail["keys"]))
                self._stats["reauths" if reauth else "auths"] += 1
                if reauth:
                    cs.reauths += 1
                self._stats["by_mechanism"][mech] += 1
                self._stats["principals"][res.principal] += 1
            authenticated = True
            self._event("reauth" if reauth else "auth", conn=cs.id, mech=mech, principal=res.principal,
                        lifetime_ms=lifetime, v=version, key=res.detail.get("access_key"))
            return lifetime

        def record_failure(mech: str, res: AuthResult, reauth: bool) -> None:
            with self._lock:
                self._stats["failures"].append({"mechanism": mech, "reason": res.reason, "message": res.message,
                                                "reauth": reauth, "conn": cs.id, **{k: v for k, v in res.detail.items()
                                                                                     if k != "keys"}})
            self._event("auth-failed", conn=cs.id, mech=mech, reason=repr(res.reason), reauth=reauth)

        while True:
            buf = await read_frame(reader)
            if buf is None:
                return "client closed" if not pending_mech else "client closed during authentication"
            cs.requests += 1
            if len(cs.client_ids) < 8 and not raw_mode:
                try:
                    cid = parse_header(buf, False).client_id
                except (WireError, UnicodeDecodeError):
                    cid = None
                if cid is not None and cid not in cs.client_ids:
                    cs.client_ids.append(cid)

            if raw_mode:  # SaslHandshake v0: a bare token, answered by a bare token
                mech, pending_mech, raw_mode = pending_mech, None, False
                was = authenticated
                res = self._authenticate(mech, buf, time.time())
                if not res.ok:
                    record_failure(mech, res, was)
                    raise Closing(f"auth failed: {res.reason}")
                if was and res.principal != cs.principal:
                    raise Closing("auth failed: principal changed during re-authentication")
                finish_auth(mech, res, -1)
                writer.write(frame(res.reply))
                await writer.drain()
                continue

            key, ver, corr = peek_header(buf)

            if key == SASL_HANDSHAKE:
                h, mech = parse_handshake_request(buf)
                if ver > 1:
                    raise Closing(f"protocol error: SaslHandshake v{ver}")
                if pending_mech is not None:
                    raise Closing("protocol error: second SaslHandshake before SaslAuthenticate")
                enabled = self.mechanisms
                if mech not in enabled:
                    raise Closing(f"unsupported mechanism {mech!r}",
                                  handshake_response(corr, UNSUPPORTED_SASL_MECHANISM, enabled))
                if authenticated and mech != cs.mechanism:
                    raise Closing(f"mechanism changed on re-authentication ({cs.mechanism} -> {mech})",
                                  handshake_response(corr, UNSUPPORTED_SASL_MECHANISM, enabled))
                pending_mech = mech
                raw_mode = ver == 0
                self._event("handshake", conn=cs.id, mech=mech, v=ver, reauth=authenticated)
                writer.write(handshake_response(corr, 0, enabled))
                await writer.drain()
                continue

            if key == SASL_AUTHENTICATE:
                if ver > 2:
                    raise Closing(f"protocol error: SaslAuthenticate v{ver}")
                if pending_mech is None:
                    raise Closing("SaslAuthenticate without SaslHandshake")
                h, auth = parse_authenticate_request(buf)
                mech = pending_mech
                reauth = authenticated
                if oauth_challenged is not None:
                    # the client's answer to our error challenge: now fail
                    res, oauth_challenged = oauth_challenged, None
                    raise Closing(f"auth failed: {res.reason}",
                                  authenticate_response(corr, ver, SASL_AUTHENTICATION_FAILED, res.message, b"", 0))
                res = self._authenticate(mech, auth, time.time())
                if res.ok and reauth and res.principal != cs.principal:
                    res = AuthResult(False, message="Cannot change principals during re-authentication",
                                     reason=f"principal {cs.principal} -> {res.principal}", detail=res.detail)
                if not res.ok:
                    record_failure(mech, res, reauth)
                    if res.challenge and auth != b"\x01":
                        oauth_challenged = res
                        writer.write(authenticate_response(corr, ver, 0, None, res.reply, 0))
                        await writer.drain()
                        continue
                    raise Closing(f"auth failed: {res.reason}",
                                  authenticate_response(corr, ver, SASL_AUTHENTICATION_FAILED, res.message, b"", 0))
                pending_mech = None
                lifetime = finish_auth(mech, res, ver)
                writer.write(authenticate_response(corr, ver, 0, None, res.reply, lifetime))
                await writer.drain()
                continue

            if pending_mech is not None:
                raise Closing(f"request during {'re-' if authenticated else ''}authentication: key {key} v{ver}")

            if authenticated and cs.session_expires is not None and time.monotonic() > cs.session_expires:
                late = time.monotonic() - cs.session_expires
                raise Closing(f"expired: session of {cs.principal} ended {late * 1000:.0f} ms before key {key} v{ver}")

            if key == API_VERSIONS:
                resp = await forward(buf, True)
                try:
                    body = add_sasl_to_api_versions(resp[4:], ver)
                except WireError as e:
                    raise Closing(f"protocol error: tansu's ApiVersions: {e}")
                writer.write(frame(resp[:4] + body))
                await writer.drain()
                continue

            if not authenticated:
                raise Closing(f"request before authentication: key {key} v{ver}")

            expect = True
            if key == PRODUCE:
                try:
                    expect = produce_acks(buf) != 0
                except WireError as e:
                    raise Closing(f"protocol error: Produce: {e}")
            resp = await forward(buf, expect)
            cs.forwarded += 1
            with self._lock:
                self._stats["requests_forwarded"] += 1
            if resp is not None:
                if len(resp) < 4 or struct.unpack(">i", resp[:4])[0] != corr:
                    raise Closing(f"protocol error: upstream answered another correlation id (want {corr})")
                writer.write(frame(resp))
                await writer.drain()


# --------------------------------------------------------------------------
# A minimal client, for tests that need byte-level control
# --------------------------------------------------------------------------


class RawClient:
    """A blocking Kafka client speaking just enough for SASL tests."""

    def __init__(self, host: str, port: int, client_id: str = "raw-test", timeout: float = 10):
        import socket

        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.client_id = client_id
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed by peer")
            out += chunk
        return bytes(out)

    def recv_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def request(self, key: int, ver: int, body: bytes, flexible: bool = False, expect: bool = True) -> Reader:
        self.corr += 1
        head = i16(key) + i16(ver) + i32(self.corr) + nstring(self.client_id) + (b"\x00" if flexible else b"")
        self.sock.sendall(frame(head + body))
        if not expect:
            return Reader(b"")
        resp = self.recv_frame()
        r = Reader(resp)
        got = r.i32()
        if got != self.corr:
            raise WireError(f"correlation id {got}, expected {self.corr}")
        return r

    def api_versions(self, ver: int = 3) -> dict:
        body = (cnstring("raw-test") + cnstring("1.0") + b"\x00") if ver >= 3 else b""
        r = self.request(API_VERSIONS, ver, body, flexible=ver >= 3)  # response header is v0
        err = r.i16()
        if err:
            raise WireError(f"ApiVersions error {err}")
        n = r.uvarint() - 1 if ver >= 3 else r.i32()
        out = {}
        for _ in range(n):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            if ver >= 3:
                r.tagged()
            out[k] = (lo, hi)
        return out

    def handshake(self, mechanism: str, ver: int = 1) -> tuple[int, list]:
        r = self.request(SASL_HANDSHAKE, ver, nstring(mechanism))
        err = r.i16()
        mechs = [r.nstring() for _ in range(r.i32())]
        return err, mechs

    def authenticate(self, auth: bytes, ver: int = 2) -> tuple[int, Optional[str], bytes, Optional[int]]:
        if ver >= 2:
            r = self.request(SASL_AUTHENTICATE, ver, cbytes(auth) + b"\x00", flexible=True)
            r.tagged()  # response header v1
            err, msg, data, life = r.i16(), r.cnstring(), r.cbytes(), r.i64()
            return err, msg, data, life
        r = self.request(SASL_AUTHENTICATE, ver, bytes32(auth))
        err, msg, data = r.i16(), r.nstring(), r.bytes32()
        life = r.i64() if ver >= 1 else None
        return err, msg, data, life

    def sasl(self, mechanism: str, auth: bytes, auth_ver: int = 2):
        err, mechs = self.handshake(mechanism)
        if err:
            return err, f"handshake error {err}, mechanisms {mechs}", b"", None
        return self.authenticate(auth, auth_ver)

    def metadata(self, topics: Optional[list] = None, ver: int = 1) -> list:
        """Metadata v1 (non-flexible); returns the brokers [(id, host, port)]."""
        body = i32(-1) if topics is None else i32(len(topics)) + b"".join(nstring(t) for t in topics)
        r = self.request(3, ver, body)
        brokers = []
        for _ in range(r.i32()):
            node, host, port = r.i32(), r.nstring(), r.i32()
            r.nstring()  # rack
            brokers.append((node, host, port))
        return brokers


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _hostport(s: str) -> tuple[str, int]:
    h, _, p = s.rpartition(":")
    return h, int(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MSK-like SASL front for a plain Kafka broker (tests only)")
    ap.add_argument("--listen", default="127.0.0.1:9092")
    ap.add_argument("--upstream", required=True, help="the plain broker, e.g. tansu's listener")
    ap.add_argument("--broker-host", default="localhost", help="host the IAM signature must name")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--lifetime-ms", type=int, default=3000)
    ap.add_argument("--secret", action="append", default=[], help="AKID=SECRET[:TOKEN]")
    ap.add_argument("--user", action="append", default=[], help="NAME=PASSWORD for PLAIN")
    ap.add_argument("--stats-every", type=float, default=0, help="print stats JSON every N seconds")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG, format="%(message)s")
    front = IamFront(_hostport(a.upstream), _hostport(a.listen), a.broker_host, a.region, a.lifetime_ms)
    for s in a.secret:
        k, _, v = s.partition("=")
        sec, _, tok = v.partition(":")
        front.set_secret(k, sec, tok or None)
    for u in a.user:
        k, _, v = u.partition("=")
        front.set_user(k, v)
    front.start()
    print(f"iam front on {a.listen.rpartition(':')[0]}:{front.port} -> {a.upstream}", flush=True)
    try:
        while True:
            time.sleep(a.stats_every or 3600)
            if a.stats_every:
                s = front.stats()
                s.pop("open"), s.pop("closed")
                print(json.dumps(s, default=str), flush=True)
    except KeyboardInterrupt:
        pass
    front.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

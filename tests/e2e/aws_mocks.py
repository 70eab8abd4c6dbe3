"""AWS credential sources for kgate's SASL tests, on loopback.

ContainerCredentials
    The ECS/EKS container credentials endpoint
    (AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/creds). Every GET
    returns {AccessKeyId, SecretAccessKey, Token, Expiration, ...}. Credentials
    live `ttl_s` seconds; a request made `rotate_after_s` or more after the
    current ones were issued gets new ones (new key, new secret, new token).
    Each issued credential is registered in the IamFront's secrets table with
    its expiration and one stable principal (the task role), and removed from
    it once expired -- so the front accepts exactly the credentials that are
    still valid, like AWS. With revoke_on_rotate=True the previous ones are
    dropped as soon as new ones are issued (stricter than AWS).
    set_failing(status) makes the endpoint answer with that HTTP status (for
    "no credentials" cases); set_failing(None) heals it.

MotoSts
    moto's STS (ThreadedMotoServer, in this process) behind a small recording
    proxy. Point kgate at `endpoint` (sts_endpoint in its config, or
    AWS_ENDPOINT_URL_STS). The proxy records every call's parameters
    (Action, RoleArn, RoleSessionName, ExternalId, DurationSeconds) and the
    access key that signed it, and registers the credentials in each
    AssumeRole answer with the IamFront, principal =
    arn:aws:sts::<acct>:assumed-role/<role>/<RoleSessionName> (the ARN moto
    returns). moto never checks signatures, so any base credentials work.
    force_ttl_s rewrites the Expiration in the answer (moto's shortest is
    900 s) so that kgate has to assume the role again during a short test.

Decision (documented for the tests): the front runs in "trust the tests'
registered secrets" mode. It knows nothing about moto; every credential a
mock hands out is put in the front's table by the mock itself. Base
credentials used to call STS are *not* registered, so a kgate that signs
Kafka auth with them instead of the assumed role fails.
"""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import re
import secrets as pysecrets
import string
import threading
import time
import urllib.parse
from typing import Optional

ACCOUNT = "123456789012"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(pysecrets.choice(alphabet) for _ in range(n))


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ContainerCredentials:
    def __init__(self, front=None, ttl_s: float = 12, rotate_after_s: Optional[float] = 4,
                 principal: str = f"arn:aws:sts::{ACCOUNT}:assumed-role/ecs-task-role/kgate-task",
                 path: str = "/creds", auth_token: Optional[str] = None, revoke_on_rotate: bool = False):
        self.front = front
        self.ttl_s = ttl_s
        self.rotate_after_s = rotate_after_s
        self.principal = principal
        self.path = path
        self.auth_token = auth_token
        self.revoke_on_rotate = revoke_on_rotate
        self._lock = threading.Lock()
        self._current: Optional[dict] = None
        self._live: dict[str, dict] = {}  # key -> creds registered with the front
        self.issued: list[dict] = []  # every credential handed out (first time)
        self.requests: list[tuple[float, int, Optional[str]]] = []  # (time, status, key)
        self._failing: Optional[int] = None
        self._server: Optional[_QuietServer] = None
        self._stop = threading.Event()

    # ---- credentials ----

    def _issue(self, now: float) -> dict:
        c = {
            "AccessKeyId": "ASIA" + _rand(16, string.ascii_uppercase + string.digits),
            "SecretAccessKey": _rand(40),
            "Token": "IQoJ" + _rand(300, string.ascii_letters + string.digits + "/+") + "==",
            "Expiration": _iso(now + self.ttl_s),
            "_issued": now,
            "_expires": now + self.ttl_s,
        }
        if self.revoke_on_rotate:
            for k in list(self._live):
                self._unregister(k)
        self._current = c
        self.issued.append(c)
        self._live[c["AccessKeyId"]] = c
        if self.front is not None:
            self.front.set_secret(c["AccessKeyId"], c["SecretAccessKey"], c["Token"], c["_expires"], self.principal)
        return c

    def _unregister(self, key: str) -> None:
        self._live.pop(key, None)
        if self.front is not None:
            self.front.remove_secret(key)

    def _sweep(self, now: float) -> None:
        for k, c in list(self._live.items()):
            if now >= c["_expires"]:
                self._unregister(k)

    def current(self, now: Optional[float] = None) -> dict:
        """The credentials a request at `now` gets (issuing new ones when due)."""
        now = time.time() if now is None else now
        with self._lock:
            self._sweep(now)
            c = self._current
            if (c is None or now >= c["_expires"] - 1
                    or (self.rotate_after_s is not None and now - c["_issued"] >= self.rotate_after_s)):
                c = self._issue(now)
            return c

    def keys(self) -> list[str]:
        with self._lock:
            return [c["AccessKeyId"] for c in self.issued]

    def set_failing(self, status: Optional[int]) -> None:
        with self._lock:
            self._failing = status

    # ---- server ----

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def env(self) -> dict:
        e = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url}
        if self.auth_token:
            e["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.auth_token
        return e

    def start(self) -> "ContainerCredentials":
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                now = time.time()
                with mock._lock:
                    failing = mock._failing
                if self.path.split("?")[0] != mock.path:
                    return self._send(404, {"message": "not found"}, now)
                if mock.auth_token is not None and self.headers.get("Authorization") != mock.auth_token:
                    return self._send(403, {"message": "bad authorization token"}, now)
                if failing is not None:
                    err = {"code": "Unavailable", "message": "credentials unavailable (test)"}
                    return self._send(failing, err, now)
                c = mock.current(now)
                body = {k: v for k, v in c.items() if not k.startswith("_")}
                body["RoleArn"] = mock.principal
                self._send(200, body, now, c["AccessKeyId"])

            def _send(self, status, obj, now, key=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with mock._lock:
                    mock.requests.append((now, status, key))

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="container-creds", daemon=True).start()

        def sweeper():
            while not self._stop.wait(0.5):
                with self._lock:
                    self._sweep(time.time())

        threading.Thread(target=sweeper, name="container-creds-sweeper", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# STS (moto) behind a recording proxy
# --------------------------------------------------------------------------


def _xml_field(xml: str, tag: str) -> Optional[str]:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", xml, re.S)
    return m.group(1) if m else None


def _signing_key(auth_header: str) -> Optional[str]:
    m = re.search(r"Credential=([^/,\s]+)/", auth_header or "")
    return m.group(1) if m else None


class MotoSts:
    def __init__(self, front=None, force_ttl_s: Optional[float] = None):
        self.front = front
        self.force_ttl_s = force_ttl_s
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self._moto = None
        self._proxy: Optional[_QuietServer] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._proxy.server_address[1]}"

    def env(self) -> dict:
        return {"AWS_ENDPOINT_URL_STS": self.endpoint}

    def assume_role_calls(self) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c.get("Action") == "AssumeRole"]

    def start(self) -> "MotoSts":
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        mhost, mport = self._moto.get_host_and_port()
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._proxy(b"")

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._proxy(self.rfile.read(n) if n else b"")

            def _proxy(self, body: bytes):
                ctype = self.headers.get("Content-Type", "")
                params: dict = {}
                q = urllib.parse.urlsplit(self.path).query
                params.update(urllib.parse.parse_qsl(q))
                if "json" in ctype and body:
                    try:
                        params.update(json.loads(body))
                    except ValueError:
                        pass
                    target = self.headers.get("X-Amz-Target", "")
                    if target and "Action" not in params:
                        params["Action"] = target.rsplit(".", 1)[-1]
                elif body:
                    params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                conn = http.client.HTTPConnection(mhost, mport, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status, rheaders = resp.status, resp.getheaders()
                finally:
                    conn.close()
                call = {"time": time.time(), "status": status,
                        "signed_by": _signing_key(self.headers.get("Authorization", "")),
                        "content_type": ctype, **{k: v for k, v in params.items() if isinstance(v, (str, int))}}
                if status == 200 and params.get("Action") == "AssumeRole":
                    data = mock._on_assume_role(call, data)
                with mock._lock:
                    mock.calls.append(call)
                self.send_response(status)
                for k, v in rheaders:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._proxy = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._proxy.serve_forever, name="sts-proxy", daemon=True).start()
        return self

    def _on_assume_role(self, call: dict, data: bytes) -> bytes:
        text = data.decode("utf-8", "replace")
        key = _xml_field(text, "AccessKeyId")
        secret = _xml_field(text, "SecretAccessKey")
        token = _xml_field(text, "SessionToken")
        arn = _xml_field(text, "Arn")
        exp_s = _xml_field(text, "Expiration")
        if not (key and secret and token):
            call["unparsed_response"] = text[:500]
            return data
        if self.force_ttl_s is not None:
            exp = time.time() + self.force_ttl_s
            new = _iso(exp)
            text = re.sub(r"<Expiration>.*?</Expiration>", f"<Expiration>{new}</Expiration>", text, flags=re.S)
            data = text.encode()
        else:
            exp = dt.datetime.fromisoformat(exp_s.replace("Z", "+00:00")).timestamp() if exp_s else None
        call.update({"issued_key": key, "principal": arn, "expiration": exp})
        if self.front is not None:
            self.front.set_secret(key, secret, token, exp, arn)
        return data

    def stop(self) -> None:
        if self._proxy:
            self._proxy.shutdown()
            self._proxy.server_close()
        if self._moto:
            self._moto.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

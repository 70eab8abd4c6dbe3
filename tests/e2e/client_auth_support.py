"""Shared by the client-authentication end-to-end tests (test_client_auth.py,
test_client_auth_raw.py): the users file written by `kgate user add`, a JWKS
and JWTs minted with PyJWT, kgate with [client_auth] in front of tansu
(plaintext and TLS), its metrics, a raw Kafka client for the SASL exchange,
and an OAuth token endpoint for the Java client."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from scramp import ScramClient

from harness import LOOPBACK, free_port, kgate_bin, stop_kgate
from tls_support import downstream_tls, start_kgate_toml

USERS = {"alice": ("alice-pw", "SCRAM-SHA-512"), "bob": ("bob-pw", "SCRAM-SHA-256")}
ISSUER = "https://issuer.kgate.test"
AUDIENCE = "kgate-clients"
LIFETIME_MS = 5000
AUTH_TIMEOUT_MS = 3000


@dataclass
class AuthFiles:
    dir: Path
    users: Path
    jwks: Path
    key: ec.EllipticCurvePrivateKey


def kgate_user_add(users: Path, name: str, password: str, mechanism: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(kgate_bin()), "user", "add", name, "--mechanism", mechanism, "--iterations", "4096",
                           "--file", str(users)], input=password + "\n", capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> AuthFiles:
    d = tmp_path_factory.mktemp("client-auth")
    users = d / "users.toml"
    for name, (pw, mech) in USERS.items():
        r = kgate_user_add(users, name, pw, mech)
        assert r.returncode == 0, r.stderr
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES256", "use": "sig"})
    jwks = d / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return AuthFiles(d, users, jwks, key)


def mint(f: AuthFiles, sub: str = "carol", exp_in: int = 3600, aud: str = AUDIENCE) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iss": ISSUER, "aud": aud, "iat": now, "exp": now + exp_in}, f.key,
                      algorithm="ES256", headers={"kid": "k1"})


def auth_config(f: AuthFiles, admin: int) -> dict:
    return {
        "admin_listen": f"{LOOPBACK}:{admin}",
        "client_auth": {"mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"],
                        "users_file": str(f.users), "session_lifetime_ms": LIFETIME_MS,
                        "auth_timeout_ms": AUTH_TIMEOUT_MS},
        "client_auth.oauthbearer": {"jwks_file": str(f.jwks), "issuer": ISSUER, "audience": AUDIENCE},
    }


@pytest.fixture(scope="module")
def kg(tansu, files):
    admin = free_port()
    k = start_kgate_toml("client-auth", tansu, auth_config(files, admin))
    k.admin = admin
    yield k
    stop_kgate(k)
    assert "alice-pw" not in k.proc.log_text() and "bob-pw" not in k.proc.log_text(), "a password reached the log"


@pytest.fixture(scope="module")
def kg_tls(tansu, files, pki):
    admin = free_port()
    k = start_kgate_toml("client-auth-tls", tansu,
                         {**auth_config(files, admin), "downstream_tls": downstream_tls(pki, client_ca=False)})
    k.admin = admin
    yield k
    stop_kgate(k)


def metric(k, name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://{LOOPBACK}:{k.admin}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{lk}="{lv}"' in line for lk, lv in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total




class TokenEndpoint:
    """An OAuth token endpoint for the Java client's OAuthBearerLoginCallbackHandler:
    every POST gets `token`."""

    def __init__(self, token: str):
        import http.server
        body = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), H)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()



class Raw:
    def __init__(self, k):
        host, port = k.bootstrap_servers.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def send(self, api_key: int, version: int, body: bytes) -> int:
        self.corr += 1
        head = struct.pack(">hhih", api_key, version, self.corr, 3) + b"raw"
        self.s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
        return self.corr

    def recv(self) -> bytes:
        """One response body after the correlation id; b"" when closed."""
        head = self._exact(4)
        if not head:
            return b""
        body = self._exact(struct.unpack(">i", head)[0])
        return body[4:]

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            try:
                chunk = self.s.recv(n - len(out))
            except ConnectionResetError:
                return b""
            if not chunk:
                return b""
            out += chunk
        return out

    def handshake(self, mech: str) -> tuple[int, list[str]]:
        self.send(17, 1, struct.pack(">h", len(mech)) + mech.encode())
        b = self.recv()
        err, n = struct.unpack(">hi", b[:6])
        names, off = [], 6
        for _ in range(n):
            ln = struct.unpack(">h", b[off:off + 2])[0]
            names.append(b[off + 2:off + 2 + ln].decode())
            off += 2 + ln
        return err, names

    def authenticate(self, data: bytes) -> tuple[int, bytes, int]:
        """SaslAuthenticate v1: (error, auth bytes, session lifetime)."""
        self.send(36, 1, struct.pack(">i", len(data)) + data)
        b = self.recv()
        err, ml = struct.unpack(">hh", b[:4])
        off = 4 + max(ml, 0)
        n = struct.unpack(">i", b[off:off + 4])[0]
        auth = b[off + 4:off + 4 + n]
        lifetime = struct.unpack(">q", b[off + 4 + n:off + 12 + n])[0]
        return err, auth, lifetime

    def api_versions(self) -> dict[int, tuple[int, int]]:
        self.send(18, 1, b"")
        b = self.recv()
        err, n = struct.unpack(">hi", b[:6])
        assert err == 0
        return {k: (lo, hi) for k, lo, hi in (struct.unpack(">hhh", b[6 + 6 * i:12 + 6 * i]) for i in range(n))}

    def metadata(self) -> bytes:
        self.send(3, 1, struct.pack(">i", -1))
        return self.recv()

    def scram(self, user: str, pw: str, mech: str = "SCRAM-SHA-256") -> int:
        assert self.handshake(mech)[0] == 0
        c = ScramClient([mech], user, pw)
        err, server_first, _ = self.authenticate(c.get_client_first().encode())
        assert err == 0
        c.set_server_first(server_first.decode())
        err, server_final, lifetime = self.authenticate(c.get_client_final().encode())
        assert err == 0, server_final
        c.set_server_final(server_final.decode())  # raises unless kgate proved it knows the key
        return lifetime

    def close(self):
        self.s.close()


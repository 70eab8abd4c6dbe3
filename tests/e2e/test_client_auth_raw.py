"""Clients authenticate to kgate ([client_auth]), seen from raw sockets:
a client driven by scramp (an independent SCRAM implementation) checks
kgate's server signature and that kgate answers ApiVersions before any
upstream exists exactly as the broker's filtered answer; a client that does
not re-authenticate is closed after its 5 s session; re-authentication
keeps the principal and mechanism; refusals (request before
authentication, unknown mechanism, handshake v0, 512 KiB bound,
auth_timeout_ms) close; SIGHUP re-reads the users file; `kgate user add`
keeps passwords out of the file."""

from __future__ import annotations

import os
import signal
import struct
import time

from client_auth_support import (  # noqa: F401 - fixtures are used by name
    LIFETIME_MS,
    Raw,
    files,
    kg,
    kgate_user_add,
    metric,
)
from tls_support import log_mark, wait_for_log


def test_scramp_oracle_and_api_versions_before_the_upstream(kg):
    r = Raw(kg)
    before = r.api_versions()
    assert before[17] == (0, 1) and before[36] == (0, 2), before
    assert 0 in before and 3 in before, "the broker's keys are offered before any upstream exists"
    assert r.scram("bob", "bob-pw") == LIFETIME_MS
    after = r.api_versions()  # forwarded to tansu now, filtered by kgate
    assert after == before, "kgate's own answer matches the broker's filtered one"
    assert r.metadata(), "forwarding after authentication"
    r.close()
    r = Raw(kg)
    assert r.scram("alice", "alice-pw", "SCRAM-SHA-512") == LIFETIME_MS
    r.close()


def test_a_client_that_does_not_reauthenticate_is_closed_after_expiry(kg):
    expired = metric(kg, "kgate_client_sessions_expired_total")
    r = Raw(kg)
    r.scram("bob", "bob-pw")
    assert r.metadata()
    time.sleep(LIFETIME_MS / 1000 + 0.5)
    assert r.metadata() == b"", "kgate closes an expired session at its next request"
    r.close()
    assert metric(kg, "kgate_client_sessions_expired_total") == expired + 1
    wait_for_log(kg.proc, "client session expired without re-authentication", 5)


def test_reauthentication_needs_the_same_principal_and_credentials(kg):
    failed = metric(kg, "kgate_client_auth_total", result="failed", kind="reauthenticate")
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0
    assert r.authenticate(b"\0bob\0bob-pw")[0] == 0
    assert r.metadata()
    assert r.handshake("PLAIN")[0] == 0, "re-authentication while forwarding"
    err, _, lifetime = r.authenticate(b"\0bob\0bob-pw")
    assert (err, lifetime) == (0, LIFETIME_MS)
    assert r.metadata()
    assert r.handshake("PLAIN")[0] == 0
    other = b"\0alice\0alice-pw"
    r.send(36, 1, struct.pack(">i", len(other)) + other)
    b = r.recv()
    err, ml = struct.unpack(">hh", b[:4])
    assert err == 58 and b"Cannot change principals" in b[4:4 + ml], b
    assert r.metadata() == b"", "closed after a failed re-authentication"
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0 and r.authenticate(b"\0bob\0bob-pw")[0] == 0
    assert r.handshake("SCRAM-SHA-256")[0] == 33, "re-authentication keeps the mechanism"
    assert r.metadata() == b""
    assert metric(kg, "kgate_client_auth_total", result="failed", kind="reauthenticate") == failed + 2


def test_refusals_close_the_connection(kg):
    r = Raw(kg)
    err, names = r.handshake("GSSAPI")
    assert err == 33 and names == ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"], (err, names)
    assert r.metadata() == b"", "closed after UNSUPPORTED_SASL_MECHANISM"
    r = Raw(kg)
    err, _, _ = r.authenticate(b"\0alice\0alice-pw")
    assert err == 34, "SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE"
    r = Raw(kg)
    assert r.metadata() == b"", "a request before authentication closes the connection"
    r = Raw(kg)
    r.send(17, 0, struct.pack(">h", 5) + b"PLAIN")
    assert struct.unpack(">h", r.recv()[:2])[0] == 35, "SaslHandshake v0 is refused with UNSUPPORTED_VERSION"
    r = Raw(kg)
    r.s.sendall(struct.pack(">i", 600 * 1024) + b"\0" * 1024)
    assert r.recv() == b"", "frames before authentication are bounded at 512 KiB"
    timeouts = metric(kg, "kgate_client_auth_timeouts_total")
    r = Raw(kg)
    assert r.handshake("PLAIN")[0] == 0
    assert r.recv() == b"", "closed at auth_timeout_ms"
    assert metric(kg, "kgate_client_auth_timeouts_total") == timeouts + 1


def plain_ok(k, user: str, pw: str) -> bool:
    r = Raw(k)
    try:
        assert r.handshake("PLAIN")[0] == 0
        return r.authenticate(b"\0" + user.encode() + b"\0" + pw.encode())[0] == 0
    finally:
        r.close()


def test_sighup_rereads_the_users_file(kg, files):
    r = kgate_user_add(files.users, "gina", "gina-pw", "SCRAM-SHA-512")
    assert r.returncode == 0, r.stderr
    assert not plain_ok(kg, "gina", "gina-pw"), "users are read at start-up and on SIGHUP only"
    mark = log_mark(kg.proc)
    os.kill(kg.proc.pid, signal.SIGHUP)
    wait_for_log(kg.proc, "client users file and JWKS re-read", 10, since=mark)
    assert plain_ok(kg, "gina", "gina-pw")
    assert plain_ok(kg, "alice", "alice-pw")


def test_kgate_user_add_replaces_and_keeps_secrets_out(tmp_path):
    users = tmp_path / "u.toml"
    r = kgate_user_add(users, "erin", "first-pw", "SCRAM-SHA-512")
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    r = kgate_user_add(users, "erin", "second-pw", "SCRAM-SHA-256")
    assert r.returncode == 0 and "replaced" in r.stdout, r.stderr
    text = users.read_text()
    assert "first-pw" not in text and "second-pw" not in text and "SCRAM-SHA-256" in text
    assert users.stat().st_mode & 0o777 == 0o600
    r = kgate_user_add(users, "frank", "", "SCRAM-SHA-512")
    assert r.returncode == 2, "an empty password is refused"


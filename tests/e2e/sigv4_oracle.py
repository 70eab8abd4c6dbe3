"""An independent SigV4 oracle for MSK IAM authentication, built on botocore.

kgate signs its AWS_MSK_IAM payloads and OAUTHBEARER tokens in Rust; these
functions compute the same things with botocore (the AWS SDK for Python), so a
mismatch points at kgate, not at a shared misunderstanding.

What is signed (both flavours):
    GET https://<host>/?Action=kafka-cluster%3AConnect
    service "kafka-cluster", SigV4 query-string signing ("presigning"),
    signed headers: host only, payload hash: SHA-256 of the empty body.
    <host> has no port.

AWS_MSK_IAM payload (SaslAuthenticate auth_bytes, compact JSON, UTF-8):
    {"version": "2020_10_22", "host": ..., "user-agent": ...,
     "action": "kafka-cluster:Connect", "x-amz-algorithm": "AWS4-HMAC-SHA256",
     "x-amz-credential": "<AKID>/<yyyymmdd>/<region>/kafka-cluster/aws4_request",
     "x-amz-date": "<yyyymmddThhmmssZ>", "x-amz-expires": "<seconds, a string>",
     "x-amz-signedheaders": "host", "x-amz-signature": "<64 hex>",
     "x-amz-security-token": "<token>"   (only with a session token)}
    Every value is a JSON string, raw (not URL-encoded).

OAUTHBEARER token: base64url without padding of the presigned URL for host
kafka.<region>.amazonaws.com, with "&User-Agent=<form-encoded UA>" appended
after signing (the User-Agent is not signed; form encoding as Python's
urlencode does it: space -> "+", everything but A-Za-z0-9_.-~ -> %XX).
The presigned URL keeps botocore's parameter order: Action, X-Amz-Algorithm,
X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders,
[X-Amz-Security-Token], X-Amz-Signature, then User-Agent. This is byte for
byte what aws-msk-iam-sasl-signer-python 1.0.2 produces.

CLI (deterministic output for kgate's Rust unit tests):
    python tests/e2e/sigv4_oracle.py vector --access-key ACCESS_KEY --secret SECRET_KEY \
        --region us-east-1 --host localhost --time 2021-10-14T13:05:00Z --expires 300 \
        [--token TOKEN] [--user-agent UA] [--oauth]
        prints the AWS_MSK_IAM payload as JSON (keys sorted), or with --oauth
        {"token": ..., "url": ..., "params": {...}}; both also carry
        "canonical_request" and "string_to_sign" under "debug" when --debug.
    python tests/e2e/sigv4_oracle.py verify --payload JSON --secret SECRET [--token T]
        --now 2021-10-14T13:05:00Z --host localhost --region us-east-1
        prints {"ok": bool, "reason": str}
    python tests/e2e/sigv4_oracle.py selftest
        checks the public kafka-go vector and a few round trips; exit 0 when all hold.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hmac
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union
from urllib.parse import parse_qsl, urlencode, urlsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "kafka-cluster"
ACTION = "kafka-cluster:Connect"
VERSION = "2020_10_22"
ALGORITHM = "AWS4-HMAC-SHA256"
DEFAULT_EXPIRES = 900
DEFAULT_USER_AGENT = "kgate-test-oracle/1"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"

# The public test vector from segmentio/kafka-go (sasl/aws_msk_iam_v2 tests).
KAFKA_GO_VECTOR = dict(
    access_key="ACCESS_KEY",
    secret_key="SECRET_KEY",
    session_token=None,
    region="us-east-1",
    host="localhost",
    when="2021-10-14T13:05:00Z",
    expires=300,
    signature="6b8d25f9b45b9c7db9da855a49112d80379224153a27fd279c305a5b7940d1a7",
)


# --------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------


def to_datetime(when: Union[str, float, int, dt.datetime]) -> dt.datetime:
    """ISO-8601 ("2021-10-14T13:05:00Z"), SigV4 ("20211014T130500Z"), epoch
    seconds or a datetime (naive = UTC) -> aware UTC datetime."""
    if isinstance(when, dt.datetime):
        return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    if isinstance(when, (int, float)):
        return dt.datetime.fromtimestamp(when, dt.timezone.utc)
    s = when.strip()
    try:
        return dt.datetime.strptime(s, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        pass
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = dt.datetime.fromisoformat(s)
    return d.replace(tzinfo=dt.timezone.utc) if d.tzinfo is None else d.astimezone(dt.timezone.utc)


def amz_date(when) -> str:
    return to_datetime(when).strftime(SIGV4_TIMESTAMP)


# --------------------------------------------------------------------------
# Signing with botocore
# --------------------------------------------------------------------------


@dataclass
class Presigned:
    url: str  # the presigned URL exactly as botocore builds it
    params: dict  # its query parameters, decoded, including X-Amz-Signature
    canonical_request: str
    string_to_sign: str

    @property
    def signature(self) -> str:
        return self.params["X-Amz-Signature"]


def presign(
    access_key: str,
    secret_key: str,
    session_token: Optional[str],
    region: str,
    host: str,
    when,
    expires: int = DEFAULT_EXPIRES,
) -> Presigned:
    """Presigns GET https://<host>/?Action=kafka-cluster%3AConnect with
    botocore's SigV4QueryAuth at a fixed time.

    botocore's add_auth() reads the clock itself, so this runs the same steps
    it runs (botocore's own methods, in its order) with the timestamp set
    explicitly instead."""
    if ":" in host:
        raise ValueError(f"host must not carry a port: {host!r}")
    creds = Credentials(access_key, secret_key, session_token or None)
    signer = SigV4QueryAuth(creds, SERVICE, region, expires=int(expires))
    req = AWSRequest(method="GET", url=f"https://{host}/?" + urlencode({"Action": ACTION}))
    req.context["timestamp"] = amz_date(when)
    # == SigV4Auth.add_auth without get_current_datetime()
    signer._modify_request_before_signing(req)
    canonical = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canonical)
    sig = signer.signature(sts, req)
    signer._inject_signature_to_request(req, sig)
    params = dict(parse_qsl(urlsplit(req.url).query, keep_blank_values=True))
    return Presigned(req.url, params, canonical, sts)


def msk_iam_payload(
    access_key: str,
    secret_key: str,
    session_token: Optional[str] = None,
    region: str = "us-east-1",
    host: str = "localhost",
    when=None,
    expires: int = DEFAULT_EXPIRES,
    user_agent: str = DEFAULT_USER_AGENT,
) -> dict:
    """The AWS_MSK_IAM SaslAuthenticate payload as a dict (json.dumps it to send)."""
    when = when if when is not None else dt.datetime.now(dt.timezone.utc)
    p = presign(access_key, secret_key, session_token, region, host, when, expires).params
    out = {
        "version": VERSION,
        "host": host,
        "user-agent": user_agent,
        "action": p["Action"],
        "x-amz-algorithm": p["X-Amz-Algorithm"],
        "x-amz-credential": p["X-Amz-Credential"],
        "x-amz-date": p["X-Amz-Date"],
        "x-amz-expires": p["X-Amz-Expires"],
        "x-amz-signedheaders": p["X-Amz-SignedHeaders"],
        "x-amz-signature": p["X-Amz-Signature"],
    }
    if session_token:
        out["x-amz-security-token"] = p["X-Amz-Security-Token"]
    return out


def msk_iam_auth_bytes(*args, **kwargs) -> bytes:
    return json.dumps(msk_iam_payload(*args, **kwargs), separators=(",", ":")).encode()


def oauth_host(region: str) -> str:
    return f"kafka.{region}.amazonaws.com"


def oauthbearer_url(
    access_key: str,
    secret_key: str,
    session_token: Optional[str] = None,
    region: str = "us-east-1",
    when=None,
    expires: int = DEFAULT_EXPIRES,
    user_agent: str = DEFAULT_USER_AGENT,
) -> str:
    when = when if when is not None else dt.datetime.now(dt.timezone.utc)
    p = presign(access_key, secret_key, session_token, region, oauth_host(region), when, expires)
    # like aws-msk-iam-sasl-signer-python: urlencode, so a space becomes "+"
    return p.url + "&" + urlencode({"User-Agent": user_agent})


def b64url_nopad(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def oauthbearer_token(*args, **kwargs) -> str:
    """The MSK IAM OAUTHBEARER token (what aws-msk-iam-sasl-signer returns)."""
    return b64url_nopad(oauthbearer_url(*args, **kwargs).encode())


def oauthbearer_client_first(token: str) -> bytes:
    """RFC 7628 client message carrying the token (no authzid, no extensions)."""
    return b"n,,\x01auth=Bearer " + token.encode() + b"\x01\x01"


# --------------------------------------------------------------------------
# Verifying (the broker's side)
# --------------------------------------------------------------------------


@dataclass
class Identity:
    """What the verifier knows about an access key."""

    secret: str
    token: Optional[str] = None  # when set, the request must carry exactly this token
    expiration: Optional[float] = None  # epoch seconds; after it the key is refused
    principal: Optional[str] = None  # e.g. an assumed-role ARN; defaults to the key

    @staticmethod
    def of(v: Any) -> "Identity":
        if isinstance(v, Identity):
            return v
        if isinstance(v, str):
            return Identity(v)
        if isinstance(v, Mapping):
            return Identity(v["secret"], v.get("token"), v.get("expiration"), v.get("principal"))
        raise TypeError(f"cannot make an Identity of {type(v).__name__}")


SecretLookup = Union[Mapping[str, Any], Callable[[str], Any]]


def _lookup(secrets: SecretLookup, access_key: str) -> Optional[Identity]:
    v = secrets(access_key) if callable(secrets) else secrets.get(access_key)
    return None if v is None else Identity.of(v)


@dataclass
class Verified:
    ok: bool
    reason: str
    access_key: Optional[str] = None
    principal: Optional[str] = None
    # epoch seconds at which the presigned request stops being valid
    signature_expires_at: Optional[float] = None
    credential_expires_at: Optional[float] = None

    def __iter__(self):  # (ok, reason) = verify(...)
        return iter((self.ok, self.reason))


def _verify_params(
    params: Mapping[str, str],
    secrets: SecretLookup,
    now,
    signed_host: str,
    expected_region: Optional[str],
    max_skew_s: float,
) -> Verified:
    """params: the presigned query parameters with their original names
    (Action, X-Amz-*), decoded."""

    def no(reason: str, **kw) -> Verified:
        return Verified(False, reason, **kw)

    need = ["Action", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
            "X-Amz-SignedHeaders", "X-Amz-Signature"]
    missing = [k for k in need if not isinstance(params.get(k), str) or params.get(k) == ""]
    if missing:
        return no("missing or non-string fields: " + ", ".join(missing))
    if params["Action"] != ACTION:
        return no(f"action is {params['Action']!r}, expected {ACTION!r}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        return no(f"algorithm is {params['X-Amz-Algorithm']!r}")
    if params["X-Amz-SignedHeaders"] != "host":
        return no(f"signed headers are {params['X-Amz-SignedHeaders']!r}, expected 'host'")
    parts = params["X-Amz-Credential"].split("/")
    if len(parts) != 5 or parts[3] != SERVICE or parts[4] != "aws4_request":
        return no(f"malformed credential scope {params['X-Amz-Credential']!r}")
    access_key, scope_date, region = parts[0], parts[1], parts[2]
    try:
        signed_at = to_datetime(dt.datetime.strptime(params["X-Amz-Date"], SIGV4_TIMESTAMP))
    except ValueError:
        return no(f"malformed x-amz-date {params['X-Amz-Date']!r}", access_key=access_key)
    if scope_date != params["X-Amz-Date"][:8]:
        return no("credential scope date differs from x-amz-date", access_key=access_key)
    if expected_region is not None and region != expected_region:
        return no(f"region {region!r} in the credential scope, expected {expected_region!r}", access_key=access_key)
    if not params["X-Amz-Expires"].isdigit():
        return no(f"x-amz-expires is not a number: {params['X-Amz-Expires']!r}", access_key=access_key)
    expires = int(params["X-Amz-Expires"])
    if not 1 <= expires <= 604800:
        return no(f"x-amz-expires out of range: {expires}", access_key=access_key)
    now_dt = to_datetime(now)
    t_signed = signed_at.timestamp()
    t_now = now_dt.timestamp()
    sig_exp = t_signed + expires
    if t_signed - t_now > max_skew_s:
        return no(f"signed {t_signed - t_now:.0f}s in the future (max skew {max_skew_s}s)", access_key=access_key)
    if t_now > sig_exp:
        return no(f"signature expired {t_now - sig_exp:.0f}s ago", access_key=access_key)

    ident = _lookup(secrets, access_key)
    if ident is None:
        return no(f"unknown access key {access_key}", access_key=access_key)
    token = params.get("X-Amz-Security-Token")
    if ident.token is not None and token != ident.token:
        return no("security token does not match the access key's", access_key=access_key)
    if ident.token is None and token:
        return no("unexpected security token for a long-term access key", access_key=access_key)
    if ident.expiration is not None and t_now >= ident.expiration:
        return no(f"credentials expired {t_now - ident.expiration:.0f}s ago", access_key=access_key)

    want = presign(access_key, ident.secret, token, region, signed_host, signed_at, expires)
    if not hmac.compare_digest(want.signature, params["X-Amz-Signature"]):
        return no("signature mismatch", access_key=access_key)
    return Verified(True, "ok", access_key, ident.principal or access_key, sig_exp, ident.expiration)


PAYLOAD_KEYS = {
    "action": "Action",
    "x-amz-algorithm": "X-Amz-Algorithm",
    "x-amz-credential": "X-Amz-Credential",
    "x-amz-date": "X-Amz-Date",
    "x-amz-expires": "X-Amz-Expires",
    "x-amz-signedheaders": "X-Amz-SignedHeaders",
    "x-amz-signature": "X-Amz-Signature",
    "x-amz-security-token": "X-Amz-Security-Token",
}
KNOWN_PAYLOAD_KEYS = set(PAYLOAD_KEYS) | {"version", "host", "user-agent"}


def verify_msk_iam_payload(
    payload: Union[Mapping[str, Any], bytes, str],
    secrets: SecretLookup,
    now=None,
    expected_host: Optional[str] = None,
    expected_region: Optional[str] = None,
    max_skew_s: float = 300,
    strict_keys: bool = True,
) -> Verified:
    """Checks an AWS_MSK_IAM payload the way a broker would: recomputes the
    signature with botocore from the payload's own fields and the secret
    looked up by access key. Returns Verified (unpacks as (ok, reason))."""
    now = now if now is not None else dt.datetime.now(dt.timezone.utc)
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            return Verified(False, f"payload is not JSON: {e}")
    if not isinstance(payload, Mapping):
        return Verified(False, "payload is not a JSON object")
    non_str = sorted(k for k, v in payload.items() if not isinstance(v, str))
    if non_str:
        return Verified(False, "non-string values for: " + ", ".join(non_str))
    if strict_keys:
        unknown = sorted(set(payload) - KNOWN_PAYLOAD_KEYS)
        if unknown:
            return Verified(False, "unknown keys: " + ", ".join(unknown))
    if payload.get("version") != VERSION:
        return Verified(False, f"version is {payload.get('version')!r}, expected {VERSION!r}")
    host = payload.get("host")
    if not host:
        return Verified(False, "missing host")
    if expected_host is not None and host != expected_host:
        return Verified(False, f"host is {host!r}, expected {expected_host!r}")
    if not payload.get("user-agent"):
        return Verified(False, "missing user-agent")
    params = {orig: payload[k] for k, orig in PAYLOAD_KEYS.items() if k in payload}
    return _verify_params(params, secrets, now, host, expected_region, max_skew_s)


def parse_oauthbearer_client_first(msg: bytes) -> Optional[str]:
    """The token of an RFC 7628 client first message, or None."""
    try:
        text = msg.decode()
    except UnicodeDecodeError:
        return None
    gs2, sep, rest = text.partition("\x01")
    if not sep or not gs2.startswith(("n,", "y,")):
        return None
    for kv in rest.split("\x01"):
        if kv.startswith("auth="):
            scheme, _, tok = kv[5:].partition(" ")
            if scheme.lower() == "bearer" and tok:
                return tok.strip()
    return None


def verify_oauthbearer_token(
    token: str,
    secrets: SecretLookup,
    now=None,
    expected_region: Optional[str] = None,
    max_skew_s: float = 300,
) -> Verified:
    """Checks an MSK IAM OAUTHBEARER token: base64url of the presigned URL for
    kafka.<region>.amazonaws.com (plus an unsigned User-Agent parameter)."""
    now = now if now is not None else dt.datetime.now(dt.timezone.utc)
    try:
        url = b64url_decode(token).decode()
    except (ValueError, UnicodeDecodeError) as e:
        return Verified(False, f"token is not base64url: {e}")
    if "=" in token or "+" in token or "/" in token:
        return Verified(False, "token is not unpadded base64url")
    u = urlsplit(url)
    if u.scheme != "https" or u.path not in ("/", ""):
        return Verified(False, f"token URL is not https://host/: {url[:80]!r}")
    pairs = parse_qsl(u.query, keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        return Verified(False, "repeated query parameters")
    if not params.get("User-Agent"):
        return Verified(False, "missing User-Agent parameter")
    params.pop("User-Agent")
    region = params.get("X-Amz-Credential", "").split("/")[2:3]
    if not region:
        return Verified(False, "malformed credential scope")
    want_host = oauth_host(expected_region or region[0])
    if u.netloc != want_host:
        return Verified(False, f"host is {u.netloc!r}, expected {want_host!r}")
    unknown = sorted(set(params) - set(PAYLOAD_KEYS.values()))
    if unknown:
        return Verified(False, "unknown query parameters: " + ", ".join(unknown))
    return _verify_params(params, secrets, now, u.netloc, expected_region, max_skew_s)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _vector(a) -> dict:
    if a.oauth:
        host = oauth_host(a.region)
        pre = presign(a.access_key, a.secret, a.token, a.region, host, a.time, a.expires)
        url = oauthbearer_url(a.access_key, a.secret, a.token, a.region, a.time, a.expires, a.user_agent)
        out = {"token": b64url_nopad(url.encode()), "url": url, "params": pre.params}
    else:
        pre = presign(a.access_key, a.secret, a.token, a.region, a.host, a.time, a.expires)
        out = msk_iam_payload(a.access_key, a.secret, a.token, a.region, a.host, a.time, a.expires, a.user_agent)
    if a.debug:
        out["debug"] = {"canonical_request": pre.canonical_request, "string_to_sign": pre.string_to_sign,
                        "presigned_url": pre.url}
    return out


def selftest() -> list[str]:
    """Returns a list of failures (empty = all good)."""
    fails = []
    v = KAFKA_GO_VECTOR
    p = msk_iam_payload(v["access_key"], v["secret_key"], None, v["region"], v["host"], v["when"], v["expires"], "ua")
    if p["x-amz-signature"] != v["signature"]:
        fails.append(f"kafka-go vector: got {p['x-amz-signature']}, want {v['signature']}")
    expect = {
        "version": "2020_10_22", "host": "localhost", "user-agent": "ua", "action": "kafka-cluster:Connect",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "ACCESS_KEY/20211014/us-east-1/kafka-cluster/aws4_request",
        "x-amz-date": "20211014T130500Z", "x-amz-expires": "300", "x-amz-signedheaders": "host",
        "x-amz-signature": v["signature"],
    }
    if p != expect:
        fails.append(f"kafka-go vector payload differs: {p}")
    secrets = {"ACCESS_KEY": "SECRET_KEY"}
    now = to_datetime(v["when"])
    checks = [
        ("vector verifies", verify_msk_iam_payload(p, secrets, now, "localhost", "us-east-1").ok, True),
        ("wrong secret", verify_msk_iam_payload(p, {"ACCESS_KEY": "X"}, now, "localhost", "us-east-1").ok, False),
        ("wrong host", verify_msk_iam_payload(p, secrets, now, "b-1.example", "us-east-1").ok, False),
        ("wrong region", verify_msk_iam_payload(p, secrets, now, "localhost", "eu-west-1").ok, False),
        ("expired", verify_msk_iam_payload(p, secrets, now + dt.timedelta(seconds=301), "localhost").ok, False),
        ("future", verify_msk_iam_payload(p, secrets, now - dt.timedelta(seconds=301), "localhost").ok, False),
        ("tampered", verify_msk_iam_payload({**p, "x-amz-expires": "900"}, secrets, now, "localhost").ok, False),
    ]
    tok_p = msk_iam_payload("ASIAXX", "s3cr3t", "tok/+=", "eu-west-1", "b-1.x.kafka.eu-west-1.amazonaws.com", now)
    tsec = {"ASIAXX": {"secret": "s3cr3t", "token": "tok/+="}}
    checks.append(("token verifies", verify_msk_iam_payload(tok_p, tsec, now).ok, True))
    checks.append(("token required", verify_msk_iam_payload({k: x for k, x in tok_p.items()
                                                              if k != "x-amz-security-token"}, tsec, now).ok, False))
    t = oauthbearer_token("ASIAXX", "s3cr3t", "tok/+=", "eu-west-1", now, 900, "kgate/1 (x)")
    checks.append(("oauth verifies", verify_oauthbearer_token(t, tsec, now, "eu-west-1").ok, True))
    checks.append(("oauth wrong region", verify_oauthbearer_token(t, tsec, now, "us-east-1").ok, False))
    msg = oauthbearer_client_first(t)
    checks.append(("oauth gs2 parse", parse_oauthbearer_client_first(msg) == t, True))
    for name, got, want in checks:
        if got != want:
            fails.append(f"{name}: got {got}, want {want}")
    return fails


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    vp = sub.add_parser("vector", help="print a payload (or --oauth token) as JSON")
    vp.add_argument("--access-key", required=True)
    vp.add_argument("--secret", required=True)
    vp.add_argument("--token", default=None)
    vp.add_argument("--region", required=True)
    vp.add_argument("--host", default="localhost", help="broker host, no port (ignored with --oauth)")
    vp.add_argument("--time", required=True, help="2021-10-14T13:05:00Z or 20211014T130500Z")
    vp.add_argument("--expires", type=int, default=DEFAULT_EXPIRES)
    vp.add_argument("--user-agent", default=DEFAULT_USER_AGENT)
    vp.add_argument("--oauth", action="store_true")
    vp.add_argument("--debug", action="store_true", help="add canonical request and string to sign")
    fp = sub.add_parser("verify", help="verify an AWS_MSK_IAM payload (JSON) or --oauth token")
    fp.add_argument("--payload", required=True, help="JSON payload, or the token with --oauth; '-' reads stdin")
    fp.add_argument("--access-key", default=None, help="default: taken from the payload")
    fp.add_argument("--secret", required=True)
    fp.add_argument("--token", default=None)
    fp.add_argument("--now", required=True)
    fp.add_argument("--host", default=None)
    fp.add_argument("--region", default=None)
    fp.add_argument("--max-skew", type=float, default=300)
    fp.add_argument("--oauth", action="store_true")
    sub.add_parser("selftest")
    a = ap.parse_args(argv)

    if a.cmd == "vector":
        print(json.dumps(_vector(a), sort_keys=True))
        return 0
    if a.cmd == "verify":
        raw = sys.stdin.read() if a.payload == "-" else a.payload
        ident = {"secret": a.secret, "token": a.token}
        secrets = lambda ak: ident if (a.access_key is None or ak == a.access_key) else None  # noqa: E731
        if a.oauth:
            r = verify_oauthbearer_token(raw.strip(), secrets, a.now, a.region, a.max_skew)
        else:
            r = verify_msk_iam_payload(raw, secrets, a.now, a.host, a.region, a.max_skew)
        print(json.dumps({"ok": r.ok, "reason": r.reason}, sort_keys=True))
        return 0 if r.ok else 1
    fails = selftest()
    for f in fails:
        print("FAIL:", f)
    print("selftest:", "ok" if not fails else f"{len(fails)} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

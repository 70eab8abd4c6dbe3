#!/usr/bin/env python3
"""kgate's memory with large frames: 50 client connections each receive
64 MiB Fetch responses through kgate (release build) from a scripted broker,
then the clients leave. Reports idle RSS, peak RSS during the burst, and RSS
60 s after it (the issue's targets: flat in the frame size, under the shipped
deploy limits, and back within 20 % of idle).

    python3 benches/memory.py        # writes benches/results/memory.md

The broker is a small asyncio server: it answers ApiVersions v0 and
Metadata v0 (no brokers) for kgate's probe, and any Fetch v12 with one
prebuilt 64 MiB response (record bytes are zeros; nothing parses them).
Environment: KGATE_BIN (default target/release/kgate), BENCH_CONNS (50),
BENCH_FRAMES (2 responses per connection), BENCH_SETTLE (60 s),
KGATE_SPLICE=false (passed on to kgate): bytes are copied through kgate's read
buffers; writes benches/results/memory_nosplice.md instead.
BENCH_UPSTREAM_TLS=1: the broker speaks TLS 1.3 (Python's ssl) and requires a
client certificate from a throw-away certs-dev/gen.sh PKI, and kgate runs
with [upstream_tls] and a client certificate, as every configuration in
deploy/ does (splice never applies to a TLS side, so bytes go through kgate's
read buffers and rustls); writes benches/results/memory_tls.md instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KGATE = os.environ.get("KGATE_BIN", str(REPO / "target/release/kgate"))
CONNS = int(os.environ.get("BENCH_CONNS", "50"))
FRAMES = int(os.environ.get("BENCH_FRAMES", "2"))
SETTLE = int(os.environ.get("BENCH_SETTLE", "60"))
RECORDS = 64 << 20
UPSTREAM_TLS = os.environ.get("BENCH_UPSTREAM_TLS", "") == "1"
NO_SPLICE = os.environ.get("KGATE_SPLICE", "") == "false"  # kgate inherits it


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fetch_v12_body() -> bytes:
    """FetchResponse v12 (flexible): one topic, one partition, 64 MiB records."""
    part = struct.pack(">ihqqq", 0, 0, 1, 1, 0)  # index, error, hw, lso, log start
    part += uvarint(0)  # aborted transactions: null
    part += struct.pack(">i", -1)  # preferred read replica
    part += uvarint(RECORDS + 1) + bytes(RECORDS) + uvarint(0)
    topic = uvarint(2) + b"t" + uvarint(2) + part + uvarint(0)
    return struct.pack(">ihi", 0, 0, 0) + uvarint(2) + topic + uvarint(0)


FETCH = fetch_v12_body()


def frame(corr: int, body: bytes, flexible: bool) -> bytes:
    head = struct.pack(">i", corr) + (b"\x00" if flexible else b"")
    return struct.pack(">i", len(head) + len(body)) + head + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            n = struct.unpack(">i", await reader.readexactly(4))[0]
            req = await reader.readexactly(n)
            key, ver, corr = struct.unpack(">hhi", req[:8])
            if key == 1:
                writer.write(frame(corr, FETCH, True))
            elif key == 18:
                writer.write(frame(corr, struct.pack(">hi", 0, 1) + struct.pack(">hhh", 1, 12, 12), False))
            else:  # the probe's Metadata v4: no brokers, no cluster id, no topics
                writer.write(frame(corr, struct.pack(">iihii", 0, 0, -1, -1, 0), False))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def fetch_request(corr: int) -> bytes:
    # Fetch v12 header v2: key, version, corr, client id, tags; body minimal.
    head = struct.pack(">hhi", 1, 12, corr) + struct.pack(">h", 5) + b"bench" + b"\x00"
    body = struct.pack(">iiiib", -1, 0, 1, RECORDS * 2, 0) + struct.pack(">ii", 0, -1)
    body += uvarint(1) + uvarint(1) + uvarint(1)  # no topics, no forgotten, rack ""
    body += b"\x00"
    msg = head + body
    return struct.pack(">i", len(msg)) + msg


async def client(port: int) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    got = 0
    for corr in range(FRAMES):
        w.write(fetch_request(corr))
        await w.drain()
        n = struct.unpack(">i", await r.readexactly(4))[0]
        left = n
        while left:
            chunk = await r.read(min(left, 1 << 20))
            if not chunk:
                raise RuntimeError("kgate closed mid-response")
            left -= len(chunk)
        got += n
    w.close()
    return got


def rss_kib(pid: int, field: str = "VmRSS:") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main() -> None:
    Path(KGATE).exists() or sys.exit(f"memory: {KGATE} missing (cargo build --release)")
    ctx, tls_argv = None, []
    if UPSTREAM_TLS:
        pki = Path(tempfile.mkdtemp(prefix="kgate-memory-pki."))
        r = subprocess.run(["bash", str(REPO / "certs-dev/gen.sh"), str(pki)], capture_output=True, text=True)
        r.returncode == 0 or sys.exit(f"memory: certs-dev/gen.sh failed: {r.stderr}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "broker.pem", pki / "broker.key")
        ctx.load_verify_locations(pki / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        tls_argv = ["--upstream-tls", "true", "--upstream-ca-file", str(pki / "ca.pem"),
                    "--upstream-cert-file", str(pki / "kgate-client.pem"),
                    "--upstream-key-file", str(pki / "kgate-client.key")]
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    up = server.sockets[0].getsockname()[1]
    base = 20000 + os.getpid() % 8000
    k = subprocess.Popen(
        [KGATE, "run", "--bootstrap", f"127.0.0.1:{up}", "--port-base", str(base), "--admin-listen", "off",
         *tls_argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", base), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        idle = rss_kib(k.pid)
        peak = idle
        done = asyncio.gather(*(client(base) for _ in range(CONNS)))
        t0 = time.monotonic()
        while not done.done():
            peak = max(peak, rss_kib(k.pid))
            await asyncio.sleep(0.05)
        moved = sum(await done)
        took = time.monotonic() - t0
        hwm = rss_kib(k.pid, "VmHWM:")
        await asyncio.sleep(SETTLE)
        after = rss_kib(k.pid)
    finally:
        k.terminate()
        k.wait()
        server.close()
    lines = [
        "## Memory with 64 MiB frames and upstream mTLS (BENCH_UPSTREAM_TLS=1 benches/memory.py)" if UPSTREAM_TLS else
        "## Memory with 64 MiB frames, splice off (KGATE_SPLICE=false benches/memory.py)" if NO_SPLICE else
        "## Memory with 64 MiB frames (benches/memory.py)",
        "",
        f"{CONNS} connections × {FRAMES} Fetch responses of 64 MiB through kgate ({KGATE}"
        f"{', plaintext clients, mTLS to the broker' if UPSTREAM_TLS else ''}), "
        f"{moved / 1e9:.1f} GB in {took:.1f} s. RSS from /proc/PID/status.",
        "",
        f"| idle | peak during the burst (VmHWM) | sampled peak | {SETTLE} s after | after ÷ idle |",
        "|---:|---:|---:|---:|---:|",
        f"| {idle / 1024:.1f} MiB | {hwm / 1024:.1f} MiB | {peak / 1024:.1f} MiB | "
        f"{after / 1024:.1f} MiB | {after / idle:.2f} |",
        "",
    ]
    text = "\n".join(lines)
    name = "memory_tls" if UPSTREAM_TLS else "memory_nosplice" if NO_SPLICE else "memory"
    (REPO / f"benches/results/{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())

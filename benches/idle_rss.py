#!/usr/bin/env python3
"""Memory per idle client connection in kgate.

    python3 benches/idle_rss.py [--connections 10000] [--kgate PATH] [--upstream-tls]

Starts a trivial upstream "broker" (a separate process that accepts
connections, answers ApiVersions v0 and nothing else), starts kgate in front
of it, and reads kgate's VmRSS from /proc/PID/status twice: idle about a
second after start-up, and with N idle client connections open to its
bootstrap listener. kgate dials its upstream at a client's first request, so
every client sends one ApiVersions v0 request and reads the answer (proof that
its upstream connection is up), then stays idle, as a Kafka client between
requests does. The script also checks, by counting ESTABLISHED sockets in
/proc/net/tcp, that kgate really holds N client and N upstream connections
before it measures.

--upstream-tls: the holder speaks TLS (Python's ssl, i.e. OpenSSL, TLS 1.3)
with a throw-away PKI from certs-dev/gen.sh and *requires* a client
certificate, like MSK's mTLS port 9094; kgate runs with [upstream_tls] and a
client certificate, as every configuration in deploy/ does. Clients stay
plaintext. Output goes to idle_rss_tls.md instead.

Prints a Markdown section on stdout and writes it to benches/results/idle_rss.md
(or idle_rss_tls.md); progress goes to stderr. Standard library plus openssl
(for the PKI). RLIMIT_NOFILE is raised to at least 65536 for this process, the
holder and kgate (needs root when the hard limit is lower).

Environment: KGATE_BIN (default target/release/kgate; falls back to
target/debug/kgate with a warning in the report).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benches" / "results"
GEN_SH = REPO / "certs-dev" / "gen.sh"
NOFILE = 65536
TARGET_IDLE_MIB = 15
TARGET_KIB_PER_CONN = 40
LOOPBACK = "127.0.0.1"


def say(msg: str) -> None:
    print(f"idle_rss: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    say(f"FAILED: {msg}")
    sys.exit(1)


def raise_nofile(want: int = NOFILE) -> tuple[int, int, str]:
    """Raises RLIMIT_NOFILE to `want`. When the hard limit cannot be raised
    (no CAP_SYS_RESOURCE, e.g. in a container), raises the soft limit to the
    hard one and says so in the returned note."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard, ""
    new_hard = max(hard, want) if hard != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))
        return (*resource.getrlimit(resource.RLIMIT_NOFILE), "")
    except (ValueError, OSError) as e:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return (*resource.getrlimit(resource.RLIMIT_NOFILE),
                f"RLIMIT_NOFILE could not be raised to {want} ({e}; the hard limit is {hard} and "
                "this process lacks CAP_SYS_RESOURCE), so the soft limit was raised to the hard limit")


# ---------------------------------------------------------------------------
# The holder: accepts and holds connections; answers ApiVersions v0 only.
# ---------------------------------------------------------------------------

# ApiVersions v0 response body: error 0, one entry (ApiVersions 0-0).
API_VERSIONS_V0_BODY = struct.pack(">hihhh", 0, 1, 18, 0, 0)


def api_versions_v0_request(corr: int) -> bytes:
    client_id = b"idle-rss"
    msg = struct.pack(">hhih", 18, 0, corr, len(client_id)) + client_id
    return struct.pack(">i", len(msg)) + msg


def server_tls_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "broker.pem", pki / "broker.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # mTLS, like MSK's 9094
    return ctx


async def holder_main(port: int, pki: Path | None) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                n = struct.unpack(">i", await reader.readexactly(4))[0]
                req = await reader.readexactly(n)
                key, ver, corr = struct.unpack(">hhi", req[:8])
                if key == 18 and ver == 0:
                    writer.write(struct.pack(">ii", 4 + len(API_VERSIONS_V0_BODY), corr) + API_VERSIONS_V0_BODY)
                    await writer.drain()
                # anything else (kgate's probe) is swallowed, never answered
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    ctx = server_tls_context(pki) if pki else None
    server = await asyncio.start_server(hold, LOOPBACK, port, backlog=4096, reuse_address=True,
                                        ssl=ctx, ssl_handshake_timeout=120 if ctx else None)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def established(local_port: int | None = None, remote_port: int | None = None) -> int:
    """ESTABLISHED IPv4 sockets on this host matching the given ports."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "01":
                continue
            lp = int(parts[1].rsplit(":", 1)[1], 16)
            rp = int(parts[2].rsplit(":", 1)[1], 16)
            if (local_port is None or lp == local_port) and (remote_port is None or rp == remote_port):
                n += 1
    return n


TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def states(local_port: int) -> dict[str, int]:
    """TCP states of the IPv4 sockets whose local port is `local_port`."""
    out: dict[str, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == local_port:
                st = TCP_STATES.get(parts[3], parts[3])
                out[st] = out.get(st, 0) + 1
    return out


def listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def port_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = random.randrange(20000, 32000)  # below the ephemeral range
        if p not in ports and port_free(p):
            ports.append(p)
    return ports


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
    return (
        f"{os.cpu_count()} CPUs (nproc), {model}, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Linux {platform.release()}, load average {' '.join(open('/proc/loadavg').read().split()[:3])}"
    )


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


async def one_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent one ApiVersions v0 request and read its
    answer: kgate has dialled (and, with TLS, handshaken) its upstream."""
    r, w = await asyncio.open_connection(LOOPBACK, port)
    w.write(api_versions_v0_request(7))
    await w.drain()
    n = struct.unpack(">i", await asyncio.wait_for(r.readexactly(4), 60))[0]
    body = await asyncio.wait_for(r.readexactly(n), 60)
    if struct.unpack(">ih", body[:6]) != (7, 0):
        raise RuntimeError(f"unexpected ApiVersions answer {body[:16].hex()}")
    return r, w


async def open_clients(port: int, n: int, batch: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Opens n connections, `batch` at a time, each with one ApiVersions round
    trip through kgate. After each batch it waits until the server side shows
    them ESTABLISHED, so the listen backlog never overflows (an overflowed
    backlog leaves sockets the client thinks are open and the server never
    accepted)."""
    writers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    base = established(local_port=port)
    for start in range(0, n, batch):
        k = min(batch, n - start)
        res = await asyncio.gather(*(one_client(port) for _ in range(k)), return_exceptions=True)
        errs = [r for r in res if isinstance(r, BaseException)]
        if errs:
            die(f"{len(errs)} of {k} connections failed after {len(writers)} opened: {errs[0]!r}")
        writers.extend(res)
        deadline = time.time() + 20
        while established(local_port=port) - base < len(writers):
            if time.time() > deadline:
                die(f"after {len(writers)} connects the server side shows {states(port)}")
            await asyncio.sleep(0.05)
        if (start // batch) % 4 == 3 or start + k == n:
            say(f"  {len(writers)} client connections open")
    return writers


def wait_settled(pid: int, timeout: float = 15.0, interval: float = 0.5) -> tuple[dict[str, int], list[float]]:
    """Samples VmRSS until two consecutive samples differ by < 0.5 %."""
    samples: list[float] = []
    deadline = time.time() + timeout
    prev = None
    while True:
        st = proc_status(pid)
        samples.append(st["VmRSS"] / 1024)
        if prev is not None and abs(st["VmRSS"] - prev) <= 0.005 * prev:
            return st, samples
        if time.time() > deadline:
            return st, samples
        prev = st["VmRSS"]
        time.sleep(interval)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--kgate", default=os.environ.get("KGATE_BIN"))
    ap.add_argument("--upstream-tls", action="store_true", help="mTLS between kgate and the holder")
    ap.add_argument("--holder", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pki", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.holder:
        raise_nofile()  # the parent reports any shortfall
        asyncio.run(holder_main(args.holder, Path(args.pki) if args.pki else None))
        return
    out_md = RESULTS / ("idle_rss_tls.md" if args.upstream_tls else "idle_rss.md")

    t0 = time.time()
    n = args.connections
    soft, hard, limit_note = raise_nofile(max(NOFILE, 2 * n + 1000))
    say(f"RLIMIT_NOFILE {soft}/{hard} (inherited by the holder and kgate)")
    if limit_note:
        say(limit_note)
        # kgate needs two descriptors per client (client + upstream) plus a few.
        fit = (soft - 256) // 2 // 100 * 100
        if fit < n:
            limit_note += (f"; kgate needs two descriptors per client, so this run used {fit:,} connections "
                           f"instead of {n:,} (KiB per connection is still per connection)")
            say(f"using {fit} connections instead of {n}")
            n = fit

    note = ""
    kgate = Path(args.kgate) if args.kgate else REPO / "target" / "release" / "kgate"
    if not kgate.exists():
        debug = REPO / "target" / "debug" / "kgate"
        if args.kgate is None and debug.exists():
            kgate = debug
            note = (
                "**Warning: target/release/kgate was missing, so this run used the debug build "
                "(target/debug/kgate). Its numbers are not representative.**"
            )
            say("target/release/kgate is missing: using the DEBUG build")
        else:
            die(f"no kgate binary at {kgate} (cargo build --release)")

    holder_port, pb = pick_ports(2)
    logdir = Path(tempfile.mkdtemp(prefix="kgate-idle-rss."))
    procs: list[subprocess.Popen] = []

    def cleanup() -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    try:
        tls_argv: list[str] = []
        holder_argv = [sys.executable, str(Path(__file__).resolve()), "--holder", str(holder_port)]
        if args.upstream_tls:
            pki = logdir / "pki"
            r = subprocess.run(["bash", str(GEN_SH), str(pki)], capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                die(f"certs-dev/gen.sh failed ({r.returncode}): {r.stderr[-2000:]}")
            holder_argv += ["--pki", str(pki)]
            tls_argv = [
                "--upstream-tls", "true",
                "--upstream-ca-file", str(pki / "ca.pem"),
                "--upstream-cert-file", str(pki / "kgate-client.pem"),
                "--upstream-key-file", str(pki / "kgate-client.key"),
            ]
        holder = subprocess.Popen(holder_argv, stdout=subprocess.PIPE, stderr=open(logdir / "holder.log", "wb"))
        procs.append(holder)
        if holder.stdout.readline().strip() != b"ready":
            die(f"holder did not start (log: {logdir}/holder.log)")
        say(f"holder on {LOOPBACK}:{holder_port}")

        kgate_argv = [
            str(kgate), "run",
            "--bootstrap", f"{LOOPBACK}:{holder_port}",
            "--port-base", str(pb),
            "--admin-listen", "off",
            "--idle-timeout-ms", "0",
            "--max-connections", str(max(20000, 2 * n)),
            *tls_argv,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KGATE_")}
        kg_log = logdir / "kgate.log"
        kg = subprocess.Popen(kgate_argv, stdin=subprocess.DEVNULL, stdout=open(kg_log, "wb"), stderr=subprocess.STDOUT, env=env)
        procs.append(kg)
        deadline = time.time() + 30
        while not listening(pb):
            if kg.poll() is not None:
                die(f"kgate exited with {kg.returncode}:\n{kg_log.read_text()[-3000:]}")
            if time.time() > deadline:
                die(f"kgate did not listen on {pb}")
            time.sleep(0.05)
        with open(f"/proc/{kg.pid}/limits") as f:
            kg_nofile = next(l for l in f if l.startswith("Max open files")).split()[3:5]
        say(f"kgate pid {kg.pid} on {LOOPBACK}:{pb}, Max open files {'/'.join(kg_nofile)}")

        time.sleep(1.0)
        idle, idle_samples = wait_settled(kg.pid, timeout=5)
        say(f"idle: VmRSS {idle['VmRSS'] / 1024:.1f} MiB (RssAnon {idle['RssAnon'] / 1024:.1f} MiB, {idle['Threads']} threads)")
        base_up = established(remote_port=holder_port)

        async def with_clients() -> tuple[dict[str, int], list[float], int, int, float, int]:
            t = time.time()
            writers = await open_clients(pb, n, args.batch)
            open_s = time.time() - t
            # Every client has had its answer, so its upstream is up; wait for /proc to agree.
            deadline = time.time() + 60
            while True:
                down = established(local_port=pb)
                up = established(remote_port=holder_port)
                if (down >= n and up - base_up >= n) or time.time() > deadline:
                    break
                await asyncio.sleep(0.25)
            say(f"  kgate holds {down} client and {up} upstream connections (ESTABLISHED in /proc/net/tcp)")
            if down < n or up - base_up < n:
                say(f"  sockets on kgate's port: {states(pb)}; on the holder's port: {states(holder_port)}")
            await asyncio.sleep(1.0)
            st, samples = await asyncio.to_thread(wait_settled, kg.pid)
            down = established(local_port=pb)
            up = established(remote_port=holder_port)
            closed = sum(1 for r, w in writers if r.at_eof() or w.is_closing())
            for _, w in writers:
                w.close()
            return st, samples, down, up - base_up, open_s, closed

        loaded, loaded_samples, down, up, open_s, closed = asyncio.run(with_clients())
        if kg.poll() is not None:
            die(f"kgate died during the test:\n{kg_log.read_text()[-3000:]}")
        if closed:
            die(f"kgate closed {closed} of the {n} idle client connections (log: {kg_log})")
        if down < n or up < n:
            die(f"kgate holds only {down} client / {up} upstream connections of {n} (log: {kg_log})")
        say(f"with {n} idle connections: VmRSS {loaded['VmRSS'] / 1024:.1f} MiB (RssAnon {loaded['RssAnon'] / 1024:.1f} MiB, {loaded['Threads']} threads)")
        version = subprocess.run([str(kgate), "--version"], capture_output=True, text=True).stdout.strip()
    finally:
        cleanup()

    idle_mib = idle["VmRSS"] / 1024
    loaded_mib = loaded["VmRSS"] / 1024
    per_conn = (loaded["VmRSS"] - idle["VmRSS"]) / n
    per_conn_anon = (loaded["RssAnon"] - idle["RssAnon"]) / n
    ok = lambda good: "yes" if good else "**no**"

    if args.upstream_tls:
        title = "## Idle memory with upstream mTLS: kgate RSS per idle client connection"
        upstream_desc = ("accepts TLS 1.3 connections (Python's ssl module, i.e. OpenSSL), requires a client "
                         "certificate from the dev CA (like MSK's mTLS port 9094)")
        row = "per idle client connection with upstream mTLS (incl. its upstream TLS session)"
    else:
        title = "## Idle memory: kgate RSS per idle client connection"
        upstream_desc = "accepts TCP connections"
        row = "per idle client connection (incl. its upstream socket)"
    rel = lambda p: os.path.relpath(p, REPO) if str(p).startswith(str(REPO)) else str(p)
    lines = [
        title,
        "",
    ]
    if note:
        lines += [note, ""]
    if limit_note:
        lines += [f"**Note: {limit_note}.**", ""]
    lines += [
        f"Machine: {machine()}.",
        "",
        f"Software: {version or rel(kgate)}; Python {platform.python_version()} (client and upstream holder).",
        "",
        f"kgate sits in front of a trivial upstream that {upstream_desc} and answers ApiVersions v0 only. "
        f"{n:,} plaintext client connections are opened to kgate's bootstrap listener in batches of {args.batch}; "
        "each sends one ApiVersions v0 request, reads the answer and then stays idle. kgate dials one upstream "
        "connection per client at its first request, and "
        f"`/proc/net/tcp` showed {down:,} client-side and {up:,} upstream ESTABLISHED connections when "
        "the second reading was taken. Each batch waits until kgate's side shows its connections "
        "ESTABLISHED, so the listen backlog never overflows. RSS is VmRSS from `/proc/PID/status`, read once it changed by "
        "less than 0.5 % between two samples 0.5 s apart.",
        "",
        "| measure | value | target | met |",
        "|---|---:|---:|---|",
        f"| RSS idle (1 s after start) | {idle_mib:.1f} MiB | ≤ {TARGET_IDLE_MIB} MiB | {ok(idle_mib <= TARGET_IDLE_MIB)} |",
        f"| RSS with {n:,} idle connections | {loaded_mib:.1f} MiB | | |",
        f"| {row} | {per_conn:.1f} KiB | ≤ {TARGET_KIB_PER_CONN} KiB | {ok(per_conn <= TARGET_KIB_PER_CONN)} |",
        "",
        f"Breakdown: RssAnon {idle['RssAnon'] / 1024:.1f} → {loaded['RssAnon'] / 1024:.1f} MiB "
        f"({per_conn_anon:.1f} KiB per connection); RssFile {idle['RssFile'] / 1024:.1f} → {loaded['RssFile'] / 1024:.1f} MiB; "
        f"VmHWM {loaded['VmHWM'] / 1024:.1f} MiB; threads {idle['Threads']} → {loaded['Threads']}. "
        f"Kernel socket buffers are not in RSS. Opening the connections took {open_s:.1f} s. "
        f"RSS samples (MiB) while settling: idle {', '.join(f'{x:.1f}' for x in idle_samples)}; "
        f"loaded {', '.join(f'{x:.1f}' for x in loaded_samples)}.",
        "",
        "Commands (ports are picked at random per run; these are this run's):",
        "",
        "```sh",
        shlex.join(["python3", "benches/idle_rss.py", *sys.argv[1:]]),
        "",
        f"# RLIMIT_NOFILE {soft}/{hard} for the script, the holder and kgate (target: {NOFILE})",
        "# upstream holder (accepts and holds connections, answers ApiVersions v0 only)",
        shlex.join(["python3", "benches/idle_rss.py", *holder_argv[2:]]),
        shlex.join([rel(kgate)] + kgate_argv[1:]),
        f"# then {n} asyncio.open_connection('{LOOPBACK}', {pb}) in batches of {args.batch}, "
        "one ApiVersions v0 round trip each, held idle",
        "```",
        "",
        f"Whole run: {time.time() - t0:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text)
    sys.stdout.write(text)
    say(f"wrote {rel(out_md)}; logs in {logdir}")


if __name__ == "__main__":
    main()

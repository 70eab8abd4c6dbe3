"""The malicious-broker scenario of the fault suite, run by test_faults.py
inside a private network namespace (only `lo`, plus 10.99.0.1/32 on it):

    python fault_malicious.py RESULT.json LOGDIR

tansu (memory storage) sits behind faults.MetadataInjector at 10.99.0.1, and
kgate's bootstrap is the injector, so kgate's default allow-list is
10.99.0.0/24 (no loopback). A canary producer+consumer runs through kgate
the whole time. Phases:

  A. the injector adds hostile brokers to every Metadata response:
     169.254.169.254:80 (metadata service), 127.0.0.1:22, 10.200.0.1 (outside
     the allow-list), node id 70000 (port overflows), a node whose listener
     port is held by this script (taken), and a 30,000-byte host name;
     then the taken port is released and /readyz must recover.
  B. 5,000 more brokers on allowed addresses: the listener cap holds.

The script measures, checks, and writes every number and every problem to
RESULT.json; test_faults.py asserts on it. Nothing here connects to a
hostile address: refusals are read from kgate's log and metrics.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import faults  # noqa: E402
from faults import NETNS_ADDR, Broker  # noqa: E402

PB = 20000  # broker N listens on PB + 1 + N: 20112 for tansu, up to 26000 for the flood
ADMIN = 31100
TANSU = 31000
INJECTOR = 31001
CAP = 256
N_FLOOD = 5000
TAKEN_NODE = 203
HOSTILE = [
    Broker(201, "169.254.169.254", 80),  # cloud metadata service
    Broker(202, "127.0.0.1", 22),  # loopback ssh: not in the allow-list here
    Broker(204, "10.200.0.1", 9092),  # outside 10.99.0.0/24
    Broker(70000, NETNS_ADDR, 9092),  # PB + 1 + 70000 > 65535
    Broker(TAKEN_NODE, NETNS_ADDR, 9),  # allowed host; its listener port is taken
    Broker(205, "h" * 30000, 9092),  # 30 KB host name
]
FLOOD = [Broker(1000 + i, f"10.99.0.{2 + i % 250}", 9092) for i in range(N_FLOOD)]


def main(out_path: str, logdir: str) -> int:
    logdir = Path(logdir)
    res: dict = {"problems": [], "numbers": {}, "phases": {}}
    problems, nums = res["problems"], res["numbers"]
    procs = []

    def problem(msg: str) -> None:
        problems.append(msg)

    try:
        tansu_log = open(logdir / "malicious-tansu.log", "wb")
        inj_port = INJECTOR
        url = f"tcp://127.0.0.1:{TANSU}"
        tansu = subprocess.Popen([os.environ["TANSU_BIN"], "broker", "--listener-url", url,
                                  "--advertised-listener-url", f"tcp://{NETNS_ADDR}:{inj_port}",
                                  "--storage-engine", "memory://tansu/"], stdout=tansu_log, stderr=subprocess.STDOUT)
        procs.append(tansu)
        faults.wait_until("tansu", lambda: faults.port_open("127.0.0.1", TANSU), 30)
        inj = faults.MetadataInjector(("127.0.0.1", TANSU), (NETNS_ADDR, inj_port)).start()

        # The injector's encoding, decoded by a real client (librdkafka), directly
        # (the hostile set only: librdkafka starts a thread per broker).
        from confluent_kafka.admin import AdminClient

        inj.set_extra(HOSTILE)
        md = AdminClient({"bootstrap.servers": f"{NETNS_ADDR}:{inj_port}", "log_level": 0}).list_topics(timeout=20)
        nums["direct_brokers_decoded_by_librdkafka"] = len(md.brokers)
        if sorted(md.brokers) != sorted([111] + [b.node_id for b in HOSTILE]):
            problem(f"librdkafka decoded brokers {sorted(md.brokers)} from the injector directly")
        long_host = md.brokers.get(205)
        if long_host is None or len(long_host.host) != 30000:
            problem("librdkafka did not decode the 30,000-byte host name of node 205")
        inj.set_extra([])

        klog_path = logdir / "malicious-kgate.log"
        klog = open(klog_path, "wb")
        kgate = subprocess.Popen([os.environ["KGATE_BIN"], "run", "--bootstrap", f"{NETNS_ADDR}:{inj_port}",
                                  "--port-base", str(PB), "--admin-listen", f"127.0.0.1:{ADMIN}",
                                  "--max-dynamic-listeners", str(CAP), "--log-level", "info"],
                                 stdout=klog, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
        procs.append(kgate)
        faults.wait_until("kgate", lambda: faults.port_open("127.0.0.1", PB) and faults.port_open("127.0.0.1", ADMIN),
                          30)
        pid = kgate.pid
        boot = f"127.0.0.1:{PB}"
        canary = faults.Canary(boot, "malicious-canary", name="canary-malicious")
        canary.wait_acks(20, 30)
        faults.wait_until("/readyz 200", lambda: faults.http_get(ADMIN, "/readyz")[0] == 200, 30)
        m0 = faults.scrape(ADMIN)
        nums["rss_kb_before"] = faults.proc_rss_kb(pid)
        nums["fds_before"] = faults.proc_fds(pid)
        nums["listeners_before"] = m0.get("kgate_listeners")
        log_mark = faults.file_size(klog_path)

        # ---- phase A1: a taken listener port; /readyz 503, then recovery ---------------
        admin_kg = AdminClient({"bootstrap.servers": boot, "log_level": 0})
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", PB + 1 + TAKEN_NODE))
        taken.listen(1)
        tA = time.monotonic()
        inj.set_extra([b for b in HOSTILE if b.node_id == TAKEN_NODE])
        md = admin_kg.list_topics(timeout=20)
        if set(md.brokers) != {111}:
            problem(f"phase A1: brokers handed to the client: {sorted(md.brokers)}, expected only node 111 "
                    f"(node {TAKEN_NODE} has no listener)")

        def not_ready():
            code, body = faults.http_get(ADMIN, "/readyz")
            return (code, body) if code == 503 else None

        try:
            code, body = faults.wait_until("/readyz 503 for the taken port", not_ready, 15)
            nums["A1_readyz_503_body"] = body.strip()[:400]
            if str(TAKEN_NODE) not in body or str(PB + 1 + TAKEN_NODE) not in body:
                problem(f"phase A1: /readyz 503 does not name node {TAKEN_NODE} and port {PB + 1 + TAKEN_NODE}: {body!r}")
        except TimeoutError as e:
            problem(f"phase A1: /readyz never turned 503 while node {TAKEN_NODE}'s port was taken: {e}")
        mA = faults.scrape(ADMIN)
        nums["A1_listeners_failing"] = mA.get("kgate_listeners_failing")
        if mA.get("kgate_listeners_failing") != 1:
            problem(f"phase A1: kgate_listeners_failing is {mA.get('kgate_listeners_failing')}, expected 1")
        time.sleep(1.5)
        taken.close()
        tfree = time.monotonic()
        try:
            faults.wait_until("/readyz 200 after the port was freed",
                              lambda: faults.http_get(ADMIN, "/readyz")[0] == 200, 40, 0.2)
            nums["A1_readyz_recovery_s"] = round(time.monotonic() - tfree, 2)
        except TimeoutError as e:
            problem(f"phase A1: {e}")
        if not faults.port_open("127.0.0.1", PB + 1 + TAKEN_NODE):
            problem(f"phase A1: no listener on port {PB + 1 + TAKEN_NODE} for node {TAKEN_NODE} after the port was freed")
        md = admin_kg.list_topics(timeout=20)
        nums["A1_brokers_after_recovery"] = sorted(md.brokers)
        if TAKEN_NODE not in md.brokers:
            problem(f"phase A1: node {TAKEN_NODE} still left out of responses after its listener was created")
        nums["A1_canary_acks"] = canary.acked_between(tA, time.monotonic())
        nums["A1_canary_longest_ack_gap_s"] = round(canary.max_ack_gap(tA, time.monotonic()), 2)
        if nums["A1_canary_acks"] < 20:
            problem(f"canary: phase A1: got only {nums['A1_canary_acks']} acks")

        # ---- phase A2: metadata service, loopback:22, outside the allow-list, overflow, 30 KB host
        log_mark = faults.file_size(klog_path)
        m1 = faults.scrape(ADMIN)
        tA2 = time.monotonic()
        inj.set_extra(HOSTILE)
        md = admin_kg.list_topics(timeout=20)
        seen = {n: f"{b.host}:{b.port}" for n, b in md.brokers.items()}
        res["phases"]["A2_brokers_seen_by_client"] = seen
        if set(seen) != {111, TAKEN_NODE}:
            problem(f"phase A2: brokers handed to the client: {seen}, expected nodes 111 and {TAKEN_NODE}")
        hostile = len(HOSTILE) - 1

        def refused_now():
            return faults.scrape(ADMIN).get("kgate_dynamic_listeners_refused_total", 0) - \
                m1.get("kgate_dynamic_listeners_refused_total", 0) >= hostile

        try:
            faults.wait_until(f"{hostile} refusals in kgate_dynamic_listeners_refused_total", refused_now, 15)
        except TimeoutError as e:
            problem(f"phase A2: {e}")
        time.sleep(2)
        mA2 = faults.scrape(ADMIN)
        nums["A2_refused_delta"] = mA2.get("kgate_dynamic_listeners_refused_total", 0) - \
            m1.get("kgate_dynamic_listeners_refused_total", 0)
        nums["A2_listeners"] = mA2.get("kgate_listeners")
        nums["A2_listeners_failing"] = mA2.get("kgate_listeners_failing")
        code, body = faults.http_get(ADMIN, "/readyz")
        nums["A2_readyz"] = code
        res["phases"]["A2_readyz_body"] = body.strip()[:300]
        linesA = faults.log_lines(klog_path, log_mark)
        for node, what in [(201, "metadata service 169.254.169.254"), (202, "127.0.0.1:22"),
                           (204, "10.200.0.1 (not allowed)"), (70000, "overflowing node id"),
                           (205, "30 KB host")]:
            hit = [ln for ln in linesA if re.search(rf"\bnode_id[=:]\s*\"?{node}\b", ln) and "WARN" in ln]
            res["phases"].setdefault("A2_log", {})[str(node)] = hit[0][:400] if hit else None
            if not hit:
                problem(f"phase A2: no WARN line names node_id={node} ({what})")
        opened = [n for n in (201, 202, 204, 205) if faults.port_open("127.0.0.1", PB + 1 + n)]
        if opened:
            problem(f"phase A2: kgate listens for hostile brokers {opened}")
        nums["A2_max_log_line_bytes"] = max((len(ln) for ln in linesA), default=0)
        if nums["A2_max_log_line_bytes"] > 2000:
            problem(f"phase A2: a log line of {nums['A2_max_log_line_bytes']} bytes (the 30 KB host is not clipped)")
        nums["A2_canary_acks"] = canary.acked_between(tA2, time.monotonic())
        nums["A2_canary_longest_ack_gap_s"] = round(canary.max_ack_gap(tA2, time.monotonic()), 2)
        if nums["A2_canary_acks"] < 20:
            problem(f"canary: phase A2: got only {nums['A2_canary_acks']} acks")

        # ---- phase B: 5,000 brokers --------------------------------------------------
        log_mark = faults.file_size(klog_path)
        tB = time.monotonic()
        inj.set_extra(HOSTILE + FLOOD)
        md = admin_kg.list_topics(timeout=30)
        nums["B_brokers_seen_by_client"] = len(md.brokers)
        nums["B_metadata_s"] = round(time.monotonic() - tB, 2)
        if len(md.brokers) > CAP + 1:
            problem(f"phase B: a client was handed {len(md.brokers)} brokers, more than the cap {CAP} + node 111")
        bad = [n for n in md.brokers if n in {b.node_id for b in HOSTILE if b.node_id != TAKEN_NODE}]
        if bad:
            problem(f"phase B: hostile brokers handed to a client: {bad}")
        for ver, (orig, rewritten) in sorted(inj.last.items()):
            try:
                d = faults.decode_with_kafka_python(rewritten, ver)
                o = faults.decode_with_kafka_python(orig, ver)
                n = len(d.brokers)
                res["phases"].setdefault("B_kafka_python_decoded", {})[str(ver)] = n
                if n != len(o.brokers) + len(HOSTILE) + N_FLOOD or len(d.topics) != len(o.topics):
                    problem(f"kafka-python decoded {n} brokers / {len(d.topics)} topics from the injector's v{ver} "
                            f"answer, expected {len(o.brokers) + len(HOSTILE) + N_FLOOD} / {len(o.topics)}")
            except Exception as e:  # noqa: BLE001
                problem(f"kafka-python cannot decode the injector's Metadata v{ver}: {e!r}")
        if not inj.last:
            problem("the injector rewrote no Metadata response in phase B")
        peak_rss = peak_fds = 0
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:  # the canary refreshes metadata every 5 s meanwhile
            peak_rss = max(peak_rss, faults.proc_rss_kb(pid))
            peak_fds = max(peak_fds, faults.proc_fds(pid))
            time.sleep(0.2)
        admin_kg.list_topics(timeout=30)
        mB = faults.scrape(ADMIN)
        nums.update({
            "B_listeners": mB.get("kgate_listeners"),
            "B_dynamic_created_total": mB.get("kgate_dynamic_listeners_created_total"),
            "B_refused_total": mB.get("kgate_dynamic_listeners_refused_total"),
            "B_listeners_failing": mB.get("kgate_listeners_failing"),
            "B_peak_rss_kb": peak_rss, "B_peak_fds": peak_fds,
            "B_rss_kb_after": faults.proc_rss_kb(pid), "B_fds_after": faults.proc_fds(pid),
        })
        created = mB.get("kgate_dynamic_listeners_created_total", 0)
        if created > CAP:
            problem(f"phase B: {created} dynamic listeners created, cap {CAP}")
        if (mB.get("kgate_listeners") or 0) > CAP + 2:
            problem(f"phase B: kgate_listeners {mB.get('kgate_listeners')} > cap {CAP} + bootstrap + node 111")
        if peak_fds > CAP + 120:
            problem(f"phase B: kgate held {peak_fds} fds (cap {CAP} listeners)")
        if peak_rss > nums["rss_kb_before"] + 32 * 1024:
            problem(f"phase B: kgate RSS peaked at {peak_rss} kB (from {nums['rss_kb_before']} kB)")
        linesB = faults.log_lines(klog_path, log_mark)
        nums["B_log_lines"] = len(linesB)
        nums["B_warn_lines"] = sum(1 for ln in linesB if "WARN" in ln)
        nums["B_max_log_line_bytes"] = max((len(ln) for ln in linesB), default=0)
        nums["B_duration_s"] = round(time.monotonic() - tB, 1)
        refusal_lines = [ln for ln in linesB if "WARN" in ln and "node_id=" in ln]
        per_node: dict = {}
        for ln in refusal_lines:
            m = re.search(r"node_id=(\d+)", ln)
            per_node[m.group(1)] = per_node.get(m.group(1), 0) + 1
        nums["B_refusal_warn_lines"] = len(refusal_lines)
        nums["B_refused_nodes_logged"] = len(per_node)
        nums["B_max_lines_per_refused_node"] = max(per_node.values(), default=0)
        # "A refused broker is logged once with the reason" and logs that scale:
        # 5,000 named brokers must not become tens of thousands of lines.
        if nums["B_warn_lines"] > 1000:
            problem(f"phase B: log flood: {nums['B_warn_lines']} WARN lines in {nums['B_duration_s']} s "
                    f"({len(per_node)} refused brokers, up to {nums['B_max_lines_per_refused_node']} lines each; "
                    f"e.g. {refusal_lines[-1][:300] if refusal_lines else ''})")
        if nums["B_max_log_line_bytes"] > 2000:
            problem(f"phase B: a log line of {nums['B_max_log_line_bytes']} bytes")
        acks_B = canary.acked_between(tB, time.monotonic())
        nums["B_canary_acks"] = acks_B
        nums["B_canary_longest_ack_gap_s"] = round(canary.max_ack_gap(tB, time.monotonic()), 2)
        for k in ("A1", "A2", "B"):
            if nums[f"{k}_canary_longest_ack_gap_s"] > 3:
                problem(f"canary: phase {k}: went {nums[f'{k}_canary_longest_ack_gap_s']} s without an ack")
        if acks_B < 20:
            problem(f"canary: phase B: got only {acks_B} acks")
        code, body = faults.http_get(ADMIN, "/readyz")
        nums["B_readyz"] = code
        res["phases"]["B_readyz_body"] = body.strip()[:300]
        # the broker stops naming the hostile set: does /readyz come back?
        inj.set_extra([])
        admin_kg.list_topics(timeout=30)
        tq = time.monotonic()
        try:
            faults.wait_until("/readyz 200 once no hostile broker is named",
                              lambda: faults.http_get(ADMIN, "/readyz")[0] == 200, 10, 0.2)
            nums["readyz_after_hostile_gone_s"] = round(time.monotonic() - tq, 2)
        except TimeoutError:
            nums["readyz_after_hostile_gone_s"] = None
            body = faults.http_get(ADMIN, "/readyz")[1].strip()[:300]
            res["phases"]["readyz_after_hostile_gone"] = body
            # A broker that is no longer named cannot keep kgate unready: else one
            # bad Metadata answer takes a kgate out of service for good.
            problem(f"/readyz still 503 10 s after the broker stopped naming the hostile brokers: {body!r}")
        nums["injector_metadata_rewrites"] = inj.metadata_responses
        if inj.errors:
            problem(f"injector errors: {inj.errors[:3]}")

        canary.stop()
        s = canary.summary()
        got = faults.read_all(boot, "malicious-canary", set(canary.acked))
        lost = sorted(set(canary.acked) - got)
        nums["canary"] = {**s, "lost": len(lost)}
        if s["errors"]:
            problem(f"canary delivery errors: {s['first_errors']}")
        if lost:
            problem(f"canary: {len(lost)} acked records missing, first {lost[:5]}")
        if kgate.poll() is not None:
            problem(f"kgate exited with {kgate.returncode}")
        if "panicked at" in (logdir / "malicious-kgate.log").read_text("utf-8", "replace"):
            problem("kgate panicked")
    except Exception as e:  # noqa: BLE001 - reported to the test
        import traceback

        problem(f"scenario error: {e!r}\n{traceback.format_exc()}")
    finally:
        for p in reversed(procs):
            faults.kill_tree(p, 15)
        Path(out_path).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Cut-over with the Java client (issue 14): the same operator steps as
test_cutover.py's librdkafka run, with one Java idempotent producer and one
Java group consumer (tests/e2e/clients/java/KgateCutover.java) that are never
recreated.

kgate starts in front of tansu A; the test switches it to tansu B with the
hold, copies A's records (same offsets) and the group's committed offsets to
B, releases the hold, and checks: neither client reported a fatal error,
every acknowledged record is on B exactly once, the consumer got every one
of them, and it resumed between the synced offset and its own position.

Run: . target/e2e-deps/env.sh && python -m pytest tests/e2e/test_cutover_java.py -q
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

from harness import LOOPBACK, Upstream, free_port, kafka_jars_classpath, log_path, poll_until
from test_cutover import PARTITIONS, Operator, switch
from test_ops import create_topic, read_all, start_ops_kgate, start_tansu


class JavaClients:
    """KgateCutover.java, read line by line as it runs."""

    def __init__(self, java_classes: Path, bootstrap: str, topic: str, group: str, tag: str, rate: int = 300):
        self.acked: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.got: list[tuple[int, int, int]] = []
        self.commits: list[str] = []
        self.errors: list[str] = []
        self.fatal: list[str] = []
        self.left = -1
        self.done = threading.Event()
        self.log = open(log_path("java-cutover"), "a", buffering=1)
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", f"{kafka_jars_classpath()}:{java_classes}", "KgateCutover",
             bootstrap, topic, group, tag, str(rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "ACK":
                self.acked.append(int(rest))
            elif kind == "GOT":
                p, off, seq = rest.split(" ")
                self.got.append((int(p), int(off), int(seq)))
            elif kind == "COMMIT":
                self.commits.append(rest)
            elif kind == "ERR":
                self.errors.append(rest)
            elif kind == "FAIL":
                seq, _, why = rest.partition(" ")
                self.failed.append((int(seq), why))
            elif kind == "FATAL":
                self.fatal.append(rest)
            elif kind == "LEFT":
                self.left = int(rest)
            elif kind == "DONE":
                self.done.set()
            self.log.write(line)

    def command(self, what: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("stop")
                self.proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


def test_java_clients_through_a_cut_over(java_classes) -> None:
    pa, pb = free_port(), free_port()
    ta, tb = start_tansu("tansu-java-a", pa), start_tansu("tansu-java-b", pb)
    a, b = f"{LOOPBACK}:{pa}", f"{LOOPBACK}:{pb}"
    run = uuid.uuid4().hex[:8]
    topic, group = f"cutover-java-{run}", f"cutover-java-group-{run}"
    create_topic(a, topic, PARTITIONS)
    create_topic(b, topic, PARTITIONS)
    okg = start_ops_kgate("cutover-java", Upstream("tansu-a", [(LOOPBACK, pa)], (111,), {111: (LOOPBACK, pa)}), {})
    op = Operator(okg, Path(okg.proc.argv[-1]))
    java = JavaClients(java_classes, okg.bootstrap, topic, group, run)
    try:
        poll_until("Java traffic through kgate on A",
                   lambda: len(java.acked) >= 300 and len(java.got) >= 100 and java.commits, 90)
        _, _, timings = switch(op, topic, group, a, b, {p: 0 for p in range(PARTITIONS)}, java, java)
        java.command("stop-producer")
        poll_until("the producer flushed", lambda: java.left >= 0, 150)
        poll_until("the consumer has every acknowledged record",
                   lambda: set(java.acked) <= {s for _, _, s in java.got}, 60)
        java.command("stop")
        assert java.done.wait(60), "the Java clients closed"
        assert okg.proc.alive(), "kgate kept running"
        assert not java.fatal, f"fatal client errors: {java.fatal}"
        assert not java.failed and java.left == 0, f"{len(java.failed)} failed: {java.failed[:5]}; {java.left} left"
        seqs = read_all(b, topic, PARTITIONS, run, len(java.acked), timeout=60)
        counts: dict[int, int] = {}
        for s in seqs:
            counts[s] = counts.get(s, 0) + 1
        missing = sorted(set(java.acked) - set(counts))
        dups = sorted(s for s, n in counts.items() if n > 1)
        assert not missing and not dups, (f"{len(java.acked)} acknowledged; on B: {len(missing)} missing "
                                          f"{missing[:10]}, {len(dups)} duplicated {dups[:10]}")
        print(f"Java cut-over: {len(java.acked)} records exactly once on B; consumer got {len(java.got)}; "
              f"non-fatal errors {len(java.errors)} {java.errors[:3]}; timings {timings}")
    finally:
        java.stop()
        okg.stop()
        ta.stop()
        tb.stop()

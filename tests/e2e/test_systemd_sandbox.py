"""kgate under deploy/systemd/kgate.service's sandbox.

Where systemd is PID 1, kgate runs as a transient unit through
`systemd-run --property=...` with the unit's own [Service] settings.

This machine (a Firecracker VM whose PID 1 is `process_api`) has no systemd
manager: `systemd-run` answers "System has not been booted with systemd as
init system (PID 1). Can't operate." The test then checks that this is the
reason, says so in a warning, and the sandbox is exercised through
deploy/systemd/sandbox-emulation.sh instead (namespaces, read-only mounts,
private /tmp and /dev, empty capability sets, no-new-privs, an unprivileged
uid, and seccomp filters built from the unit's SystemCallFilter,
SystemCallErrorNumber, RestrictAddressFamilies, MemoryDenyWriteExecute,
RestrictNamespaces and LockPersonality by deploy/systemd/sandbox-seccomp.py,
plus PR_SET_MDWE): kgate's check-config (the unit's ExecStartPre) and run
(ExecStart) work inside it and carry a produce and consume, and a probe
(seccomp_probe.py) shows each seccomp setting refusing what it should, where
the same probe outside succeeds. SystemCallArchitectures=native is in the
filters (native architecture only) but not probed. `systemd-analyze verify`
and `systemd-analyze security` cover the unit file itself
(test_deploy_kit.py).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

from deploy_run import http_get, produce_consume
from harness import LOOPBACK, REPO, Proc, Upstream, free_port, kgate_bin, pick_port_base, poll_until

UNIT = REPO / "deploy" / "systemd" / "kgate.service"
EMULATION = REPO / "deploy" / "systemd" / "sandbox-emulation.sh"
SANDBOX_UID = 61234  # unused here; DynamicUser picks from 61184-65519
# Settings the emulation reproduces, as the unit must write them.
EMULATED = {
    "DynamicUser": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "PrivateMounts": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
    "PrivateDevices": "yes", "PrivateIPC": "yes", "ProtectHostname": "yes", "UMask": "0077",
    "LimitNOFILE": "65536",
    # seccomp, by sandbox-seccomp.py (SystemCallFilter: see below)
    "SystemCallErrorNumber": "EPERM", "SystemCallArchitectures": "native",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes", "LockPersonality": "yes",
}
SYSCALL_FILTER = ["@system-service", "~@privileged"]
PROBE = REPO / "tests" / "e2e" / "seccomp_probe.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-seccomp
# Not sandboxing, or not usable by a transient unit without files.
NOT_PROPERTIES = {"Type", "ExecStartPre", "ExecStart", "ExecReload", "Restart", "RestartSec",
                  "RestartPreventExitStatus", "LoadCredential", "TimeoutStopSec"}


def service_directives() -> list[tuple[str, str]]:
    out, section = [], None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith(("#", ";")) and section == "[Service]":
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


def pid1() -> str:
    return Path("/proc/1/comm").read_text().strip()


def write_config(tansu: Upstream, base: int, admin: int) -> Path:
    # Outside /tmp: PrivateTmp hides the host's /tmp from the service.
    d = REPO / "target" / "e2e-sandbox" / uuid.uuid4().hex[:8]
    d.mkdir(parents=True)
    for p in (d, d.parent):
        p.chmod(0o755)
    cfg = d / "kgate.toml"
    cfg.write_text(
        f'bootstrap = ["{tansu.bootstrap_servers}"]\nport_base = {base}\nadmin_listen = "{LOOPBACK}:{admin}"\n'
    )
    cfg.chmod(0o644)
    return cfg


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_the_unit_sets_what_the_emulation_reproduces() -> None:
    d = dict(service_directives())
    for k, v in EMULATED.items():
        assert d.get(k) == v, f"{UNIT.name}: {k}={d.get(k)!r}, the emulation assumes {v!r}"
    filters = [v for k, v in service_directives() if k == "SystemCallFilter"]
    assert filters == SYSCALL_FILTER, f"{UNIT.name}: SystemCallFilter lines {filters}"
    text = EMULATION.read_text()
    for k in [*EMULATED, "SystemCallFilter"]:
        assert k in text, f"{EMULATION.name} does not mention {k}"


def test_systemd_run_with_the_units_properties(tansu: Upstream) -> None:
    if not shutil.which("systemd-run"):
        pytest.fail("systemd-run not found (Debian package systemd; tests/setup.sh installs it)", pytrace=False)
    if pid1() != "systemd":
        r = subprocess.run(["systemd-run", "--wait", "--pipe", "true"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "not been booted with systemd" in r.stderr, (r.returncode, r.stderr)
        warnings.warn(
            f"systemd-run cannot run here: PID 1 is {pid1()!r} ({r.stderr.strip().splitlines()[0]}); "
            "the unit's sandbox was exercised by test_kgate_carries_traffic_in_the_emulated_sandbox",
            stacklevel=1,
        )
        return
    base, admin = pick_port_base(tansu.node_ids), free_port()
    cfg = write_config(tansu, base, admin)
    props = [f"--property={k}={v}" for k, v in service_directives() if k not in NOT_PROPERTIES]
    unit = f"kgate-e2e-{uuid.uuid4().hex[:8]}"
    subprocess.run(["systemd-run", f"--unit={unit}", *props, str(kgate_bin()), "run", "--config", str(cfg)],
                   check=True, capture_output=True, text=True, timeout=60)
    try:
        poll_until("/readyz 200 from the systemd unit", lambda: http_get(admin, "/readyz")[0] == 200, 30)
        n = 20
        assert sorted(produce_consume(f"{LOOPBACK}:{base}", n)) == sorted(f"m-{i}" for i in range(n))
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, timeout=60)


def test_the_emulated_sandbox_is_enforced() -> None:
    """Negative control: inside the emulation, the repository is read-only,
    /root is empty, /dev is minimal and no capability is left."""
    probe = (
        f"touch {REPO}/target/.sandbox-probe 2>/dev/null && echo WROTE; ls -A /root | wc -l; ls /dev | tr '\\n' ' ';"
        " echo; grep -E '^(CapEff|CapBnd|NoNewPrivs|Uid)' /proc/self/status; umask"
    )
    r = subprocess.run(["bash", str(EMULATION), str(SANDBOX_UID), "sh", "-c", probe],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "WROTE" not in out, out
    assert out.splitlines()[0].strip() == "0", out
    assert out.splitlines()[1].split() == ["full", "null", "random", "urandom", "zero"], out
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out, out
    assert "NoNewPrivs:\t1" in out and f"Uid:\t{SANDBOX_UID}" in out, out
    assert out.strip().endswith("0077"), out
    # the same probe outside the sandbox does write: the check can fail
    outside = subprocess.run(["sh", "-c", f"touch {REPO}/target/.sandbox-probe && echo WROTE"],
                             capture_output=True, text=True, timeout=10)
    assert "WROTE" in outside.stdout
    (REPO / "target" / ".sandbox-probe").unlink()


def probe(argv: list[str]) -> tuple[dict[str, str], str]:
    r = subprocess.run([*argv, SYSTEM_PYTHON, str(PROBE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{argv}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return dict(line.split(" ", 1) for line in r.stdout.splitlines()), r.stderr


def test_the_emulated_seccomp_filters_are_enforced() -> None:
    """Each seccomp setting refuses what systemd's would, with systemd's
    errno; the same probe as the same user with no-new-privs but without the
    filters succeeds at all of it, so every check here can fail."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found (Debian's python3)", pytrace=False)
    outside, _ = probe(["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                        "--no-new-privs"])
    inside, err = probe(["bash", str(EMULATION), str(SANDBOX_UID)])
    refused = {
        "setuid_self": "EPERM",  # SystemCallFilter=~@privileged, SystemCallErrorNumber=EPERM
        "socket_netlink": "EAFNOSUPPORT",  # RestrictAddressFamilies
        "mmap_write_exec": "EPERM", "mprotect_exec": "EPERM",  # MemoryDenyWriteExecute
        "unshare_user": "EPERM",  # RestrictNamespaces
        "personality_linux32": "EPERM",  # LockPersonality
    }
    allowed = ["socket_inet", "socket_inet6", "socket_unix"]
    for k in [*refused, *allowed]:
        assert outside.get(k) == "ok", f"control: {k} outside the sandbox gave {outside.get(k)} ({outside})"
    for k, want in refused.items():
        assert inside.get(k) == want, f"{k} inside the sandbox: {inside.get(k)}, expected {want} ({inside})"
    for k in allowed:
        assert inside.get(k) == "ok", f"{k} inside the sandbox: {inside.get(k)} ({inside})"
    # PR_SET_MDWE on kernels that have it (6.3+): not set outside, set inside
    if outside["mdwe_flags"] == "EINVAL":
        warnings.warn("this kernel has no PR_SET_MDWE: MemoryDenyWriteExecute is seccomp only", stacklevel=1)
    else:
        assert outside["mdwe_flags"] == "0" and inside["mdwe_flags"] == "1", (outside, inside)
    assert "SystemCallFilter (" in err and "others EPERM" in err, err


def test_kgate_carries_traffic_in_the_emulated_sandbox(tansu: Upstream) -> None:
    kgate = kgate_bin()
    if not kgate.exists():
        pytest.fail(f"kgate binary not found at {kgate}", pytrace=False)
    base, admin = pick_port_base(tansu.node_ids), free_port()
    cfg = write_config(tansu, base, admin)
    sandbox = ["bash", str(EMULATION), str(SANDBOX_UID)]
    pre = subprocess.run([*sandbox, str(kgate), "check-config", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert pre.returncode == 0, f"ExecStartPre (check-config) failed in the sandbox: {pre.stderr}"
    proc = Proc("kgate-sandboxed", [*sandbox, str(kgate), "run", "--config", str(cfg)])
    try:
        poll_until("/readyz 200 from the sandboxed kgate", lambda: http_get(admin, "/readyz")[0] == 200, 30)
        st = status_fields(proc.pid)
        assert st["Uid"].split() == [str(SANDBOX_UID)] * 4, st["Uid"]
        assert st["CapEff"] == st["CapBnd"] == "0000000000000000", st
        assert st["NoNewPrivs"] == "1", st
        # seccomp mode 2 (filter), with both of sandbox-seccomp.py's filters
        assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "2", st
        n = 20
        assert sorted(produce_consume(f"{LOOPBACK}:{base}", n)) == sorted(f"m-{i}" for i in range(n))
    finally:
        code = proc.stop(timeout=30)
    assert code == 0, f"kgate exited {code} after SIGTERM in the sandbox:\n{proc.log_tail()}"

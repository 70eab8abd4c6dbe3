#!/usr/bin/python3
"""Loads seccomp filters equivalent to a systemd unit's seccomp settings, then
executes a command under them. sandbox-emulation.sh runs it last, after it
has dropped to the service's user with no-new-privs, for machines where
systemd is not PID 1.

    /usr/bin/python3 deploy/systemd/sandbox-seccomp.py UNIT -- CMD [ARG...]

Reads the unit's [Service] section and emulates, as systemd 252 implements
them (src/shared/seccomp-util.c):

  SystemCallFilter=        an allow-list: the groups and names of the first
                           line, minus every later `~` line; groups are
                           expanded with `systemd-analyze syscall-filter`
                           (so they are this machine's systemd's groups)
  SystemCallErrorNumber=   the errno for a call outside the list (else KILL)
  SystemCallArchitectures=native
                           the filters match the native architecture only
                           (libseccomp's default; another ABI is killed)
  RestrictAddressFamilies= socket() with any other family: EAFNOSUPPORT
  MemoryDenyWriteExecute=yes
                           mmap with PROT_WRITE|PROT_EXEC, mprotect and
                           pkey_mprotect adding PROT_EXEC, shmat with
                           SHM_EXEC: EPERM; and prctl(PR_SET_MDWE,
                           PR_MDWE_REFUSE_EXEC_GAIN) where the kernel has it
                           (6.3+; systemd 257+ uses it too)
  RestrictNamespaces=yes   unshare/clone with any CLONE_NEW* flag and setns:
                           EPERM; clone3: ENOSYS (libc falls back to clone)
  LockPersonality=yes      personality() other than the current one: EPERM

Needs Debian's python3-seccomp (libseccomp's bindings), so it runs with the
system /usr/bin/python3; tests/setup.sh installs it. Prints one line on
stderr saying what it loaded. Any setting it cannot emulate fails loudly.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

try:
    import seccomp
except ImportError:
    sys.exit("sandbox-seccomp: python3-seccomp is missing (apt-get install python3-seccomp; tests/setup.sh does)")

PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
CLONE_NEW = {  # the namespaces RestrictNamespaces=yes forbids
    "cgroup": 0x02000000, "ipc": 0x08000000, "net": 0x40000000, "mnt": 0x00020000,
    "pid": 0x20000000, "user": 0x10000000, "uts": 0x04000000,
}
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def service(unit: str) -> list[tuple[str, str]]:
    out, section = [], None
    for line in open(unit):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith(("#", ";")) and section == "[Service]":
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


def syscall_groups() -> dict[str, list[str]]:
    text = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("@"):
            cur = line.strip()
            groups[cur] = []
        elif line.startswith("#") or not line.strip():
            cur = None  # the trailing "# Unlisted system calls" block belongs to no group
        elif cur and not line.strip().startswith("#"):
            groups[cur].append(line.strip())
    if "@system-service" not in groups:
        sys.exit("sandbox-seccomp: `systemd-analyze syscall-filter` lists no @system-service group")
    return groups


def expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for it in items:
        if it.startswith("@"):
            if it not in groups:
                sys.exit(f"sandbox-seccomp: unknown syscall group {it}")
            out |= expand(groups[it], groups)
        else:
            out.add(it)
    return out


def allowed_syscalls(lines: list[str]) -> set[str]:
    groups = syscall_groups()
    if not lines or lines[0].startswith("~"):
        sys.exit("sandbox-seccomp: only an allow-list SystemCallFilter= (first line without ~) is emulated")
    allowed = expand(lines[0].split(), groups)
    for line in lines[1:]:
        if line.startswith("~"):
            allowed -= expand(line[1:].split(), groups)
        else:
            allowed |= expand(line.split(), groups)
    return allowed


def rule(f: seccomp.SyscallFilter, action, name: str, *args) -> bool:
    """Adds a rule; False when this architecture has no such syscall."""
    try:
        f.add_rule(action, name, *args)
        return True
    except (ValueError, RuntimeError):
        return False


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: sandbox-seccomp.py UNIT -- CMD [ARG...]")
    unit, argv = sys.argv[1], sys.argv[3:]
    d: dict[str, list[str]] = {}
    for k, v in service(unit):
        d.setdefault(k, []).append(v)
    one = lambda k: d.get(k, [""])[-1]
    done = []

    if one("SystemCallArchitectures") not in ("", "native"):
        sys.exit(f"sandbox-seccomp: SystemCallArchitectures={one('SystemCallArchitectures')} is not emulated")

    # SystemCallFilter (+ SystemCallErrorNumber): allow-list, default errno.
    filters = []
    if "SystemCallFilter" in d:
        name = one("SystemCallErrorNumber")
        default = seccomp.ERRNO(getattr(errno, name)) if name else seccomp.KILL_PROCESS
        f = seccomp.SyscallFilter(default)
        names = allowed_syscalls(d["SystemCallFilter"])
        added = sum(rule(f, seccomp.ALLOW, n) for n in sorted(names))
        filters.append(f)
        done.append(f"SystemCallFilter ({added} of {len(names)} listed syscalls exist here; others {name or 'KILL'})")

    # The rest: one filter that allows by default and refuses specific uses.
    g = seccomp.SyscallFilter(seccomp.ALLOW)
    if "RestrictAddressFamilies" in d:
        fams = one("RestrictAddressFamilies").split()
        if not fams or fams[0].startswith("~") or any(a not in FAMILIES for a in fams):
            sys.exit(f"sandbox-seccomp: RestrictAddressFamilies={' '.join(fams)} is not emulated")
        keep = {FAMILIES[a] for a in fams}
        nope = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for af in range(max(keep)):
            if af not in keep:
                rule(g, nope, "socket", seccomp.Arg(0, seccomp.EQ, af))
        rule(g, nope, "socket", seccomp.Arg(0, seccomp.GT, max(keep)))
        done.append(f"RestrictAddressFamilies ({' '.join(fams)})")
    mdwe = ""
    if one("MemoryDenyWriteExecute") == "yes":
        eperm = seccomp.ERRNO(errno.EPERM)
        wx = PROT_WRITE | PROT_EXEC
        rule(g, eperm, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
        rule(g, eperm, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        rule(g, eperm, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        rule(g, eperm, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0:
            mdwe = " + PR_SET_MDWE"
        elif ctypes.get_errno() != errno.EINVAL:  # EINVAL: a kernel before 6.3
            sys.exit(f"sandbox-seccomp: prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}")
        done.append(f"MemoryDenyWriteExecute (seccomp{mdwe})")
    if one("RestrictNamespaces") == "yes":
        eperm = seccomp.ERRNO(errno.EPERM)
        for flag in CLONE_NEW.values():
            rule(g, eperm, "unshare", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
            rule(g, eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        rule(g, eperm, "setns")
        rule(g, seccomp.ERRNO(errno.ENOSYS), "clone3")
        done.append("RestrictNamespaces")
    elif one("RestrictNamespaces") not in ("", "no"):
        sys.exit(f"sandbox-seccomp: RestrictNamespaces={one('RestrictNamespaces')} is not emulated")
    if one("LockPersonality") == "yes":
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(0xFFFFFFFF)
        rule(g, seccomp.ERRNO(errno.EPERM), "personality", seccomp.Arg(0, seccomp.NE, current))
        done.append(f"LockPersonality ({current:#x})")
    filters.append(g)

    # The kernel runs every filter; the most restrictive answer wins. The
    # allow-list goes last: it refuses seccomp() itself.
    for f in reversed(filters):
        f.load()
    print(f"sandbox-seccomp: loaded {', '.join(done)}; SystemCallArchitectures=native", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()

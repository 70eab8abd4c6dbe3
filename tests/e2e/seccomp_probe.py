"""Tries what kgate.service's seccomp settings refuse, and prints one
`name result` line per try (`ok` or the errno's name). test_systemd_sandbox.py
runs it inside deploy/systemd/sandbox-emulation.sh and, as a control, outside
it. Standard library only (it runs with /usr/bin/python3 or the venv's)."""

import ctypes
import errno
import os
import socket

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE_ANON = 0x22
MAP_FAILED = ctypes.c_void_p(-1).value
CLONE_NEWUSER = 0x10000000
PER_LINUX32 = 0x0008
PR_GET_MDWE = 66


def checked(rv):
    if rv == -1 or rv == MAP_FAILED or rv is None:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rv


def attempt(name, fn):
    try:
        fn()
        print(name, "ok", flush=True)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, str(e.errno)), flush=True)


page = checked(libc.mmap(None, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE_ANON, -1, 0))
attempt("setuid_self", lambda: os.setuid(os.getuid()))  # @privileged: not in the allow-list
attempt("socket_inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
attempt("socket_inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
attempt("socket_unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
attempt("socket_netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
attempt("mmap_write_exec", lambda: checked(libc.mmap(None, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                                                     MAP_PRIVATE_ANON, -1, 0)))
attempt("mprotect_exec", lambda: checked(libc.mprotect(page, 4096, PROT_READ | PROT_EXEC)))
attempt("unshare_user", lambda: checked(libc.unshare(CLONE_NEWUSER)))
attempt("personality_linux32", lambda: checked(libc.personality(PER_LINUX32)))
try:  # PR_SET_MDWE's flags, or the errno on a kernel before 6.3
    print("mdwe_flags", checked(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0)), flush=True)
except OSError as e:
    print("mdwe_flags", errno.errorcode.get(e.errno, str(e.errno)), flush=True)

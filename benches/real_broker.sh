#!/usr/bin/env bash
# Throughput of librdkafka's rdkafka_performance against a real broker (tansu,
# memory storage) on three paths, in the same run:
#
#   direct   client -> tansu
#   haproxy  client -> HAProxy (mode tcp) -> tansu
#   kgate    client -> kgate -> tansu
#
#   bash benches/real_broker.sh
#
# Prints a Markdown section on stdout and writes it to
# benches/results/real_broker.md; progress goes to stderr. Each path gets its own
# fresh tansu instance, so all three see the same history. The paths are
# interleaved (rep 1: direct, haproxy, kgate; rep 2: ...) and every figure is
# the median of the repetitions.
#
# One-time setup (cached): apt-get installs haproxy, librdkafka-dev and the
# deb-src entries needed for `apt-get source librdkafka`; rdkafka_performance is
# compiled from Debian's librdkafka 2.0.2 source into target/bench-deps/. It runs
# against librdkafka 2.16 from the confluent-kafka wheel (tests/setup.sh links it
# to target/e2e-deps/lib/librdkafka.so.1), because Debian's 2.0.2 cannot talk to
# tansu.
#
# Environment:
#   KGATE_BIN        kgate binary (default target/release/kgate; falls back to
#                    target/debug/kgate with a warning in the report)
#   BENCH_REPS       repetitions per measurement (default 3)
#   BENCH_SMALL_N    messages in the 100 B tests (default 2000000)
#   BENCH_LARGE_N    messages in the 10 KiB tests (default 50000)
#   BENCH_PARTITIONS partitions per topic (default 4)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DEPS=$REPO/target/bench-deps
E2E=$REPO/target/e2e-deps
RESULTS=$REPO/benches/results
OUT_MD=$RESULTS/real_broker.md
REPS=${BENCH_REPS:-3}
SMALL_N=${BENCH_SMALL_N:-2000000}
LARGE_N=${BENCH_LARGE_N:-50000}
PARTS=${BENCH_PARTITIONS:-4}
SIZES=(100 10240)
PATHS=(direct haproxy kgate)
T0=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf 'real_broker: %s\n' "$*" >&2; }
die() { printf 'real_broker: FAILED: %s\n' "$*" >&2; exit 1; }

RUN=$(mktemp -d "${TMPDIR:-/tmp}/kgate-bench.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------
apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get update -q >"$RUN/apt.log" 2>&1 || { tail -20 "$RUN/apt.log" >&2; die "apt-get update"; }
        apt_updated=1
    fi
}
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $*"
    apt_update
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$RUN/apt.log" 2>&1 ||
        { tail -20 "$RUN/apt.log" >&2; die "apt-get install $*"; }
}

# tansu, confluent-kafka (for topic set-up and checks) and librdkafka 2.16.
if [ ! -f "$E2E/env.sh" ] || [ ! -e "$E2E/lib/librdkafka.so.1" ]; then
    say "running tests/setup.sh (tansu, confluent-kafka, librdkafka 2.16)"
    bash tests/setup.sh
fi
# shellcheck disable=SC1091
. "$E2E/env.sh"
[ -x "${TANSU_BIN:-}" ] || die "TANSU_BIN not set by $E2E/env.sh"
PY=$E2E/venv/bin/python
RDK_LIB=$E2E/lib

command -v haproxy >/dev/null || apt_install haproxy

RDPERF=$DEPS/rdkafka_performance
if [ ! -x "$RDPERF" ]; then
    mkdir -p "$DEPS/src"
    [ -f /usr/include/librdkafka/rdkafka.h ] || apt_install librdkafka-dev
    command -v dpkg-source >/dev/null || apt_install dpkg-dev
    src=$(find "$DEPS/src" -maxdepth 1 -type d -name 'librdkafka-*' | sed -n 1p)
    if [ -z "$src" ]; then
        if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "enabling deb-src (/etc/apt/sources.list.d/kgate-bench-deb-src.sources)"
            cat >/etc/apt/sources.list.d/kgate-bench-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            apt_updated=0
        fi
        apt_update
        say "apt-get source librdkafka"
        (cd "$DEPS/src" && apt-get source librdkafka) >"$RUN/src.log" 2>&1 ||
            { tail -20 "$RUN/src.log" >&2; die "apt-get source librdkafka"; }
        src=$(find "$DEPS/src" -maxdepth 1 -type d -name 'librdkafka-*' | sed -n 1p)
    fi
    [ -n "$src" ] || die "no librdkafka source tree under $DEPS/src"
    # rd.h (included by the example) needs the config.h that configure writes.
    if [ ! -f "$src/config.h" ]; then
        say "configure ${src#"$REPO"/} (for config.h only)"
        (cd "$src" && ./configure --disable-ssl --disable-gssapi --disable-zstd --disable-lz4-ext \
            --disable-curl --disable-sasl) >"$RUN/configure.log" 2>&1 ||
            { tail -20 "$RUN/configure.log" >&2; die "configure"; }
    fi
    say "compiling rdkafka_performance"
    gcc -O2 -I"$src/src" -o "$RDPERF.tmp" "$src/examples/rdkafka_performance.c" \
        -lrdkafka -lz -lpthread -lm || die "gcc rdkafka_performance"
    mv -f "$RDPERF.tmp" "$RDPERF"
fi
RDK_VERSION=$(LD_LIBRARY_PATH=$RDK_LIB "$RDPERF" -h 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p' | sed -n 1p || true)
case "$RDK_VERSION" in
    "" | 0.* | 1.* | 2.0.*) die "rdkafka_performance runs with librdkafka '$RDK_VERSION'; expected the wheel's 2.16 via LD_LIBRARY_PATH=$RDK_LIB" ;;
esac

KGATE=${KGATE_BIN:-$REPO/target/release/kgate}
KGATE_NOTE=""
if [ ! -x "$KGATE" ]; then
    if [ -z "${KGATE_BIN:-}" ] && [ -x "$REPO/target/debug/kgate" ]; then
        KGATE=$REPO/target/debug/kgate
        KGATE_NOTE="**Warning: target/release/kgate was missing, so this run used the debug build (target/debug/kgate). Its numbers are not representative.**"
        say "target/release/kgate is missing: using the DEBUG build"
    else
        die "no kgate binary at $KGATE (cargo build --release)"
    fi
fi

# ---------------------------------------------------------------------------
# Ports and processes
# ---------------------------------------------------------------------------
# Seven ports on loopback: three tansu listeners, the HAProxy frontend, and
# kgate's bootstrap (PB) plus its listener for tansu's node 111 (PB+112).
read -r T_DIRECT T_HAPROXY T_KGATE H_PORT PB <<<"$(python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
taken = set()
def pick(extra=()):
    while True:
        p = random.randrange(20000, 40000)
        ps = [p] + [p + e for e in extra]
        if all(q not in taken and free(q) for q in ps):
            taken.update(ps); return p
ports = [pick() for _ in range(4)]
ports.append(pick(extra=(112,)))
print(*ports)
EOF
)"
KGATE_BROKER_PORT=$((PB + 112))

wait_port() { # port pid name
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { tail -30 "$RUN/$3.log" >&2; die "$3 exited during start-up"; }
        sleep 0.05
    done
    tail -30 "$RUN/$3.log" >&2
    die "$3 did not listen on 127.0.0.1:$1"
}

declare -A PID BOOTSTRAP EXPECT_BROKER
start_tansu() { # name listen advertise
    "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$2" --advertised-listener-url "tcp://127.0.0.1:$3" \
        --storage-engine memory://tansu/ >"$RUN/tansu-$1.log" 2>&1 &
    pids+=($!)
    PID[tansu-$1]=$!
    wait_port "$2" $! "tansu-$1"
}

say "tansu: direct 127.0.0.1:$T_DIRECT, behind HAProxy 127.0.0.1:$T_HAPROXY (advertises :$H_PORT), behind kgate 127.0.0.1:$T_KGATE"
start_tansu direct "$T_DIRECT" "$T_DIRECT"
start_tansu haproxy "$T_HAPROXY" "$H_PORT"
start_tansu kgate "$T_KGATE" "$T_KGATE"

# HAProxy: one frontend per broker port. tansu has a single broker (node 111),
# which advertises the frontend's port, so the bootstrap connection and every
# address in metadata lead through HAProxy.
HAPROXY_CFG=$RUN/haproxy.cfg
cat >"$HAPROXY_CFG" <<EOF
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m

frontend broker_111
    bind 127.0.0.1:$H_PORT
    default_backend tansu_111

backend tansu_111
    server tansu 127.0.0.1:$T_HAPROXY
EOF
haproxy -c -q -f "$HAPROXY_CFG" || die "haproxy -c $HAPROXY_CFG"
haproxy -db -f "$HAPROXY_CFG" >"$RUN/haproxy.log" 2>&1 &
pids+=($!)
PID[haproxy]=$!
wait_port "$H_PORT" $! haproxy

# kgate reads KGATE_* from the environment: give it none of ours.
KGATE_ARGV=("$KGATE" run --bootstrap "127.0.0.1:$T_KGATE" --port-base "$PB" --admin-listen off)
unset_kgate=()
for v in $(compgen -e | grep '^KGATE_' || true); do unset_kgate+=(-u "$v"); done
env "${unset_kgate[@]}" "${KGATE_ARGV[@]}" >"$RUN/kgate.log" 2>&1 &
pids+=($!)
PID[kgate]=$!
wait_port "$PB" $! kgate

BOOTSTRAP[direct]=127.0.0.1:$T_DIRECT
BOOTSTRAP[haproxy]=127.0.0.1:$H_PORT
BOOTSTRAP[kgate]=127.0.0.1:$PB
EXPECT_BROKER[direct]=127.0.0.1:$T_DIRECT
EXPECT_BROKER[haproxy]=127.0.0.1:$H_PORT
EXPECT_BROKER[kgate]=127.0.0.1:$KGATE_BROKER_PORT

# Create every topic up front (PARTS partitions each), and check that each
# path's metadata hands out the address it should: otherwise a "proxied" run
# could quietly go straight to tansu.
topics=()
for r in $(seq "$REPS"); do for s in "${SIZES[@]}"; do topics+=("bench-$s-r$r"); done; done
say "creating ${#topics[@]} topics per path and checking advertised brokers"
LD_LIBRARY_PATH=$RDK_LIB "$PY" - "$PARTS" "${topics[*]}" \
    "direct=${BOOTSTRAP[direct]}=${EXPECT_BROKER[direct]}" \
    "haproxy=${BOOTSTRAP[haproxy]}=${EXPECT_BROKER[haproxy]}" \
    "kgate=${BOOTSTRAP[kgate]}=${EXPECT_BROKER[kgate]}" <<'EOF' || die "topic set-up or address check"
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
parts = int(sys.argv[1]); topics = sys.argv[2].split()
for spec in sys.argv[3:]:
    name, boot, want = spec.split("=")
    admin = AdminClient({"bootstrap.servers": boot})
    for t, f in admin.create_topics([NewTopic(t, parts, 1) for t in topics]).items():
        f.result(timeout=20)
    deadline = time.time() + 20
    while True:
        md = admin.list_topics(timeout=10)
        if all(t in md.topics and len(md.topics[t].partitions) == parts for t in topics):
            break
        if time.time() > deadline:
            sys.exit(f"{name}: topics not visible in metadata: {sorted(md.topics)}")
        time.sleep(0.2)
    seen = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
    if seen != [want]:
        sys.exit(f"{name}: metadata via {boot} advertises {seen}, expected [{want}]")
    print(f"real_broker: {name}: bootstrap {boot}, metadata advertises {seen[0]}", file=sys.stderr)
EOF

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime in clock ticks (fields 14 and 15; comm may hold spaces)
    local rest
    rest=$(sed 's/^.*) //' "/proc/$1/stat")
    awk '{print $12 + $13}' <<<"$rest"
}

PARTITION_ARGS=()
for p in $(seq 0 $((PARTS - 1))); do PARTITION_ARGS+=(-p "$p"); done
PRODUCER_X=(-X linger.ms=5 -X batch.size=1000000 -X acks=all)
RAW=$RUN/raw.tsv
printf 'path\tmode\tsize\trep\tmsgs\tbytes\tms\tkgate_ticks\thaproxy_ticks\n' >"$RAW"
declare -A CMD_EXAMPLE

one_run() { # path mode size rep
    local path=$1 mode=$2 size=$3 rep=$4 n topic boot log k0 h0 k1 h1 line msgs bytes ms
    n=$SMALL_N; [ "$size" -eq 100 ] || n=$LARGE_N
    topic=bench-$size-r$rep
    boot=${BOOTSTRAP[$path]}
    log=$RUN/$path-$mode-$size-r$rep.log
    local argv
    if [ "$mode" = produce ]; then
        argv=("$RDPERF" -P -t "$topic" -s "$size" -c "$n" -b "$boot" "${PRODUCER_X[@]}")
    else
        argv=("$RDPERF" -C -t "$topic" "${PARTITION_ARGS[@]}" -o beginning -c "$n" -b "$boot")
    fi
    CMD_EXAMPLE[$path-$mode-$size]="LD_LIBRARY_PATH=${RDK_LIB#"$REPO"/} ${argv[*]#"$REPO"/}"
    k0=$(cpu_ticks "${PID[kgate]}"); h0=$(cpu_ticks "${PID[haproxy]}")
    if ! LD_LIBRARY_PATH=$RDK_LIB timeout 120 "${argv[@]}" >"$log" 2>&1; then
        tail -20 "$log" >&2
        die "$path $mode ${size} B rep $rep failed (log: $log)"
    fi
    k1=$(cpu_ticks "${PID[kgate]}"); h1=$(cpu_ticks "${PID[haproxy]}")
    if [ "$mode" = produce ]; then
        # % 1000000 messages produced (100000000 bytes), 1000000 delivered (offset 184372, 0 failed) in 795ms: ...
        line=$(grep -E '^% [0-9]+ messages produced' "$log" | tail -n 1 || true)
        [[ $line =~ produced\ \(([0-9]+)\ bytes\),\ ([0-9]+)\ delivered\ .*\ ([0-9]+)\ failed\)\ in\ ([0-9]+)ms ]] ||
            { cat "$log" >&2; die "cannot parse producer output"; }
        bytes=${BASH_REMATCH[1]}; msgs=${BASH_REMATCH[2]}; ms=${BASH_REMATCH[4]}
        if [ "${BASH_REMATCH[3]}" -ne 0 ] || [ "$msgs" -ne "$n" ]; then
            die "$path produce $size B rep $rep: delivered $msgs of $n, ${BASH_REMATCH[3]} failed (log: $log)"
        fi
    else
        # % 1000000 messages (100000000 bytes) consumed in 474ms: ...
        line=$(grep -E '^% [0-9]+ messages \([0-9]+ bytes\) consumed' "$log" | tail -n 1 || true)
        [[ $line =~ ^%\ ([0-9]+)\ messages\ \(([0-9]+)\ bytes\)\ consumed\ in\ ([0-9]+)ms ]] ||
            { cat "$log" >&2; die "cannot parse consumer output"; }
        msgs=${BASH_REMATCH[1]}; bytes=${BASH_REMATCH[2]}; ms=${BASH_REMATCH[3]}
        [ "$msgs" -ge "$n" ] || die "$path consume $size B rep $rep: got $msgs of $n (log: $log)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$mode" "$size" "$rep" "$msgs" "$bytes" "$ms" \
        $((k1 - k0)) $((h1 - h0)) >>"$RAW"
    say "$(printf '%-7s %-7s %5s B rep %s: %8s msgs in %5s ms' "$path" "$mode" "$size" "$rep" "$msgs" "$ms")"
}

for rep in $(seq "$REPS"); do
    for path in "${PATHS[@]}"; do
        for size in "${SIZES[@]}"; do
            one_run "$path" produce "$size" "$rep"
            one_run "$path" consume "$size" "$rep"
        done
    done
done

for name in "${!PID[@]}"; do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the benchmark (log: $RUN/$name.log)"
done
if grep -q 'panicked at' "$RUN/kgate.log"; then die "kgate panicked (log: $RUN/kgate.log)"; fi
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
TANSU_RSS="direct $(rss_mib "${PID[tansu-direct]}") MiB, haproxy $(rss_mib "${PID[tansu-haproxy]}") MiB, kgate $(rss_mib "${PID[tansu-kgate]}") MiB"
KGATE_RSS=$(rss_mib "${PID[kgate]}")
say "RSS at the end: tansu $TANSU_RSS; kgate $KGATE_RSS MiB"
ELAPSED=$(($(date +%s) - T0))

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
KGATE_VERSION=$("$KGATE" --version 2>&1 | sed -n 1p || true)
HAPROXY_VERSION=$(haproxy -v 2>&1 | sed -n 1p)
TANSU_VERSION=$("$TANSU_BIN" --version 2>&1 | sed -n 1p)
mkdir -p "$RESULTS"
{
    export LOADAVG_START TANSU_RSS KGATE_RSS RAW CLK_TCK REPS SMALL_N LARGE_N PARTS ELAPSED KGATE_NOTE KGATE_VERSION HAPROXY_VERSION TANSU_VERSION RDK_VERSION
    export KGATE_CMD="${KGATE_ARGV[*]#"$REPO"/}"
    export HAPROXY_CFG_TEXT; HAPROXY_CFG_TEXT=$(cat "$HAPROXY_CFG")
    export TANSU_CMD="\$TANSU_BIN broker --listener-url tcp://127.0.0.1:$T_DIRECT --advertised-listener-url tcp://127.0.0.1:$T_DIRECT --storage-engine memory://tansu/"
    export TANSU_H_CMD="\$TANSU_BIN broker --listener-url tcp://127.0.0.1:$T_HAPROXY --advertised-listener-url tcp://127.0.0.1:$H_PORT --storage-engine memory://tansu/"
    export PORTS="direct=127.0.0.1:$T_DIRECT haproxy=127.0.0.1:$H_PORT->127.0.0.1:$T_HAPROXY kgate=127.0.0.1:$PB(+node 111 at :$KGATE_BROKER_PORT)->127.0.0.1:$T_KGATE"
    export CMDS; CMDS=$(for k in "${!CMD_EXAMPLE[@]}"; do printf '%s\t%s\n' "$k" "${CMD_EXAMPLE[$k]}"; done | sort)
    python3 - <<'EOF'
import csv, os, statistics as st, platform

env = os.environ
rows = list(csv.DictReader(open(env["RAW"]), delimiter="\t"))
tck = int(env["CLK_TCK"])

def mem_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"

def med(xs):
    return st.median(xs) if xs else float("nan")

res = {}
for r in rows:
    key = (r["path"], r["mode"], int(r["size"]))
    s = int(r["ms"]) / 1000
    b = int(r["bytes"])
    d = res.setdefault(key, {"mps": [], "mbps": [], "kcpu": [], "hcpu": [], "runs": []})
    d["mps"].append(int(r["msgs"]) / s)
    d["mbps"].append(b / 1e6 / s)
    d["kcpu"].append(int(r["kgate_ticks"]) / tck / (b / 1e9))
    d["hcpu"].append(int(r["haproxy_ticks"]) / tck / (b / 1e9))
    d["runs"].append(f'{int(r["msgs"]) / s:,.0f}')

def size_label(sz):
    return "100 B" if sz == 100 else f"{sz // 1024} KiB"

out = []
w = out.append
w("## Real broker: rdkafka_performance against tansu (direct, HAProxy, kgate)")
w("")
if env.get("KGATE_NOTE"):
    w(env["KGATE_NOTE"]); w("")
w(f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, {mem_total():.1f} GiB RAM, "
  f"Linux {platform.release()}. Client, broker and proxy share these CPUs; loopback TCP only. "
  f"Load average {env['LOADAVG_START']} at the start, {' '.join(open('/proc/loadavg').read().split()[:3])} at the end "
  "(anything above the benchmark's own load is other work on the machine).")
w("")
w(f"Software: {env['KGATE_VERSION']}; {env['HAPROXY_VERSION']}; {env['TANSU_VERSION']} (memory storage); "
  f"rdkafka_performance from Debian's librdkafka 2.0.2 source, run against librdkafka {env['RDK_VERSION']} "
  "(confluent-kafka wheel).")
w("")
w(f"Each figure is the median of {env['REPS']} runs, paths interleaved within each repetition. "
  f"{int(env['SMALL_N']):,} messages of 100 B and {int(env['LARGE_N']):,} of 10 KiB per run, "
  f"{env['PARTS']} partitions, one fresh tansu instance per path. MB = 10^6 bytes of record payload "
  "(as rdkafka_performance counts; wire bytes are a little more). The producer's time includes "
  "connecting and metadata; the consumer's starts at its first message. Whole run: "
  f"{env['ELAPSED']} s.")
w("")
w("| test | direct msgs/s | direct MB/s | HAProxy msgs/s | HAProxy MB/s | kgate msgs/s | kgate MB/s | kgate / direct | kgate / HAProxy |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for mode in ("produce", "consume"):
    for sz in (100, 10240):
        d, h, k = (res.get((p, mode, sz)) for p in ("direct", "haproxy", "kgate"))
        if not (d and h and k):
            continue
        dm, hm, km = med(d["mbps"]), med(h["mbps"]), med(k["mbps"])
        w(f"| {mode} {size_label(sz)} | {med(d['mps']):,.0f} | {dm:,.1f} | {med(h['mps']):,.0f} | {hm:,.1f} "
          f"| {med(k['mps']):,.0f} | {km:,.1f} | {km / dm:.2f} | {km / hm:.2f} |")
w("")
w("Proxy CPU cost, from /proc/PID/stat utime+stime sampled before and after each run "
  f"(clock tick {1000 // tck} ms), per GB of payload moved (median of runs):")
w("")
w("| test | kgate CPU-s/GB | HAProxy CPU-s/GB |")
w("|---|---:|---:|")
for mode in ("produce", "consume"):
    for sz in (100, 10240):
        k, h = res.get(("kgate", mode, sz)), res.get(("haproxy", mode, sz))
        if k and h:
            w(f"| {mode} {size_label(sz)} | {med(k['kcpu']):.2f} | {med(h['hcpu']):.2f} |")
tot = lambda path, col: sum(int(r[col]) for r in rows if r["path"] == path) / tck
gb = lambda path: sum(int(r["bytes"]) for r in rows if r["path"] == path) / 1e9
w("")
w(f"Over the whole run: kgate used {tot('kgate', 'kgate_ticks'):.2f} CPU-s for {gb('kgate'):.2f} GB "
  f"({tot('kgate', 'kgate_ticks') / gb('kgate'):.2f} CPU-s/GB); HAProxy used {tot('haproxy', 'haproxy_ticks'):.2f} CPU-s "
  f"for {gb('haproxy'):.2f} GB ({tot('haproxy', 'haproxy_ticks') / gb('haproxy'):.2f} CPU-s/GB).")
w("")
w("Every run (msgs/s, in repetition order):")
w("")
w("| test | direct | HAProxy | kgate |")
w("|---|---|---|---|")
for mode in ("produce", "consume"):
    for sz in (100, 10240):
        cells = [", ".join(res[(p, mode, sz)]["runs"]) if (p, mode, sz) in res else "" for p in ("direct", "haproxy", "kgate")]
        w(f"| {mode} {size_label(sz)} | " + " | ".join(cells) + " |")
w("")
w("Commands (ports are picked at random per run; these are this run's):")
w("")
w("```sh")
w("bash benches/real_broker.sh")
w("")
w("# tansu for the direct path (the kgate path's instance is the same on its own port)")
w(env["TANSU_CMD"])
w("# tansu behind HAProxy: it advertises the HAProxy frontend's port")
w(env["TANSU_H_CMD"])
w("haproxy -db -f haproxy.cfg   # below")
w(env["KGATE_CMD"])
w("")
for line in env["CMDS"].splitlines():
    key, cmd = line.split("\t", 1)
    w(f"# {key}")
    w(cmd)
w("```")
w("")
w(f"Addresses: {env['PORTS']}. RSS at the end: kgate {env['KGATE_RSS']} MiB; tansu {env['TANSU_RSS']}.")
w("")
w("haproxy.cfg:")
w("")
w("```")
w(env["HAPROXY_CFG_TEXT"])
w("```")
print("\n".join(out))
EOF
} >"$OUT_MD.tmp"
mv -f "$OUT_MD.tmp" "$OUT_MD"
cat "$OUT_MD"
say "done in ${ELAPSED}s; wrote ${OUT_MD#"$REPO"/}; logs in $RUN"

#!/usr/bin/env bash
# Every kgate benchmark in one run, written to benches/RESULTS.md:
#   1. micro (criterion): header peek, acks peek, each rewriter, IAM signature;
#   2. end to end with a mock broker: direct vs HAProxy vs kgate, plaintext
#      and TLS, 100 B and 10 KiB, max and fixed rate (benches/e2e/);
#   3. real broker: rdkafka_performance against tansu (benches/real_broker.sh);
#   4. memory: idle RSS and RSS with ~10,000 idle clients (benches/idle_rss.py),
#      and with 4,096 idle clients over upstream mTLS (--upstream-tls);
#   5. added latency, one record at a time, direct vs HAProxy vs kgate
#      (benches/latency.py);
#   6. memory with 50 connections receiving 64 MiB frames, and 60 s after
#      (benches/memory.py), and with upstream mTLS (BENCH_UPSTREAM_TLS=1).
#
#   bash benches/run.sh
#
# Installs what it needs (haproxy, the e2e test dependencies). Timings are
# only ever reported here, never asserted by a test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
bash tests/setup.sh
cargo build --release --quiet
mkdir -p benches/results

echo "== micro" >&2
cargo bench --quiet --bench micro 2>/dev/null | tee target/bench-micro.txt >&2
{
    echo "## Micro benchmarks (criterion, \`cargo bench --bench micro\`)"
    echo
    echo "| benchmark | median |"
    echo "|---|---:|"
    awk '/time:/ { name=$1; if (name=="time:") name=prev; sub(/.*time: *\[/, ""); split($0, t, " "); printf "| %s | %s %s |\n", name, t[3], t[4] } { if ($1 != "time:" && NF == 1) prev=$1 }' target/bench-micro.txt
    echo
} > benches/results/micro.md

echo "== end to end (mock broker)" >&2
cargo bench --quiet --bench e2e >/dev/null
echo "== real broker" >&2
bash benches/real_broker.sh >/dev/null
echo "== idle memory" >&2
python3 benches/idle_rss.py >/dev/null
python3 benches/idle_rss.py --upstream-tls --connections 4096 >/dev/null
# shellcheck disable=SC1091
. target/e2e-deps/env.sh
echo "== latency" >&2
python benches/latency.py >/dev/null
echo "== large-frame memory" >&2
python benches/memory.py >/dev/null
KGATE_SPLICE=false python benches/memory.py >/dev/null
BENCH_UPSTREAM_TLS=1 BENCH_FRAMES=1 BENCH_SETTLE=10 python benches/memory.py >/dev/null

{
    echo "# kgate benchmark results"
    echo
    echo "Produced by \`bash benches/run.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)."
    echo
    for f in engine micro e2e real_broker latency memory memory_nosplice memory_tls idle_rss idle_rss_tls profile; do
        cat "benches/results/$f.md"
        echo
    done
} > benches/RESULTS.md
echo "wrote benches/RESULTS.md" >&2

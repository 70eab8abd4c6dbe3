"""ClickHouse's Kafka engine reading tansu through kgate.

Debian's clickhouse-server (18.16) runs as a child process with a config
directory of its own under the run's log directory, on free ports, with the
newer librdkafka (target/e2e-deps/lib, from the confluent-kafka wheel) first
on LD_LIBRARY_PATH: the librdkafka it was built with cannot talk to tansu.

A Kafka engine table, a MergeTree table and a materialized view between them
consume a topic produced through kgate; the test checks that every record
arrives exactly once and that ClickHouse's librdkafka only ever connected to
kgate's listeners (it logs each broker thread's address with debug=broker).

ClickHouse 18.16 quirks, handled here:
- TSV needs an explicit `kafka_row_delimiter`.
- A new consumer group starts at the END of each partition (librdkafka's
  default auto.offset.reset), so records produced before the group joined are
  never read. With tansu this looks like "the first record of a topic is
  dropped": tansu 0.6's ListOffsets(latest) answers the last batch's base
  offset + 1, not the last offset + 1, so after one batch of N records the
  group starts at offset 1. `auto_offset_reset = earliest` in the `<kafka>`
  section fixes both; half of the records are produced before ClickHouse
  starts, to prove it, and the assertion is exact.
- Its first group join takes half of session.timeout.ms with tansu, so the
  `<kafka>` section sets it to 6 s.

The second test does the same over mTLS to kgate with an encrypted PKCS#8 key
and its passphrase: the `<kafka>` settings of deploy/guides/cross-account.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from harness import (
    DEPS,
    DIRECT,
    LOOPBACK,
    Kgate,
    Proc,
    Seen,
    free_port,
    poll_until,
    start_kgate,
    stop_kgate,
    wait_for_port,
)
from tls_support import GEN_SH, Pki, downstream_tls, start_kgate_toml

RECORDS = 300
PARTITIONS = 3
CONSUME_TIMEOUT_S = 75
# kgate's admin endpoint defaults to 127.0.0.1:9644, which concurrent kgates
# would fight over; this test does not need it.
ADMIN_OFF = "off"


# --------------------------------------------------------------------------
# ClickHouse as a child process
# --------------------------------------------------------------------------


def clickhouse_bin() -> str:
    p = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
    if not Path(p).exists():
        pytest.fail("clickhouse-server not found: run tests/setup.sh (apt-get install clickhouse-server)",
                    pytrace=False)
    return p


def clickhouse_env() -> dict:
    lib = DEPS / "lib"
    if not (lib / "librdkafka.so.1").exists():
        pytest.fail(f"{lib}/librdkafka.so.1 missing: run tests/setup.sh", pytrace=False)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(lib)
    return env


def check_librdkafka(binary: str, env: dict) -> str:
    """The librdkafka the server will load (ldd), which must be ours."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True, env=env, timeout=30)
    line = next((l.strip() for l in r.stdout.splitlines() if "librdkafka" in l), "")
    if str(DEPS / "lib") not in line:
        pytest.fail(f"clickhouse-server would load {line or 'no librdkafka'}; expected {DEPS / 'lib'}",
                    pytrace=False)
    return line


USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
      <stream_flush_interval_ms>500</stream_flush_interval_ms>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


def config_xml(d: Path, http_port: int, tcp_port: int, kafka: dict) -> str:
    kafka_xml = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in kafka.items())
    return f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{d}/server.log</log>
    <errorlog>{d}/server.err.log</errorlog>
    <console>1</console>
  </logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>{LOOPBACK}</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>104857600</mark_cache_size>
  <uncompressed_cache_size>104857600</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
  <kafka>{kafka_xml}</kafka>
</yandex>
"""


class ClickHouse:
    """clickhouse-server with its data under `workdir` (not the run's log
    directory, whose pruning expects plain files); its console log is the
    Proc log."""

    def __init__(self, name: str, kafka: dict, workdir: Path):
        binary = clickhouse_bin()
        env = clickhouse_env()
        self.librdkafka = check_librdkafka(binary, env)
        self.dir = workdir / f"clickhouse-{name}"
        self.dir.mkdir(parents=True)
        self.http_port, self.tcp_port = free_port(), free_port()
        (self.dir / "users.xml").write_text(USERS_XML)
        cfg = self.dir / "config.xml"
        cfg.write_text(config_xml(self.dir, self.http_port, self.tcp_port, kafka))
        self.proc = Proc(f"clickhouse-{name}", [binary, f"--config-file={cfg}"], env=env)
        wait_for_port(self.http_port, 60, self.proc)
        poll_until("clickhouse answers SELECT 1", lambda: self.query("SELECT 1").strip() == "1", 30)

    def query(self, sql: str, timeout: float = 30) -> str:
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}/", data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"ClickHouse refused {sql!r}: {e.code} {e.read().decode(errors='replace')}") from None

    def stop(self) -> None:
        self.proc.stop(timeout=30)

    def broker_addresses(self) -> list[Seen]:
        """Broker threads librdkafka logged (debug=broker):
        `[thrd:127.0.0.1:21204/111]`, `[thrd:ssl://127.0.0.1:21092/bootstrap]`."""
        seen = []
        for host, port, node in re.findall(r"\[thrd:(?:\w+://)?([^\]\s/]+):(\d+)/(\w+)\]", self.proc.log_text()):
            seen.append(Seen("clickhouse", host, int(port), int(node) if node.isdigit() else None,
                             bootstrap=node == "bootstrap"))
        return list(dict.fromkeys(seen))


# --------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------


def kafka_settings(**extra) -> dict:
    return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "auto_offset_reset": "earliest",
            "debug": "broker", **extra}


def create_topic(bootstrap: str, topic: str, client_conf: dict) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **client_conf})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    poll_until(f"topic {topic} in metadata",
               lambda: len(admin.list_topics(topic, timeout=5).topics[topic].partitions) == PARTITIONS, 30)


def produce(bootstrap: str, topic: str, rows: list[tuple[int, str]], client_conf: dict) -> None:
    from confluent_kafka import Producer

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  **client_conf})
    for k, v in rows:
        p.produce(topic, key=str(k).encode(), value=f"{k}\t{v}".encode(),
                  on_delivery=lambda e, m: e and errors.append(e))
        p.poll(0)
    left = p.flush(30)
    assert left == 0 and not errors, f"{left} undelivered, errors: {errors[:5]}"


def run_clickhouse_scenario(name: str, kg: Kgate, kafka: dict, client_conf: dict, workdir: Path) -> ClickHouse:
    """RECORDS/2 records before ClickHouse starts (a backlog), ClickHouse's
    tables, the other half while it consumes; returns the running ClickHouse
    after checking the rows (the caller stops it)."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"ch-{name}-{run}", f"clickhouse-{name}-{run}"
    half = RECORDS // 2
    timings = {}
    t0 = time.monotonic()
    create_topic(kg.bootstrap_servers, topic, client_conf)
    produce(kg.bootstrap_servers, topic, [(k, f"{run}-{k}") for k in range(1, half + 1)], client_conf)
    timings["backlog"] = time.monotonic() - t0

    ch = ClickHouse(name, kafka, workdir)
    try:
        timings["clickhouse up"] = time.monotonic() - t0
        ch.query(f"""CREATE TABLE queue (k UInt64, v String) ENGINE = Kafka
                     SETTINGS kafka_broker_list = '{kg.bootstrap_servers}',
                              kafka_topic_list = '{topic}',
                              kafka_group_name = '{group}',
                              kafka_format = 'TSV',
                              kafka_row_delimiter = '\\n',
                              kafka_num_consumers = 1""")
        ch.query("CREATE TABLE rows (k UInt64, v String) ENGINE = MergeTree ORDER BY k")
        ch.query("CREATE MATERIALIZED VIEW mv TO rows AS SELECT k, v FROM queue")
        produce(kg.bootstrap_servers, topic, [(k, f"{run}-{k}") for k in range(half + 1, RECORDS + 1)], client_conf)
        timings["produced"] = time.monotonic() - t0

        def arrived() -> bool:
            return int(ch.query("SELECT count() FROM rows").strip()) >= RECORDS

        try:
            poll_until(f"{RECORDS} rows in ClickHouse", arrived, CONSUME_TIMEOUT_S, 0.5)
        except TimeoutError as e:
            have = ch.query("SELECT count(), uniqExact(k), min(k), max(k) FROM rows").strip()
            raise AssertionError(f"{e}\nrows (count, distinct, min, max): {have}\n"
                                 f"ClickHouse errors:\n{grep(ch.proc.log_text(), r'<Error>|StorageKafka')}") from None
        timings["consumed"] = time.monotonic() - t0
        time.sleep(2)  # anything duplicated would show up by now

        lines = ch.query("SELECT k, v FROM rows ORDER BY k").splitlines()
        rows = [(int(k), v) for k, v in (line.split("\t") for line in lines)]
        keys = [k for k, _ in rows]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        missing = sorted(set(range(1, RECORDS + 1)) - set(keys))
        wrong = [(k, v) for k, v in rows if v != f"{run}-{k}"]
        assert not dups and not missing and not wrong and len(rows) == RECORDS, (
            f"{len(rows)} rows for {RECORDS} records: duplicates {dups[:10]}, missing {missing[:10]}, "
            f"wrong values {wrong[:5]}")
        print(f"clickhouse {name}: {RECORDS}/{RECORDS} records exactly once ({half} from before it started); "
              f"librdkafka {ch.librdkafka}; " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        return ch
    except BaseException:
        ch.stop()
        raise


def grep(text: str, pattern: str, limit: int = 30) -> str:
    rx = re.compile(pattern)
    return "\n".join([l for l in text.splitlines() if rx.search(l)][-limit:])


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ch_pki(tmp_path_factory) -> Pki:
    """A dev PKI of this module's own (tls_support's `pki` fixture writes into
    the run directory that test_tls.py's stunnel and kgates use)."""
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: run tests/setup.sh", pytrace=False)
    out = tmp_path_factory.mktemp("clickhouse-pki")
    r = subprocess.run(["bash", str(GEN_SH), str(out)], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        pytest.fail(f"certs-dev/gen.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return Pki(out)



@pytest.mark.kgate_addresses
def test_clickhouse_kafka_engine_through_kgate(tansu, tmp_path: Path) -> None:
    kg = start_kgate(tansu, "clickhouse", ["--admin-listen", ADMIN_OFF])
    try:
        ch = run_clickhouse_scenario("plain", kg, kafka_settings(), {}, tmp_path)
        try:
            seen = ch.broker_addresses()
            assert any(s.bootstrap for s in seen) and any(s.node_id is not None for s in seen), seen
            kg.check_addresses(seen)
        finally:
            ch.stop()
    finally:
        stop_kgate(kg)


@pytest.mark.skipif(DIRECT, reason="KGATE_DIRECT=1: tansu has no TLS listener to point ClickHouse at")
def test_clickhouse_over_mtls_with_an_encrypted_key(tansu, ch_pki: Pki, tmp_path: Path) -> None:
    """deploy/guides/cross-account.md's ClickHouse settings: security_protocol,
    ssl_ca_location, ssl_certificate_location, ssl_key_location (encrypted
    PKCS#8) and ssl_key_password, against kgate with client mTLS."""
    assert "ENCRYPTED PRIVATE KEY" in Path(ch_pki("client-enc.key")).read_text()
    kg = start_kgate_toml("clickhouse-mtls", tansu, {
        "admin_listen": ADMIN_OFF,
        "downstream_tls": downstream_tls(ch_pki, allowed=["clickhouse"]),
    })
    ssl = {
        "security_protocol": "ssl",
        "ssl_ca_location": ch_pki("ca.pem"),
        "ssl_certificate_location": ch_pki("client-enc.pem"),
        "ssl_key_location": ch_pki("client-enc.key"),
        "ssl_key_password": ch_pki.passphrase,
    }
    client_ssl = {k.replace("_", "."): v for k, v in ssl.items()}
    try:
        ch = run_clickhouse_scenario("mtls", kg, kafka_settings(**ssl), client_ssl, tmp_path)
        try:
            seen = ch.broker_addresses()
            assert any(s.bootstrap for s in seen), seen
            kg.check_addresses(seen)
        finally:
            ch.stop()
    finally:
        stop_kgate(kg)

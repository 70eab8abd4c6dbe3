"""The deploy kit's resource limits against the benchmark figures in
benches/RESULTS.md: memory must hold kgate at the connection limit the same
manifest configures, with 10 % to spare; the Nomad task's and the systemd
unit's file-descriptor limits must hold two descriptors per client connection
plus listeners and the admin endpoint.

The memory model, for a configuration with max_connections N:

    idle RSS + N × RSS per idle connection + buffer_budget_bytes + burst

- idle RSS and RSS per idle connection: benches/idle_rss.py, the upstream
  mTLS run (--upstream-tls) when the configuration enables [upstream_tls]
  (every configuration in deploy/ does), the plaintext run otherwise;
- buffer_budget_bytes: the configuration's, or kgate's default (read from
  src/config/mod.rs), which bounds the frames filters hold whole;
- burst: peak minus idle RSS while 50 connections each stream 64 MiB Fetch
  responses (benches/memory.py) without splice: the upstream mTLS run when
  [upstream_tls] is on (splice never applies to a TLS side), the
  KGATE_SPLICE=false run otherwise (splice does not apply to TLS clients
  either, so the plaintext model does not count on it).

Figures are read from RESULTS.md, so a new benchmark run re-checks the limits.
"""

from __future__ import annotations

import re
import tomllib

import yaml

from harness import REPO
from test_deploy_kit import _nomad, check_configs, u

RESULTS = REPO / "benches" / "RESULTS.md"
MIB = 2**20
ADMIN_MAX_CONNECTIONS = 64  # kgate's default admin connection cap
SPARE = 0.9  # use at most 90 % of a limit


def _section(text: str, heading: str) -> str:
    i = text.find(f"\n## {heading}")
    assert i >= 0, f"{RESULTS.name} has no section '## {heading}'"
    j = text.find("\n## ", i + 1)
    return text[i: j if j >= 0 else len(text)]


def _grab(text: str, pattern: str, where: str) -> float:
    m = re.search(pattern, text, re.S)
    assert m, f"{RESULTS.name} ({where}) has no figure matching {pattern!r}"
    return float(m.group(1))


def _burst(text: str, where: str) -> float:
    """Peak (VmHWM) minus idle, MiB, from the first memory.py table row in text."""
    m = re.search(r"\n\| ([\d.]+) MiB \| ([\d.]+) MiB \| [\d.]+ MiB \| [\d.]+ MiB \| [\d.]+ \|", text)
    assert m, f"{RESULTS.name} ({where}) has no memory.py table row"
    return float(m.group(2)) - float(m.group(1))


def figures() -> dict[str, float]:
    text = RESULTS.read_text()
    plain = _section(text, "Idle memory: kgate RSS per idle client connection")
    tls = _section(text, "Idle memory with upstream mTLS: kgate RSS per idle client connection")
    nosplice = text[text.index("KGATE_SPLICE=false"):]
    burst_tls = _section(text, "Memory with 64 MiB frames and upstream mTLS")
    idle = r"\| RSS idle \(1 s after start\) \| ([\d.]+) MiB"
    return {
        "idle_mib": _grab(plain, idle, "plaintext idle"),
        "per_conn_kib": _grab(plain, r"\| per idle client connection \(incl\. its upstream socket\) \| ([\d.]+) KiB",
                              "plaintext idle"),
        "burst_mib": _burst(nosplice, "KGATE_SPLICE=false"),
        "tls_idle_mib": _grab(tls, idle, "upstream mTLS idle"),
        "tls_per_conn_kib": _grab(
            tls, r"\| per idle client connection with upstream mTLS \(incl\. its upstream TLS session\) \| ([\d.]+) KiB",
            "upstream mTLS idle"),
        "tls_burst_mib": _burst(burst_tls, "upstream mTLS burst"),
    }


def default_buffer_budget() -> int:
    src = (REPO / "src" / "config" / "mod.rs").read_text()
    m = re.search(r"pub const DEFAULT_BUFFER_BUDGET: usize = (\d+) << (\d+);", src)
    assert m, "DEFAULT_BUFFER_BUDGET not found in src/config/mod.rs"
    return int(m.group(1)) << int(m.group(2))


def upstream_tls(config: dict) -> bool:
    return bool(config.get("upstream_tls", {}).get("enabled", False))


def needed_bytes(config: dict) -> float:
    f = figures()
    p = "tls_" if upstream_tls(config) else ""
    budget = config.get("buffer_budget_bytes", default_buffer_budget())
    return ((f[p + "idle_mib"] + f[p + "burst_mib"]) * MIB + budget
            + config["max_connections"] * f[p + "per_conn_kib"] * 1024)


def explain(config: dict) -> str:
    f = figures()
    p = "tls_" if upstream_tls(config) else ""
    return (f"{'upstream mTLS' if p else 'plaintext'}: idle {f[p + 'idle_mib']} MiB + "
            f"{config['max_connections']} × {f[p + 'per_conn_kib']} KiB + budget "
            f"{config.get('buffer_budget_bytes', default_buffer_budget()) / MIB:.0f} MiB + burst "
            f"{f[p + 'burst_mib']:.1f} MiB = {needed_bytes(config) / MIB:.1f} MiB")


def needed_fds(config: dict) -> int:
    # a client socket and a broker socket per connection; a listener per
    # broker (MSK: 3) plus bootstrap; the admin cap; stdio and epoll slack.
    return 2 * config["max_connections"] + 4 + ADMIN_MAX_CONNECTIONS + 64


def nomad_config() -> tuple[dict, dict]:
    doc, _job, _group, task = _nomad()
    variables = check_configs.nomad_variables(doc)
    for t in task["template"]:
        if u(t["destination"]) == "local/kgate.toml":
            return task, tomllib.loads(check_configs.render_nomad_template(t["data"], variables))
    raise AssertionError("no Nomad template renders local/kgate.toml")


def configmap_config() -> dict:
    (cm,) = [d for d in yaml.safe_load_all((REPO / "deploy/kubernetes/configmap.yaml").read_text()) if d]
    return tomllib.loads(next(v for v in cm["data"].values() if "max_connections" in v))


def systemd_example() -> dict:
    return tomllib.loads((REPO / "deploy/systemd/kgate.toml.example").read_text())


def quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    assert m, f"unexpected memory quantity {q!r}"
    return int(m.group(1)) * {"Mi": MIB, "Gi": 2**30}[m.group(2)]


def test_benchmark_figures_are_there_and_plausible() -> None:
    f = figures()
    assert 1 <= f["idle_mib"] <= 64 and 1 <= f["per_conn_kib"] <= 256 and 1 <= f["burst_mib"] <= 512, f
    assert 1 <= f["tls_idle_mib"] <= 64 and 1 <= f["tls_burst_mib"] <= 512, f
    # a TLS session costs more than a plain socket: a mix-up of the runs shows here
    assert f["per_conn_kib"] < f["tls_per_conn_kib"] <= 256, f
    assert 1 << 20 <= default_buffer_budget() <= 1 << 30


def test_every_shipped_config_uses_the_tls_figures() -> None:
    # the reason the mTLS figures exist: if a config ships without TLS, this
    # test's premise (and the README's note) needs a second look
    configs = {"nomad": nomad_config()[1], "configmap": configmap_config(), "systemd": systemd_example()}
    assert all(upstream_tls(c) for c in configs.values()), {k: c.get("upstream_tls") for k, c in configs.items()}


def test_nomad_memory_holds_the_configured_connection_limit() -> None:
    task, config = nomad_config()
    (res,) = task["resources"]
    limit = int(u(res["memory"])) * MIB  # Nomad's memory is in MiB
    need = needed_bytes(config)
    assert need <= SPARE * limit, f"Nomad memory {limit / MIB:.0f} MiB × {SPARE}; {explain(config)}"
    print(f"Nomad {limit / MIB:.0f} MiB: {explain(config)}")


def test_nomad_file_descriptors_hold_the_configured_connection_limit() -> None:
    task, config = nomad_config()
    ulimits = task["config"][0].get("ulimit")
    assert ulimits, "the Nomad task sets no ulimit: the fd limit would be the Docker daemon's default"
    soft, _, hard = u(ulimits[0]["nofile"]).partition(":")
    need = needed_fds(config)
    assert int(soft) >= need and int(hard or soft) >= int(soft), (soft, hard, need)


def test_systemd_file_descriptors_hold_the_example_connection_limit() -> None:
    unit = (REPO / "deploy/systemd/kgate.service").read_text()
    (limit,) = re.findall(r"^LimitNOFILE=(\S+)\s*$", unit, re.M)
    soft, _, hard = limit.partition(":")  # LimitNOFILE=N sets both
    need = needed_fds(systemd_example())
    assert int(soft) >= need and int(hard or soft) >= int(soft), (limit, need)


def test_kubernetes_memory_holds_the_configured_connection_limit() -> None:
    config = configmap_config()
    need = needed_bytes(config)
    for name in ("daemonset.yaml", "deployment.yaml"):
        docs = [d for d in yaml.safe_load_all((REPO / "deploy/kubernetes" / name).read_text()) if d]
        (work,) = [d for d in docs if d.get("kind") in ("DaemonSet", "Deployment")]
        (c,) = [c for c in work["spec"]["template"]["spec"]["containers"] if c["name"] == "kgate"]
        limit = quantity(c["resources"]["limits"]["memory"])
        request = quantity(c["resources"]["requests"]["memory"])
        assert need <= SPARE * limit, (name, limit / MIB, explain(config))
        assert request >= figures()["tls_idle_mib"] * MIB, (name, request / MIB)
        print(f"{name} {limit / MIB:.0f} MiB: {explain(config)}")


def test_deploy_readme_states_the_kubernetes_nofile_requirement() -> None:
    # Kubernetes has no per-pod ulimit: the node's container runtime sets it,
    # and deploy/README.md must name the hard limit the ConfigMap needs
    # (kgate raises its soft limit to the hard one at start).
    need = needed_fds(configmap_config())
    text = (REPO / "deploy/README.md").read_text()
    m = re.search(r"hard\s+`?nofile`?\s+limit\s+of\s+at\s+least\s+([\d,]+)", text)
    assert m, "deploy/README.md states no Kubernetes nofile requirement"
    assert int(m.group(1).replace(",", "")) >= need, (m.group(0), need)


def test_the_budget_check_can_fail() -> None:
    # 128 MiB cannot hold 4,096 upstream-mTLS connections at the measured
    # cost (the Nomad job's earlier setting), nor 10,000 plaintext ones.
    tls = {"max_connections": 4096, "upstream_tls": {"enabled": True}}
    assert needed_bytes(tls) > SPARE * 128 * MIB, explain(tls)
    assert needed_bytes({"max_connections": 10_000}) > SPARE * 128 * MIB
    # the budget counts: a 256 MiB one alone overflows 256 Mi
    assert needed_bytes({"max_connections": 1, "buffer_budget_bytes": 256 * MIB}) > SPARE * 256 * MIB
    assert needed_fds({"max_connections": 10_000}) > 16384

"""The deploy kit's resource limits against the benchmark figures in
benches/RESULTS.md: memory must hold kgate at the connection limit the same
manifest configures, plus the RSS measured under real broker load, with 10 %
to spare; the Nomad task's file-descriptor limit must hold two descriptors per
client connection plus listeners and the admin endpoint.

Figures read from RESULTS.md (so a new benchmark run re-checks the limits):
idle RSS, RSS per idle client connection (client + upstream socket), and
kgate's RSS at the end of the real-broker run.
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


def figures() -> dict[str, float]:
    text = RESULTS.read_text()

    def grab(pattern: str) -> float:
        m = re.search(pattern, text)
        assert m, f"{RESULTS.name} has no figure matching {pattern!r}"
        return float(m.group(1))

    return {
        "idle_mib": grab(r"\| RSS idle \(1 s after start\) \| ([\d.]+) MiB"),
        "per_conn_kib": grab(r"\| per idle client connection \(incl\. its upstream socket\) \| ([\d.]+) KiB"),
        "load_mib": grab(r"RSS at the end: kgate ([\d.]+) MiB"),
    }


def needed_bytes(max_connections: int) -> float:
    f = figures()
    return (f["idle_mib"] + f["load_mib"]) * MIB + max_connections * f["per_conn_kib"] * 1024


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


def quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    assert m, f"unexpected memory quantity {q!r}"
    return int(m.group(1)) * {"Mi": MIB, "Gi": 2**30}[m.group(2)]


def test_benchmark_figures_are_there_and_plausible() -> None:
    f = figures()
    assert 1 <= f["idle_mib"] <= 64 and 1 <= f["per_conn_kib"] <= 256 and 1 <= f["load_mib"] <= 512, f


def test_nomad_memory_holds_the_configured_connection_limit() -> None:
    task, config = nomad_config()
    (res,) = task["resources"]
    limit = int(u(res["memory"])) * MIB  # Nomad's memory is in MiB
    need = needed_bytes(config["max_connections"])
    assert need <= SPARE * limit, (
        f"Nomad memory {limit / MIB:.0f} MiB; max_connections {config['max_connections']} needs "
        f"{need / MIB:.1f} MiB ({figures()}) plus 10 % spare"
    )


def test_nomad_file_descriptors_hold_the_configured_connection_limit() -> None:
    task, config = nomad_config()
    ulimits = task["config"][0].get("ulimit")
    assert ulimits, "the Nomad task sets no ulimit: the fd limit would be the Docker daemon's default"
    soft, _, hard = u(ulimits[0]["nofile"]).partition(":")
    need = needed_fds(config)
    assert int(soft) >= need and int(hard or soft) >= int(soft), (soft, hard, need)


def test_kubernetes_memory_holds_the_configured_connection_limit() -> None:
    (cm,) = [d for d in yaml.safe_load_all((REPO / "deploy/kubernetes/configmap.yaml").read_text()) if d]
    toml_text = next(v for v in cm["data"].values() if "max_connections" in v)
    max_conn = tomllib.loads(toml_text)["max_connections"]
    need = needed_bytes(max_conn)
    for name in ("daemonset.yaml", "deployment.yaml"):
        docs = [d for d in yaml.safe_load_all((REPO / "deploy/kubernetes" / name).read_text()) if d]
        (work,) = [d for d in docs if d.get("kind") in ("DaemonSet", "Deployment")]
        (c,) = [c for c in work["spec"]["template"]["spec"]["containers"] if c["name"] == "kgate"]
        limit = quantity(c["resources"]["limits"]["memory"])
        request = quantity(c["resources"]["requests"]["memory"])
        assert need <= SPARE * limit, (name, limit / MIB, need / MIB)
        assert request >= figures()["idle_mib"] * MIB, (name, request / MIB)


def test_the_budget_check_can_fail() -> None:
    # 128 MiB cannot hold 10,000 connections at the measured cost.
    assert needed_bytes(10_000) > SPARE * 128 * MIB
    assert needed_fds({"max_connections": 10_000}) > 16384

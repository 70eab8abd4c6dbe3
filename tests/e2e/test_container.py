"""The container image, built and run for real without a Docker engine.

- A static x86_64-unknown-linux-musl kgate is built on the host (cargo, under
  the shared build lock /tmp/kgate-cargo.lock).
- buildah builds deploy/docker/Containerfile.prebuilt (`FROM scratch`: the CA
  bundle, the binary, uid/gid 65532).
- podman runs it on the host network, pointed at a tansu broker on the host;
  a producer and a consumer go through it; its process runs as uid 65532;
  /readyz answers 200; SIGTERM (podman stop) drains and exits 0.

What this machine needs, found here (Firecracker VM, root without
CAP_SYS_RESOURCE, cgroup v1 with a v2 "unified" hierarchy = hybrid):
- the runtime is runc (`--runtime runc`): crun 1.8 refuses hybrid cgroups
  ("cgroups in hybrid mode not supported, drop all controllers from
  cgroupv2");
- explicit `--ulimit nofile=16384:16384 --ulimit nproc=4096:4096`: podman's
  defaults (1048576 files, and an nproc as high as the host's) exceed what a
  process without CAP_SYS_RESOURCE may set ("error setting rlimit type 7/6:
  operation not permitted").

Missing tools are failures that name what is missing (tests/setup.sh
installs them); nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from deploy_run import http_get, produce_consume
from harness import LOOPBACK, REPO, Upstream, free_port, pick_port_base, poll_until, run_dir

MUSL = "x86_64-unknown-linux-musl"
CARGO_LOCK = "/tmp/kgate-cargo.lock"
CONTAINERFILE = REPO / "deploy" / "docker" / "Containerfile.prebuilt"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UID = 65532
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"]
# The image is the stripped static binary plus the CA bundle: 13.4 MiB on
# 2026-12-01 (deploy/README.md). A bound about 20 % above that catches a
# debug build, an unstripped binary or a base image creeping in.
IMAGE_MAX_BYTES = 16 * 2**20


def run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        pytest.fail(
            f"`{' '.join(argv)}` exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}",
            pytrace=False,
        )
    return r


def require_tools() -> None:
    missing = [t for t in ("buildah", "podman", "runc", "musl-gcc", "flock", "cargo", "rustup") if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} (run tests/setup.sh)", pytrace=False)
    targets = run(["rustup", "target", "list", "--installed"]).stdout.split()
    if MUSL not in targets:
        pytest.fail(f"rust target {MUSL} is not installed (run tests/setup.sh)", pytrace=False)


def is_static_elf(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP (no dynamic loader)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types  # PT_INTERP


@pytest.fixture(scope="module")
def static_binary() -> Path:
    require_tools()
    env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG="0", CARGO_PROFILE_RELEASE_STRIP="symbols", CARGO_TERM_COLOR="never")
    run(
        ["flock", CARGO_LOCK, "cargo", "build", "--release", "--locked", "--bin", "kgate", "--target", MUSL],
        timeout=3600,
        cwd=REPO,
        env=env,
    )
    binary = REPO / "target" / MUSL / "release" / "kgate"
    assert is_static_elf(binary), f"{binary} is dynamically linked"
    return binary


@pytest.fixture(scope="module")
def image(static_binary: Path, tmp_path_factory) -> dict:
    ctx = tmp_path_factory.mktemp("image-context")
    shutil.copy2(static_binary, ctx / "kgate")
    shutil.copy2(CA_BUNDLE, ctx / "ca-certificates.crt")
    (ctx / "etc-kgate").mkdir()
    tag = f"localhost/kgate-e2e:{uuid.uuid4().hex[:8]}"
    run(["buildah", "bud", "--layers=false", "-q", "-f", str(CONTAINERFILE), "-t", tag, str(ctx)], timeout=600)
    info = json.loads(run(["podman", "image", "inspect", tag]).stdout)[0]
    size = int(info["Size"])
    (run_dir() / "image-size.txt").write_text(
        f"{tag}: {size} bytes ({size / 2**20:.1f} MiB); kgate binary {static_binary.stat().st_size} bytes\n"
    )
    print(f"\nimage {tag}: {size / 2**20:.1f} MiB")
    yield {"tag": tag, "size": size, "info": info, "binary": static_binary}
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_image_is_scratch_with_the_binary_only(image: dict) -> None:
    cfg = image["info"]["Config"]
    assert cfg["User"] == f"{UID}:{UID}", cfg
    assert cfg["Entrypoint"] == ["/kgate", "run"], cfg
    assert cfg.get("StopSignal") == "SIGTERM", cfg
    payload = image["binary"].stat().st_size + CA_BUNDLE.stat().st_size
    # scratch: nothing but the two files (and tar/metadata overhead)
    assert payload <= image["size"] <= payload + 2**20, (image["size"], payload)
    assert image["size"] <= IMAGE_MAX_BYTES, (
        f"image {image['size'] / 2**20:.1f} MiB > {IMAGE_MAX_BYTES / 2**20:.0f} MiB "
        f"(binary {image['binary'].stat().st_size / 2**20:.1f} MiB); update deploy/README.md if this is intended"
    )


def container_uid(name: str) -> tuple[int, int]:
    pid = int(run(["podman", "inspect", "--format", "{{.State.Pid}}", name]).stdout.strip())
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert len(set(uids)) == 1 and len(set(gids)) == 1, (uids, gids)
    return int(uids[0]), int(gids[0])


def test_container_carries_traffic_as_non_root(image: dict, tansu: Upstream) -> None:
    name = f"kgate-e2e-{uuid.uuid4().hex[:8]}"
    base = pick_port_base(tansu.node_ids)
    admin = free_port()
    argv = [*PODMAN, "run", "-d", "--name", name, "--network", "host", *LIMITS, image["tag"],
            "--bootstrap", tansu.bootstrap_servers, "--port-base", str(base),
            "--admin-listen", f"{LOOPBACK}:{admin}"]
    run(argv)
    try:
        poll_until("/readyz 200 from the container", lambda: http_get(admin, "/readyz")[0] == 200, 30)
        assert container_uid(name) == (UID, UID)
        n = 50
        got = produce_consume(f"{LOOPBACK}:{base}", n)
        assert sorted(got) == sorted(f"m-{i}" for i in range(n)), got
        code, metrics = http_get(admin, "/metrics")
        assert code == 200
        produced = [ln for ln in metrics.splitlines() if ln.startswith('kgate_requests_total{api_key="Produce"')]
        assert produced and float(produced[0].split()[-1]) >= 1, produced
        run(["podman", "stop", "-t", "20", name], timeout=60)
        state = json.loads(run(["podman", "inspect", name]).stdout)[0]["State"]
        assert state["ExitCode"] == 0, state
        logs = run(["podman", "logs", name]).stderr + run(["podman", "logs", name]).stdout
        assert "drain" in logs, logs[-2000:]
    finally:
        log = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30)
        (run_dir() / f"{name}.log").write_text(log.stdout + log.stderr)
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60)
        time.sleep(0.1)

#!/usr/bin/env python3
"""Runs `kgate check-config` on every kgate configuration in the deploy kit.

    python3 deploy/check_configs.py [--kgate PATH] [--list]

Where the configurations are:
  - deploy/systemd/kgate.toml.example
  - deploy/kubernetes/configmap.yaml (data: kgate.toml)
  - deploy/nomad/kgate.nomad.hcl (the template rendered to local/kgate.toml,
    with the job's default variables and a stand-in for NOMAD_ADDR_admin)
  - every ```toml block in deploy/guides/*.md that has a `bootstrap` key

The examples name files that exist only on a real host (/etc/kgate/...,
/run/credentials/..., /secrets/...). check-config insists that they exist, so
each `*_file` path is replaced by a file from a throw-away PKI made with
certs-dev/gen.sh (a matching certificate, key and passphrase), and each
`*_env` variable is set, before the check.

Keys of the ops/auth contract that this kgate does not know yet
(PENDING_KEYS) are reported and stripped, and the rest is checked again, so
the result says both "the file as written" and "what today's kgate accepts".

Exit status: 0 when every file passes as written, 1 when some pass only with
pending keys stripped, 2 when a file fails for any other reason.
Needs Python 3.11+ (tomllib); PyYAML and python-hcl2 for the Kubernetes and
Nomad files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent

# Keys the deploy kit uses that belong to kgate's contract but may not be
# implemented yet. Any other unknown key is a mistake in the kit.
PENDING_KEYS = (
    "admin_listen",
    "drain_timeout_ms",
    "max_connections",
    "max_connections_per_listener",
    "idle_timeout_ms",
    "request_timeout_ms",
    "upstream_sasl",
)

NOMAD_STANDINS = {
    r'{{ env "NOMAD_ADDR_admin" }}': "127.0.0.1:9644",
}


@dataclass
class Source:
    name: str
    text: str


@dataclass
class Result:
    name: str
    ok: bool = False                 # passes as written
    output: str = ""                 # check-config's output as written
    stripped: list[str] = field(default_factory=list)  # pending keys removed
    ok_today: bool = False           # passes with `stripped` removed
    output_today: str = ""
    error: Optional[str] = None      # a failure that stripping cannot explain
    config: str = ""                 # the (localized) file as checked


# --------------------------------------------------------------------------
# Finding the configurations
# --------------------------------------------------------------------------


def _unquote(v):
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def _block(blocks, name: str) -> dict:
    """python-hcl2 gives labelled blocks as [{'"label"': {...}}]."""
    for b in blocks:
        for k, v in b.items():
            if _unquote(k) == name:
                return v
    raise KeyError(name)


def _heredoc(raw: str) -> str:
    s = _unquote(raw)
    m = re.match(r"<<(-?)(\w+)\n(.*)\n\s*\2\s*$", s, re.S)
    if not m:
        return s
    body = m.group(3) + "\n"
    return textwrap.dedent(body) if m.group(1) == "-" else body


def load_nomad(path: Path) -> dict:
    import hcl2

    with open(path) as f:
        return hcl2.load(f)


def nomad_variables(doc: dict) -> dict:
    out = {}
    for v in doc.get("variable", []):
        for k, body in v.items():
            d = body.get("default")
            out[_unquote(k)] = [_unquote(x) for x in d] if isinstance(d, list) else _unquote(d)
    return out


def nomad_task(doc: dict) -> dict:
    job = _block(doc["job"], "kgate")
    group = _block(job["group"], "kgate")
    return _block(group["task"], "kgate")


def render_nomad_template(data: str, variables: dict) -> str:
    text = _heredoc(data)

    def hcl_interp(m: re.Match) -> str:
        expr = m.group(1).strip()
        mm = re.fullmatch(r"jsonencode\(var\.(\w+)\)", expr)
        if mm:
            return json.dumps(variables[mm.group(1)])
        mm = re.fullmatch(r"var\.(\w+)", expr)
        if mm:
            return str(variables[mm.group(1)])
        raise ValueError(f"no stand-in for HCL expression ${{{expr}}}")

    text = re.sub(r"\$\{([^}]*)\}", hcl_interp, text)
    for k, v in NOMAD_STANDINS.items():
        text = text.replace(k, v)
    left = re.findall(r"{{.*?}}", text)
    if left:
        raise ValueError(f"no stand-in for template expressions {left}")
    return text


def sources() -> list[Source]:
    out = [Source("systemd/kgate.toml.example", (DEPLOY / "systemd" / "kgate.toml.example").read_text())]

    import yaml

    for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "configmap.yaml").read_text()):
        if doc and doc.get("kind") == "ConfigMap":
            out.append(Source(f"kubernetes/configmap.yaml:{doc['metadata']['name']}", doc["data"]["kgate.toml"]))

    nomad_path = DEPLOY / "nomad" / "kgate.nomad.hcl"
    doc = load_nomad(nomad_path)
    variables = nomad_variables(doc)
    for t in nomad_task(doc)["template"]:
        if _unquote(t.get("destination")) == "local/kgate.toml":
            out.append(Source("nomad/kgate.nomad.hcl:local/kgate.toml", render_nomad_template(t["data"], variables)))

    for md in sorted((DEPLOY / "guides").glob("*.md")):
        text = md.read_text()
        for i, m in enumerate(re.finditer(r"^```toml\n(.*?)^```", text, re.S | re.M)):
            block = m.group(1)
            if re.search(r"^bootstrap\s*=", block, re.M):
                line = text[: m.start()].count("\n") + 2
                out.append(Source(f"guides/{md.name}:{line}", block))
    return out


# --------------------------------------------------------------------------
# Making a configuration checkable here
# --------------------------------------------------------------------------


def make_pki(dest: Path) -> Path:
    r = subprocess.run(["bash", str(REPO / "certs-dev" / "gen.sh"), str(dest)], capture_output=True, text=True,
                       timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"certs-dev/gen.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return dest


def localize(text: str, pki: Path, scratch: Path) -> tuple[str, dict]:
    """Points every *_file at an existing file that fits, sets every *_env.
    Returns the new text and the environment additions."""
    cfg = tomllib.loads(text)
    env: dict[str, str] = {}
    passphrase = (pki / "client-enc.pass").read_text().strip()
    repl: dict[str, str] = {}
    server_leaf = "kgate-server"
    sni = cfg.get("sni")
    if isinstance(sni, dict) and sni.get("bootstrap_name") and "." in str(sni.get("broker_pattern", "")):
        # kgate checks that the client-facing certificate covers the SNI
        # names: issue one that does (bootstrap name + wildcard).
        server_leaf = "sni-server"
        names = [sni["bootstrap_name"], "*." + sni["broker_pattern"].split(".", 1)[1]]
        r = subprocess.run(["bash", str(REPO / "certs-dev" / "gen.sh"), "--issue", str(pki), server_leaf, "server",
                            *names], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"certs-dev/gen.sh --issue failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def section(name: str, t: dict) -> None:
        encrypted = "key_passphrase_file" in t or "key_passphrase_env" in t
        leaf = "client-enc" if encrypted else (server_leaf if name == "downstream_tls" else "kgate-client")
        files = {
            "ca_file": pki / "ca.pem",
            "client_ca_file": pki / "ca.pem",
            "cert_file": pki / f"{leaf}.pem",
            "key_file": pki / f"{leaf}.key",
            "key_passphrase_file": pki / "client-enc.pass",
        }
        for k, v in t.items():
            if not isinstance(v, str):
                continue
            if k.endswith("_file"):
                if k in files:
                    repl[v] = str(files[k])
                else:
                    p = scratch / f"{name}.{k}"
                    p.write_text("not-a-real-secret\n")
                    repl[v] = str(p)
            elif k == "key_passphrase_env":
                env[v] = passphrase
            elif k.endswith("_env"):
                env[v] = "not-a-real-secret"

    for k, v in cfg.items():
        if isinstance(v, dict):
            section(k, v)
    for old, new in repl.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    return text, env


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(cfg: dict) -> str:
    lines, tables, arrays = [], [], []
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, t in tables:
        lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items()]
    for k, items in arrays:
        for t in items:
            lines += ["", f"[[{k}]]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in t.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------


def kgate_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGATE_")}
    env.update(extra)
    return env


def check_config(kgate: Path, path: Path, env: dict) -> tuple[bool, str]:
    r = subprocess.run([str(kgate), "check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=60, env=kgate_env(env))
    return r.returncode == 0, (r.stdout + r.stderr).strip()


UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def check_source(kgate: Path, src: Source, pki: Path, scratch: Path) -> Result:
    res = Result(src.name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.name)
    try:
        text, env = localize(src.text, pki, scratch)
    except Exception as e:  # noqa: BLE001 - reported
        res.error = f"not valid TOML: {e}"
        return res
    res.config = text
    path = scratch / f"{safe}.toml"
    path.write_text(text)
    res.ok, res.output = check_config(kgate, path, env)
    if res.ok:
        res.ok_today, res.output_today = True, res.output
        return res
    cfg = tomllib.loads(text)
    out = res.output
    for _ in range(len(PENDING_KEYS) + 1):
        m = UNKNOWN.search(out)
        if not m:
            break
        key = m.group(1)
        if key not in PENDING_KEYS or key not in cfg:
            res.error = f"kgate rejects `{key}`, which is not a pending contract key:\n{out}"
            return res
        del cfg[key]
        res.stripped.append(key)
        path_today = scratch / f"{safe}.today.toml"
        path_today.write_text(to_toml(cfg))
        res.ok_today, out = check_config(kgate, path_today, env)
        res.output_today = out
        if res.ok_today:
            return res
    res.error = f"kgate check-config fails:\n{out}"
    return res


def default_kgate() -> Path:
    env = os.environ.get("KGATE_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "kgate"


def check_all(kgate: Path, workdir: Path) -> list[Result]:
    pki = make_pki(workdir / "pki")
    scratch = workdir / "configs"
    scratch.mkdir(parents=True, exist_ok=True)
    return [check_source(kgate, s, pki, scratch) for s in sources()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kgate", type=Path, default=default_kgate())
    ap.add_argument("--list", action="store_true", help="print the configurations found and exit")
    args = ap.parse_args()
    if args.list:
        for s in sources():
            print(f"== {s.name}\n{s.text}")
        return 0
    if not args.kgate.exists():
        print(f"kgate binary not found at {args.kgate} (--kgate or KGATE_BIN)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kgate-configs-") as d:
        results = check_all(args.kgate, Path(d))
    worst = 0
    for r in results:
        if r.ok:
            print(f"ok      {r.name}")
        elif r.error:
            worst = 2
            print(f"FAIL    {r.name}: {r.error}")
        else:
            worst = max(worst, 1)
            print(f"PENDING {r.name}: kgate does not know {', '.join(r.stripped)} yet; the rest passes")
    return worst


if __name__ == "__main__":
    sys.exit(main())

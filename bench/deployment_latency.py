"""Per-phase latency of the coordinated round in a deployment as a lab would run it.

The loopback lab of ``tests/test_deployment.py`` (``start_lab``): a ``flower-superlink`` over
TLS with SuperNode authentication, ``--nodes`` registered ``flower-supernode`` processes,
anvil and a js-ipfs daemon; ``flwr run`` runs ``--rounds`` coordinated rounds of the paper
app (Table IV CNN, ``--epochs`` local epochs). It reports the strategy's phase seconds per
round (open, train, submit, reveal, assign, verify, vote, settle, aggregate, record, from the
round reports' ``phase_seconds``) and what each message costs a node before coopflower runs:

- ``clientapp_starts_per_node``: Flower starts a fresh ``flwr-clientapp`` process for every
  message a SuperNode receives (counted in the SuperNodes' logs);
- ``process_start``: fresh-process imports, median of ``--repeat``, wall and CPU seconds:
  ``flower_floor`` (``flwr-clientapp``'s own module: Flower's part), ``coopflower_message``
  (that plus the app module and every module coop_mod loads for a signed message),
  ``before_cut`` (that plus ``eth_utils``, which every signing ClientApp imported before
  ``coopflower.ledger.eip712`` got its own EIP-55 checksum), and ``torch`` (the app's own
  model, for train and verify messages only);
- ``flower_idle_pull_s``: how long an idle SuperNode sleeps between fleet pulls (Flower's
  constant, read from its source), so a message waits up to that long to be picked up.

With ``--before`` the deployment runs a second time with every node-side Python process
importing ``eth_utils`` at start (a ``sitecustomize`` on ``PYTHONPATH``), the cost the cut
removed, and both runs' phase seconds are reported.

    python bench/deployment_latency.py            # 4 nodes, 1 epoch, 1 round
    python bench/deployment_latency.py --before   # and the same with the pre-cut imports

One progress line per phase (the strategy's own, from ``flwr run --stream``); the last stdout
line is one JSON object.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PY = sys.executable
FLOOR = "import flwr.supernode.cli"
MESSAGE = (FLOOR + "; import coopflower.app.client_app, coopflower.client.mod, "
           "coopflower.client.duties, coopflower.client.outbox, coopflower.ledger.eip712, "
           "coopflower.blob, coopflower.storage")


def _cold(code: str, repeat: int) -> dict[str, float]:
    """Median wall and CPU seconds of a fresh interpreter running ``code``."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        t = time.perf_counter()
        subprocess.run([PY, "-c", code], check=True, env={**os.environ,
                       "FLWR_TELEMETRY_ENABLED": "0"}, capture_output=True)
        walls.append(time.perf_counter() - t)
        after = os.times()
        cpus.append(after.children_user - before.children_user
                    + after.children_system - before.children_system)
    return {"wall_s": round(statistics.median(walls), 3),
            "cpu_s": round(statistics.median(cpus), 3)}


def process_start(repeat: int) -> dict[str, Any]:
    """What a node's ClientApp process pays before it handles its one message."""
    cold = {"flower_floor": _cold(FLOOR, repeat),
            "coopflower_message": _cold(MESSAGE, repeat),
            "before_cut": _cold(MESSAGE + "; import eth_utils", repeat),
            "torch": _cold(MESSAGE + "; import torch", repeat)}
    out: dict[str, Any] = dict(cold)
    for k in ("wall_s", "cpu_s"):
        out["coopflower_own_" + k] = round(cold["coopflower_message"][k]
                                           - cold["flower_floor"][k], 3)
        out["cut_saves_" + k] = round(cold["before_cut"][k] - cold["coopflower_message"][k], 3)
    return out


def flower_idle_pull_s() -> float | None:
    """The SuperNode's sleep between pulls that brought no message (Flower's source)."""
    from flwr.supernode import start_client_internal

    src = inspect.getsource(start_client_internal)
    found = re.search(r"If no message was received.*?\n\s*time\.sleep\(([\d.]+)\)", src, re.S)
    return float(found.group(1)) if found else None


def run_lab(nodes: int, rounds: int, epochs: int, before: bool) -> dict[str, Any]:
    """One deployment; the round reports and the ClientApp starts per node."""
    from coopflower.ledger import CoopLedger, connect
    from coopflower.ledger.nodes import anvil
    from coopflower.storage.daemon import ipfs_daemon
    from tests.test_deployment import APP_TOML, VENV_BIN, Procs, start_lab

    with tempfile.TemporaryDirectory(prefix="deploy-latency-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr"), "FLWR_TELEMETRY_ENABLED": "0",
               "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "COOPFLOWER_HOME": str(tmp_path / "coop")}
        (tmp_path / "flwr").mkdir()
        (tmp_path / "logs").mkdir()
        node_env = dict(env)
        if before:  # every node-side interpreter pays the import the cut removed
            site = tmp_path / "site"
            site.mkdir()
            (site / "sitecustomize.py").write_text("import eth_utils  # noqa: F401\n")
            node_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(site), env.get("PYTHONPATH", "")) if p)
        procs = Procs(env, tmp_path / "logs")
        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(
            APP_TOML.replace("num-server-rounds = 2", f"num-server-rounds = {rounds}")
            .replace("epochs = 1", f"epochs = {epochs}"))
        report = tmp_path / "report.json"
        try:
            with anvil() as chain, ipfs_daemon(verbose=False) as ipfs_url:
                key = chain.private_keys[0]
                ledger = CoopLedger.deploy(connect(chain.url, private_key=key))
                start_lab(procs, tmp_path, nodes, ipfs_url, env_for_nodes=node_env)
                cfg = (f"chain='{chain.url}' chain-key='{key}' store='{ipfs_url}' "
                       f"contract='{ledger.address}' report-file='{report}'")
                t = time.perf_counter()
                subprocess.run([str(VENV_BIN / "flwr"), "run", str(app), "deploy",
                                "--run-config", cfg, "--stream"], env=env, timeout=3600,
                               stdout=sys.stderr, stderr=subprocess.STDOUT, cwd=tmp_path)
                flwr_run_s = time.perf_counter() - t
        finally:
            procs.stop()
        if not report.exists():
            raise SystemExit(f"the run wrote no report; logs in {tmp_path / 'logs'}")
        doc = json.loads(report.read_text())
        starts = [len(re.findall(r"Start `flwr-clientapp` process",
                                 (tmp_path / "logs" / f"supernode{i}.log").read_text()))
                  for i in range(nodes)]
    return {"flwr_run_s": round(flwr_run_s, 2), "setup_s": round(doc["setup_seconds"], 2),
            "rounds": {str(r["round"]): {"wall_s": round(r["wall_seconds"], 2),
                                         "phase_seconds": {k: round(v, 2) for k, v in
                                                           r["phase_seconds"].items()},
                                         "failures": r["failures"]}
                       for r in doc["rounds"]},
            "clientapp_starts_per_node": starts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process import samples")
    ap.add_argument("--before", action="store_true",
                    help="also run the deployment with the pre-cut node imports")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"nodes": args.nodes, "rounds": args.rounds,
                              "epochs": args.epochs, "tls": True, "supernode_auth": True}
    print("[latency] fresh-process imports of a ClientApp", file=sys.stderr, flush=True)
    result["process_start"] = process_start(args.repeat)
    result["flower_idle_pull_s"] = flower_idle_pull_s()
    print("[latency] deployment (after the cut)", file=sys.stderr, flush=True)
    result["after"] = run_lab(args.nodes, args.rounds, args.epochs, before=False)
    if args.before:
        print("[latency] deployment with the pre-cut imports", file=sys.stderr, flush=True)
        result["before"] = run_lab(args.nodes, args.rounds, args.epochs, before=True)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One grid cell, one Flower simulation: every arm in turn in one ServerApp main.

A cell is (app, partition, attack, fraction). The driver writes it to ``$COOPBENCH_CELL``
before ``run_simulation`` starts Ray, so every worker reads the same cell (``robust.data``);
the arms then run one after the other on the same warm workers, nodes and data, each from the
same initial model (``torch.manual_seed(0)``, the app's ``Net()``), with the app's own
``lr`` and ``global_evaluate`` (central accuracy on the app's held-out test set).

An arm named ``clean:<arm>`` runs without any attacker (the attack mod stands aside and the
data override flips no label): the attack-free baselines share a cell's simulation.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from coopflower.simulate_report import addresses_by_partition
from robust import arms as A

CLEAN = "clean:"


def patched_copy(app: Path, tmp: Path) -> tuple[Path, str]:
    """A copy of the app folder patched by its ``coop.diff``; returns (folder, package)."""
    dst = tmp / app.name
    if not dst.exists():
        shutil.copytree(app, dst)
        subprocess.run(["patch", "-p1", "-s", "-i", "coop.diff"], cwd=dst, check=True)
    (package,) = [p.parent.name for p in dst.glob("*/client_app.py")]
    return dst, package


def bench_client_app(package: str) -> Any:
    """The patched app's ClientApp with the attack mod inside its mods.

    The patched app is ``ClientApp(mods=[coop_mod])``; Flower bakes the mods into each
    handler when it is registered, so the bench registers the app's own ``train`` and
    ``evaluate`` on ``ClientApp(mods=[*the app's mods, attack_mod])``: ``coop_mod`` outermost,
    the attack between it and the app's handlers."""
    from flwr.clientapp import ClientApp

    from robust.attacks import attack_mod

    module = importlib.import_module(f"{package}.client_app")
    app = ClientApp(mods=[*module.app._mods, attack_mod])
    app.train()(module.train)
    app.evaluate()(module.evaluate)
    return app


def run_cell(spec: dict[str, Any], arm_names: list[str], n: int, rounds: int, tmp: Path,
             lr: float = 0.05) -> list[dict[str, Any]]:
    """Run the arms of one cell in one simulation; a record per arm (accuracy per round,
    rejection shares for the coordinated arms, seconds, any error)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from coopflower.runlog import RAY_QUIET, library_output_to

    os.environ[_cell_env()] = json.dumps(spec)
    package = spec["package"]
    server_module = importlib.import_module(f"{package}.server_app")
    task = importlib.import_module(f"{package}.task")
    client_app = bench_client_app(package)
    attackers = list(spec.get("attackers", []))
    label = f"{spec['partition']} {spec['attack']} {spec['fraction']:.0%}"
    out: list[dict[str, Any]] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        import torch

        torch.manual_seed(0)
        initial = ArrayRecord(task.Net().state_dict())
        for name in arm_names:
            clean = name.startswith(CLEAN)
            arm = name.removeprefix(CLEAN)
            f = 0 if clean else len(attackers)
            rec: dict[str, Any] = {"arm": arm, "clean": clean, "accuracy_by_round": None,
                                   "malicious_rejected": None, "honest_rejected": None,
                                   "error": None}
            t0, strategy = time.perf_counter(), None
            try:
                strategy = A.make(arm, n, f, metric=spec["metric"],
                                  min_metric=float(spec["threshold"]),
                                  store=tmp / f"store-{spec['id']}-{name.replace(':', '-')}")
                cfg = ConfigRecord({"lr": lr, "bench-arm": name})
                res = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                                     train_config=cfg,
                                     evaluate_fn=server_module.global_evaluate)
                rec["accuracy_by_round"] = [
                    round(float(res.evaluate_metrics_serverapp[r]["accuracy"]), 4)
                    for r in range(rounds + 1)]
                if hasattr(strategy, "reports"):
                    home = Path(os.environ["COOPFLOWER_HOME"])
                    shares = A.rejection_shares(strategy.reports,
                                                addresses_by_partition(home, n),
                                                [] if clean else attackers, n)
                    rec.update(shares)
            except Exception as exc:  # noqa: BLE001 - recorded, the other arms still run
                rec["error"] = f"{type(exc).__name__}: {exc}"
                with open(tmp / "logs" / "errors.log", "a", encoding="utf-8") as fh:
                    fh.write(f"--- cell {spec['id']}, arm {name}\n{traceback.format_exc()}")
            rec["seconds"] = round(time.perf_counter() - t0, 1)
            out.append(rec)
            acc = rec["accuracy_by_round"][-1] if rec["accuracy_by_round"] else None
            rej = (f", malicious rejected {rec['malicious_rejected']}, honest rejected "
                   f"{rec['honest_rejected']}" if hasattr(strategy, "reports") else "")
            where = f"{spec['partition']} attack-free" if clean else label
            err = f" ERROR {rec['error']}" if rec["error"] else ""
            print(f"[robustness] {spec['app']} {where} {arm}: accuracy {acc}{rej} "
                  f"({rec['seconds']} s){err}", file=sys.stderr, flush=True)

    workers = max(1, os.cpu_count() or 1)
    with library_output_to(tmp / "logs" / f"cell-{spec['id']}.log"):
        run_simulation(server, client_app, num_supernodes=n, backend_config={
            "client_resources": {"num_cpus": 1},
            "init_args": {"num_cpus": workers, **RAY_QUIET},
        })
    if len(out) < len(arm_names):
        raise RuntimeError(f"cell {label}: the simulation ended after {len(out)} of "
                           f"{len(arm_names)} arms; see {tmp / 'logs'}")
    return out


def _cell_env() -> str:
    from robust.data import CELL_ENV

    return CELL_ENV

"""Poisoning robustness: the coordinated round against Flower's own robust strategies.

On a third-party Flower app (``tests/apps/shapes32`` by default: Flower's template CNN on
3x32x32 images; copied and patched by its ``coop.diff``), one Flower simulation per grid cell
(partition, attack, fraction) runs every arm in turn on the same nodes, data, seeds and initial
model: Flower's ``FedAvg``, ``Krum``, ``MultiKrum``, ``FedMedian``, ``FedTrimmedAvg``,
``Bulyan`` (where n >= 4f + 3) and ``coordinated-absolute-k3`` (the coordinated round, 3
verifiers per model, the app's absolute threshold, on the embedded chain). The same patched
client app serves every arm: ``coop_mod`` passes Flower's plain messages to the app untouched,
and the attack mod (``robust.attacks``) sits inside it, so the attacked arrays are what gets
signed and voted on. Malicious nodes verify honestly.

    python bench/robustness.py --json              # the grid below, 20 nodes
    python bench/robustness.py --tiny --json       # 6 nodes, 2 rounds, one cell (the test)

The default grid: every attack at 30 % on IID and Dirichlet(0.5) partitions, and 10 % and
45 % for label flip, sign flip and the adaptive attacker; the attack-free baselines (every arm)
share each partition's first cell. ``--attacks``/``--fractions`` run their full product
instead. A progress line per arm per cell goes to stderr; a PNG per partition to ``--out``;
the last stdout line is one JSON object: ``attack_free`` (FedAvg's final central accuracy
without attackers, per dataset and partition) and ``results`` (``dataset``, ``partition``,
``attack``, ``fraction``, ``arm``, ``accuracy``, ``malicious_rejected``, ``honest_rejected``
(null for arms that do not decide per model), ``rounds``), with ``not_run``, ``skipped``,
``attack_free_arms``, ``details`` and ``config`` beside them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from robust import arms as A  # noqa: E402
from robust.attacks import ATTACKS  # noqa: E402

ISSUE_FRACTIONS = {"labelflip": (0.1, 0.3, 0.45), "signflip": (0.1, 0.3, 0.45),
                   "adaptive": (0.1, 0.3, 0.45)}
PARTITIONS = ("iid", "dirichlet")
NOT_RUN = [
    *({"arm": arm, "why": "the paper's relative improves-the-fusion criterion needs a contract "
       "rule (issue 12, first part) that has not landed yet"} for arm in A.NOT_RUN_ARMS),
    {"what": "dishonest verifiers", "why": "malicious nodes verify honestly in this run; "
     "colluding verifiers are a separate part of issue 12"},
    {"what": "mnist", "why": "this benchmark runs one of the plugin issue's third-party apps "
     "(the paper app's MNIST is not wired in yet)"},
]


def task_criterion(app: Path) -> tuple[str, float]:
    """The metric and threshold the app's ``coop.diff`` gives its task."""
    diff = (app / "coop.diff").read_text()
    metric = re.search(r'metric="([^"]+)"', diff)
    threshold = re.search(r"min_metric=([0-9.]+)", diff)
    if not metric or not threshold:
        raise SystemExit(f"{app / 'coop.diff'} names no TaskConfig(metric=..., min_metric=...)")
    return metric.group(1), float(threshold.group(1))


def attackers_for(n: int, fraction: float, seed: int) -> list[int]:
    """The malicious partition ids: the first ``round(fraction * n)`` (at least one) of a
    seeded permutation, so a smaller fraction's attackers are among a larger one's."""
    import numpy as np

    f = max(1, round(fraction * n)) if fraction > 0 else 0
    return sorted(int(p) for p in np.random.default_rng(seed + 1).permutation(n)[:f])


def grid(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    """(partition, attack, fraction) cells in run order."""
    cells = []
    for part in args.partitions:
        if args.fractions:
            cells += [(part, a, fr) for a in args.attacks for fr in args.fractions]
        else:
            cells += [(part, a, fr) for a in args.attacks
                      for fr in ISSUE_FRACTIONS.get(a, (0.3,))]
    return cells


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--tiny", action="store_true",
                   help="6 nodes, 2 rounds, sign flip x10 at 30 %% on IID, fedavg and the "
                        "coordinated arm (the test's size)")
    p.add_argument("--app", type=Path, default=REPO / "tests" / "apps" / "shapes32")
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--attacks", type=lambda s: s.split(","), default=list(ATTACKS))
    p.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")], default=None,
                   help="run every attack at these fractions (default: the issue's grid)")
    p.add_argument("--partitions", type=lambda s: s.split(","), default=list(PARTITIONS))
    p.add_argument("--arms", type=lambda s: s.split(","), default=list(A.ARMS))
    p.add_argument("--clean-arms", type=lambda s: [a for a in s.split(",") if a], default=None,
                   help="arms also run attack-free (default: every arm)")
    p.add_argument("--alpha", type=float, default=0.5, help="the Dirichlet concentration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--signflip-scale", type=float, default=5.0)
    p.add_argument("--noise-std", type=float, default=1.0)
    p.add_argument("--copy-noise", type=float, default=1e-4)
    p.add_argument("--adaptive-margin", type=float, default=0.05)
    p.add_argument("--out", type=Path, default=REPO / "results" / "robustness")
    args = p.parse_args(argv)
    if args.tiny:
        args.nodes, args.rounds, args.attacks, args.fractions = 6, 2, ["signflip"], [0.3]
        args.partitions, args.arms, args.signflip_scale = ["iid"], ["fedavg",
                                                                    A.COORDINATED_ARMS[0]], 10.0
        args.clean_arms = ["fedavg"] if args.clean_arms is None else args.clean_arms
    for a in args.attacks:
        if a not in ATTACKS:
            p.error(f"unknown attack {a!r}; choose from {', '.join(ATTACKS)}")
    for a in args.arms:
        if a not in A.ARMS:
            p.error(f"unknown arm {a!r}; choose from {', '.join(A.ARMS)}")
    if args.clean_arms is None:
        args.clean_arms = list(args.arms)
    if "fedavg" not in args.clean_arms:
        args.clean_arms.insert(0, "fedavg")  # attack_free is FedAvg's
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the grid; returns the JSON document."""
    from robust.cell import CLEAN, patched_copy, run_cell
    from robust.data import _tensors

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per Ray worker, 1 CPU each
    tmp = Path(tempfile.mkdtemp(prefix="coop-robust-"))
    os.environ["COOPFLOWER_HOME"] = str(tmp / "home")
    app = args.app.resolve()
    folder, package = patched_copy(app, tmp)
    sys.path.insert(0, str(folder))
    metric, threshold = task_criterion(app)
    task = importlib.import_module(f"{package}.task")
    classes = int(_tensors(task.load_centralized_dataset())[1].max()) + 1
    n, dataset = args.nodes, app.name
    params = {"signflip_scale": args.signflip_scale, "noise_std": args.noise_std,
              "copy_noise": args.copy_noise, "adaptive_margin": args.adaptive_margin}
    doc: dict[str, Any] = {"attack_free": {}, "results": [], "not_run": NOT_RUN,
                           "skipped": [], "attack_free_arms": [], "details": [], "errors": []}
    cells = grid(args)
    t_start = time.perf_counter()
    first_of: set[str] = set()
    for i, (part, attack, fraction) in enumerate(cells):
        attackers = attackers_for(n, fraction, args.seed)
        f = len(attackers)
        names = [a for a in args.arms if A.runnable(a, n, f)]
        doc["skipped"] += [{"partition": part, "attack": attack, "fraction": fraction,
                            "arm": a, "why": f"n >= 4f + 3 fails (n={n}, f={f})"}
                           for a in args.arms if not A.runnable(a, n, f)]
        if part not in first_of:  # the partition's attack-free baselines ride along
            first_of.add(part)
            names = [CLEAN + a for a in args.clean_arms] + names
        spec = {"id": f"{i}-{part}-{attack}-{round(fraction * 100)}", "app": dataset,
                "package": package, "partition": part, "alpha": args.alpha, "seed": args.seed,
                "attack": attack, "fraction": fraction, "attackers": attackers,
                "labelflip": attackers if attack == "labelflip" else [], "classes": classes,
                "metric": metric, "threshold": threshold, "params": params,
                "dir": str(tmp / f"cell-{i}")}
        t0 = time.perf_counter()
        print(f"[robustness] cell {i + 1}/{len(cells)}: {dataset} {part} {attack} at "
              f"{fraction:.0%} (attackers {attackers} of {n}), {len(names)} runs",
              file=sys.stderr, flush=True)
        for rec in run_cell(spec, names, n, args.rounds, tmp):
            curve = rec["accuracy_by_round"]
            row = {"dataset": dataset, "partition": part,
                   "attack": "none" if rec["clean"] else attack,
                   "fraction": 0.0 if rec["clean"] else fraction, "arm": rec["arm"],
                   "accuracy": curve[-1] if curve else None,
                   "malicious_rejected": rec["malicious_rejected"],
                   "honest_rejected": rec["honest_rejected"], "rounds": args.rounds}
            if rec["clean"]:
                doc["attack_free_arms"].append(row)
                if rec["arm"] == "fedavg":
                    doc["attack_free"].setdefault(dataset, {})[part] = row["accuracy"]
            else:
                doc["results"].append(row)
            detail: dict[str, Any] = {k: row[k] for k in ("partition", "attack", "fraction",
                                                          "arm")}
            detail.update({"accuracy_by_round": curve, "seconds": rec["seconds"]})
            detail.update({k: rec[k] for k in ("contributions", "per_round", "unknown")
                           if k in rec})
            doc["details"].append(detail)
            if rec["error"]:
                doc["errors"].append({**{k: row[k] for k in ("partition", "attack",
                                                             "fraction", "arm")},
                                      "error": rec["error"]})
        print(f"[robustness] cell {i + 1}/{len(cells)} done in {time.perf_counter() - t0:.0f} "
              f"s", file=sys.stderr, flush=True)
    doc["config"] = {"app": dataset, "nodes": n, "rounds": args.rounds, "seed": args.seed,
                     "alpha": args.alpha, "metric": metric, "threshold": threshold,
                     "classes": classes, "params": params,
                     "attackers": {str(fr): attackers_for(n, fr, args.seed)
                                   for fr in sorted({c[2] for c in cells})},
                     "cells": len(cells), "total_s": round(time.perf_counter() - t_start, 1),
                     "cpus": os.cpu_count(), "work_dir": str(tmp)}
    args.out.mkdir(parents=True, exist_ok=True)
    from robust.plot import plot

    doc["config"]["png"] = [str(p) for p in plot(doc, args.out)]
    return doc


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON object (last line)."""
    args = parse(argv)
    doc = run(args)
    if args.json:
        print(json.dumps(doc))
    else:
        for r in doc["results"]:
            print(" ".join(f"{k}={v}" for k, v in r.items()))
        print(f"attack_free: {doc['attack_free']}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

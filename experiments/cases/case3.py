"""Case Study III (paper section V-D, Fig. 12): the coordinated strategy against FedAvg, both
run as real Flower simulations (``flwr.simulation.run_simulation``, the paper app's ClientApp,
``coopflower.app.client_app``, on simulated SuperNodes).

Four parties: three computing contributors and a fourth with every label (the initiator).

* **FedAvg** (Flower's, :class:`coopflower.strategy.FedAvgBaseline` without a chain log): the
  four parties are its four clients; ``rounds`` rounds of ``local_epochs`` epochs.
* **Coordinated** (:class:`coopflower.strategy.CoordinatedStrategy` around Flower's ``FedAvg``,
  on the embedded EVM and the embedded content-addressed store): the three contributors are
  SuperNodes. As in the paper,
  each trains its private model once for all ``rounds x local_epochs`` epochs (``coop_rounds``
  = 1; with more, the epochs are spread over that many coordinated rounds and each contributor
  continues its own model), uploads it by CID and signs the submission; one verifier per model
  (``k = 1``, the paper's secure setting of V-D) evaluates it on its share of the verification
  digits (all of them: whatever classes the model knows, ``criterion`` in the diverse scenario,
  ``partial_criterion`` in the partial one, where a model knows half the classes) and signs its
  vote; the contract settles; the initiator fuses the accepted models by
  gradual fusion (Strategy II) on its own digits and records the MetaModel's CID. The
  initiator is the ServerApp here, not a client.

Both use the same local training recipe (``train`` in the config), the same seeds and digits.
Central accuracy on the test digits after every round gives the curves; bytes are what each
strategy's meter counted (Flower messages both ways, plus, for the coordinated strategy, every
blob put to or fetched from the store).

Scenarios: ``diverse`` (each contributor has all labels, Dirichlet(alpha) proportions) and
``partial`` (the contributors have the Table II label subsets)."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from coopflower.app.data import NodeSplit
from coopflower.data.partition import dirichlet_partition, stratified_split

from .common import (
    ExperimentError,
    IntArray,
    PartySplit,
    fusion_config,
    log,
    pct,
    split_parties,
)

BACKEND: dict[str, Any] = {"client_resources": {"num_cpus": 1},
                           "init_args": {"num_cpus": os.cpu_count() or 1}}


def _diverse_split(labels: npt.NDArray[np.int64], sizes: Mapping[str, int], alpha: float,
                   seed: int) -> PartySplit:
    n_train = int(sizes["contributor_train"])
    top = stratified_split(labels, {"test": int(sizes["test"]),
                                    "initiator": int(sizes["initiator"]),
                                    "verifiers": int(sizes["verifiers"]),
                                    "pool": 3 * n_train}, seed=seed)
    parts = dirichlet_partition(top["pool"], labels, 3, alpha, seed=seed, min_size=n_train // 3)
    empty: IntArray = np.empty(0, np.int64)
    return PartySplit(top["test"], top["initiator"], [top["verifiers"]],
                      [(p, empty) for p in parts], [tuple(range(10))] * 3)


def train_config(cfg: Mapping[str, Any], local_epochs: int, seed: int, arch: str,
                 store: str) -> dict[str, Any]:
    """The train ConfigRecord both strategies send: the experiment's local training recipe
    (``train`` node: learning rate, momentum, batch size, schedule, augmentation)."""
    tc = cfg["train"]
    aug = tc.get("augment") or {}
    return {
        "epochs": local_epochs, "lr": float(tc["lr"]), "momentum": float(tc["momentum"]),
        "batch-size": int(tc["batch_size"]), "lr-schedule": str(tc.get("schedule", "constant")),
        "augment-shift": float(aug.get("shift", 0)), "augment-rotate": float(aug.get("rotate", 0)),
        "augment-scale": float(aug.get("scale", 0)), "seed": seed, "model": arch, "store": store,
    }


def _simulate(cfg: Mapping[str, Any], parts: list[NodeSplit], part_file: Path,
              start: Callable[[Any], tuple[Any, Any]], arm: str) -> tuple[Any, Any]:
    """One Flower simulation: every node ``i`` gets ``parts[i]`` through a partition file and
    runs the paper app's ClientApp; ``start(grid)`` is the ServerApp's body, building a
    strategy and running it.

    Returns:
        ``start``'s ``(strategy, result)``. Raises ``RuntimeError`` if the run did not finish.
    """
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from coopflower.app.client_app import make_client_app
    from coopflower.app.data import write_partition_file

    write_partition_file(part_file, parts)
    node_config: dict[str, Any] = {"partition-file": str(part_file),
                                   "model": str(cfg["case3"]["model"])}
    idx_dir = (cfg.get("data") or {}).get("idx_dir")
    if idx_dir:  # the nodes load the digits the experiment loaded
        node_config["mnist-dir"] = str(idx_dir)
    out: list[tuple[Any, Any]] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        out.append(start(grid))

    run_simulation(server, make_client_app(node_config), num_supernodes=len(parts),
                   backend_config=BACKEND)
    if not out:
        raise RuntimeError(f"the {arm} simulation did not finish (see Flower's log above)")
    return out[0]


def _curve(result: Any) -> list[float]:
    metrics = result.evaluate_metrics_serverapp
    return [pct(float(metrics[r]["accuracy"])) for r in sorted(metrics)]


def run_fedavg(cfg: Mapping[str, Any], images: npt.NDArray[np.uint8],
               labels: npt.NDArray[np.int64], clients: list[IntArray], test: IntArray,
               seed: int, work: Path) -> dict[str, Any]:
    """Flower's FedAvg on ``clients`` (one SuperNode each); returns accuracy by round (round 0:
    the initial model) and bytes by round."""
    from flwr.app import ConfigRecord

    from coopflower.app.server_app import central_evaluator, initial_arrays
    from coopflower.strategy import FedAvgBaseline

    arch = str(cfg["case3"]["model"])
    rounds, epochs = int(cfg["scale"]["case3_rounds"]), int(cfg["scale"]["case3_epochs"])
    empty: IntArray = np.empty(0, np.int64)
    n = len(clients)

    def start(grid: Any) -> tuple[Any, Any]:
        strategy = FedAvgBaseline(fraction_evaluate=0.0, min_available_nodes=n,
                                  min_train_nodes=n)
        return strategy, strategy.start(
            grid=grid, initial_arrays=initial_arrays(arch, seed), num_rounds=rounds,
            train_config=ConfigRecord(train_config(cfg, epochs, seed, arch, "")),
            evaluate_fn=central_evaluator(arch, digits=(images[test], labels[test])))

    strategy, result = _simulate(cfg, [NodeSplit(train=np.sort(c), verify=empty)
                                       for c in clients], work / "fedavg-parts.npz", start,
                                 "FedAvg")
    return {"acc_by_round": _curve(result),
            "bytes_by_round": [strategy.meter.total(r) for r in range(1, rounds + 1)]}


def run_coordinated(cfg: Mapping[str, Any], images: npt.NDArray[np.uint8],
                    labels: npt.NDArray[np.int64], split: PartySplit, seed: int,
                    work: Path, criterion: float) -> dict[str, Any]:
    """The coordinated strategy with gradual fusion on the three contributors; returns accuracy
    by round, bytes, transactions, gas and per-round acceptance. ``criterion``: the accuracy
    a model needs on its verifier's digits."""
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import FedAvg

    from coopflower.app.server_app import central_evaluator, initial_arrays
    from coopflower.fusion import make_fusion_aggregate
    from coopflower.ledger import CoopLedger, connect
    from coopflower.models import PAPER_HEAD, model_factories
    from coopflower.strategy import CoordinatedStrategy, TaskConfig
    from coopflower.strategy.coordinated import failure_lines

    c3 = cfg["case3"]
    arch = str(c3["model"])
    rounds, epochs = coop_schedule(cfg)
    # the verifier's digits are shared out: contributor i verifies others' models on share i
    shares = np.array_split(np.random.default_rng(seed).permutation(
        np.concatenate(split.verifiers)), len(split.contributors))
    parts = [NodeSplit(train=np.sort(tr), verify=np.sort(v))
             for (tr, _), v in zip(split.contributors, shares, strict=True)]
    store = str(work / "store")
    n = len(parts)
    fusion = make_fusion_aggregate(images[split.initiator], labels[split.initiator], "II",
                                   fusion_config(cfg["fusion"], "II", seed),
                                   factories=model_factories(), heads=PAPER_HEAD)

    def start(grid: Any) -> tuple[Any, Any]:
        ledger = CoopLedger.deploy(connect(None))
        strategy = CoordinatedStrategy(
            FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=n,
                   min_train_nodes=n),
            task=TaskConfig(k=1, quorum=1, metric="accuracy", min_metric=criterion),
            ledger=ledger, store=store, aggregate_fn=fusion, progress=sys.stderr)
        return strategy, strategy.start(
            grid=grid, initial_arrays=initial_arrays(arch, seed), num_rounds=rounds,
            train_config=ConfigRecord(train_config(cfg, epochs, seed, arch, store)),
            evaluate_fn=central_evaluator(arch, digits=(images[split.test],
                                                        labels[split.test])))

    strategy, result = _simulate(cfg, parts, work / "coop-parts.npz", start, "coordinated")
    reports = strategy.reports
    return {
        "acc_by_round": _curve(result),
        "bytes_by_round": [r.bytes for r in reports],
        "tx_by_round": [r.tx for r in reports],
        "gas_by_round": [r.gas for r in reports],
        "accepted_by_round": [r.accepted for r in reports],
        "submissions_by_round": [len(r.submissions) for r in reports],
        "failures": failure_lines(reports),
        "meta_cids": [r.meta_cid.hex() if r.meta_cid else None for r in reports],
    }


def coop_schedule(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """The coordinated arm's ``(rounds, local epochs a round)``: FedAvg's total local epochs
    (``case3_rounds x case3_epochs``) spread over ``case3.coop_rounds`` rounds (paper: 1)."""
    total = int(cfg["scale"]["case3_rounds"]) * int(cfg["scale"]["case3_epochs"])
    rounds = int(cfg["case3"].get("coop_rounds", 1))
    if rounds < 1 or total % rounds:
        raise ExperimentError(f"case3.coop_rounds={rounds} must divide the {total} local epochs")
    return rounds, total // rounds


def run_case3(
    cfg: Mapping[str, Any],
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, Any]:
    """Run both scenarios; returns JSON-able results (accuracies in percent, bytes)."""
    c3 = cfg["case3"]
    sizes = cfg["scale"]["case3"]
    arch = str(c3["model"])
    rounds, local_epochs = int(cfg["scale"]["case3_rounds"]), int(cfg["scale"]["case3_epochs"])
    coop_rounds, coop_epochs = coop_schedule(cfg)
    out: dict[str, Any] = {"model": arch, "rounds": rounds, "local_epochs": local_epochs,
                           "coop_rounds": coop_rounds, "coop_epochs": coop_epochs}
    work = Path(tempfile.mkdtemp(prefix="coopflower-case3-"))
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    os.environ.setdefault("COOPFLOWER_HOME", str(work / "home"))  # the nodes' keys
    warnings.filterwarnings("ignore", category=ResourceWarning)
    for scenario in c3["scenarios"]:
        if scenario == "diverse":
            split = _diverse_split(labels, sizes, float(c3["alpha"]), seed)
        elif scenario == "partial":
            split = split_parties(labels, c3["partial_label_sets"], sizes, 1, seed)
        else:
            raise ValueError(f"unknown case3 scenario {scenario!r}; choose diverse or partial")
        clients = [tr for tr, _ in split.contributors] + [split.initiator]
        (work / scenario).mkdir(parents=True, exist_ok=True)
        log(f"case III {scenario}: client sizes {[int(c.size) for c in clients]}, "
            f"labels per contributor {[sorted(set(labels[c].tolist())) for c in clients[:3]]}; "
            f"FedAvg on 4 SuperNodes, {rounds} rounds x {local_epochs} epochs")
        fed = run_fedavg(cfg, images, labels, clients, split.test, seed, work / scenario)
        log(f"case III {scenario}: FedAvg accuracy by round {fed['acc_by_round']}")
        log(f"case III {scenario}: coordinated strategy on 3 SuperNodes, {coop_rounds} round(s) x "
            f"{coop_epochs} epochs, 1 verifier a model, gradual fusion by the initiator on its "
            f"{split.initiator.size} digits")
        criterion = float(c3["partial_criterion" if scenario == "partial" else "criterion"])
        coop = run_coordinated(cfg, images, labels, split, seed, work / scenario, criterion)
        log(f"case III {scenario}: coordinated accuracy by round {coop['acc_by_round']}, "
            f"accepted {coop['accepted_by_round']}; bytes FedAvg {sum(fed['bytes_by_round'])}, "
            f"coordinated {sum(coop['bytes_by_round'])}")
        out[scenario] = {
            "client_sizes": [int(c.size) for c in clients],
            "fedavg_acc": fed["acc_by_round"][-1], "fedavg_acc_by_round": fed["acc_by_round"],
            "coop_acc": coop["acc_by_round"][-1], "coop_acc_by_round": coop["acc_by_round"],
            "accepted": coop["accepted_by_round"][-1] if coop["accepted_by_round"] else 0,
            "bytes_fedavg": sum(fed["bytes_by_round"]), "bytes_coop": sum(coop["bytes_by_round"]),
            "fedavg_bytes_by_round": fed["bytes_by_round"],
            "coop": {k: v for k, v in coop.items() if k != "acc_by_round"},
        }
    return out

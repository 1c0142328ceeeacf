"""``coopflower simulate``: the coordinated strategy beside Flower's FedAvg, in one simulation.

Both strategies run on the same simulated SuperNodes (same data partition, model and local
epochs) against the same CoopLedger contract on the embedded EVM and the embedded store (or a
JSON-RPC chain and an IPFS node), with the paper app's ClientApp (``coopflower.app``). FedAvg
logs each round's global model CID to the contract; the coordinated strategy, wrapped around
Flower's ``FedAvg``, runs the paper's full round. Prints a line per phase, then a table per
round (central accuracy on held-out digits, transactions, bytes moved, accepted models), and
writes ``summary.json`` and ``accuracy.png`` to the output folder.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Result

    from coopflower.ledger import CoopLedger
    from coopflower.strategy import CoordinatedStrategy, FedAvgBaseline

__all__ = ["SideBySide", "SimulationSummary", "run_fedavg_then_coordinated", "run_simulate"]


@dataclass
class SideBySide:
    """Both strategies after :func:`run_fedavg_then_coordinated`, with their results and the
    transactions FedAvg's chain log sent."""

    fedavg: FedAvgBaseline
    fedavg_result: Result
    fedavg_tx: int
    coop: CoordinatedStrategy
    coop_result: Result


def run_fedavg_then_coordinated(
    grid: Grid, ledger: CoopLedger, store_spec: str, *, nodes: int, rounds: int, model: str,
    epochs: int, evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
) -> SideBySide:
    """Run Flower's FedAvg (logging each round to ``ledger``) and then the coordinated strategy
    on the same nodes, data, model, local epochs and contract: the like-for-like comparison
    that ``coopflower simulate`` and ``bench/round_overhead.py`` both report on.

    Args:
        grid: the ServerApp's grid. ledger: the bound contract both strategies use.
        store_spec: the storage both use. nodes: how many nodes each round waits for.
        rounds, model, epochs: rounds of each strategy, the paper CNN, local epochs.
        evaluate_fn: central evaluation after each round (``None``: none).

    Returns:
        The strategies and their results.
    """
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import FedAvg

    from coopflower.app.server_app import initial_arrays
    from coopflower.storage import open_store
    from coopflower.strategy import (
        ChainRoundLogger,
        CoordinatedStrategy,
        FedAvgBaseline,
        TaskConfig,
    )

    train_cfg: dict[str, Any] = {"epochs": epochs, "lr": 0.05, "batch-size": 32, "seed": 0}
    fedavg = FedAvgBaseline(round_logger=ChainRoundLogger(ledger, open_store(store_spec)),
                            min_available_nodes=nodes, min_train_nodes=nodes,
                            min_evaluate_nodes=nodes)
    print(f"FedAvg: {rounds} rounds on {nodes} nodes", file=sys.stderr, flush=True)
    tx0 = ledger.chain.tx_count
    fed_result = fedavg.start(grid=grid, initial_arrays=initial_arrays(model), num_rounds=rounds,
                              train_config=ConfigRecord(dict(train_cfg)),
                              evaluate_fn=_shown(evaluate_fn))
    fedavg_tx = ledger.chain.tx_count - tx0
    # the same sampling as FedAvg's; verification is the coordinated round's evaluation
    inner = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=nodes,
                   min_train_nodes=nodes)
    coop = CoordinatedStrategy(inner, task=TaskConfig(k=3, quorum=2, metric="accuracy",
                                                      min_metric=0.3),
                               ledger=ledger, store=store_spec)
    print(f"Coordinated: {rounds} rounds on {nodes} nodes", file=sys.stderr, flush=True)
    coop_result = coop.start(grid=grid, initial_arrays=initial_arrays(model), num_rounds=rounds,
                             train_config=ConfigRecord(dict(train_cfg)), evaluate_fn=evaluate_fn)
    return SideBySide(fedavg, fed_result, fedavg_tx, coop, coop_result)


def _shown(evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None,
           ) -> Callable[[int, ArrayRecord], MetricRecord | None] | None:
    """FedAvg's central evaluation, with a line per round on the terminal (Flower's own log
    lines go to the run's log file)."""
    if evaluate_fn is None:
        return None

    def evaluate(rnd: int, arrays: ArrayRecord) -> MetricRecord | None:
        res = evaluate_fn(rnd, arrays)
        acc = res.get("accuracy") if res is not None else None
        print(f"[FedAvg round {rnd}] evaluate: accuracy {acc}", file=sys.stderr, flush=True)
        return res

    return evaluate


@dataclass
class SimulationSummary:
    """Per-round central accuracy, transactions and bytes of both strategies."""

    nodes: int
    rounds: int
    model: str
    contract: str = ""
    fedavg_accuracy: list[float] = field(default_factory=list)
    coop_accuracy: list[float] = field(default_factory=list)
    fedavg_tx: int = 0
    coop_tx_per_round: list[int] = field(default_factory=list)
    fedavg_bytes_per_round: list[int] = field(default_factory=list)
    coop_bytes_per_round: list[int] = field(default_factory=list)
    coop_accepted_per_round: list[int] = field(default_factory=list)
    coop_failures: list[str] = field(default_factory=list)


def _accuracies(result: Any) -> list[float]:
    metrics = result.evaluate_metrics_serverapp
    return [round(float(metrics[r]["accuracy"]), 4) for r in sorted(metrics)]


def run_simulate(nodes: int = 10, rounds: int = 3, model: str = "table4", epochs: int = 2,
                 chain: str | None = None, chain_key: str | None = None,
                 store: str | None = None, out_dir: str = "results/simulate") -> int:
    """Run FedAvg then the coordinated strategy on the same simulated SuperNodes.

    Args:
        nodes: simulated SuperNodes. rounds: rounds of each strategy. model: a paper CNN name.
        epochs: local epochs per round. chain, chain_key: a JSON-RPC node and the initiator's
            key (default: the embedded EVM). store: a directory or Kubo RPC URL (default: a
            fresh embedded store). out_dir: where ``summary.json`` and ``accuracy.png`` go.

    Returns:
        0 when both strategies completed every round.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    tmp = Path(tempfile.mkdtemp(prefix="coopflower-sim-"))
    os.environ.setdefault("COOPFLOWER_HOME", str(tmp / "home"))
    store_spec = store or str(tmp / "store")

    from flwr.app import Context
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from coopflower.app.client_app import app as client_app
    from coopflower.app.server_app import central_evaluator
    from coopflower.ledger import CoopLedger, connect
    from coopflower.strategy.coordinated import failure_lines

    summary = SimulationSummary(nodes=nodes, rounds=rounds, model=model)
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        ledger = CoopLedger.deploy(connect(chain, private_key=chain_key))
        summary.contract = ledger.address
        both = run_fedavg_then_coordinated(grid, ledger, store_spec, nodes=nodes, rounds=rounds,
                                           model=model, epochs=epochs,
                                           evaluate_fn=central_evaluator(model))
        fedavg, coop = both.fedavg, both.coop
        summary.fedavg_tx = both.fedavg_tx
        summary.fedavg_accuracy = _accuracies(both.fedavg_result)
        summary.fedavg_bytes_per_round = [fedavg.meter.total(r) for r in range(1, rounds + 1)]
        summary.coop_accuracy = _accuracies(both.coop_result)
        summary.coop_tx_per_round = [r.tx for r in coop.reports]
        summary.coop_bytes_per_round = [r.bytes for r in coop.reports]
        summary.coop_accepted_per_round = [r.accepted for r in coop.reports]
        summary.coop_failures = failure_lines(coop.reports)

    from coopflower.runlog import RAY_QUIET, library_output_to

    with library_output_to(Path(out_dir) / "simulate.log"):
        run_simulation(server, client_app, num_supernodes=nodes, backend_config={
            "client_resources": {"num_cpus": 1},
            "init_args": {"num_cpus": os.cpu_count() or 1, **RAY_QUIET}})
    done = len(summary.coop_accuracy) == rounds + 1 and len(summary.fedavg_accuracy) == rounds + 1
    _report(summary, Path(out_dir))
    return 0 if done else 1


def _report(summary: SimulationSummary, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n{'round':>5} {'FedAvg acc':>10} {'coop acc':>9} {'coop tx':>8} "
          f"{'FedAvg MB':>10} {'coop MB':>8} {'accepted':>9}")
    for r in range(len(summary.coop_accuracy)):
        fa = summary.fedavg_accuracy[r] if r < len(summary.fedavg_accuracy) else float("nan")
        row = [f"{r:>5}", f"{fa:>10.4f}", f"{summary.coop_accuracy[r]:>9.4f}"]
        if r == 0:
            row += [f"{'-':>8}", f"{'-':>10}", f"{'-':>8}", f"{'-':>9}"]
        else:
            row += [f"{summary.coop_tx_per_round[r - 1]:>8}",
                    f"{summary.fedavg_bytes_per_round[r - 1] / 1e6:>10.2f}",
                    f"{summary.coop_bytes_per_round[r - 1] / 1e6:>8.2f}",
                    f"{summary.coop_accepted_per_round[r - 1]:>9}"]
        print(" ".join(row))
    print(f"FedAvg logged its {summary.rounds} rounds in {summary.fedavg_tx} transactions; "
          f"contract {summary.contract}")
    if all(a == summary.nodes for a in summary.coop_accepted_per_round):
        same = summary.coop_accuracy == summary.fedavg_accuracy
        print("every model was accepted; the coordinated round averages them with equal "
              "weights (the task's rule: no contributor sets its own), FedAvg by the examples "
              "each node reports" + (", the same here (every node holds as many digits): the "
                                     "difference is who decided (signed votes on chain) and "
                                     "the audit trail" if same else ""))
    for failure in summary.coop_failures:
        print(f"failure: {failure}")
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(summary.fedavg_accuracy, "o-", label="FedAvg (Flower)")
    ax.plot(summary.coop_accuracy, "s--", label="coordinated (chain + votes)")
    ax.set_xticks(range(len(summary.coop_accuracy)))
    ax.set_xlabel("round")
    ax.set_ylabel("central accuracy (held-out digits)")
    ax.set_title(f"{summary.nodes} SuperNodes, {summary.model}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'summary.json'} and {out / 'accuracy.png'}")
    print(json.dumps(asdict(summary)))

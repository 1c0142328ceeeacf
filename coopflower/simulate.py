"""``coopflower simulate``: the coordinated strategy beside Flower's FedAvg, in one simulation,
with some of the SuperNodes attacking.

Both strategies run on the same simulated SuperNodes (same data partition, model and local
epochs) against the same CoopLedger contract on the embedded EVM and the embedded store (or a
JSON-RPC chain and an IPFS node), with the paper app's ClientApp (``coopflower.app``). By
default 3 of the 10 nodes attack (``label-flip``; see ``coopflower.app.attacks`` for the
others): a mod of this simulation gives their node config ``attack=<attack>``, which the app's
own ``train`` reads, so the attacked model is what FedAvg averages and what, in the
coordinated round, the node signs and the verifiers vote on. Three runs, one after the other:
FedAvg with no attacker (the train config's ``attack-free`` tells the mod to leave every node
honest), FedAvg under attack (logging each round's global model CID to the contract) and the
coordinated strategy, wrapped around Flower's ``FedAvg``, under the same attack. With
``attack="none"`` only the last two run. Prints a line per phase, a table per round (central
accuracy on held-out digits, transactions, bytes moved, accepted models) and each round's
accepted and rejected models, and writes ``summary.json`` and ``accuracy.png``.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord
    from flwr.clientapp import ClientApp
    from flwr.clientapp.typing import ClientAppCallable
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Result

    from coopflower.ledger import CoopLedger
    from coopflower.strategy import CoordinatedStrategy, FedAvgBaseline

__all__ = ["ATTACK_FREE", "SideBySide", "SimulateError", "SimulationSummary", "attack_roles",
           "choose_attackers", "run_fedavg_then_coordinated", "run_simulate"]

ATTACK_FREE = "attack-free"  # a train config key: in this run no node attacks


class SimulateError(ValueError):
    """Settings ``coopflower simulate`` cannot run."""


def choose_attackers(nodes: int, count: int, seed: int = 0) -> tuple[int, ...]:
    """The partition ids of the ``count`` attacking nodes of ``nodes``: a seeded draw."""
    import numpy as np

    if not 0 <= count <= nodes:
        raise SimulateError(f"{count} attackers among {nodes} nodes: choose 0 to {nodes}")
    return tuple(sorted(int(p) for p in
                        np.random.default_rng(seed).choice(nodes, size=count, replace=False)))


def attack_roles(attack: str, attackers: tuple[int, ...], folder: str, msg: Message,
                 context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod for the simulation (a simulated node's node config holds only its
    partition): the attackers' node config says ``attack=<attack>`` (and ``attack-dir``),
    every other node's ``attack=none``; on a train message whose train config sets
    ``attack-free``, every node's. The app's own ``train`` reads it."""
    config = msg.content.config_records.get("config")
    honest_run = config is not None and bool(config.get(ATTACK_FREE, False))
    pid = int(context.node_config.get("partition-id", -1))
    context.node_config["attack"] = "none" if honest_run or pid not in attackers else attack
    context.node_config["attack-dir"] = folder
    return call_next(msg, context)


def _client_app(attack: str, attackers: tuple[int, ...], folder: str) -> ClientApp:
    """The paper app's ClientApp (``coopflower.app.client_app``), with :func:`attack_roles`
    outermost when some node attacks."""
    from flwr.clientapp import ClientApp

    from coopflower.app import client_app as paper

    if attack == "none" or not attackers:
        return paper.app
    out = ClientApp(mods=[functools.partial(attack_roles, attack, attackers, folder),
                          paper.paper_mod])
    out.train()(paper.train)
    out.evaluate()(paper.evaluate)
    return out


def _train_config(epochs: int, **extra: Any) -> dict[str, Any]:
    return {"epochs": epochs, "lr": 0.05, "batch-size": 32, "seed": 0, **extra}


def run_attack_free(grid: Grid, *, nodes: int, rounds: int, model: str, epochs: int,
                    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None,
                    ) -> Result:
    """Flower's FedAvg on the same nodes, data, model and local epochs with no node attacking
    (the train config's ``attack-free``): the curve the attacked runs are set against."""
    from flwr.app import ConfigRecord

    from coopflower.app.server_app import initial_arrays
    from coopflower.strategy import FedAvgBaseline

    fedavg = FedAvgBaseline(fraction_evaluate=0.0, min_available_nodes=nodes,
                            min_train_nodes=nodes)
    print(f"FedAvg with no attacker: {rounds} rounds on {nodes} nodes", file=sys.stderr,
          flush=True)
    return fedavg.start(grid=grid, initial_arrays=initial_arrays(model), num_rounds=rounds,
                        train_config=ConfigRecord(_train_config(epochs, **{ATTACK_FREE: True})),
                        evaluate_fn=_shown(evaluate_fn))


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
    attack_note: str = "",
) -> SideBySide:
    """Run Flower's FedAvg (logging each round to ``ledger``) and then the coordinated strategy
    on the same nodes, data, model, local epochs and contract: the like-for-like comparison
    that ``coopflower simulate`` and ``bench/round_overhead.py`` both report on.

    Args:
        grid: the ServerApp's grid. ledger: the bound contract both strategies use.
        store_spec: the storage both use. nodes: how many nodes each round waits for.
        rounds, model, epochs: rounds of each strategy, the paper CNN, local epochs.
        evaluate_fn: central evaluation after each round (``None``: none).
        attack_note: said after each strategy's opening line (e.g. who attacks).

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
        TaskConfig,
    )

    train_cfg = _train_config(epochs)
    fedavg = _counted_fedavg(round_logger=ChainRoundLogger(ledger, open_store(store_spec)),
                             min_available_nodes=nodes, min_train_nodes=nodes,
                             min_evaluate_nodes=nodes)
    print(f"FedAvg: {rounds} rounds on {nodes} nodes{attack_note}", file=sys.stderr, flush=True)
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
    print(f"Coordinated: {rounds} rounds on {nodes} nodes{attack_note}", file=sys.stderr,
          flush=True)
    coop_result = coop.start(grid=grid, initial_arrays=initial_arrays(model), num_rounds=rounds,
                             train_config=ConfigRecord(dict(train_cfg)), evaluate_fn=evaluate_fn)
    return SideBySide(fedavg, fed_result, fedavg_tx, coop, coop_result)


def _counted_fedavg(**kwargs: Any) -> FedAvgBaseline:
    """``FedAvgBaseline`` that also keeps, per round, how many models it averaged
    (``averaged``): every reply that carries one (FedAvg rejects none)."""
    from coopflower.strategy import FedAvgBaseline

    class CountedFedAvg(FedAvgBaseline):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.averaged: dict[int, int] = {}

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            self.averaged[server_round] = sum(
                1 for m in replies if m.has_content() and m.content.array_records)
            return super().aggregate_train(server_round, replies)

    return CountedFedAvg(**kwargs)


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
    """Per-round central accuracy, transactions and bytes of both strategies; under attack also
    the attack-free FedAvg's accuracy, how many models FedAvg averaged, and each coordinated
    round's decision on every node's model (``coop_decisions``: per round, a dict per node
    with ``node`` (partition id), ``contributor``, ``decision`` (``accepted``/``rejected``),
    ``status`` (on chain, or ``NOT_ON_CHAIN``), ``yes``, ``votes``, ``malicious``, ``reason``).
    """

    nodes: int
    rounds: int
    model: str
    attack: str = "none"
    attackers: list[int] = field(default_factory=list)
    contract: str = ""
    attack_free_accuracy: list[float] = field(default_factory=list)
    fedavg_accuracy: list[float] = field(default_factory=list)
    coop_accuracy: list[float] = field(default_factory=list)
    fedavg_tx: int = 0
    coop_tx_per_round: list[int] = field(default_factory=list)
    fedavg_bytes_per_round: list[int] = field(default_factory=list)
    coop_bytes_per_round: list[int] = field(default_factory=list)
    fedavg_averaged_per_round: list[int] = field(default_factory=list)
    coop_accepted_per_round: list[int] = field(default_factory=list)
    coop_rejected_malicious_per_round: list[int] = field(default_factory=list)
    coop_rejected_honest_per_round: list[int] = field(default_factory=list)
    coop_decisions: list[list[dict[str, Any]]] = field(default_factory=list)
    coop_failures: list[str] = field(default_factory=list)


def _accuracies(result: Any) -> list[float]:
    metrics = result.evaluate_metrics_serverapp
    return [round(float(metrics[r]["accuracy"]), 4) for r in sorted(metrics)]


def _fill(summary: SimulationSummary, both: SideBySide, home: Path) -> None:
    """The summary's figures of FedAvg's and the coordinated strategy's runs."""
    from coopflower.simulate_report import coop_decisions
    from coopflower.strategy.coordinated import failure_lines

    fedavg, coop, rounds = both.fedavg, both.coop, summary.rounds
    summary.fedavg_tx = both.fedavg_tx
    summary.fedavg_accuracy = _accuracies(both.fedavg_result)
    summary.fedavg_bytes_per_round = [fedavg.meter.total(r) for r in range(1, rounds + 1)]
    summary.fedavg_averaged_per_round = [getattr(fedavg, "averaged", {}).get(r, 0)
                                         for r in range(1, rounds + 1)]
    summary.coop_accuracy = _accuracies(both.coop_result)
    summary.coop_tx_per_round = [r.tx for r in coop.reports]
    summary.coop_bytes_per_round = [r.bytes for r in coop.reports]
    summary.coop_accepted_per_round = [r.accepted for r in coop.reports]
    summary.coop_decisions = coop_decisions(coop, home, summary.nodes, summary.attackers)
    for side, bad in (("malicious", True), ("honest", False)):
        counts = [sum(1 for d in rnd if d["decision"] == "rejected" and d["malicious"] is bad)
                  for rnd in summary.coop_decisions]
        setattr(summary, f"coop_rejected_{side}_per_round", counts)
    summary.coop_failures = failure_lines(coop.reports)


def run_simulate(nodes: int = 10, rounds: int = 3, model: str = "table4", epochs: int = 2,
                 chain: str | None = None, chain_key: str | None = None,
                 store: str | None = None, out_dir: str = "results/simulate",
                 attack: str = "label-flip", attackers: int = 3) -> int:
    """Run FedAvg with no attacker, FedAvg under attack and the coordinated strategy under
    the same attack, on the same simulated SuperNodes (``attack="none"``: only FedAvg and
    the coordinated strategy, no node attacking).

    Args:
        nodes: simulated SuperNodes. rounds: rounds of each strategy. model: a paper CNN name.
        epochs: local epochs per round. chain, chain_key: a JSON-RPC node and the initiator's
            key (default: the embedded EVM). store: a directory or Kubo RPC URL (default: a
            fresh embedded store). out_dir: where ``summary.json`` and ``accuracy.png`` go.
        attack: what the attackers do (``coopflower.app.attacks.ATTACKS``).
        attackers: how many of the nodes attack (a seeded draw of partitions).

    Returns:
        0 when every run completed every round. Raises ``SimulateError`` on bad settings.
    """
    from coopflower.app.attacks import ATTACKS

    if attack not in ATTACKS:
        raise SimulateError(f"attack {attack!r}: choose from {', '.join(ATTACKS)}")
    bad = choose_attackers(nodes, attackers) if attack != "none" else ()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    tmp = Path(tempfile.mkdtemp(prefix="coopflower-sim-"))
    os.environ.setdefault("COOPFLOWER_HOME", str(tmp / "home"))
    home = Path(os.environ["COOPFLOWER_HOME"]).expanduser()
    store_spec = store or str(tmp / "store")

    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from coopflower.app.server_app import central_evaluator
    from coopflower.ledger import CoopLedger, connect
    from coopflower.simulate_report import report

    summary = SimulationSummary(nodes=nodes, rounds=rounds, model=model, attack=attack,
                                attackers=list(bad))
    note = f" ({len(bad)} attacking, {attack}: partitions {list(bad)})" if bad else ""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        ledger = CoopLedger.deploy(connect(chain, private_key=chain_key))
        summary.contract = ledger.address
        evaluate_fn = central_evaluator(model)
        if bad:
            summary.attack_free_accuracy = _accuracies(run_attack_free(
                grid, nodes=nodes, rounds=rounds, model=model, epochs=epochs,
                evaluate_fn=evaluate_fn))
        both = run_fedavg_then_coordinated(grid, ledger, store_spec, nodes=nodes, rounds=rounds,
                                           model=model, epochs=epochs, evaluate_fn=evaluate_fn,
                                           attack_note=note)
        _fill(summary, both, home)

    from coopflower.runlog import RAY_QUIET, library_output_to

    with library_output_to(Path(out_dir) / "simulate.log"):
        run_simulation(server, _client_app(attack, bad, str(tmp / "attack")),
                       num_supernodes=nodes, backend_config={
                           "client_resources": {"num_cpus": 1},
                           "init_args": {"num_cpus": os.cpu_count() or 1, **RAY_QUIET}})
    done = (len(summary.coop_accuracy) == rounds + 1 and len(summary.fedavg_accuracy) == rounds + 1
            and (not bad or len(summary.attack_free_accuracy) == rounds + 1))
    report(summary, Path(out_dir))
    return 0 if done else 1

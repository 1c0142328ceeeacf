"""The round overhead of the coordinated round on a third-party Flower app, against FedAvg.

The app (a folder in the shape of Flower's templates, with ``coop.diff``: by default
``tests/apps/shapes32``, a CNN on 3x32x32 images) is copied and patched by its diff; one Flower
simulation then runs Flower's ``FedAvg`` for ``--rounds`` rounds and the app's coordinated
strategy, ``CoordinatedStrategy(FedAvg(fraction_train=1.0), task=...)`` for as many, on the
same warm workers, nodes and data. ``coop_mod`` passes FedAvg's plain messages to the app, so
both strategies run the app's own train and evaluate. Each client runs alone (``num_cpus`` =
all cores per client), so the app's compute adds up to the wall time it took.

    python bench/app_overhead.py --json

Prints a line per phase per round, then one JSON object: ``fedavg_round_s`` (train and
federated evaluation) and ``coop_round_s`` (the coordinated part, train to record, plus the
inner strategy's federated evaluation), means over rounds 2..n, and ``coop_over_fedavg``;
``fedavg_train_s`` and ``coop_coordinated_part_s`` (the parts without federated
evaluation); ``coop_compute_s`` (the app's train and evaluate in the coordinated part, as
``coop_mod`` timed them), ``coordination_fraction`` (1 - compute / wall of the coordinated
part), ``coordination_s`` and its breakdown, bytes and transactions per round.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _patched_copy(app: Path, tmp: Path) -> tuple[Path, str]:
    dst = tmp / app.name
    shutil.copytree(app, dst)
    subprocess.run(["patch", "-p1", "-s", "-i", "coop.diff"], cwd=dst, check=True)
    (package,) = [p.parent.name for p in dst.glob("*/client_app.py")]
    return dst, package


class _TimedFedAvg:
    """Flower's FedAvg with each round's wall time (configure_train to aggregate_evaluate)."""

    @staticmethod
    def make(**kwargs: Any) -> Any:
        from flwr.serverapp.strategy import FedAvg

        class Timed(FedAvg):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(**kwargs)
                self.t0: dict[int, float] = {}
                self.wall: dict[int, float] = {}
                self.train_wall: dict[int, float] = {}

            def configure_train(self, server_round: int, *a: Any) -> Any:
                self.t0[server_round] = time.perf_counter()
                return super().configure_train(server_round, *a)

            def aggregate_train(self, server_round: int, replies: Any) -> Any:
                out = super().aggregate_train(server_round, replies)
                self.train_wall[server_round] = time.perf_counter() - self.t0[server_round]
                return out

            def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
                out = super().aggregate_evaluate(server_round, replies)
                self.wall[server_round] = time.perf_counter() - self.t0[server_round]
                print(f"[FedAvg round {server_round}] {self.wall[server_round]:.2f} s",
                      file=sys.stderr, flush=True)
                return out

        return Timed()


def run(app: Path, clients: int, rounds: int, metric: str, min_metric: float) -> dict[str, Any]:
    """Run both strategies on the app in one simulation; returns the figures."""
    from round_overhead import _breakdown, _mean

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    tmp = Path(tempfile.mkdtemp(prefix="coop-appbench-"))
    os.environ["COOPFLOWER_HOME"] = str(tmp / "home")
    folder, package = _patched_copy(app, tmp)
    sys.path.insert(0, str(folder))
    client_app = importlib.import_module(f"{package}.client_app").app
    task = importlib.import_module(f"{package}.task")

    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from coopflower.strategy import CoordinatedStrategy, TaskConfig

    figures: dict[str, Any] = {"app": app.name, "clients": clients, "rounds": rounds}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        import torch

        torch.manual_seed(0)
        arrays = ArrayRecord(task.Net().state_dict())
        cfg = ConfigRecord({"lr": 0.05})
        fed = _TimedFedAvg.make(fraction_train=1.0, min_available_nodes=clients)
        fed.start(grid=grid, initial_arrays=arrays, num_rounds=rounds, train_config=cfg)
        coop = CoordinatedStrategy(FedAvg(fraction_train=1.0, min_available_nodes=clients),
                                   task=TaskConfig(metric=metric, min_metric=min_metric),
                                   store=str(tmp / "store"))
        coop.start(grid=grid, initial_arrays=arrays, num_rounds=rounds, train_config=cfg)
        later = list(range(2, rounds + 1)) or [1]
        reps = [coop.reports[r - 1] for r in later]
        c_wall = [r.wall_seconds for r in reps]
        c_comp = [r.compute_seconds for r in reps]
        c_hand = [r.handler_seconds for r in reps]
        f_wall = [fed.wall[r] for r in later]
        f_train = [fed.train_wall[r] for r in later]
        c_eval = [coop.phases.seconds(r).get("fed-eval", 0.0) for r in later]
        names = list(dict.fromkeys(k for r in reps for k in r.phase_seconds))
        critical = {k: _mean([0.0 if k in r.overlapped_phases else r.phase_seconds.get(k, 0.0)
                              for r in reps]) for k in names}
        figures.update({
            "fedavg_round_s": round(_mean(f_wall), 3),
            "coop_round_s": round(_mean(c_wall) + _mean(c_eval), 3),
            "coop_over_fedavg": round((_mean(c_wall) + _mean(c_eval)) / _mean(f_wall), 3),
            "fedavg_train_s": round(_mean(f_train), 3),
            "coop_coordinated_part_s": round(_mean(c_wall), 3),
            "coop_fed_eval_s": round(_mean(c_eval), 3),
            "coop_compute_s": round(_mean(c_comp), 3),
            "coordination_fraction": round(1 - _mean(c_comp) / _mean(c_wall), 4),
            "coordination_s": round(_mean(c_wall) - _mean(c_comp), 3),
            "coordination_breakdown_s": _breakdown(_mean(c_wall), _mean(c_comp), _mean(c_hand),
                                                   critical),
            "coop_phase_s": {k: round(_mean([r.phase_seconds.get(k, 0.0) for r in reps]), 3)
                             for k in names},
            "bytes_per_round_coop": int(_mean([r.bytes for r in reps])),
            "tx_per_round": _mean([float(r.tx) for r in reps]),
            "accepted_per_round": _mean([float(r.accepted) for r in reps]),
        })

    from coopflower.runlog import RAY_QUIET, library_output_to

    t0 = time.perf_counter()
    with library_output_to(tmp / "bench.log"):
        run_simulation(server, client_app, num_supernodes=clients, backend_config={
            "client_resources": {"num_cpus": os.cpu_count() or 1},  # one client at a time
            "init_args": {"num_cpus": os.cpu_count() or 1, **RAY_QUIET},
        })
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if "coop_round_s" not in figures:
        raise SystemExit(f"the simulation did not finish: see {tmp / 'bench.log'}")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON object."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--app", type=Path, default=REPO / "tests" / "apps" / "shapes32")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--metric", default="eval_acc", help="the key the app's evaluate returns")
    p.add_argument("--min-metric", type=float, default=0.5)
    args = p.parse_args(argv)
    figures = run(args.app.resolve(), args.clients, args.rounds, args.metric, args.min_metric)
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}"
                                                          for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

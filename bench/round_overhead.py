"""Round overhead of the coordinated strategy against Flower's FedAvg on the same simulation.

One Flower simulation (Ray) with ``--clients`` SuperNodes runs FedAvg for ``--rounds`` rounds
and then the coordinated strategy for ``--rounds`` rounds, on the same warm workers, with the
same model, data partition and local epochs. Each client runs alone (``num_cpus`` = all cores
per client), so the local training and evaluation compute the clients report adds up to the
wall time it took; the rest of a round's wall time is coordination: chain transactions,
storage, signing and checking signatures, relaying messages, waiting.

    python bench/round_overhead.py --json                 # embedded chain and store
    python bench/round_overhead.py --json --anvil --ipfs  # anvil + a js-ipfs daemon

Prints one line per phase per round, then one JSON object with ``fedavg_round_s``,
``coop_round_s`` (means over rounds 2..n: round 1 pays for cold workers; 5 rounds by default,
as in the paper's FedAvg comparison), ``coordination_fraction_steady`` (rounds 2..n-1: the
last round has no next round to overlap its chain steps with),
``coordination_fraction`` (coordinated round: wall time outside local compute, over wall
time; a round's wall time runs from its first step to its last on the strategy's critical
path, so chain steps pipelined behind the next round's training count only as far as the next
round waits for them), ``fedavg_overhead_fraction`` (the same for FedAvg),
``bytes_per_round_fedavg``, ``bytes_per_round_coop`` (messages plus storage),
``tx_per_round``, per-phase seconds, ``coordination_breakdown_s``, and ``coordination_s``
(the absolute seconds outside compute; other load on the machine inflates
compute and so lowers the fraction: ``loadavg_1m_end`` says how busy it was).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


_MESSAGE_PHASES = ("train", "verify")


def _breakdown(wall: float, compute: float, handler: float,
               phases: dict[str, float]) -> dict[str, float]:
    """Where a round's time outside compute went: on the nodes outside compute (loading data,
    packing, storage, signing), in the chain and storage steps the server ran on the round's
    critical path (``phases`` holds only those: the ones overlapped with the next round's
    training are left out), and the rest (Flower's messaging, polling, (de)serialising, the
    server's checks)."""
    chain = sum(v for k, v in phases.items() if k not in _MESSAGE_PHASES)
    nodes = max(handler - compute, 0.0)
    return {"nodes_outside_compute": round(nodes, 3), "server_chain_steps": round(chain, 3),
            "messaging_and_rest": round(wall - compute - nodes - chain, 3)}


@contextlib.contextmanager
def _backends(use_anvil: bool, use_ipfs: bool, store_dir: Path) -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        out: dict[str, Any] = {"chain": None, "key": None, "store": str(store_dir),
                               "chain_kind": "embedded", "store_kind": "embedded"}
        if use_anvil:
            from coopflower.ledger.nodes import anvil

            node = stack.enter_context(anvil())
            out.update(chain=node.url, key=node.private_keys[0], chain_kind="anvil")
        if use_ipfs:
            from coopflower.storage.daemon import ipfs_daemon

            out.update(store=stack.enter_context(ipfs_daemon()), store_kind="js-ipfs")
        yield out


def run(clients: int, rounds: int, model: str, epochs: int, use_anvil: bool,
        use_ipfs: bool) -> dict[str, Any]:
    """Run both strategies in one simulation; returns the figures."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    tmp = Path(tempfile.mkdtemp(prefix="coop-bench-"))
    os.environ["COOPFLOWER_HOME"] = str(tmp / "home")
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from coopflower.app.client_app import app as client_app
    from coopflower.ledger import CoopLedger, connect
    from coopflower.simulate import run_fedavg_then_coordinated

    figures: dict[str, Any] = {}
    with _backends(use_anvil, use_ipfs, tmp / "store") as be:
        server = ServerApp()

        @server.main()
        def main(grid: Grid, context: Context) -> None:
            ledger = CoopLedger.deploy(connect(be["chain"], private_key=be["key"]))
            both = run_fedavg_then_coordinated(grid, ledger, be["store"], nodes=clients,
                                               rounds=rounds, model=model, epochs=epochs)
            fed, coop = both.fedavg, both.coop
            fed_tx = both.fedavg_tx / rounds
            later = list(range(2, rounds + 1)) or [1]
            f_wall = [fed.round_seconds[r] for r in later]
            f_comp = [fed.compute_seconds[r] for r in later]
            reps = [coop.reports[r - 1] for r in later]
            c_wall = [r.wall_seconds for r in reps]
            c_comp = [r.compute_seconds for r in reps]
            c_hand = [r.handler_seconds for r in reps]
            f_hand = [fed.handler_seconds.get(r, 0.0) for r in later]
            names = list(dict.fromkeys(k for r in reps for k in r.phase_seconds))
            phases = {k: _mean([r.phase_seconds.get(k, 0.0) for r in reps]) for k in names}
            critical = {k: _mean([0.0 if k in r.overlapped_phases else r.phase_seconds.get(k, 0.0)
                                  for r in reps]) for k in names}
            figures.update({
                "clients": clients, "rounds": rounds, "model": model, "local_epochs": epochs,
                "chain": be["chain_kind"], "store": be["store_kind"],
                "fedavg_round_s": round(_mean(f_wall), 3),
                "coop_round_s": round(_mean(c_wall), 3),
                "fedavg_compute_s": round(_mean(f_comp), 3),
                "coop_compute_s": round(_mean(c_comp), 3),
                "coordination_fraction": round(1 - _mean(c_comp) / _mean(c_wall), 4),
                # rounds 2..n-1: the last round settles in line (nothing left to overlap with)
                "coordination_fraction_steady": round(
                    1 - _mean(c_comp[:-1] or c_comp) / _mean(c_wall[:-1] or c_wall), 4),
                "coordination_s": round(_mean(c_wall) - _mean(c_comp), 3),
                "fedavg_overhead_s": round(_mean(f_wall) - _mean(f_comp), 3),
                "fedavg_overhead_fraction": round(1 - _mean(f_comp) / _mean(f_wall), 4),
                "coop_over_fedavg": round(_mean(c_wall) / _mean(f_wall), 3),
                "bytes_per_round_fedavg": int(_mean([fed.meter.total(r) for r in later])),
                "bytes_per_round_coop": int(_mean([r.bytes for r in reps])),
                "tx_per_round": _mean([float(r.tx) for r in reps]),
                "tx_per_round_fedavg": fed_tx,
                "gas_per_round_coop": int(_mean([float(r.gas) for r in reps])),
                "accepted_per_round": _mean([float(r.accepted) for r in reps]),
                "coop_phase_s": {k: round(v, 3) for k, v in phases.items()},
                "coop_overlapped_phases": sorted({k for r in reps for k in r.overlapped_phases}),
                "coordination_breakdown_s": _breakdown(_mean(c_wall), _mean(c_comp),
                                                       _mean(c_hand), critical),
                "fedavg_overhead_breakdown_s": _breakdown(_mean(f_wall), _mean(f_comp),
                                                          _mean(f_hand), {}),
            })

        t0 = time.perf_counter()
        run_simulation(server, client_app, num_supernodes=clients, backend_config={
            "client_resources": {"num_cpus": os.cpu_count() or 1},  # one client at a time
            "init_args": {"num_cpus": os.cpu_count() or 1},
        })
        figures["total_s"] = round(time.perf_counter() - t0, 1)
        figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)  # other work slows compute
    if "coop_round_s" not in figures:
        raise SystemExit("the simulation did not finish: see the log above")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON object."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5, help="rounds of each strategy (the "
                   "paper's FedAvg comparison runs 5)")
    p.add_argument("--model", default="table4", help="a Table I/IV model name")
    p.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    p.add_argument("--anvil", action="store_true", help="run on a local anvil node")
    p.add_argument("--ipfs", action="store_true", help="store blobs in a js-ipfs daemon")
    args = p.parse_args(argv)
    figures = run(args.clients, args.rounds, args.model, args.epochs, args.anvil, args.ipfs)
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

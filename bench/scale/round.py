"""One coordinated round (k = 3) with ``n`` simulated contributors in Flower's simulation
engine (``flwr.simulation.run_simulation`` with ``num_supernodes=n``), on the embedded chain or
a fresh anvil node; meant to run in a process of its own, so that the peak RSS it reports is
this size's alone.

    python -m bench.scale.round N BACKEND [--workers W]   # last stdout line: one JSON object

The ServerApp runs in this process (Flower's simulation runs it in a thread of the driver),
the ClientApps in Ray's workers. After the run every transaction of the task is read back from
the chain and counted per contract function (gas, calldata bytes, largest transaction).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

K, QUORUM, MIN_METRIC = 3, 2, 0.5
# the contract's functions a round sends (registration and closing are once per task)
ROUND_FUNCTIONS = ("openRound", "submitBatch", "closeSubmissions", "revealSeeds", "submitVotes",
                   "settle", "recordMetaModel")


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Ray's GCS, raylet and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples, every ``interval`` seconds, the RSS of this process's descendants (Ray's
    processes: the simulation's memory beside the ServerApp's own)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval, self.peak_mb, self.peak_procs = interval, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pids = _descendants(os.getpid())
            total = sum(_rss_mb(p) for p in pids)
            if total > self.peak_mb:
                self.peak_mb, self.peak_procs = total, len(pids)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def chain_endpoint(backend: str, gas_limit: int | None = None,
                   ) -> Iterator[tuple[str | None, str | None]]:
    """Yields (url, key): ``(None, None)`` for the embedded EVM, else a fresh anvil's; with
    ``gas_limit``, the chain's block gas limit (default: the chain's own, about 30 M)."""
    if backend == "embedded":
        if gas_limit is not None:  # the embedded EVM's genesis block sets it for every block
            import eth_tester.backends.pyevm.main as pyevm

            pyevm.GENESIS_GAS_LIMIT = gas_limit  # type: ignore[attr-defined]
        yield None, None
        return
    from coopflower.ledger.nodes import anvil

    with anvil(gas_limit=gas_limit) as node:
        yield node.url, node.private_keys[0]


def chain_census(w3: Any, abi: Sequence[Mapping[str, Any]], address: str | None,
                 first_block: int) -> dict[str, dict[str, int]]:
    """Every transaction from ``first_block`` on to ``address`` (None: to any contract of
    ``abi``), per function: count, gas, calldata bytes, the largest transaction's gas and
    calldata."""
    from eth_utils import function_abi_to_4byte_selector

    names = {bytes(function_abi_to_4byte_selector(f)): f["name"]
             for f in abi if f.get("type") == "function"}
    out: dict[str, dict[str, int]] = {}
    for number in range(first_block, int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            data = bytes(tx.get("input", tx.get("data", b"")))
            if tx["to"] is None or (address is not None and
                                    tx["to"].lower() != address.lower()):
                continue
            name = names.get(data[:4])
            if name is None:
                continue
            gas = int(w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"])
            row = out.setdefault(name, {"tx": 0, "gas": 0, "calldata_bytes": 0,
                                        "max_tx_gas": 0, "max_tx_calldata": 0})
            row["tx"] += 1
            row["gas"] += gas
            row["calldata_bytes"] += len(data)
            row["max_tx_gas"] = max(row["max_tx_gas"], gas)
            row["max_tx_calldata"] = max(row["max_tx_calldata"], len(data))
    return out


def _round_figures(strategy: Any, n: int, workers: int) -> dict[str, Any]:
    rep = strategy.reports[0]
    statuses = [v[2] for v in rep.submissions.values()]
    # compute adds up over the nodes; with W workers at most W nodes compute at once
    coordination = rep.wall_seconds - rep.compute_seconds / workers
    return {
        "round_s": round(rep.wall_seconds, 3),
        "compute_s": round(rep.compute_seconds, 4),
        "handler_s": round(rep.handler_seconds, 3),
        "coordination_s": round(coordination, 3),
        "phase_s": {k: round(v, 3) for k, v in rep.phase_seconds.items()},
        "setup_s": round(strategy.phases.seconds(0).get("setup", 0.0), 3),
        "submissions": len(rep.submissions), "accepted": rep.accepted,
        "rejected": statuses.count("REJECTED"), "votes": rep.votes,
        "failures": [f"{f.phase} node {f.node_id}: {f.reason}" for f in rep.failures][:20],
        "failures_count": len(rep.failures),
        "tx_per_round": rep.tx, "bytes_per_round": rep.bytes,
    }


def run(n: int, backend: str, workers: int = 1, gas_limit: int | None = None,
        ) -> dict[str, Any]:
    """One coordinated round with ``n`` simulated contributors on ``backend``.

    Args:
        n: simulated SuperNodes (every one a contributor and a verifier candidate).
        backend: ``"embedded"`` or ``"anvil"``. workers: Ray workers running ClientApps at
            once (each gets ``cpu_count / workers`` CPUs). gas_limit: the chain's block gas
            limit (None: its own).
    Returns: the figures (``ok`` false with ``error`` when the round did not finish).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/coopflower-ray")
    tmp = Path(tempfile.mkdtemp(prefix=f"coop-scale-{n}-"))
    os.environ["COOPFLOWER_HOME"] = str(tmp / "home")
    # Ray's workers import the ClientApp's module by name
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    from flwr.app import ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from bench.scale.app import app as client_app
    from bench.scale.app import initial_arrays
    from coopflower.ledger import CoopLedger, connect
    from coopflower.runlog import RAY_QUIET, library_output_to
    from coopflower.strategy import CoordinatedStrategy, TaskConfig

    figures: dict[str, Any] = {"n": n, "backend": backend, "k": K, "workers": workers,
                               "ok": False}
    t_start = time.perf_counter()
    with chain_endpoint(backend, gas_limit) as (url, key), RssSampler() as sampler:
        server = ServerApp()

        @server.main()
        def main(grid: Grid, context: Context) -> None:
            ledger = CoopLedger.deploy(connect(url, private_key=key))
            first_block = int(ledger.chain.w3.eth.block_number)
            figures["block_gas_limit"] = ledger.chain._block_gas_limit()
            inner = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=n,
                           min_train_nodes=n)
            strategy = CoordinatedStrategy(
                inner, task=TaskConfig(k=K, quorum=QUORUM, metric="eval_acc",
                                       min_metric=MIN_METRIC),
                ledger=ledger, store=str(tmp / "store"), connect_timeout=600.0)
            try:
                strategy.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1,
                               train_config=ConfigRecord({"lr": 1.0}))
            except Exception as exc:  # the round's figures so far, and where it stopped
                phases = strategy.phases.records
                figures.update(error=f"{type(exc).__name__}: {exc}"[:600],
                               failed_phase=phases[-1].phase if phases else None,
                               phase_s={r.phase: round(r.seconds, 3) for r in phases})
                figures["chain"] = chain_census(ledger.chain.w3, ledger.artifact.abi,
                                                ledger.address, first_block)
                return
            figures.update(_round_figures(strategy, n, workers))
            census = chain_census(ledger.chain.w3, ledger.artifact.abi, ledger.address,
                                  first_block)
            figures["chain"] = census
            # the round's gas from the chain: every round function, the open included
            gas = sum(row["gas"] for f, row in census.items() if f in ROUND_FUNCTIONS)
            figures.update(gas_per_round=gas, gas_per_contributor=round(gas / n, 1),
                           tx_round_census=sum(row["tx"] for f, row in census.items()
                                               if f in ROUND_FUNCTIONS))
            figures["ok"] = True

        cpus = os.cpu_count() or 1
        log(f"n={n} {backend}: simulation starts ({workers} worker(s))")
        with library_output_to(tmp / "flower.log"):
            run_simulation(server, client_app, num_supernodes=n, backend_config={
                "client_resources": {"num_cpus": max(1, cpus // workers)},
                "init_args": {"num_cpus": cpus, **RAY_QUIET}})
    figures["total_s"] = round(time.perf_counter() - t_start, 1)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["simulation_rss_mb"] = round(sampler.peak_mb, 1)
    figures["simulation_processes"] = sampler.peak_procs
    figures["flower_log"] = str(tmp / "flower.log")
    if not figures["ok"]:
        figures.setdefault("error", f"the round did not finish: see {tmp / 'flower.log'}")
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("n", type=int)
    p.add_argument("backend", choices=("embedded", "anvil"))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--block-gas-limit", type=int, default=None)
    args = p.parse_args(argv)
    figures = run(args.n, args.backend, args.workers, args.block_gas_limit)
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

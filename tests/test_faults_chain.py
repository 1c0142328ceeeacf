"""Issue 13, the chain node killed and restarted in a real run: anvil with ``--state`` (it dumps
its chain, blocks and logs included, when it is stopped, and loads it when it starts again),
stopped by the strategy's own progress line of a chosen phase (``tests.fixtures_faults.
Tripwire``) and started again on the same port a few seconds later.

- Restarted within the chain backend's retry window (``connect(unreachable_s=...)``: every
  JSON-RPC request retries while the node refuses connections), between two rounds and inside a
  round (after the submissions, before the votes): the run goes on and finishes.
- Down for longer than the window: the run stops with ``ChainUnreachableError`` (wrapped by a
  view as ``TransactionError("getRound call failed: chain node at URL refused eth_chainId for
  3 s")``) naming the node and the request; once the node is back, a resumed run
  (``resume=True``) finishes the round from the state the node kept.

Either way the audit (``coopflower audit`` against the node) is clean and the money adds up."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from flwr.serverapp.strategy import FedAvg

from coopflower.audit import run_audit
from coopflower.ledger import CoopLedger, TransactionError, connect
from coopflower.ledger.backend import ChainUnreachableError
from coopflower.strategy import CoordinatedStrategy, TaskConfig
from tests.fixtures_faults import RestartableAnvil, Tripwire, money_adds_up, simulate

pytestmark = [pytest.mark.slow, pytest.mark.node]

NODES = 4


def _strategy(tmp_path: Path, ledger: CoopLedger, progress: Any, **kw: Any) -> Any:
    return lambda: CoordinatedStrategy(
        FedAvg(fraction_train=1.0), ledger=ledger, store=str(tmp_path / "store"),
        task=TaskConfig(k=3, quorum=2, metric="eval_acc", min_metric=0.5), progress=progress,
        **kw)


def _clean(node: RestartableAnvil, ledger: CoopLedger, tmp_path: Path, task: int) -> None:
    assert run_audit(node.url, ledger.address, str(tmp_path / "store"), task) == 0
    money_adds_up(ledger)


@pytest.mark.parametrize("marker", ["[round 1/2] record", "[round 1/2] submit"])
def test_a_chain_node_restarted_in_time_the_run_goes_on(tmp_path: Path, marker: str) -> None:
    with RestartableAnvil(tmp_path) as node:
        ledger = CoopLedger.deploy(connect(node.url, private_key=node.private_keys[0]))
        wire = Tripwire(marker, lambda: node.stop(signal.SIGTERM), node.start, delay=3.0)
        out = simulate(tmp_path, _strategy(tmp_path, ledger, wire), 2, NODES)
        assert wire.fired.is_set() and node.starts == 2, wire.text()[-2000:]
        assert "error" not in out, out.get("error")
        s = out["s"]
        task = int(s.task_id)
        assert [r.accepted for r in s.reports] == [NODES, NODES]
        assert all(ledger.round(task, r).state == 3 for r in (1, 2))
        assert ledger.task(task).closed  # and every deposit released
        _clean(node, ledger, tmp_path, task)


def test_a_chain_node_down_too_long_stops_the_run_by_name_and_the_task_resumes(
        tmp_path: Path) -> None:
    with RestartableAnvil(tmp_path) as node:
        key = node.private_keys[0]
        ledger = CoopLedger.deploy(connect(node.url, private_key=key, unreachable_s=3.0))
        wire = Tripwire("[round 1/1] submit", lambda: node.stop(signal.SIGTERM))
        out = simulate(tmp_path, _strategy(tmp_path, ledger, wire, pipeline=False), 1, NODES)
        err = out.get("error")
        print(f"chain node down: {type(err).__name__}: {err}")
        # a view wraps it in TransactionError("<view> call failed: ..."), from the cause
        cause = err if isinstance(err, ChainUnreachableError) else getattr(err, "__cause__", None)
        assert isinstance(err, TransactionError) and isinstance(cause, ChainUnreachableError), err
        assert f"chain node at {node.url} refused" in str(err) and "for 3 s" in str(err)

        node.start()  # the same chain: the round is VOTING with the submissions relayed
        ledger = CoopLedger.at(connect(node.url, private_key=key), ledger.address)
        task = int(out["s"].task_id)
        before = [e.args["cid"] for e in ledger.events("Submitted", task_id=task)]
        assert ledger.round(task, 1).state == 2 and len(before) == NODES
        again = simulate(tmp_path, _strategy(tmp_path, ledger, None, task_id=task,
                                             resume=True), 1, NODES)
        assert "error" not in again, again.get("error")
        assert ledger.round(task, 1).state == 3
        assert [e.args["cid"] for e in ledger.events("Submitted", task_id=task)] == before
        _clean(node, ledger, tmp_path, task)

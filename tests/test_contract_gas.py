"""Gas targets of bench/gas.py hold (gas is deterministic, so this is a regression test, not a
timing test): <= 60,000 per contributor submission and <= 30,000 per vote in batches of 10."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from coopflower.ledger import connect

_spec = importlib.util.spec_from_file_location(
    "bench_gas", Path(__file__).resolve().parents[1] / "bench/gas.py"
)
assert _spec is not None and _spec.loader is not None
gas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gas)


def test_gas_targets_and_constant_transactions_per_round() -> None:
    chain = connect()
    ops = gas.measure_operations(chain, 10)
    assert ops["submit_gas_per_contributor"] <= gas.TARGET_SUBMIT
    assert ops["vote_gas_per_vote"] <= gas.TARGET_VOTE
    assert ops["log_round_gas"] < 40_000
    small, large = gas.measure_round(chain, 4), gas.measure_round(chain, 24)
    assert small["tx"] == large["tx"] == 5

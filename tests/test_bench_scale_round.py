"""bench/scale_round.py at a tiny size: one coordinated round of 6 simulated contributors in
Flower's simulation engine on the embedded chain, its JSON object's shape, a round that
accepted models and wrote its transactions; and the in-flight window that lets a simulated
phase of 1000 nodes run (coopflower.strategy.messaging)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.scale.summary import chain_at, ratios
from coopflower.strategy.messaging import (
    IN_MEMORY,
    SIM_SWEEP_BUDGET,
    in_flight_window,
    send_and_receive,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_round_json_shape_and_a_round_on_chain() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "scale_round.py"), "--json",
                           "--tiny"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["sizes"] == [6] and doc["backends"] == ["embedded"] and doc["k"] == 3
    assert "[scale] n=6 embedded" in proc.stderr and "[round 1/1] verify" in proc.stderr
    run = doc["per_size"]["embedded"]["6"]
    assert run["ok"] and doc["ok"]["embedded"]["6"]
    for key in ("round_s", "coordination_s", "tx_per_round", "gas_per_contributor",
                "peak_rss_mb"):
        assert set(doc[key]) == {"embedded"} and doc[key]["embedded"]["6"] > 0, key
    assert 0 < doc["coordination_s"]["embedded"]["6"] <= doc["round_s"]["embedded"]["6"]
    # the round accepted the honest models and every contributor's k votes went on chain
    assert run["submissions"] == 6 and run["accepted"] == 6 and run["votes"] == 18
    chain = run["chain"]
    for fn in ("openRound", "submitBatch", "submitVotes", "settle", "recordMetaModel"):
        assert chain[fn]["tx"] >= 1 and chain[fn]["gas"] > 0, fn
    assert chain["registerFor"]["tx"] == 1  # once per task, outside the round
    assert run["tx_round_census"] == run["tx_per_round"] == doc["tx_per_round"]["embedded"]["6"]
    assert doc["gas_per_contributor"]["embedded"]["6"] == pytest.approx(
        run["gas_per_round"] / 6, rel=1e-3)
    # the targets need 100 and 1000: without them the ratios are unknown, not passed
    assert doc["ratios"]["embedded"]["coordination_1000_over_100"] is None
    assert "400 ms" in doc["seed_000_table3"]["claim"]
    assert doc["seed_000_table3"]["tx_processing_ms"]["500"] == 400
    assert doc["ms_per_tx"]["embedded"]["6"] > 0
    big = doc["at_10000"]
    assert big["n"] == 10_000 and "chain_measured" not in big  # --tiny measures no 10,000
    est = big["embedded"]
    assert est["kind"] == "estimated" and est["from_sizes"] == [6]
    votes = est["batches"]["submitVotes"]
    assert votes["tx"] * votes["items_per_tx"] >= 30_000
    assert votes["batch_gas"] < est["batches"]["block_gas_limit"]


def _run(n: int, coord: float, gas: float) -> dict[str, Any]:
    return {"ok": True, "coordination_s": coord, "gas_per_contributor": gas}


def test_ratios_against_the_targets() -> None:
    r = ratios({100: _run(100, 10.0, 150_000.0), 1000: _run(1000, 95.0, 140_000.0)})
    assert r["coordination_1000_over_100"] == 9.5 and r["coordination_ok"] is True
    assert r["gas_per_contributor_1000_over_100"] == pytest.approx(0.933, abs=1e-3)
    assert r["gas_ok"] is True
    worse = ratios({100: _run(100, 10.0, 100.0), 1000: _run(1000, 120.0, 101.0)})
    assert worse["coordination_ok"] is False and worse["gas_ok"] is False


def test_batches_at_10000_from_a_census() -> None:
    census = {"submitVotes": {"tx": 1, "gas": 3 * 100 * 17_000, "calldata_bytes": 3 * 100 * 256},
              "settle": {"tx": 1, "gas": 100 * 47_000, "calldata_bytes": 68}}
    out = chain_at(10_000, census, 100, 30_000_000)
    v = out["submitVotes"]
    assert v["gas_per_item"] == 17_000 and v["calldata_per_item"] == 256
    assert v["tx"] == -(-30_000 // v["items_per_tx"])  # ceil
    assert v["calldata_bytes_total"] == 30_000 * 256
    assert "settle" not in out  # one transaction whatever n: reported from the measurement


class _Grid:
    """A grid that answers each message one pull after it was pushed, counting what is in
    flight (the in-memory semantics of push_messages / pull_messages)."""

    def __init__(self) -> None:
        self.in_flight: set[str] = set()
        self.max_in_flight = 0
        self._next = 0

    def push_messages(self, messages: list[Any]) -> list[str]:
        ids = []
        for _ in messages:
            self._next += 1
            ids.append(f"m{self._next}")
        self.in_flight.update(ids)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        return ids

    def pull_messages(self, ids: set[str]) -> list[Any]:
        out = []
        for mid in sorted(ids & self.in_flight)[:3]:
            self.in_flight.discard(mid)
            out.append(type("Reply", (), {"metadata": type("M", (), {
                "reply_to_message_id": mid})()})())
        return out


def test_a_window_keeps_at_most_that_many_messages_in_flight() -> None:
    grid = _Grid()
    replies = send_and_receive(grid, list(range(50)), timeout=10, schedule=IN_MEMORY,  # type: ignore[arg-type]
                               window=7)
    assert len(replies) == 50 and grid.max_in_flight == 7
    grid = _Grid()
    assert len(send_and_receive(grid, list(range(50)), timeout=10, schedule=IN_MEMORY,  # type: ignore[arg-type]
                                window=None)) == 50
    assert grid.max_in_flight == 50


def test_the_window_is_the_sweep_budget_over_the_nodes_in_a_simulation_only() -> None:
    from flwr.superlink.grid import InMemoryGrid

    sim = InMemoryGrid.__new__(InMemoryGrid)
    sim.get_node_ids = lambda: range(1000)  # type: ignore[method-assign]
    assert in_flight_window(sim) == SIM_SWEEP_BUDGET // 1000
    sim.get_node_ids = lambda: range(100_000)  # type: ignore[method-assign]
    assert in_flight_window(sim) == 4
    assert in_flight_window(_Grid()) is None  # type: ignore[arg-type]

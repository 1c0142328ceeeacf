"""bench/round_overhead.py at a small size: one real simulation runs FedAvg and the coordinated
strategy, and the JSON it prints is complete and consistent (no timing is asserted: the
figures are the benchmark's to report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_round_overhead_prints_consistent_figures(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_TMPDIR": "/tmp/coopflower-ray", "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "round_overhead.py"), "--json", "--clients", "4",
         "--rounds", "3", "--epochs", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,  # a hang guard only
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["clients"] == 4 and figures["rounds"] == 3
    assert 0.0 < figures["coordination_fraction"] < 1.0
    assert 0.0 < figures["coordination_fraction_steady"] < 1.0
    assert figures["coop_round_s"] > figures["coop_compute_s"] > 0
    assert figures["tx_per_round"] == 6.0 and figures["tx_per_round_fedavg"] == 1.0  # + seed shares
    assert figures["bytes_per_round_coop"] > figures["bytes_per_round_fedavg"] > 0
    # round 2 of 3 ran its vote, settle and record transactions behind round 3's training,
    # then opened round 3 (as round 1 opened round 2)
    assert figures["coop_overlapped_phases"] == ["open", "record", "settle", "vote"]
    parts = figures["coordination_breakdown_s"]
    assert set(parts) == {"nodes_outside_compute", "server_chain_steps", "messaging_and_rest"}
    assert abs(sum(parts.values()) - figures["coordination_s"]) < 0.01
    assert "[round 3/3] wait-chain" in proc.stderr


def test_app_overhead_runs_a_third_party_app_under_both_strategies(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_TMPDIR": "/tmp/coopflower-ray", "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "app_overhead.py"), "--json", "--clients", "4",
         "--rounds", "2"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,  # a hang guard only
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["app"] == "shapes32" and figures["clients"] == 4
    assert figures["accepted_per_round"] > 0 and figures["tx_per_round"] == 6.0
    assert figures["coop_coordinated_part_s"] > figures["coop_compute_s"] > 0
    assert 0.0 < figures["coordination_fraction"] < 1.0
    assert figures["coop_fed_eval_s"] > 0 and figures["fedavg_round_s"] > figures["fedavg_train_s"]
    parts = figures["coordination_breakdown_s"]
    assert abs(sum(parts.values()) - figures["coordination_s"]) < 0.01
    assert "[FedAvg round 2]" in proc.stderr and "[round 2/2] fed-eval" in proc.stderr

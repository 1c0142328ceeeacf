"""bench/robustness.py at its tiny size: one real simulation (6 SuperNodes, 2 rounds) runs
attack-free FedAvg, FedAvg under a sign flip scaled 10x at 2 of the 6 nodes, and the
coordinated round under the same attack. The JSON has the issue's shape; the coordinated round
rejects every malicious model and few honest ones, and ends clearly more accurate than FedAvg
under the same attack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROW_KEYS = {"dataset", "partition", "attack", "fraction", "arm", "accuracy",
            "malicious_rejected", "honest_rejected", "rounds"}

pytestmark = pytest.mark.slow


def _share(value: object) -> bool:
    return isinstance(value, float | int) and 0.0 <= float(value) <= 1.0


def test_tiny_robustness_run_rejects_an_obvious_attack(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_TMPDIR": "/tmp/coopflower-ray", "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "robustness.py"), "--tiny", "--json",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,  # a hang guard
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])

    # the shape
    assert set(doc) >= {"attack_free", "results", "not_run"}
    assert _share(doc["attack_free"]["shapes32"]["iid"])
    assert {r.get("arm") for r in doc["not_run"]} >= {"coordinated-improves-k3",
                                                      "coordinated-improves-k5"}
    rows = {r["arm"]: r for r in doc["results"]}
    assert set(rows) == {"fedavg", "coordinated-absolute-k3"}
    for r in doc["results"]:
        assert set(r) == ROW_KEYS, r
        assert (r["dataset"], r["partition"], r["attack"]) == ("shapes32", "iid", "signflip")
        assert r["fraction"] == 0.3 and r["rounds"] == 2 and _share(r["accuracy"])
    assert rows["fedavg"]["malicious_rejected"] is None
    assert rows["fedavg"]["honest_rejected"] is None
    assert not doc["errors"], doc["errors"]
    assert doc["config"]["attackers"]["0.3"] and len(doc["config"]["attackers"]["0.3"]) == 2

    # the obvious attack: every malicious model rejected, few honest ones
    coop, fed = rows["coordinated-absolute-k3"], rows["fedavg"]
    assert coop["malicious_rejected"] == 1.0, coop
    assert _share(coop["honest_rejected"]) and coop["honest_rejected"] <= 0.375, coop
    assert coop["accuracy"] >= fed["accuracy"] + 0.3, (coop, fed)

    # a progress line per run, and the PNG
    assert proc.stderr.count("[robustness] shapes32 ") == 3, proc.stderr[-3000:]
    assert (tmp_path / "out" / "accuracy-shapes32-iid.png").stat().st_size > 0

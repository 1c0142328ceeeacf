import json
from pathlib import Path

import pytest

from coopflower.simulate import run_simulate


def test_simulate_runs_both_strategies_and_writes_results(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert run_simulate(nodes=4, rounds=1, epochs=1, out_dir=str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "accuracy.png").stat().st_size > 5_000
    assert len(summary["fedavg_accuracy"]) == len(summary["coop_accuracy"]) == 2
    assert summary["coop_accuracy"][1] > summary["coop_accuracy"][0] + 0.2
    assert summary["coop_tx_per_round"] == [5] and summary["fedavg_tx"] == 1
    # the coordinated round moves more bytes (verifiers fetch blobs) than FedAvg's
    assert summary["coop_bytes_per_round"][0] > summary["fedavg_bytes_per_round"][0] > 0
    assert "round FedAvg acc" in capsys.readouterr().out

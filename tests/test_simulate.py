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
    # open, submissions, seed shares, votes, settle, MetaModel
    assert summary["coop_tx_per_round"] == [6] and summary["fedavg_tx"] == 1
    # the coordinated round moves more bytes (verifiers fetch blobs) than FedAvg's
    assert summary["coop_bytes_per_round"][0] > summary["fedavg_bytes_per_round"][0] > 0
    assert "round FedAvg acc" in capsys.readouterr().out


def test_the_main_jobs_screen_is_for_a_person(tmp_path: Path) -> None:
    """Flower's log lines and Python's and Ray's warnings go to the run's log file; the terminal
    keeps a line per phase per round and the results."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    env = {**os.environ, "COOPFLOWER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "coopflower", "simulate", "--nodes", "4",
                           "--rounds", "1", "--epochs", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    screen = proc.stdout + proc.stderr
    for noise in ("Warning", "INFO", "DEBUG", "WARNING", "still running"):
        assert noise not in screen, (noise, screen[-3000:])
    assert "[round 1/1] verify" in proc.stderr and "[FedAvg round 1] train" in proc.stderr
    log = (out / "simulate.log").read_text()
    assert "flwr" in log and "Warning" in log  # moved, not hidden

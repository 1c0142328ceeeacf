"""The shipped paper app under plain ``flwr run .``, as Flower ships it: Flower's own local
SuperLink, its default federation of 2 SuperNodes, no runtime install of dependencies
(``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``: the environment already has them).

Too small a federation stops the run with a message that says how many nodes came and how to
run more, instead of waiting forever; with 4 SuperNodes the coordinated round trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _flwr_run(tmp: Path, *args: str, timeout: float = 600) -> tuple[str, float]:
    env = {**os.environ, "FLWR_HOME": str(tmp / "flwr"),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "COOPFLOWER_HOME": str(tmp / "home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", ".",
                               "--stream", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        _stop_local_superlink(tmp / "flwr")
    return proc.stdout + proc.stderr, time.monotonic() - t0


def _stop_local_superlink(flwr_home: Path) -> None:
    """Stop the local SuperLink ``flwr run .`` started for ``flwr_home`` (Flower leaves it
    running on its default ports, where the next run, of this test or another, would find it:
    a SuperLink left by an earlier run made the default-federation test hang)."""
    import signal

    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"flower-superlink" in c for c in cmd) and any(
                str(flwr_home).encode() in c for c in cmd):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_plain_flwr_run_on_the_default_federation_stops_with_a_clear_message(
        tmp_path: Path) -> None:
    """connect-timeout 5 s, not the shipped 30 s: the simulation's 2 nodes are there at once,
    so the wait only shows that the run stops when it ends."""
    out, seconds = _flwr_run(tmp_path, "--run-config",
                             f"store='{tmp_path / 'store'}' connect-timeout=5.0")
    assert "the federation has 2 nodes after 5 s" in out, out[-3000:]
    assert "num-supernodes=4" in out  # it says how to run more
    assert seconds < 150  # connect-timeout 5 s plus Flower's start-up, not a hang


def test_flwr_run_with_four_supernodes_trains_the_paper_model(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    out, _ = _flwr_run(
        tmp_path, "--federation-config", "num-supernodes=4", "--run-config",
        f"num-server-rounds=1 epochs=1 store='{tmp_path / 'store'}' report-file='{report}'")
    assert report.exists(), out[-3000:]
    data = json.loads(report.read_text())
    central = data["central"]
    assert central["1"]["accuracy"] > central["0"]["accuracy"] + 0.3, central
    (rnd,) = data["rounds"]
    assert rnd["accepted"] >= 3, rnd

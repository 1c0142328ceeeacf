import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coopflower.app.attacks import NodeAttack
from coopflower.app.node import NodeConfigError
from coopflower.simulate import SimulateError, choose_attackers, run_simulate


def test_simulate_without_attack_runs_both_strategies_and_writes_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert run_simulate(nodes=4, rounds=1, epochs=1, out_dir=str(out), attack="none") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "accuracy.png").stat().st_size > 5_000
    assert len(summary["fedavg_accuracy"]) == len(summary["coop_accuracy"]) == 2
    assert summary["attack_free_accuracy"] == [] and summary["attackers"] == []
    assert summary["coop_accuracy"][1] > summary["coop_accuracy"][0] + 0.2
    # open, submissions, seed shares, votes, settle, MetaModel
    assert summary["coop_tx_per_round"] == [6] and summary["fedavg_tx"] == 1
    # the coordinated round moves more bytes (verifiers fetch blobs) than FedAvg's
    assert summary["coop_bytes_per_round"][0] > summary["fedavg_bytes_per_round"][0] > 0
    assert [d["decision"] for d in summary["coop_decisions"][0]] == ["accepted"] * 4
    assert [d["node"] for d in summary["coop_decisions"][0]] == [0, 1, 2, 3]
    screen = capsys.readouterr().out
    assert "round FedAvg acc" in screen and "coordinated accepted 4 (0 malicious)" in screen


def test_the_attackers_models_are_rejected_and_the_screen_is_for_a_person(
        tmp_path: Path) -> None:
    """The main job as the README runs it, small: one of 4 nodes flips its labels. The
    coordinated round rejects its model every round (FedAvg averages it), every round's
    accepted and rejected models are named, and Flower's log lines and Python's and Ray's
    warnings go to the run's log file."""
    out = tmp_path / "out"
    env = {**os.environ, "COOPFLOWER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "coopflower", "simulate", "--nodes", "4",
                           "--rounds", "2", "--epochs", "1", "--attackers", "1",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    screen = proc.stdout + proc.stderr
    for noise in ("Warning", "INFO", "DEBUG", "WARNING", "still running"):
        assert noise not in screen, (noise, screen[-3000:])
    assert "[round 1/2] verify" in proc.stderr and "[FedAvg round 1] train" in proc.stderr
    assert "FedAvg with no attacker" in proc.stderr
    log = (out / "simulate.log").read_text()
    assert "flwr" in log and "Warning" in log  # moved, not hidden

    summary = json.loads((out / "summary.json").read_text())
    (bad,) = summary["attackers"]
    assert summary["attack"] == "label-flip" and bad == choose_attackers(4, 1)[0]
    assert len(summary["attack_free_accuracy"]) == len(summary["fedavg_accuracy"]) == 3
    assert summary["fedavg_averaged_per_round"] == [4, 4]
    assert summary["coop_rejected_malicious_per_round"] == [1, 1]
    assert summary["coop_rejected_honest_per_round"] == [0, 0]
    for rnd in summary["coop_decisions"]:
        by_node = {d["node"]: d for d in rnd}
        assert by_node[bad]["malicious"] and by_node[bad]["status"] == "REJECTED"
        assert all(d["decision"] == "accepted" for p, d in by_node.items() if p != bad)
    # a quarter of the data poisoned: averaged in by FedAvg, left out by the coordinated round
    assert summary["coop_accuracy"][-1] > summary["fedavg_accuracy"][-1]
    assert (out / "accuracy.png").stat().st_size > 5_000
    for r in (1, 2):
        assert f"round {r}: coordinated accepted 3 (0 malicious), rejected 1 (1 malicious)" \
            in proc.stdout
        assert f"round {r}: FedAvg accepted all 4 models it received" in proc.stdout
    assert f"node  {bad} " in proc.stdout and "MALICIOUS (label-flip)" in proc.stdout


def test_bad_attack_settings_are_named() -> None:
    with pytest.raises(SimulateError, match="choose from"):
        run_simulate(attack="backdoor")
    with pytest.raises(SimulateError, match="attackers among"):
        run_simulate(nodes=3, attackers=4)
    with pytest.raises(NodeConfigError, match="attack='backdoor'"):
        NodeAttack.from_node_config({"attack": "backdoor"})
    proc = subprocess.run([sys.executable, "-m", "coopflower", "simulate", "--attack", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "choose from" in proc.stderr


def test_the_attacks_change_what_the_node_replies(tmp_path: Path) -> None:
    sent = {"w": np.zeros(3, np.float32), "n": np.array(7)}
    trained = {"w": np.ones(3, np.float32), "n": np.array(8)}

    def attack(kind: str, **cfg: object) -> NodeAttack:
        return NodeAttack.from_node_config({"attack": kind, "attack-dir": str(tmp_path), **cfg})

    flipped = attack("sign-flip", **{"attack-scale": 2.0}).reply(sent, trained, 0, 1)
    assert np.allclose(flipped["w"], -2.0) and flipped["n"] == 8
    assert attack("free-rider").reply(sent, trained, 0, 1) is sent
    assert not attack("free-rider").trains and attack("label-flip").trains
    assert list(attack("label-flip").labels(np.array([0, 3, 9]))) == [9, 6, 0]
    noisy = attack("noise", **{"attack-std": 0.5}).reply(sent, trained, 0, 1)["w"]
    assert 0.0 < np.abs(noisy - 1.0).max() < 5.0
    assert attack("none").reply(sent, trained, 0, 1) is trained
    # a copy: the global model of the node's previous round, slightly perturbed
    copy = attack("copy")
    first = copy.reply(sent, trained, 2, 1)
    assert np.allclose(first["w"], 0.0, atol=1e-3) and not np.array_equal(first["w"], sent["w"])
    newer = {"w": np.full(3, 5.0, np.float32), "n": np.array(7)}
    assert np.allclose(copy.reply(newer, trained, 2, 2)["w"], 0.0, atol=1e-3)
    assert np.allclose(copy.reply(newer, trained, 2, 3)["w"], 5.0, atol=1e-3)
    assert np.allclose(copy.reply(sent, trained, 2, 1)["w"], 0.0, atol=1e-3)  # a new run

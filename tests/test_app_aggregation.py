"""The app's ``aggregation`` run-config key: parsing, the initiator's disjoint fusion digits, and
a real Flower simulation of the shipped app with gradual fusion (Strategy II)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.simulation import run_simulation

from coopflower.app.client_app import app as client_app
from coopflower.app.server_app import held_out_parts, make_server_app
from coopflower.app.settings import AppSettings, SettingsError
from coopflower.strategy.coordinated import CoordinatedStrategy

BACKEND = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}}


@pytest.mark.parametrize("value", ["average", "I", "II"])
def test_aggregation_parses(value: str) -> None:
    assert AppSettings.from_run_config({"aggregation": value}).aggregation == value


def test_aggregation_defaults_to_average() -> None:
    assert AppSettings.from_run_config({}).aggregation == "average"


@pytest.mark.parametrize("value", ["III", "fusion", "", "ii"])
def test_bad_aggregation_raises_settings_error(value: str) -> None:
    with pytest.raises(SettingsError, match="aggregation"):
        AppSettings.from_run_config({"aggregation": value})


def test_encryption_with_fusion_is_refused() -> None:
    with pytest.raises(SettingsError, match="IVHE mod and its fusion mod do not combine"):
        AppSettings.from_run_config({"aggregation": "II", "encryption": "elementwise"})


def test_bad_fusion_epochs_raises_settings_error() -> None:
    with pytest.raises(SettingsError, match="fusion-epochs"):
        AppSettings.from_run_config({"fusion-epochs": 0})


def test_fusion_and_eval_digits_are_disjoint_and_outside_the_node_pool() -> None:
    from coopflower.app.data import node_split
    from coopflower.data.mnist import load_mnist

    labels = load_mnist().labels
    parts = held_out_parts(labels)
    fusion, held = set(parts["fusion"].tolist()), set(parts["eval"].tolist())
    assert fusion and held and not fusion & held
    assert set(np.unique(labels[parts["fusion"]]).tolist()) == set(range(10))
    assert np.array_equal(held_out_parts(labels)["fusion"], parts["fusion"])  # deterministic
    for pid in range(4):
        split = node_split(labels, pid, 4)
        node = set(split.train.tolist()) | set(split.verify.tolist())
        assert not node & fusion and not node & held


def test_gradual_fusion_in_the_shipped_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    settings = AppSettings.from_run_config({
        "strategy": "coordinated", "num-server-rounds": 2, "epochs": 1, "aggregation": "II",
        "fusion-epochs": 1, "store": str(tmp_path / "store"), "verifiers": 2, "quorum": 1,
        "min-accuracy-bps": 1000})
    out: dict[str, Any] = {}

    def done(strategy: Any, result: Any) -> None:
        out["strategy"], out["result"] = strategy, result

    run_simulation(make_server_app(settings, done), client_app, num_supernodes=4,
                   backend_config=BACKEND)  # type: ignore[arg-type]
    assert "result" in out, "the ServerApp did not finish"
    strategy, result = out["strategy"], out["result"]
    assert isinstance(strategy, CoordinatedStrategy)
    report, second = strategy.reports
    assert not report.failures and report.accepted and report.meta_cid
    # round 2: the MetaModel is not sent down; the contributors train their own models again
    assert not second.failures and len(second.submissions) == 4 and second.meta_cid
    rec = strategy.ledger.round_record(strategy.task_id, 1)
    assert rec.metamodel and rec.metamodel[0].args["cid"] == report.meta_cid
    from coopflower.blob import unpack_arrays
    from coopflower.fusion.metamodel import MetaModel
    from coopflower.fusion.serialize import arrays_to_metamodel
    from coopflower.models import model_factories

    assert strategy.aggregate_fn.last is not None  # the fusion ran, not averaging
    arrays, meta_info = unpack_arrays(strategy._open_store().get(report.meta_cid))
    assert meta_info["round"] == "1"
    assert isinstance(arrays_to_metamodel(arrays, model_factories()), MetaModel)
    accuracy = float(result.evaluate_metrics_serverapp[1]["accuracy"])
    assert math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0


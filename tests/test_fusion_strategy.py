"""Fusion as the coordinated strategy's aggregation step, in a real Flower simulation on the
embedded chain and store: the accepted models are fused into a MetaModel on the initiator's
own digits, its blob is stored by CID and recorded on the contract."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from coopflower.app.data import test_indices as initiator_indices
from coopflower.blob import unpack_arrays
from coopflower.data.mnist import load_mnist
from coopflower.data.partition import stratified_split
from coopflower.fusion import FusionConfig, arrays_to_metamodel, make_fusion_aggregate
from coopflower.models import MODEL_NAMES, build_model
from experiments.cases.common import meta_accuracy

PAPER = {name: partial(build_model, name) for name in MODEL_NAMES}  # the app's factories


def test_coordinated_round_fuses_accepted_models_into_a_recorded_metamodel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    from coopflower.app.client_app import app as client_app
    from coopflower.app.server_app import initial_arrays
    from coopflower.strategy.coordinated import CoordinatedStrategy, TaskConfig

    data = load_mnist()
    held_out = initiator_indices(data.labels)  # the initiator's digits, disjoint from the nodes'
    halves = stratified_split(data.labels[held_out], {"init": held_out.size // 2,
                                                      "test": held_out.size // 2})
    init, test = held_out[halves["init"]], held_out[halves["test"]]
    aggregate = make_fusion_aggregate(
        data.images[init], data.labels[init], "II",
        FusionConfig(epochs_stage1=3, epochs_stage2=3, augment_copies=1),
        factories=PAPER, heads="out")
    store = str(tmp_path / "store")
    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = CoordinatedStrategy(
            FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=4,
                   min_train_nodes=4),
            task=TaskConfig(k=3, quorum=2, metric="accuracy", min_metric=0.3), store=store,
            aggregate_fn=aggregate)
        out["result"] = strategy.start(
            grid=grid, initial_arrays=initial_arrays("table4"), num_rounds=1,
            train_config=ConfigRecord({"epochs": 1, "lr": 0.05, "batch-size": 32, "seed": 0,
                                       "model": "table4"}))
        out["strategy"] = strategy

    run_simulation(server, client_app, num_supernodes=4, backend_config={
        "client_resources": {"num_cpus": 1},  # type: ignore[dict-item]
        "init_args": {"num_cpus": min(2, os.cpu_count() or 1)},  # type: ignore[dict-item]
    })
    strategy = out["strategy"]
    (report,) = strategy.reports
    assert report.accepted >= 2 and report.meta_cid is not None
    assert aggregate.last is not None and aggregate.last.metrics.num_models == report.accepted
    blob = strategy._open_store().get(report.meta_cid)  # the store checks bytes against the CID
    arrays, _ = unpack_arrays(blob)
    meta = arrays_to_metamodel(arrays, PAPER)
    assert len(meta.extractors) == report.accepted
    info = strategy.ledger.round(strategy.task_id, report.chain_round)
    assert info.meta_digest != bytes(32)  # the MetaModel is recorded on the contract
    # the stored MetaModel is the fused one and classifies held-out digits
    acc = meta_accuracy(meta, data.images[test], data.labels[test])
    assert acc == pytest.approx(
        meta_accuracy(aggregate.last.meta, data.images[test], data.labels[test]))
    assert acc > 0.5
    assert set(np.asarray(out["result"].arrays["fusion.A"].numpy()).shape) == set(
        arrays["fusion.A"].shape)

"""The coordinated round with IVHE: contributors encrypt their models' first layer under the
initiator's public key (published by CID), verifiers vote on cipherspace accuracy, and the
initiator decrypts the accepted models before aggregating them (real Flower simulation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.simulation import run_simulation

from coopflower.app.client_app import app as client_app
from coopflower.app.server_app import make_server_app
from coopflower.app.settings import AppSettings


def test_encrypted_round_accepts_decrypts_and_aggregates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    out: dict[str, Any] = {}
    settings = AppSettings(strategy="coordinated", num_rounds=1, store=str(tmp_path / "store"),
                           encryption="elementwise", min_accuracy_bps=3000)
    run_simulation(make_server_app(settings, lambda s, r: out.update(s=s, r=r)), client_app,
                   num_supernodes=5,
                   backend_config={"client_resources": {"num_cpus": 1},  # type: ignore[arg-type]
                                   "init_args": {"num_cpus": 2}})
    strategy, result = out["s"], out["r"]
    (report,) = strategy.reports
    assert not report.failures and len(report.submissions) == 5 and report.accepted >= 3
    from coopflower.crypto import EncryptedModel

    store = strategy._open_store()
    for _, cid, *_ in report.submissions.values():  # what went over storage was encrypted
        EncryptedModel.from_bytes(store.get(cid))
    # the decrypted, averaged model is a working classifier
    assert float(result.evaluate_metrics_serverapp[1]["accuracy"]) > 0.5
    assert report.meta_cid is not None

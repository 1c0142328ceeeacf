"""The shipped app's run config parsing."""

from __future__ import annotations

import pytest

from coopflower.app.settings import AppSettings, SettingsError


def test_run_config_is_parsed_with_flower_keys() -> None:
    s = AppSettings.from_run_config({
        "num-server-rounds": 4, "strategy": "fedavg", "min-accuracy-bps": 8000,
        "chain": "http://127.0.0.1:8545", "log-fedavg": "false", "lr": 0.1, "epochs": 3,
        "encryption": "elementwise", "unknown-key": 1,
    })
    assert (s.num_rounds, s.strategy, s.min_accuracy_bps, s.chain) == (
        4, "fedavg", 8000, "http://127.0.0.1:8545")
    assert s.log_fedavg is False and s.lr == 0.1 and s.epochs == 3
    assert s.encryption == "elementwise"
    assert AppSettings.from_run_config({}).strategy == "coordinated"


@pytest.mark.parametrize("cfg", [
    {"strategy": "fedprox"}, {"num-server-rounds": 0}, {"quorum": 4, "verifiers": 3},
    {"min-accuracy-bps": 10001}, {"epochs": "many"}, {"encryption": "pairwise"},
])
def test_bad_run_config_is_refused(cfg: dict[str, object]) -> None:
    with pytest.raises(SettingsError):
        AppSettings.from_run_config(cfg)


def test_store_spec_defaults_to_the_embedded_store(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COOPFLOWER_STORE", str(tmp_path / "s"))
    assert AppSettings().store_spec() == str(tmp_path / "s")
    assert AppSettings(store="http://127.0.0.1:5001").store_spec() == "http://127.0.0.1:5001"

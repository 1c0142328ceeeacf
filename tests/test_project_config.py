import dataclasses
import tomllib
from pathlib import Path

from coopflower.app.settings import AppSettings

REPO = Path(__file__).resolve().parent.parent


def test_flwr_app_config_lists_every_setting_with_its_default() -> None:
    """`flwr run --run-config` only overrides keys the project lists: list them all."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    defaults = AppSettings()
    expected = {
        "num-server-rounds" if f.name == "num_rounds" else f.name.replace("_", "-"):
        getattr(defaults, f.name) for f in dataclasses.fields(AppSettings)
    }
    assert cfg == expected
    assert AppSettings.from_run_config(cfg) == defaults

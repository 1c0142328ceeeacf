"""bench/scaling.py at small sizes: the JSON it prints, constant transactions per round, the
PNG, clear errors for bad sizes; and its pure gas-limit arithmetic."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from coopflower.ledger.nodes import ANVIL_BIN

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "scaling.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scaling", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_scaling"] = mod  # dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        pytest.param(
            "anvil",
            marks=pytest.mark.skipif(not ANVIL_BIN.exists(), reason="npm tool anvil missing"),
        ),
    ],
)
def test_small_sizes_json_and_constant_tx_per_round(tmp_path: Path, backend: str) -> None:
    proc = _run(tmp_path, "--backend", backend, "--sizes", "8,4", "--repeats", "1", "--no-probe")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend and out["sizes"] == [4, 8] and out["baseline_n"] == 4
    assert out["failed"] == {}
    # one transaction per step, whatever the number of contributors
    assert out["tx_per_round"]["4"] == out["tx_per_round"]["8"]
    assert out["tx_per_round_constant"] is True
    small, big = out["per_size"]["4"], out["per_size"]["8"]
    for r, n in ((small, 4), (big, 8)):
        assert r["ok"] and r["n"] == n and r["votes"] == 3 * n
        assert set(r["step_gas"]) == {
            "register", "open", "submit", "votes", "settle", "record_metamodel"
        }  # fmt: skip
        assert len(r["tx_confirm_ms"]) == r["tx_per_round"]
        assert r["gas_per_round"] == sum(g for s, g in r["step_gas"].items() if s != "register")
        assert r["chain_s"] > 0 and r["sign_s"] > 0
    # batches carry every contributor: gas grows with n, constant steps do not
    for step in ("register", "submit", "votes", "settle"):
        assert big["step_gas"][step] > small["step_gas"][step], step
    for key in (
        "chain_s_ratio_8_vs_4",
        "gas_per_round_ratio_8_vs_4",
        "gas_per_contributor_ratio_8_vs_4",
        "tx_confirm_ms_mean_ratio_8_vs_4",
    ):
        assert out[key] > 0, key
    assert out["gas_per_round_ratio_8_vs_4"] > 1
    assert out["seed_table3"]["ms"] == {"10": 50, "50": 80, "100": 120, "200": 200, "500": 400}
    fit = out["max_contributors_one_block"]
    assert fit["n"] is not None and fit["n"] > 8 and fit["tx_gas_cap"] == out["tx_gas_cap"]
    png = Path(out["png"])
    assert png.parent == tmp_path and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("sizes", ["10,x", "3", ""])
def test_bad_sizes_are_refused_clearly(tmp_path: Path, sizes: str) -> None:
    proc = _run(tmp_path, "--backend", "embedded", "--sizes", sizes)
    assert proc.returncode == 2
    assert "--sizes" in proc.stderr


def test_linear_fit_and_block_limit_arithmetic() -> None:
    mod = _module()
    assert mod.fit_linear([(10, 1_000 + 10 * 50), (20, 1_000 + 20 * 50)]) == pytest.approx(
        (1_000, 50)
    )
    assert mod.fit_linear([(10, 5), (10, 6)]) is None

    def res(n: int) -> Any:
        r = mod.SizeResult(n)
        r.step_gas = {
            "register": 100 + 60 * n,
            "open": 80,
            "submit": 100 + 50 * n,
            "votes": 100 + 40 * n,
            "settle": 100 + 45 * n,
        }
        return r

    out = mod.max_contributors([res(10), res(20)], tx_gas_cap=10_100)
    assert out["batches"]["register"]["n_max"] == 166  # (10100 - 100) / 60
    assert out["n_register"] == 166 and out["n_round"] == 200  # submit: (10100 - 100) / 50
    assert out["limiting_round_batch"] == "submit" and out["n"] == 166
    assert mod.parse_sizes("50, 10,10") == [10, 50]

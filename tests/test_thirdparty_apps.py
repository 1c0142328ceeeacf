"""Flower apps the project did not shape around coopflower (``tests/apps/*``: the template's
``task.py``, ``client_app.py`` with ``@app.train``/``@app.evaluate``, ``server_app.py`` with
``FedAvg``) adopt the coordinated round by the diff shipped beside each (``coop.diff``, the
README's), and their own model learns; the chain (anvil) holds every submission and vote, and
``coopflower audit`` finds nothing wrong.

Each app runs as written, imported from a copy: its FedAvg version, then the patched one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from coopflower.ledger.nodes import anvil

APPS = Path(__file__).resolve().parent / "apps"
NODES = 4

pytestmark = [pytest.mark.slow, pytest.mark.node]


def diff_size(diff: str) -> tuple[int, int]:
    """Lines the diff adds and removes (file headers not counted)."""
    lines = [ln for ln in diff.splitlines() if not ln.startswith(("+++", "---"))]
    return (sum(ln.startswith("+") for ln in lines), sum(ln.startswith("-") for ln in lines))


def _copy(tmp: Path, name: str, patched: bool) -> Path:
    dst = tmp / ("coop" if patched else "fedavg") / name
    shutil.copytree(APPS / name, dst)
    if patched:
        subprocess.run(["patch", "-p1", "-s", "-i", "coop.diff"], cwd=dst, check=True)
        text = "".join(p.read_text() for p in sorted(dst.rglob("*.py")))
        diff = (dst / "coop.diff").read_text().splitlines()
        for line in diff:  # patch applied every line, not a fuzzy part of a hunk
            if line.startswith("+") and not line.startswith("+++"):
                assert line[1:] in text, f"the patch did not apply {line!r}"
    return dst


RUNNER = """
import sys
from flwr.simulation import run_simulation
sys.path.insert(0, sys.argv[1])
server = __import__(sys.argv[2] + ".server_app", fromlist=["app"]).app
client = __import__(sys.argv[2] + ".client_app", fromlist=["app"]).app
run_simulation(server_app=server, client_app=client, num_supernodes=int(sys.argv[3]),
               backend_config={"client_resources": {"num_cpus": 1}})
"""


def _simulate(folder: Path, package: str, result_file: Path) -> dict[str, float]:
    """Run the app as written in a fresh interpreter (Flower's simulation engine), with
    ``PYTHONPATH`` naming only its own folder, as ``flwr run`` would import it."""
    env = {**os.environ, "APP_RESULT_FILE": str(result_file), "PYTHONPATH": str(folder)}
    run = subprocess.run([sys.executable, "-c", RUNNER, str(folder), package, str(NODES)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert result_file.exists(), f"{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    doc = json.loads(result_file.read_text())
    return {r: float(m["accuracy"]) for r, m in doc["central"].items()}


@pytest.mark.parametrize(("name", "package", "chance"), [
    ("breastcancer", "bcapp", 0.63),  # an MLP on scikit-learn's data; chance: the majority class
    ("shapes32", "imgapp", 0.25),  # an unpadded CNN, functional ReLU, 3x32x32 in [-1, 1]
])
def test_a_fedavg_app_adopts_the_coordinated_round_by_its_diff(
    tmp_path: Path, name: str, package: str, chance: float, monkeypatch: pytest.MonkeyPatch,
) -> None:
    diff = (APPS / name / "coop.diff").read_text()
    added, removed = diff_size(diff)
    assert added <= 5 and removed <= 5, (added, removed)

    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    fedavg = _simulate(_copy(tmp_path, name, False), package,
                       tmp_path / "fedavg.json")

    with anvil() as node:
        report = tmp_path / "report.json"
        store = tmp_path / "store"
        monkeypatch.setenv("COOPFLOWER_CHAIN", node.url)
        monkeypatch.setenv("COOPFLOWER_CHAIN_KEY", node.private_keys[0])
        monkeypatch.setenv("COOPFLOWER_STORE", str(store))
        monkeypatch.setenv("COOPFLOWER_REPORT", str(report))
        coop = _simulate(_copy(tmp_path, name, True), package,
                         tmp_path / "coop.json")
        doc = json.loads(report.read_text())
        print(f"\n{name} central accuracy by round: FedAvg {fedavg}, coordinated {coop}")
        assert doc["strategy"] == "CoordinatedStrategy"
        for rnd in doc["rounds"]:
            assert rnd["submissions"] == NODES and rnd["votes"] == 3 * NODES, rnd
            assert not rnd["failures"], rnd["failures"]
        assert sum(r["accepted"] for r in doc["rounds"]) > 0
        assert run_audit(node.url, doc["contract"], str(store), doc["task"]) == 0

    for curve in (fedavg, coop):  # the app's own model learns, well above chance
        assert curve["0"] < curve["3"], curve
        assert curve["3"] >= chance + 0.2, curve

"""Flower apps the project did not shape around coopflower (``tests/apps/*``: the template's
``task.py``, ``client_app.py`` with ``@app.train``/``@app.evaluate``, ``server_app.py`` with
``FedAvg``) adopt the coordinated round by the diff shipped beside each (``coop.diff``, the
README's), and their own model learns; the chain (anvil) holds every submission and vote, and
``coopflower audit`` finds nothing wrong.

Each app runs as written, imported from a copy: its FedAvg version, then the patched one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from coopflower.ledger.nodes import ChainNode, anvil

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


@contextlib.contextmanager
def on_anvil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             ) -> Iterator[tuple[ChainNode, Path, Path]]:
    """An anvil node, and the environment an operator sets to point an app's unchanged code at
    it, at a store folder and at a report file (COOPFLOWER_CHAIN, _CHAIN_KEY, _STORE, _REPORT)."""
    with anvil() as node:
        report, store = tmp_path / "report.json", tmp_path / "store"
        monkeypatch.setenv("COOPFLOWER_CHAIN", node.url)
        monkeypatch.setenv("COOPFLOWER_CHAIN_KEY", node.private_keys[0])
        monkeypatch.setenv("COOPFLOWER_STORE", str(store))
        monkeypatch.setenv("COOPFLOWER_REPORT", str(report))
        yield node, report, store


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

    with on_anvil(tmp_path, monkeypatch) as (node, report, store):
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


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the SuperLink did not listen on {port} (exit code {proc.poll()})")


def test_the_coordinated_app_runs_under_flwr_run_on_a_simulation_superlink(
    tmp_path: Path,
) -> None:
    """``flwr run`` as a user types it, against a local simulation SuperLink (runtime
    dependency installation off: the app's dependencies are installed), on anvil."""
    from coopflower.ledger.nodes import free_port

    bin_dir = Path(sys.executable).parent
    app = _copy(tmp_path, "breastcancer", True)
    port = free_port()
    home = tmp_path / "flwr"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{port}"\n'
        'insecure = true\n')
    report, result = tmp_path / "report.json", tmp_path / "result.json"
    with anvil() as node:
        env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "COOPFLOWER_HOME": str(tmp_path / "coop"), "COOPFLOWER_CHAIN": node.url,
               "COOPFLOWER_CHAIN_KEY": node.private_keys[0],
               "COOPFLOWER_STORE": str(tmp_path / "store"),
               "COOPFLOWER_REPORT": str(report), "APP_RESULT_FILE": str(result)}
        with open(tmp_path / "superlink.log", "wb") as log:
            link = subprocess.Popen(
                [str(bin_dir / "flower-superlink"), "--insecure", "--simulation",
                 "--disable-runtime-dependency-installation", "--database",
                 str(tmp_path / "state.db"), "--host", "127.0.0.1", "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                _wait_listening(port, link)
                run = subprocess.run(
                    [str(bin_dir / "flwr"), "run", str(app), "local", "--federation-config",
                     f"num-supernodes={NODES}", "--stream"],
                    env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
            finally:
                os.killpg(link.pid, 15)
                link.wait(20)
        assert report.exists(), (run.stdout[-3000:], run.stderr[-3000:],
                                 (tmp_path / "superlink.log").read_text()[-3000:])
        doc = json.loads(report.read_text())
        assert all(r["submissions"] == NODES and not r["failures"] for r in doc["rounds"])
        assert run_audit(node.url, doc["contract"], str(tmp_path / "store"), doc["task"]) == 0
    central = json.loads(result.read_text())["central"]
    assert float(central["3"]["accuracy"]) >= 0.83 > float(central["0"]["accuracy"])

"""Deployment on loopback: a real ``flower-superlink`` and four ``flower-supernode`` processes,
anvil and a js-ipfs daemon; ``flwr run`` completes two coordinated rounds, the chain shows
them, and the audit replays them from chain and IPFS alone. One node trains its own Table I
architecture (heterogeneous contributors, so the initiator fuses the accepted models:
aggregation II; averaging takes one architecture, and a node whose model does not fit the
global one is a named train failure). Per-phase timings are printed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from coopflower.ledger import CoopLedger, connect
from coopflower.ledger.nodes import anvil, free_port
from coopflower.storage.daemon import ipfs_daemon

pytestmark = [pytest.mark.slow, pytest.mark.node]

VENV_BIN = Path(sys.executable).parent
NODES = 4

APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "coopdeploy"
version = "1.0.0"
description = "coopflower deployment test app"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "coopflower"

[tool.flwr.app.components]
serverapp = "coopflower.app.server_app:app"
clientapp = "coopflower.app.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 2
strategy = "coordinated"
model = "table4"
epochs = 1
verifiers = 3
quorum = 2
min-accuracy-bps = 2000
aggregation = "II"
fusion-epochs = 1
central-eval = true
chain = ""
chain-key = ""
store = ""
contract = ""
report-file = ""
timeout = 600.0
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    tail = log.read_text()[-3000:]
    raise RuntimeError(f"{what} did not listen on {port} in {timeout} s:\n{tail}")


class Procs:
    """Processes this test started, each in its own session, stopped by process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []  # type: ignore[var-annotated]

    def start(self, name: str, cmd: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs.append((proc, fh))
        return proc, log

    def stop(self) -> None:
        for proc, fh in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            fh.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    home = tmp_path / "flwr"
    home.mkdir()
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "COOPFLOWER_HOME": str(tmp_path / "coop")}
    logs = tmp_path / "logs"
    logs.mkdir()
    p = Procs(env, logs)
    try:
        yield p
    finally:
        p.stop()


def test_two_coordinated_rounds_on_superlink_supernodes_anvil_ipfs(
    tmp_path: Path, procs: Procs
) -> None:
    if shutil.which("flower-superlink", path=str(VENV_BIN)) is None:
        pytest.fail("flower-superlink is not installed in the virtual environment")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with anvil() as chain_node, ipfs_daemon(verbose=False) as ipfs_url:
        timings["anvil_and_ipfs_start_s"] = time.perf_counter() - t0
        initiator_key = chain_node.private_keys[0]
        ledger = CoopLedger.deploy(connect(chain_node.url, private_key=initiator_key))

        port = free_port()  # Flower 1.41: one HTTP port serves the runtime, control and fleet
        t = time.perf_counter()
        link, link_log = procs.start("superlink", [
            str(VENV_BIN / "flower-superlink"), "--insecure", "--isolation", "subprocess",
            "--disable-runtime-dependency-installation",
            "--database", str(tmp_path / "state.db"),
            "--host", "127.0.0.1", "--port", str(port),
        ])
        _wait_port(port, link, "flower-superlink", link_log)
        for i in range(NODES):
            cfg = (f"partition-id={i} num-partitions={NODES} "
                   f"key-file='{tmp_path / 'keys' / f'node{i}.json'}' store='{ipfs_url}'")
            if i == NODES - 1:  # a heterogeneous contributor (fusion): its own Table I model
                cfg += " model='table1_c1'"
            procs.start(f"supernode{i}", [
                str(VENV_BIN / "flower-supernode"), "--insecure",
                "--superlink", f"127.0.0.1:{port}", "--node-config", cfg,
                "--port", str(free_port()),
            ])
        timings["flower_start_s"] = time.perf_counter() - t

        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(APP_TOML)
        home = Path(procs.env["FLWR_HOME"])
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
            f'address = "127.0.0.1:{port}"\ninsecure = true\n')
        report = tmp_path / "report.json"
        run_config = (f"chain='{chain_node.url}' chain-key='{initiator_key}' "
                      f"store='{ipfs_url}' contract='{ledger.address}' "
                      f"report-file='{report}'")
        t = time.perf_counter()
        run = subprocess.run(
            [str(VENV_BIN / "flwr"), "run", str(app), "deploy", "--run-config", run_config,
             "--stream"],
            env=procs.env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        deadline = time.monotonic() + 600
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(1)  # without --stream support the run finishes in the background
        timings["flwr_run_s"] = time.perf_counter() - t
        assert report.exists(), (f"no report; flwr run said:\n{run.stdout[-4000:]}\n"
                                 f"{run.stderr[-4000:]}\nsuperlink:\n"
                                 f"{link_log.read_text()[-4000:]}")
        doc = json.loads(report.read_text())

        # the chain shows both rounds, decided and with their MetaModel CIDs
        task = doc["task"]
        assert doc["contract"] == ledger.address
        assert len(ledger.participants(task)) == NODES
        assert ledger.task(task).round_count == 2
        for rnd in (1, 2):
            info = ledger.round(task, rnd)
            assert info.state == 3 and info.n_submissions == NODES
            rec = ledger.round_record(task, rnd)
            assert len(rec.submissions) == NODES and len(rec.votes) == NODES * 3
            assert len(rec.round_settled) == 1
        assert any(r["accepted"] for r in doc["rounds"])
        # the heterogeneous node's blobs carry its own architecture
        from coopflower.blob import unpack_arrays
        from coopflower.storage import open_store

        store = open_store(ipfs_url)
        models = {unpack_arrays(store.get(e.args["cid"]))[1]["model"]
                  for e in ledger.round_record(task, 1).submissions}
        assert models == {"table4", "table1_c1"}
        for r in doc["rounds"]:
            assert not r["failures"], r["failures"]
            assert (r["meta_cid"] is not None) == bool(r["accepted"])
        # and an independent audit from chain and IPFS alone agrees with every decision
        audit = run_audit(chain_node.url, ledger.address, ipfs_url, task)
        assert audit == 0

    print("\ndeployment timings:", json.dumps({k: round(v, 2) for k, v in timings.items()}))
    print("setup (deploy, publish, register) s:", round(doc["setup_seconds"], 2))
    for r in doc["rounds"]:
        print(f"round {r['round']}: wall {r['wall_seconds']:.2f} s, phases " + json.dumps(
            {k: round(v, 2) for k, v in r["phase_seconds"].items()}) + f", tx {r['tx']}")

"""A third-party app in deployment on loopback: the breastcancer app (``tests/apps``, patched by
its ``coop.diff``) submitted by ``flwr run --stream`` to a real ``flower-superlink``
(deployment mode, not ``--simulation``) with four real ``flower-supernode`` processes, anvil as
the chain and a js-ipfs daemon as the store.

The operator points the app's unchanged code at the chain and the store through the
SuperLink's environment only (``COOPFLOWER_CHAIN``, ``COOPFLOWER_CHAIN_KEY``,
``COOPFLOWER_STORE``, ``COOPFLOWER_REPORT``; the ServerApp process the SuperLink spawns
inherits it); the nodes learn the store from the server's messages and keep their keys in their
own ``key-file``. The run completes, the app's MLP learns, every round's submissions and votes
are on chain, the audit replays them from anvil and IPFS alone, and the blobs are in the daemon.
"""

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
from typing import IO

import pytest

from coopflower.audit import run_audit
from coopflower.ledger import CoopLedger, connect
from coopflower.ledger.nodes import anvil, free_port
from coopflower.storage import open_store
from tests.test_thirdparty_apps import _copy

pytestmark = [pytest.mark.slow, pytest.mark.node]

VENV_BIN = Path(sys.executable).parent
NODES = 4
ROUNDS = 2  # the app ships num-server-rounds=3; 2 (set by --run-config) are enough to show a
# second round starting after the first one's settlement on chain, at ~60 s a round


class Procs:
    """Processes this test started, each in its own session (so its children, the ServerApp
    and ClientApp processes Flower spawns, share its process group), stopped by group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, cmd: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs.append((name, proc, fh))
        return proc, log

    def tails(self, chars: int = 2500) -> str:
        """The end of every log, for an assertion message."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):  # flwr-run.log (the ServerApp's) first
            text = log.read_text(errors="replace")[-chars * (2 if "run" in log.name else 1):]
            parts.append(f"----- {log.name} (tail) -----\n{text}")
        return "\n".join(parts)

    def dead(self) -> list[str]:
        return [f"{name} (exit {p.returncode})" for name, p, _ in self.procs
                if p.poll() is not None]

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):  # TERM every group, then wait, then KILL
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _, proc, fh in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            try:  # the group may outlive its leader (a ClientApp mid-stage)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            fh.close()


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, procs: Procs,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # a hang guard: it listens in 1-3 s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited ({proc.returncode}):\n{procs.tails()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on {port} in {timeout} s:\n{procs.tails()}")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    logs = tmp_path / "logs"
    logs.mkdir()
    home = tmp_path / "flwr"
    home.mkdir()
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "COOPFLOWER_HOME": str(tmp_path / "coop")}
    for var in ("COOPFLOWER_CHAIN", "COOPFLOWER_CHAIN_KEY", "COOPFLOWER_CONTRACT",
                "COOPFLOWER_STORE", "COOPFLOWER_REPORT", "APP_RESULT_FILE"):
        env.pop(var, None)  # only what this test sets reaches the processes
    p = Procs(env, logs)
    try:
        yield p
    finally:
        p.stop()


def test_the_coordinated_breastcancer_app_runs_on_superlink_supernodes_anvil_ipfs(
    tmp_path: Path, procs: Procs, shared_ipfs_daemon: str,
) -> None:
    for tool in ("flower-superlink", "flower-supernode", "flwr"):
        if shutil.which(tool, path=str(VENV_BIN)) is None:
            pytest.fail(f"{tool} is not installed in the virtual environment")
    app = _copy(tmp_path, "breastcancer", True)
    report = tmp_path / "report.json"
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ipfs_url = shared_ipfs_daemon  # the session's js-ipfs daemon
    with anvil() as chain_node:
        timings["anvil_start_s"] = time.perf_counter() - t0
        initiator_key = chain_node.private_keys[0]
        # the operator's side: the SuperLink (and the ServerApp it spawns) sees these
        link_env = {**procs.env, "COOPFLOWER_CHAIN": chain_node.url,
                    "COOPFLOWER_CHAIN_KEY": initiator_key, "COOPFLOWER_STORE": ipfs_url,
                    "COOPFLOWER_REPORT": str(report)}

        t = time.perf_counter()
        port = free_port()  # Flower 1.42: one HTTP port serves the runtime, control and fleet APIs
        node_env, procs.env = procs.env, link_env
        link, _ = procs.start("superlink", [
            str(VENV_BIN / "flower-superlink"), "--insecure", "--isolation", "subprocess",
            "--disable-runtime-dependency-installation",
            "--database", str(tmp_path / "state.db"),
            "--host", "127.0.0.1", "--port", str(port),
        ])
        procs.env = node_env  # the nodes know nothing of the chain or the store
        _wait_port(port, link, "flower-superlink", procs)
        keys = tmp_path / "keys"
        nodes = []
        for i in range(NODES):  # each its own ClientAppIo port and key file
            node_port = free_port()
            node, _ = procs.start(f"supernode{i}", [
                str(VENV_BIN / "flower-supernode"), "--insecure",
                "--superlink", f"127.0.0.1:{port}",
                "--node-config", (f"partition-id={i} num-partitions={NODES} "
                                  f"key-file='{keys / f'node{i}.json'}'"),
                "--host", "127.0.0.1", "--port", str(node_port),
            ])
            nodes.append((node_port, node))
        for i, (node_port, node) in enumerate(nodes):
            _wait_port(node_port, node, f"flower-supernode {i}", procs)
        timings["flower_start_s"] = time.perf_counter() - t

        home = Path(procs.env["FLWR_HOME"])
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
            f'address = "127.0.0.1:{port}"\ninsecure = true\n')
        t = time.perf_counter()
        # --stream: the ServerApp's log (the coordinated round's phases) comes back here
        with open(procs.logs / "flwr-run.log", "wb") as out:
            try:
                run = subprocess.run(
                    [str(VENV_BIN / "flwr"), "run", str(app), "deploy", "--stream",
                     "--run-config", f"num-server-rounds={ROUNDS}"],
                    env=procs.env, stdout=out, stderr=subprocess.STDOUT, timeout=480,
                    cwd=tmp_path)
            except subprocess.TimeoutExpired as exc:  # a hang guard: the run takes 2-3 min
                raise AssertionError(f"flwr run did not finish in {exc.timeout} s:\n"
                                     f"{procs.tails()}") from None
        timings["flwr_run_s"] = time.perf_counter() - t
        said = f"flwr run exited {run.returncode}\n{procs.tails()}"
        assert run.returncode == 0, said
        assert report.exists(), f"the ServerApp wrote no report\n{said}"
        doc = json.loads(report.read_text())

        # the app's own model learns, well above chance (the majority class is ~0.63)
        central = {int(r): float(m["accuracy"]) for r, m in doc["central"].items()}
        assert sorted(central) == list(range(ROUNDS + 1)), (central, said)
        assert central[ROUNDS] > 0.8 and central[ROUNDS] > central[0], (central, said)

        # every round: all nodes submitted, all votes cast, no failures -- on chain as well
        assert doc["strategy"] == "CoordinatedStrategy"
        assert len(doc["rounds"]) == ROUNDS, doc["rounds"]
        for r in doc["rounds"]:
            assert r["submissions"] == NODES and r["votes"] == 3 * NODES, (r, said)
            assert not r["failures"], (r["failures"], said)
        assert any(r["accepted"] for r in doc["rounds"]), doc["rounds"]
        task = doc["task"]
        ledger = CoopLedger.at(connect(chain_node.url, private_key=initiator_key),
                               doc["contract"])
        assert len(ledger.participants(task)) == NODES
        assert ledger.task(task).round_count == ROUNDS
        for r in doc["rounds"]:
            rec = ledger.round_record(task, r["chain_round"])
            assert len(rec.submissions) == NODES and len(rec.votes) == NODES * 3, r
            assert len(rec.round_settled) == 1, r

        # the blobs are in the IPFS daemon: every submission, and each accepted round's
        # MetaModel record, fetched back from it by CID
        store = open_store(ipfs_url)
        for r in doc["rounds"]:
            for e in ledger.round_record(task, r["chain_round"]).submissions:
                assert store.has(e.args["cid"]) and store.get(e.args["cid"]), r
            assert (r["meta_cid"] is not None) == bool(r["accepted"]), r
            if r["meta_cid"]:
                assert store.get(bytes.fromhex(r["meta_cid"])), r

        # and an independent audit from chain and IPFS alone agrees with every decision
        audit_log = tmp_path / "audit.txt"
        with open(audit_log, "w") as fh:
            code = run_audit(chain_node.url, doc["contract"], ipfs_url, task, stream=fh)
        assert code == 0, audit_log.read_text()
        assert "0 discrepancies" in audit_log.read_text()
        assert not procs.dead(), f"{procs.dead()}\n{procs.tails()}"

    timings["total_s"] = time.perf_counter() - t0
    print("\nthird-party deployment timings:",
          json.dumps({k: round(v, 2) for k, v in timings.items()}))
    print("central accuracy by round:", central)
    for r in doc["rounds"]:
        print(f"round {r['round']}: wall {r['wall_seconds']:.2f} s, accepted {r['accepted']}, "
              f"tx {r['tx']}")

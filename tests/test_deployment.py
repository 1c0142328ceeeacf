"""Deployment on loopback as a lab would run it: a real ``flower-superlink`` over TLS (a CA
and a server certificate the test makes) with SuperNode authentication
(``--enable-supernode-auth``: each node's P-384 public key registered by ``flwr supernode
register`` first; a node with an unregistered key is refused), three ``flower-supernode``
processes (k = 2 verifiers a submission: the other two), anvil and a js-ipfs daemon; ``flwr
run`` completes two coordinated rounds, the chain shows them, and the audit replays them from
chain and IPFS alone. One node trains its own Table I architecture (heterogeneous
contributors, so the initiator fuses the accepted models: aggregation II; averaging takes one
architecture, and a node whose model does not fit the global one is a named train failure).
Per-phase timings are printed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from coopflower.ledger import CoopLedger, connect
from coopflower.ledger.nodes import anvil, free_port
from tests.fixtures_tls import (
    Certs,
    make_certs,
    make_node_key,
    register_supernode,
    superlink_tls_args,
    supernode_tls_args,
    write_flwr_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.node]

VENV_BIN = Path(sys.executable).parent
NODES = 3  # k = 2: each submission verified by both other nodes (a fourth node
# added a ClientApp process to every phase, ~4 s each, and k = 3 twice the evaluations)
K = 2

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

    def start(self, name: str, cmd: list[str],
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env=self.env if env is None else env, start_new_session=True)
        self.procs.append((proc, fh))
        return proc, log

    def stop(self) -> None:
        """TERM every group first, then wait for each (6 s at most, then KILL: Flower forces
        its own exit 5 s after a TERM): the groups wind down together, not one after another
        (17-18 s of teardown when they did, 13 s with 10 s waits)."""
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, fh in reversed(self.procs):
            try:
                proc.wait(6)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            fh.close()


def start_lab(procs: Procs, tmp_path: Path, nodes: int, ipfs_url: str,
              node_superlink: Callable[[int], str] | None = None,
              node_args: tuple[str, ...] = (),
              env_for_nodes: dict[str, str] | None = None) -> tuple[int, Certs]:
    """A lab's deployment on loopback: certificates, a ``flower-superlink`` over TLS with
    SuperNode authentication, ``nodes`` keys registered with ``flwr supernode register`` and
    ``nodes`` ``flower-supernode`` processes (the last one a heterogeneous contributor with
    its own Table I model) signing with them, connecting to the address
    ``node_superlink(port)`` gives (default: the SuperLink itself, ``127.0.0.1:port``), in
    ``env_for_nodes`` (default: ``procs.env``).
    ``$FLWR_HOME/config.toml`` names it ``deploy``. Returns the port and the certificates."""
    port = free_port()  # Flower 1.41+: one HTTP port serves the runtime, control and fleet
    certs = make_certs(tmp_path / "certs")
    link, link_log = procs.start("superlink", [
        str(VENV_BIN / "flower-superlink"), *superlink_tls_args(certs),
        "--isolation", "subprocess", "--disable-runtime-dependency-installation",
        "--database", str(tmp_path / "state.db"),
        "--host", "127.0.0.1", "--port", str(port),
    ])
    _wait_port(port, link, "flower-superlink", link_log)
    write_flwr_config(Path(procs.env["FLWR_HOME"]), f"127.0.0.1:{port}", certs)
    keys = [tmp_path / "auth" / f"node{i}" for i in range(nodes)]
    with ThreadPoolExecutor(nodes) as pool:  # each a flwr CLI process, ~2 s of imports
        node_ids = set(pool.map(lambda k: register_supernode(
            VENV_BIN / "flwr", make_node_key(k), procs.env), keys))
    assert len(node_ids) == nodes
    node_address = node_superlink(port) if node_superlink else f"127.0.0.1:{port}"
    for i in range(nodes):
        cfg = (f"partition-id={i} num-partitions={nodes} "
               f"key-file='{tmp_path / 'keys' / f'node{i}.json'}' store='{ipfs_url}'")
        if i == nodes - 1:  # a heterogeneous contributor (fusion): its own Table I model
            cfg += " model='table1_c1'"
        procs.start(f"supernode{i}", [
            str(VENV_BIN / "flower-supernode"), *supernode_tls_args(certs, keys[i]),
            "--superlink", node_address, "--node-config", cfg,
            "--port", str(free_port()), *node_args,
        ], env=env_for_nodes)
    return port, certs


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
    tmp_path: Path, procs: Procs, shared_ipfs_daemon: str
) -> None:
    if shutil.which("flower-superlink", path=str(VENV_BIN)) is None:
        pytest.fail("flower-superlink is not installed in the virtual environment")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ipfs_url = shared_ipfs_daemon  # the session's js-ipfs daemon
    with anvil() as chain_node:
        timings["anvil_start_s"] = time.perf_counter() - t0
        initiator_key = chain_node.private_keys[0]
        ledger = CoopLedger.deploy(connect(chain_node.url, private_key=initiator_key))

        t = time.perf_counter()
        port, certs = start_lab(procs, tmp_path, NODES, ipfs_url)
        timings["flower_start_s"] = time.perf_counter() - t
        stranger_key = tmp_path / "auth" / "unregistered"
        make_node_key(stranger_key)  # a key the SuperLink never registered
        stranger, stranger_log = procs.start("supernode-unregistered", [
            str(VENV_BIN / "flower-supernode"), *supernode_tls_args(certs, stranger_key),
            "--superlink", f"127.0.0.1:{port}", "--max-retries", "1",
            "--port", str(free_port()),
        ])
        try:  # the SuperLink refuses a key it has not registered: the node gives up
            stranger.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"an unregistered SuperNode was not refused:\n{stranger_log.read_text()}")
        assert stranger.returncode != 0, stranger_log.read_text()
        assert "Failed to activate SuperNode" in stranger_log.read_text()

        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(APP_TOML.replace("verifiers = 3", f"verifiers = {K}"))
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
                                 f"{(procs.logs / 'superlink.log').read_text()[-4000:]}")
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
            assert len(rec.submissions) == NODES and len(rec.votes) == NODES * K
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


def test_the_lab_script_makes_certificates_and_node_keys_flower_reads(tmp_path: Path) -> None:
    """``edge/lab-certs.sh``: a CA, the SuperLink's certificate for the hosts named, and node
    keys that Flower's own loaders take; ``edge/supernode.sh`` passes them on, and refuses a
    node key over plaintext."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from flwr.cli.supernode.register import try_load_public_key

    edge = Path(__file__).resolve().parent.parent / "edge"
    out = tmp_path / "lab"
    made = subprocess.run(["bash", str(edge / "lab-certs.sh"), str(out), "127.0.0.1,lab.test",
                           "node0", "node1"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["lab.test"]
    for node in ("node0", "node1"):
        key = load_ssh_private_key((out / "nodes" / node).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
        assert try_load_public_key(out / "nodes" / f"{node}.pub")
    env = {"PATH": os.environ["PATH"], "SUPERLINK": "127.0.0.1:9092", "PARTITION_ID": "0",
           "NUM_PARTITIONS": "2", "ROOT_CERT": str(out / "ca.crt"),
           "AUTH_KEY": str(out / "nodes" / "node0")}
    dry = subprocess.run(["bash", str(edge / "supernode.sh"), "--dry-run"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    argv = dry.stdout.split()
    assert argv[argv.index("--root-certificates") + 1] == str(out / "ca.crt")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == env["AUTH_KEY"]
    plain = subprocess.run(["bash", str(edge / "supernode.sh"), "--dry-run"],
                           env={**env, "INSECURE": "1"}, capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode != 0 and "AUTH_KEY needs TLS" in plain.stderr

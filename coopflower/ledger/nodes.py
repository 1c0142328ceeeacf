"""Start real chain nodes on loopback for tests, demos and users.

- :func:`anvil`: foundry's anvil (npm ``@foundry-rs/anvil-linux-amd64``, in tools/evm).
- :func:`clique`: a genuine clique Proof-of-Authority chain with one sealer and a 1 s period,
  run by ``@ethereumjs/client`` 0.9.0 (tools/clique), from a geth-style genesis.

Both are context managers yielding a :class:`ChainNode` (URL, funded private keys, start-up
time) and stop the process on exit. They raise :class:`NodeToolMissing` naming the npm package
to install (``bash scripts/setup.sh --node``) when a tool is absent.

Example::

    with anvil() as node:
        ledger = CoopLedger.deploy(connect(node.url, private_key=node.private_keys[0]))
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account import Account

from .errors import NodeStartError, NodeToolMissing

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("COOPFLOWER_TOOLS", REPO / "tools"))
ANVIL_BIN = TOOLS / "evm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
CLIQUE_CLI = TOOLS / "clique/node_modules/@ethereumjs/client/dist/bin/cli.js"
# ethereumjs client 0.9.0 imports readline's default export, which Node's CJS module lacks
_READLINE_FIX = "const rl = require('readline'); if (!rl.default) rl.default = rl;\n"
# well-known dev keys, funded in the clique genesis (never use them on a public network)
CLIQUE_SEALER_KEY = "0x" + "c1" * 32
CLIQUE_FUNDED_KEYS = ["0x" + f"{b:02x}" * 32 for b in (0xA1, 0xA2, 0xA3)]


@dataclass(frozen=True)
class ChainNode:
    """A running node: its JSON-RPC URL, funded keys, kind, and seconds it took to answer."""

    url: str
    private_keys: list[str]
    kind: str
    chain_id: int
    startup_s: float
    pid: int


def free_port() -> int:
    """Returns: a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def anvil(
    block_time: float | None = None, accounts: int = 10, timeout: float = 30.0,
    gas_limit: int | None = None, extra_args: Sequence[str] = (),
) -> Iterator[ChainNode]:
    """Run anvil on a free loopback port.

    Args:
        block_time: seconds between blocks (None: mine on every transaction).
        accounts: funded dev accounts. timeout: seconds to wait for JSON-RPC.
        gas_limit: the block gas limit (None: anvil's, 30 M).
        extra_args: more of anvil's options (``--disable-block-gas-limit``: a transaction or
            call may use more gas than a block holds).
    Yields: the :class:`ChainNode` (keys parsed from anvil's own output).
    """
    if not ANVIL_BIN.exists():
        raise NodeToolMissing(
            f"anvil not found at {ANVIL_BIN}: run `bash scripts/setup.sh --node` "
            "(npm @foundry-rs/anvil-linux-amd64@1.7.1 in tools/evm)"
        )
    port = free_port()
    cmd = [str(ANVIL_BIN), "--host", "127.0.0.1", "--port", str(port), "--accounts", str(accounts)]
    if block_time is not None:
        cmd += ["--block-time", str(block_time)]
    if gas_limit is not None:
        cmd += ["--gas-limit", str(gas_limit)]
    cmd += list(extra_args)
    with tempfile.TemporaryDirectory(prefix="coop-anvil-") as tmp:
        log = Path(tmp) / "anvil.log"
        with _process(cmd, log, cwd=tmp) as proc:
            t0 = time.monotonic()
            url = f"http://127.0.0.1:{port}"
            chain_id = _wait_rpc(url, proc, log, timeout, "anvil")
            keys = re.findall(r"\(\d+\) (0x[0-9a-fA-F]{64})", log.read_text())
            if not keys:
                raise NodeStartError(
                    f"anvil printed no private keys; log: {log.read_text()[-2000:]}"
                )
            yield ChainNode(url, keys, "anvil", chain_id, time.monotonic() - t0, proc.pid)


def clique_genesis(
    sealer: str, funded: list[str], chain_id: int = 7331, period: int = 1
) -> dict[str, object]:
    """A geth-style clique genesis: one sealer in extraData, funded accounts, London rules.

    Args:
        sealer: the sealer's address. funded: addresses to fund. chain_id, period: chain rules.
    Returns: the genesis as a dict.
    """
    forks = [
        "homestead",
        "eip150",
        "eip155",
        "eip158",
        "byzantium",
        "constantinople",
        "petersburg",
        "istanbul",
        "berlin",
        "london",
    ]
    config: dict[str, object] = {"chainId": chain_id, **{f"{f}Block": 0 for f in forks}}
    config["clique"] = {"period": period, "epoch": 30000}
    alloc = {a[2:].lower(): {"balance": hex(10**24)} for a in [sealer, *funded]}
    return {
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": "0x" + "00" * 32 + sealer[2:].lower() + "00" * 65,
        "gasLimit": hex(30_000_000),
        "difficulty": "0x1",
        "mixHash": "0x" + "00" * 32,
        "coinbase": "0x" + "00" * 20,
        "alloc": alloc,
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": "0x" + "00" * 32,
    }


@contextmanager
def clique(timeout: float = 90.0, chain_id: int = 7331) -> Iterator[ChainNode]:
    """Run a one-sealer clique PoA chain (period 1 s) with @ethereumjs/client 0.9.0.

    Yields: the :class:`ChainNode`; ``private_keys`` are funded accounts (not the sealer).
    Receipts from this client have no ``status`` field; use ``connect(url, poa=True)``.
    """
    if not CLIQUE_CLI.exists():
        raise NodeToolMissing(
            f"ethereumjs client not found at {CLIQUE_CLI}: run `bash scripts/setup.sh --node` "
            "(npm @ethereumjs/client@0.9.0 in tools/clique)"
        )
    node_bin = shutil.which("node")
    if node_bin is None:
        raise NodeToolMissing("node (Node.js) is not on PATH; the clique chain needs it")
    sealer = Account.from_key(CLIQUE_SEALER_KEY).address
    funded = [Account.from_key(k).address for k in CLIQUE_FUNDED_KEYS]
    rpc_port, p2p_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="coop-clique-") as tmp:
        d = Path(tmp)
        (d / "fix.cjs").write_text(_READLINE_FIX)
        (d / "genesis.json").write_text(json.dumps(clique_genesis(sealer, funded, chain_id)))
        (d / "sealer.key").write_text(CLIQUE_SEALER_KEY[2:])
        cmd = [
            node_bin,
            "-r",
            str(d / "fix.cjs"),
            str(CLIQUE_CLI),
            "--gethGenesis",
            str(d / "genesis.json"),
            "--dataDir",
            str(d / "data"),
            "--rpc",
            "--rpcAddr",
            "127.0.0.1",
            "--rpcPort",
            str(rpc_port),
            "--port",
            str(p2p_port),
            "--mine",
            "--unlock",
            str(d / "sealer.key"),
            "--saveReceipts",
            "--logFile",
            "false",
            "--maxPeers",
            "0",
            "--discDns",
            "false",
            "--discV4",
            "false",
            "--logLevel",
            "warn",
        ]
        with _process(cmd, d / "node.log", cwd=tmp) as proc:
            t0 = time.monotonic()
            url = f"http://127.0.0.1:{rpc_port}"
            cid = _wait_rpc(url, proc, d / "node.log", timeout, "clique (ethereumjs)", need_block=1)
            yield ChainNode(
                url, list(CLIQUE_FUNDED_KEYS), "clique", cid, time.monotonic() - t0, proc.pid
            )


@contextmanager
def _process(cmd: list[str], log: Path, cwd: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:  # anvil exits at once; ethereumjs takes ~8 s to shut down: its data is throwaway
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_rpc(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    what: str,
    need_block: int = 0,
) -> int:
    """Poll JSON-RPC until it answers (and has ``need_block`` blocks). Returns: the chain id."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeStartError(
                f"{what} exited with code {proc.returncode}; log: {log.read_text()[-2000:]}"
            )
        try:
            with httpx.Client(timeout=2.0) as client:
                cid = client.post(
                    url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                )
                bn = client.post(
                    url, json={"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}
                )
            if int(bn.json()["result"], 16) >= need_block:
                return int(cid.json()["result"], 16)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise NodeStartError(
        f"{what} did not answer at {url} within {timeout:.0f} s ({last}); "
        f"log: {log.read_text()[-2000:]}"
    )

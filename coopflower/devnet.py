"""``coopflower devnet``: a local chain and IPFS node for runs on real parts.

Starts anvil (or a one-sealer clique PoA chain) and a js-ipfs daemon on loopback, deploys the
CoopLedger contract, prints the URLs, the contract address and a funded initiator key as the
run config the shipped app takes, and keeps them up until interrupted (or ``--seconds`` pass).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator

from coopflower.ledger import CoopLedger, connect
from coopflower.ledger.nodes import ChainNode, anvil, clique


@contextlib.contextmanager
def _chain(kind: str) -> Iterator[ChainNode]:
    if kind == "anvil":
        with anvil(block_time=1.0) as node:
            yield node
    elif kind == "clique":
        with clique() as node:
            yield node
    else:
        raise ValueError(f"unknown chain kind {kind!r}: anvil or clique")


def run_devnet(kind: str = "anvil", with_ipfs: bool = True, seconds: float | None = None) -> int:
    """Start the nodes, deploy the contract, print how to use them, wait.

    Args:
        kind: ``anvil`` or ``clique``.
        with_ipfs: also start a js-ipfs daemon.
        seconds: stop after this long (``None``: until Ctrl-C).

    Returns:
        The process exit code (0).
    """
    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the context managers: the nodes are stopped

    signal.signal(signal.SIGTERM, _stop)
    with contextlib.ExitStack() as stack:
        node = stack.enter_context(_chain(kind))
        store = ""
        if with_ipfs:
            from coopflower.storage.daemon import ipfs_daemon

            store = stack.enter_context(ipfs_daemon())
        key = node.private_keys[0]
        ledger = CoopLedger.deploy(connect(node.url, private_key=key))
        config = {"chain": node.url, "chain-key": key, "contract": ledger.address, "store": store}
        print(f"[devnet] {kind} at {node.url} (chain id {node.chain_id}, up in "
              f"{node.startup_s:.1f} s); CoopLedger at {ledger.address}", flush=True)
        if store:
            print(f"[devnet] IPFS Kubo RPC API at {store}", flush=True)
        run_config = " ".join(f'{k}="{v}"' for k, v in config.items() if v)
        print(f"[devnet] flwr run . --run-config '{run_config}'", flush=True)
        print(json.dumps(config), flush=True)
        deadline = None if seconds is None else time.monotonic() + seconds
        with contextlib.suppress(KeyboardInterrupt):
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
    return 0

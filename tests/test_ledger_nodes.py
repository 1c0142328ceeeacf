"""Node launchers and backend selection: clear errors when tools or keys are missing; anvil
starts, answers and stops."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from coopflower.ledger import LedgerError, NodeToolMissing, connect
from coopflower.ledger import nodes as nodes_mod


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(nodes_mod, "ANVIL_BIN", tmp_path / "nope/anvil")
    monkeypatch.setattr(nodes_mod, "CLIQUE_CLI", tmp_path / "nope/cli.js")
    with pytest.raises(NodeToolMissing, match="anvil-linux-amd64"):
        with nodes_mod.anvil():
            pass
    with pytest.raises(NodeToolMissing, match="@ethereumjs/client@0.9.0"):
        with nodes_mod.clique():
            pass


def test_connect_errors() -> None:
    with pytest.raises(LedgerError, match="unsupported chain URL"):
        connect("ws://127.0.0.1:1")
    with pytest.raises(LedgerError, match="private key"):
        connect("http://127.0.0.1:1")
    with pytest.raises(LedgerError, match="invalid private key"):
        connect("http://127.0.0.1:1", private_key="0x1234")
    port = nodes_mod.free_port()
    with pytest.raises(LedgerError, match="does not answer"):
        connect(f"http://127.0.0.1:{port}", private_key="0x" + "11" * 32)


def test_clique_genesis_names_one_sealer() -> None:
    g = nodes_mod.clique_genesis("0x" + "ab" * 20, ["0x" + "cd" * 20])
    extra = str(g["extraData"])
    assert len(extra) == 2 + 2 * (32 + 20 + 65) and ("ab" * 20) in extra
    assert g["config"]["clique"] == {"period": 1, "epoch": 30000}  # type: ignore[index]


@pytest.mark.node
def test_anvil_starts_and_stops() -> None:
    try:
        with nodes_mod.anvil(accounts=2) as node:
            chain = connect(node.url, private_key=node.private_keys[0])
            assert chain.chain_id == node.chain_id == 31337 and not chain.poa and chain.can_mine
            before = chain.block_number()
            chain.mine(3)
            assert chain.block_number() == before + 3
            pid = node.pid
            print(f"anvil answered after {node.startup_s:.2f} s")
    except NodeToolMissing as exc:
        pytest.skip(str(exc))
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # the process is gone (reaped) once the context exits
            os.kill(pid, 0)
            time.sleep(0.1)


def test_bad_arguments_raise_ledger_error() -> None:
    from coopflower.ledger import CoopLedger, TaskParams

    led = CoopLedger.deploy(connect())
    with pytest.raises(LedgerError, match="do not fit the contract's ABI"):
        led.publish_task(TaskParams(spec_hash=b"\x00" * 32, k=-1), 0)
    with pytest.raises(LedgerError, match="negative value"):
        led.fund_task(1, -5)

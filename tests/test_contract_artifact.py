"""The shipped artifact matches the Solidity source: recompiled with the pinned solc-js."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from coopflower.ledger import CoopLedger, connect
from coopflower.ledger.artifact import ARTIFACT_DIR, load_artifact
from coopflower.ledger.eip712 import REGISTRATION_TYPE, SUBMISSION_TYPE, VOTE_TYPE

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "contracts/CoopLedger.sol"
SOLC = REPO / "tools/evm/node_modules/solc"


def test_artifact_hash_matches_source() -> None:
    art = load_artifact()
    assert art.source_sha256 == hashlib.sha256(SOURCE.read_bytes()).hexdigest(), (
        "contracts/CoopLedger.sol changed: run `node contracts/compile.cjs --write`"
    )
    assert art.settings["evmVersion"] == "paris"
    assert art.compiler.startswith("0.8.37")
    assert len(art.deployed_bytecode) < 24_576  # EIP-170 size limit


@pytest.mark.node
def test_recompiling_gives_the_shipped_artifact() -> None:
    if shutil.which("node") is None or not SOLC.exists():
        pytest.skip("node or tools/evm solc-js not installed (bash scripts/setup.sh --node)")
    out = subprocess.run(
        ["node", str(REPO / "contracts/compile.cjs")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    fresh = json.loads(out.stdout)
    shipped = json.loads((ARTIFACT_DIR / "CoopLedger.json").read_text())
    for field in ("sourceSha256", "compiler", "settings", "abi", "bytecode", "deployedBytecode"):
        assert fresh[field] == shipped[field], f"stale artifact: {field} differs"


def test_typed_data_types_match_the_contract() -> None:
    led = CoopLedger.deploy(connect())
    for name, fields, const in (
        ("Registration", REGISTRATION_TYPE, "REGISTRATION_TYPEHASH"),
        ("Submission", SUBMISSION_TYPE, "SUBMISSION_TYPEHASH"),
        ("Vote", VOTE_TYPE, "VOTE_TYPEHASH"),
    ):
        encoded = f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"
        assert bytes(keccak(encoded.encode())) == led._view(const), name

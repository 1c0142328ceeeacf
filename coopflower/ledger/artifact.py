"""The compiled contract shipped in the package (no compiler needed at run time)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import LedgerError

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """ABI, bytecode and provenance of a compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    source_sha256: str
    compiler: str
    settings: dict[str, Any]


@lru_cache(maxsize=4)
def load_artifact(name: str = "CoopLedger") -> Artifact:
    """Load ``artifacts/<name>.json``.

    Returns: the :class:`Artifact`.
    Raises: LedgerError if missing or malformed.
    """
    path = ARTIFACT_DIR / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        return Artifact(
            name=raw["contractName"],
            abi=raw["abi"],
            bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
            deployed_bytecode=bytes.fromhex(raw["deployedBytecode"].removeprefix("0x")),
            source_sha256=raw["sourceSha256"],
            compiler=raw["compiler"]["version"],
            settings=raw["settings"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"contract artifact {path} is missing or malformed: {exc}") from exc

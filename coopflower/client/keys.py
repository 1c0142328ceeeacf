"""Each node's own Ethereum key: created on first start into a key file, reused afterwards.

The key file holds the private key as hex (``{"address": ..., "private_key": ...}``), written
atomically with mode 0600. It never leaves the node: only signatures and the address do.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KeyFileError", "NodeKey", "load_or_create_key"]


class KeyFileError(ValueError):
    """A key file that cannot be read, is malformed, or does not match its address."""


@dataclass(frozen=True)
class NodeKey:
    """A node's signing key: ``private_key`` (32 bytes) and its checksummed ``address``."""

    private_key: bytes
    address: str

    def __repr__(self) -> str:  # never print the secret
        return f"NodeKey(address={self.address!r})"


def _address_of(private_key: bytes) -> str:
    from coopflower.ledger.eip712 import address_of

    return address_of(private_key)


def load_or_create_key(path: str | os.PathLike[str]) -> NodeKey:
    """Load the node key from ``path``, creating it (and its folder) on first start.

    Args:
        path: the key file's path (from the node config).

    Returns:
        The ``NodeKey``. Raises ``KeyFileError`` when an existing file is malformed.
    """
    p = Path(path).expanduser()
    if p.exists():
        try:
            doc = json.loads(p.read_text())
            key = bytes.fromhex(str(doc["private_key"]).removeprefix("0x"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"key file {p} is unreadable or malformed: {exc}") from None
        if len(key) != 32:
            raise KeyFileError(f"key file {p}: private key must be 32 bytes, got {len(key)}")
        try:
            address = _address_of(key)
        except Exception as exc:  # libsecp256k1 rejects 0 and keys >= the curve order
            raise KeyFileError(f"key file {p}: not a valid secp256k1 key ({exc})") from None
        if "address" in doc and str(doc["address"]).lower() != address.lower():
            raise KeyFileError(f"key file {p}: address {doc['address']} does not match the key")
        return NodeKey(key, address)
    key = secrets.token_bytes(32)
    address = _address_of(key)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"address": address, "private_key": key.hex()}, fh)
    try:
        os.link(tmp, p)  # atomic and never overwrites a key another process just created
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create_key(p)
    os.unlink(tmp)
    return NodeKey(key, address)

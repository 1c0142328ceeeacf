"""The storage layer's errors: one base class so callers can catch them all."""

from __future__ import annotations

__all__ = [
    "StorageError",
    "CIDError",
    "IntegrityError",
    "BlockNotFoundError",
    "SizeLimitError",
    "NodeError",
    "DaemonError",
]


class StorageError(Exception):
    """Base class of every error raised by ``coopflower.storage``."""


class CIDError(StorageError, ValueError):
    """A CID (bytes or text) is malformed or uses a codec/hash this package does not handle."""


class IntegrityError(StorageError):
    """Bytes do not match the CID they were fetched or stored under (tampering, a lying node)."""


class BlockNotFoundError(StorageError, KeyError):
    """The store holds no block (or object) for the CID."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class SizeLimitError(StorageError, ValueError):
    """An object is larger than the store's configured size limit."""


class NodeError(StorageError):
    """An IPFS node (Kubo RPC API) could not be reached or answered with an error."""


class DaemonError(StorageError):
    """The local IPFS daemon could not be installed, started or stopped."""

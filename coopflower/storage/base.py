"""The interface every content store implements, and the default size limit."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from coopflower.storage.cid import CID

__all__ = ["ContentStore", "CIDLike", "DEFAULT_MAX_BYTES"]

CIDLike = CID | str | bytes
"""A CID, its text (``b...``, ``z...``, ``Qm...``) or its binary form."""

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""Default limit on one object's size (put and get)."""


@runtime_checkable
class ContentStore(Protocol):
    """Content-addressed storage: objects are named by the CID of their bytes.

    Implementations: :class:`~coopflower.storage.embedded.EmbeddedStore` (a directory, the
    default) and :class:`~coopflower.storage.kubo.KuboStore` (an IPFS node's Kubo RPC API).
    Every ``get`` returns bytes already checked against the CID.
    """

    def put(self, data: bytes) -> CID:
        """Store ``data``; return its CID (the one :func:`~coopflower.storage.cid.compute_cid`
        gives)."""
        ...

    def get(self, cid: CIDLike) -> bytes:
        """Return the object's bytes, verified against ``cid``."""
        ...

    def has(self, cid: CIDLike) -> bool:
        """Whether the object is available here."""
        ...

    def pin(self, cid: CIDLike) -> None:
        """Keep the object from garbage collection."""
        ...

    def close(self) -> None:
        """Release connections or handles."""
        ...

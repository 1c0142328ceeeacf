"""Content-addressed storage for model blobs: CIDs as kubo builds them, an embedded store in a
directory (the default) and a Kubo RPC API client (a real IPFS node).

``open_store(None)`` or ``open_store("/some/dir")`` gives the embedded store;
``open_store("http://127.0.0.1:5001")`` a Kubo RPC node. Both return the same CIDs for the same
bytes, and both check every read against its CID.
"""

from __future__ import annotations

import os
from pathlib import Path

from coopflower.storage.base import DEFAULT_MAX_BYTES, CIDLike, ContentStore
from coopflower.storage.cid import CID, build_dag, compute_cid, verify
from coopflower.storage.embedded import EmbeddedStore
from coopflower.storage.errors import (
    BlockNotFoundError,
    CIDError,
    IntegrityError,
    NodeError,
    SizeLimitError,
    StorageError,
)
from coopflower.storage.kubo import UNREACHABLE_S, KuboStore

__all__ = [
    "CID",
    "CIDLike",
    "ContentStore",
    "EmbeddedStore",
    "KuboStore",
    "open_store",
    "default_store_dir",
    "build_dag",
    "compute_cid",
    "verify",
    "StorageError",
    "CIDError",
    "IntegrityError",
    "BlockNotFoundError",
    "SizeLimitError",
    "NodeError",
]

STORE_ENV = "COOPFLOWER_STORE"


def default_store_dir() -> Path:
    """Where ``open_store(None)`` keeps blocks: ``$COOPFLOWER_STORE`` if it is a path, else
    ``$XDG_CACHE_HOME/coopflower/store`` (``~/.cache/coopflower/store``)."""
    env = os.environ.get(STORE_ENV)
    if env and not env.startswith(("http://", "https://")):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "coopflower" / "store"


def open_store(spec: str | os.PathLike[str] | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES) -> ContentStore:
    """Open a content store from a one-string description.

    Args:
        spec: ``None`` (``$COOPFLOWER_STORE`` if set, else the default directory), a directory
            path (embedded store, created if missing; ``file://`` prefix allowed), or an
            ``http://host:port`` URL of a Kubo RPC API.
        max_bytes: largest object the store accepts and returns.

    Returns:
        An :class:`EmbeddedStore` or a :class:`KuboStore` (which waits up to
        ``UNREACHABLE_S`` seconds for a node that refuses connections: a restart).

    Raises:
        StorageError: an unsupported URL scheme or an unusable directory.
    """
    if spec is None:
        env = os.environ.get(STORE_ENV)
        if env and env.startswith(("http://", "https://")):
            return KuboStore(env, max_bytes=max_bytes, unreachable_s=UNREACHABLE_S)
        return EmbeddedStore(default_store_dir(), max_bytes=max_bytes)
    text = os.fspath(spec)
    if not isinstance(text, str) or not text:
        raise StorageError(f"a store spec is a directory or an http:// URL, got {spec!r}")
    if text.startswith(("http://", "https://")):
        return KuboStore(text, max_bytes=max_bytes, unreachable_s=UNREACHABLE_S)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise StorageError(
            f"unsupported store {text!r}: use a directory path or an http://host:port Kubo RPC URL"
        )
    return EmbeddedStore(text, max_bytes=max_bytes)

"""The embedded content-addressed store: IPFS-compatible blocks in a local directory.

Each block lives in its own file, ``<root>/blocks/<last 2 chars>/<base32 CID>``, written
atomically (a temporary file in the same directory, then ``os.replace``). Objects are split
into the same blocks an IPFS node makes (:func:`~coopflower.storage.cid.build_dag`), so a CID
from this store is the CID a Kubo node gives the same bytes. Every read checks each block
against its CID; a tampered block is named (CID and file) in the :class:`IntegrityError`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from coopflower.storage.base import DEFAULT_MAX_BYTES, CIDLike
from coopflower.storage.cid import CID, assemble, build_dag, verify_block
from coopflower.storage.errors import (
    BlockNotFoundError,
    IntegrityError,
    SizeLimitError,
    StorageError,
)

__all__ = ["EmbeddedStore"]


class EmbeddedStore:
    """A content store in a directory (created if missing).

    Args:
        root: the directory.
        max_bytes: largest object accepted by ``put`` and returned by ``get``.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise StorageError(f"max_bytes must be >= 0, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._blocks = self.root / "blocks"
        try:
            self._blocks.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the store directory {self._blocks}: {e}") from e

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r})"

    def block_path(self, cid: CIDLike) -> Path:
        """The file that holds one block."""
        text = CID.parse(cid).to_v1().encode()
        return self._blocks / text[-2:] / text

    # -- blocks

    def _read_block(self, cid: CID) -> bytes:
        path = self.block_path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError(f"block {cid} not in the store (no file {path})") from None
        except OSError as e:
            raise StorageError(f"cannot read block {cid} from {path}: {e}") from e
        verify_block(cid, data, where=f"file {path}")
        return data

    def _write_block(self, cid: CID, data: bytes) -> None:
        path = self.block_path(cid)
        if path.exists():
            try:
                self._read_block(cid)
                return  # already stored and intact
            except IntegrityError:
                pass  # a damaged copy: replace it below
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; blocks are public content
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"cannot write block {cid} to {path}: {e}") from e

    # -- the ContentStore interface

    def put(self, data: bytes) -> CID:
        """Store ``data`` (children blocks first, the root last); return its CID.

        Raises:
            SizeLimitError: ``data`` is larger than ``max_bytes``.
            StorageError: the directory cannot be written.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError(f"put needs bytes, got {type(data).__name__}")
        if len(data) > self.max_bytes:
            raise SizeLimitError(f"object of {len(data)} bytes exceeds max_bytes {self.max_bytes}")
        dag = build_dag(bytes(data))
        for block in dag.blocks:
            self._write_block(block.cid, block.data)
        return dag.root

    def get(self, cid: CIDLike) -> bytes:
        """Return the object's bytes, every block checked against its CID.

        Raises:
            BlockNotFoundError: a block is missing (named).
            IntegrityError: a block's file does not match its CID (block and file named).
            SizeLimitError: the object is larger than ``max_bytes``.
        """
        return assemble(CID.parse(cid), self._read_block, max_size=self.max_bytes, check=False)

    def has(self, cid: CIDLike) -> bool:
        """Whether the object's root block is here (its children are written before it)."""
        return self.block_path(cid).is_file()

    def pin(self, cid: CIDLike) -> None:
        """No-op (this store never collects garbage), but the object must be present.

        Raises:
            BlockNotFoundError: the object is not in the store.
        """
        if not self.has(cid):
            raise BlockNotFoundError(f"cannot pin {CID.parse(cid)}: not in the store {self.root}")

    def close(self) -> None:
        """Nothing to release."""

"""Checking fetched bytes against their CID and reassembling an object from its blocks (pure:
the one I/O, fetching a block, is the caller's function).
"""

from __future__ import annotations

from collections.abc import Callable

from coopflower.storage.cid.dag import CHUNK_SIZE, MAX_LINKS, _sha256, compute_cid
from coopflower.storage.cid.dagpb import _UNIXFS_FILE, _UNIXFS_RAW, decode_pbnode, decode_unixfs
from coopflower.storage.cid.identifier import CID, RAW
from coopflower.storage.errors import IntegrityError, SizeLimitError


def verify_block(cid: CID | str | bytes, block: bytes, where: str = "") -> None:
    """Check that one block's bytes hash to the digest in its CID.

    Raises:
        IntegrityError: naming the block's CID (and ``where`` it came from, if given).
    """
    cid = CID.parse(cid)
    got = _sha256(block)
    if got != cid.digest:
        place = f" ({where})" if where else ""
        raise IntegrityError(
            f"block {cid}{place} does not match its CID: its {len(block)} bytes hash to "
            f"sha2-256 {got.hex()}, the CID says {cid.digest.hex()}"
        )


def verify(cid: CID | str | bytes, data: bytes) -> None:
    """Check that an object's bytes are the content ``cid`` names.

    Args:
        cid: the expected CID (built with this module's layout).
        data: the object's bytes.

    Raises:
        IntegrityError: saying which CID was expected and which the bytes give.
    """
    cid = CID.parse(cid)
    got = compute_cid(data)
    if got.to_bytes() == cid.to_bytes():
        return
    if cid.version == 0:
        raise IntegrityError(
            f"cannot verify CIDv0 {cid} by rebuilding: this package builds CIDv1 with raw leaves"
        )
    raise IntegrityError(
        f"content mismatch: expected {cid} ({cid.codec_name}), but the {len(data)} bytes give "
        f"{got} ({got.codec_name}; {CHUNK_SIZE}-byte raw leaves, {MAX_LINKS} links a node)"
    )


def assemble(
    root: CID | str | bytes,
    fetch: Callable[[CID], bytes],
    max_size: int | None = None,
    check: bool = True,
) -> bytes:
    """Reassemble an object from its blocks, depth first, left to right.

    Args:
        root: the object's CID.
        fetch: returns the bytes of one block (the only I/O, supplied by the store).
        max_size: refuse objects larger than this many bytes.
        check: verify every block against its CID (pass False only if ``fetch`` already did).

    Returns:
        The object's bytes.

    Raises:
        IntegrityError: a block does not match its CID, or the tree is inconsistent.
        SizeLimitError: the object is larger than ``max_size``.
        CIDError: a dag-pb block cannot be decoded.
    """
    root = CID.parse(root)
    out = bytearray()
    stack = [root]
    declared: int | None = None
    while stack:
        cid = stack.pop()
        block = fetch(cid)
        if check:
            verify_block(cid, block)
        if cid.codec == RAW:
            out += block
        else:
            node = decode_pbnode(block)
            if node.data is None:
                raise IntegrityError(f"dag-pb block {cid} has no UnixFS data")
            fs = decode_unixfs(node.data)
            if fs.type not in (_UNIXFS_FILE, _UNIXFS_RAW):
                raise IntegrityError(f"block {cid} is UnixFS type {fs.type}, not a file")
            if cid == root:
                declared = fs.filesize
                if max_size is not None and (declared or 0) > max_size:
                    raise SizeLimitError(
                        f"object {root} declares {declared} bytes, over the limit of {max_size}"
                    )
            out += fs.data
            stack.extend(reversed([link.cid for link in node.links]))
        if max_size is not None and len(out) > max_size:
            raise SizeLimitError(f"object {root} is larger than the limit of {max_size} bytes")
    if declared is not None and declared != len(out):
        raise IntegrityError(
            f"object {root} declares {declared} bytes but its blocks hold {len(out)}"
        )
    return bytes(out)

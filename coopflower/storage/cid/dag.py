"""Building an object's DAG exactly as kubo does; pure functions, no I/O.

With ``cid-version=1``, ``raw-leaves=true`` and ``chunker=size-262144`` (what this package
always asks a node for), kubo, js-ipfs and Helia give:

- data of at most 262144 bytes (including the empty input): a CIDv1 with the ``raw`` codec
  (0x55) and the sha2-256 multihash of the bytes themselves;
- larger data: 262144-byte raw leaves under a balanced UnixFS ``dag-pb`` (0x70) tree with at
  most 174 links a node, filled left to right, all leaves at the same depth.

Here: the list of blocks a store keeps (:func:`build_dag`) and the root CID alone
(:func:`compute_cid`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from coopflower.storage.cid.dagpb import Link, encode_pbnode, encode_unixfs_file
from coopflower.storage.cid.identifier import CID, DAG_PB, RAW
from coopflower.storage.errors import CIDError

CHUNK_SIZE = 262144
MAX_LINKS = 174


@dataclass(frozen=True)
class Block:
    """One block a store keeps: its CID and its bytes."""

    cid: CID
    data: bytes


@dataclass(frozen=True)
class Dag:
    """The blocks of one object, children before parents; ``root`` is the object's CID."""

    root: CID
    blocks: list[Block] = field(repr=False)
    size: int = 0


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _build(data: bytes, chunk_size: int, max_links: int, keep: bool) -> Dag:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CIDError(f"data must be bytes, got {type(data).__name__}")
    if chunk_size < 1 or max_links < 2:
        raise CIDError("chunk_size must be >= 1 and max_links >= 2")
    view = memoryview(data).cast("B")
    blocks: list[Block] = []
    if len(view) <= chunk_size:
        root = CID(1, RAW, _sha256(view))
        if keep:
            blocks.append(Block(root, bytes(view)))
        return Dag(root, blocks, len(view))
    # level: (cid, file bytes below, cumulative block size) of each node at this depth
    level: list[tuple[CID, int, int]] = []
    for start in range(0, len(view), chunk_size):
        chunk = view[start : start + chunk_size]
        cid = CID(1, RAW, _sha256(chunk))
        if keep:
            blocks.append(Block(cid, bytes(chunk)))
        level.append((cid, len(chunk), len(chunk)))
    while len(level) > 1:
        parents: list[tuple[CID, int, int]] = []
        for i in range(0, len(level), max_links):
            group = level[i : i + max_links]
            filesize = sum(g[1] for g in group)
            node = encode_pbnode(
                [Link(c, tsize) for c, _, tsize in group],
                encode_unixfs_file(filesize, [g[1] for g in group]),
            )
            cid = CID(1, DAG_PB, _sha256(node))
            if keep:
                blocks.append(Block(cid, node))
            parents.append((cid, filesize, len(node) + sum(g[2] for g in group)))
        level = parents
    return Dag(level[0][0], blocks, len(view))


def build_dag(data: bytes, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> Dag:
    """Chunk ``data`` and build its blocks as kubo does (see the module docstring).

    Args:
        data: the object's bytes.
        chunk_size: leaf size (kubo ``chunker=size-N``).
        max_links: links per interior node (174 in kubo's balanced layout).

    Returns:
        The root CID and every block, children before parents (root last).
    """
    return _build(data, chunk_size, max_links, keep=True)


def compute_cid(data: bytes, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> CID:
    """The CID kubo gives ``data`` (without keeping the blocks)."""
    return _build(data, chunk_size, max_links, keep=False).root

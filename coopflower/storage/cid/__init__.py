"""Content identifiers exactly as kubo builds them; pure functions, no I/O.

With ``cid-version=1``, ``raw-leaves=true`` and ``chunker=size-262144`` (what this package
always asks a node for), the same CIDs as kubo, js-ipfs and Helia: raw leaves under a
balanced UnixFS ``dag-pb`` tree, the layout :mod:`coopflower.storage.cid.dag` describes.

Here: CIDs to and from bytes and text (base32 ``b...`` out; base32, base58btc ``z...`` and
CIDv0 ``Qm...`` in), the dag-pb/UnixFS protobuf encoding written out by hand, the list of
blocks a store keeps, and :func:`verify` for bytes fetched under a CID.

Where each concept lives (every name is importable from ``coopflower.storage.cid`` as before):

- :mod:`~coopflower.storage.cid.multiformats`: varints, base32 and base58btc;
- :mod:`~coopflower.storage.cid.identifier`: :class:`CID` and the codes ``RAW``, ``DAG_PB``,
  ``SHA2_256``;
- :mod:`~coopflower.storage.cid.dagpb`: dag-pb nodes (:class:`Link`, :class:`PBNode`) and
  UnixFS data (:class:`UnixFSData`), encoded and decoded;
- :mod:`~coopflower.storage.cid.dag`: chunking into a DAG as kubo does (``CHUNK_SIZE``,
  ``MAX_LINKS``, :class:`Block`, :class:`Dag`, :func:`build_dag`, :func:`compute_cid`);
- :mod:`~coopflower.storage.cid.integrity`: :func:`verify`, :func:`verify_block` and
  :func:`assemble`.
"""

from __future__ import annotations

from coopflower.storage.cid.dag import CHUNK_SIZE, MAX_LINKS, Block, Dag, build_dag, compute_cid
from coopflower.storage.cid.dagpb import (
    Link,
    PBNode,
    UnixFSData,
    decode_pbnode,
    decode_unixfs,
    encode_pbnode,
    encode_unixfs_file,
)
from coopflower.storage.cid.identifier import CID, DAG_PB, RAW, SHA2_256
from coopflower.storage.cid.integrity import assemble, verify, verify_block

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "RAW",
    "DAG_PB",
    "SHA2_256",
    "CID",
    "Block",
    "Dag",
    "Link",
    "PBNode",
    "UnixFSData",
    "build_dag",
    "compute_cid",
    "verify",
    "verify_block",
    "assemble",
    "encode_pbnode",
    "decode_pbnode",
    "encode_unixfs_file",
    "decode_unixfs",
]

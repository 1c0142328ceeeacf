"""The dag-pb node and UnixFS ``Data`` protobuf encodings, written out by hand (pure).

Canonical dag-pb (links first, then data) out; dag-pb and UnixFS messages in, refusing any
field a file node does not have.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from coopflower.storage.cid.identifier import CID
from coopflower.storage.cid.multiformats import _read_varint, _varint
from coopflower.storage.errors import CIDError

_UNIXFS_FILE = 2
_UNIXFS_RAW = 0


@dataclass(frozen=True)
class Link:
    """A dag-pb link: child CID, name (always empty for file chunks), cumulative size."""

    cid: CID
    tsize: int
    name: str = ""


@dataclass(frozen=True)
class PBNode:
    """A decoded dag-pb node."""

    links: tuple[Link, ...]
    data: bytes | None


@dataclass(frozen=True)
class UnixFSData:
    """The UnixFS ``Data`` message of a file node."""

    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def encode_unixfs_file(filesize: int, blocksizes: list[int]) -> bytes:
    """UnixFS ``Data`` of an interior file node with raw leaves (no inline data)."""
    out = bytearray(b"\x08" + _varint(_UNIXFS_FILE))  # Type = File
    out += b"\x18" + _varint(filesize)  # filesize
    for size in blocksizes:  # blocksizes, one non-packed varint each (proto2)
        out += b"\x20" + _varint(size)
    return bytes(out)


def encode_pbnode(links: list[Link], data: bytes | None) -> bytes:
    """Canonical dag-pb: every link (Hash, Name, Tsize) first, then Data."""
    out = bytearray()
    for link in links:
        body = _field(0x0A, link.cid.to_bytes())
        body += _field(0x12, link.name.encode("utf-8"))
        body += b"\x18" + _varint(link.tsize)
        out += _field(0x12, body)
    if data is not None:
        out += _field(0x0A, data)
    return bytes(out)


def _fields(buf: bytes, what: str) -> Iterator[tuple[int, int | bytes]]:
    """Iterate the (field number, value) pairs of a protobuf message (varint, bytes only)."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos, f"{what} field key")
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos, f"{what} field {number}")
            yield number, value
        elif wire == 2:
            length, pos = _read_varint(buf, pos, f"{what} field {number} length")
            if pos + length > len(buf):
                raise CIDError(f"{what} field {number} runs past the end of the block")
            yield number, buf[pos : pos + length]
            pos += length
        else:
            raise CIDError(f"{what}: unsupported protobuf wire type {wire}")


def decode_pbnode(block: bytes) -> PBNode:
    """Decode a dag-pb block into its links and data."""
    links: list[Link] = []
    data: bytes | None = None
    for number, value in _fields(block, "dag-pb node"):
        if number == 2 and isinstance(value, bytes):
            cid: CID | None = None
            name = ""
            tsize = 0
            for n2, v2 in _fields(value, "dag-pb link"):
                if n2 == 1 and isinstance(v2, bytes):
                    cid = CID.from_bytes(v2)
                elif n2 == 2 and isinstance(v2, bytes):
                    name = v2.decode("utf-8", errors="replace")
                elif n2 == 3 and isinstance(v2, int):
                    tsize = v2
                else:
                    raise CIDError(f"dag-pb link: unexpected field {n2}")
            if cid is None:
                raise CIDError("dag-pb link without a Hash")
            links.append(Link(cid, tsize, name))
        elif number == 1 and isinstance(value, bytes):
            data = value
        else:
            raise CIDError(f"dag-pb node: unexpected field {number}")
    return PBNode(tuple(links), data)


def decode_unixfs(data: bytes) -> UnixFSData:
    """Decode a UnixFS ``Data`` message."""
    kind: int | None = None
    inline = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, value in _fields(data, "UnixFS data"):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            inline = value
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif number == 4 and isinstance(value, bytes):  # packed encoding
            pos = 0
            while pos < len(value):
                size, pos = _read_varint(value, pos, "UnixFS blocksizes")
                blocksizes.append(size)
        elif number in (5, 6, 7, 8):  # hashType, fanout, mode, mtime: not used by files here
            continue
        else:
            raise CIDError(f"UnixFS data: unexpected field {number}")
    if kind is None:
        raise CIDError("UnixFS data without a Type")
    return UnixFSData(kind, inline, filesize, tuple(blocksizes))

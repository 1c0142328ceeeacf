"""Content identifiers exactly as kubo builds them; pure functions, no I/O.

With ``cid-version=1``, ``raw-leaves=true`` and ``chunker=size-262144`` (what this package
always asks a node for), kubo, js-ipfs and Helia give:

- data of at most 262144 bytes (including the empty input): a CIDv1 with the ``raw`` codec
  (0x55) and the sha2-256 multihash of the bytes themselves;
- larger data: 262144-byte raw leaves under a balanced UnixFS ``dag-pb`` (0x70) tree with at
  most 174 links a node, filled left to right, all leaves at the same depth.

Here: CIDs to and from bytes and text (base32 ``b...`` out; base32, base58btc ``z...`` and
CIDv0 ``Qm...`` in), the dag-pb/UnixFS protobuf encoding written out by hand, the list of
blocks a store keeps, and :func:`verify` for bytes fetched under a CID.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from coopflower.storage.errors import CIDError, IntegrityError, SizeLimitError

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

CHUNK_SIZE = 262144
MAX_LINKS = 174
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}
_UNIXFS_FILE = 2
_UNIXFS_RAW = 0
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


# ---------------------------------------------------------------- varints and bases


def _varint(n: int) -> bytes:
    """Unsigned LEB128 (multiformats and protobuf varints)."""
    if n < 0:
        raise CIDError(f"varint of a negative number {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, next position)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CIDError(f"truncated {what}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CIDError(f"{what} longer than 9 bytes")


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def _b32decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 8)
    try:
        return base64.b32decode(text.upper() + pad)
    except ValueError as e:  # binascii.Error is a ValueError
        raise CIDError(f"invalid base32 text {text!r}: {e}") from None


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise CIDError(f"invalid base58btc character {c!r} in {text!r}")
        n = n * 58 + _B58_INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


# ---------------------------------------------------------------- the CID


@dataclass(frozen=True, order=True)
class CID:
    """A CID with a sha2-256 multihash.

    Attributes:
        version: 0 (dag-pb, base58 ``Qm...``) or 1.
        codec: multicodec of the block: :data:`RAW` or :data:`DAG_PB`.
        digest: the 32-byte sha2-256 digest of the block.
    """

    version: int
    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise CIDError(f"unsupported CID version {self.version}")
        if self.codec not in _CODEC_NAMES:
            raise CIDError(f"unsupported CID codec 0x{self.codec:x} (raw and dag-pb only)")
        if self.version == 0 and self.codec != DAG_PB:
            raise CIDError("a CIDv0 is always dag-pb")
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise CIDError("a sha2-256 digest has 32 bytes")

    @property
    def multihash(self) -> bytes:
        """The multihash: code, length, digest."""
        return bytes([SHA2_256, 32]) + self.digest

    def to_bytes(self) -> bytes:
        """The binary CID (what a contract or a dag-pb link stores)."""
        if self.version == 0:
            return self.multihash
        return _varint(1) + _varint(self.codec) + self.multihash

    def encode(self) -> str:
        """Text form: base32 ``b...`` for CIDv1, base58btc ``Qm...`` for CIDv0."""
        if self.version == 0:
            return _b58encode(self.multihash)
        return "b" + _b32encode(self.to_bytes())

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()})"

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES[self.codec]

    @classmethod
    def from_bytes(cls, raw: bytes) -> CID:
        """Parse a binary CID (v0 multihash or v1)."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise CIDError(f"a binary CID must be bytes, got {type(raw).__name__}")
        raw = bytes(raw)
        if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == 32:
            return cls(0, DAG_PB, raw[2:])
        version, pos = _read_varint(raw, 0, "CID version")
        if version != 1:
            raise CIDError(f"unsupported CID version {version} in {raw.hex()}")
        codec, pos = _read_varint(raw, pos, "CID codec")
        mh_code, pos = _read_varint(raw, pos, "multihash code")
        length, pos = _read_varint(raw, pos, "multihash length")
        if mh_code != SHA2_256:
            raise CIDError(f"unsupported multihash 0x{mh_code:x} (sha2-256 only)")
        if length != 32 or len(raw) - pos != 32:
            raise CIDError(f"sha2-256 digest must be 32 bytes, CID holds {len(raw) - pos}")
        return cls(1, codec, raw[pos:])

    @classmethod
    def from_string(cls, text: str) -> CID:
        """Parse a text CID: ``b...`` (base32), ``z...`` (base58btc) or CIDv0 ``Qm...``."""
        if not isinstance(text, str) or not text:
            raise CIDError(f"a text CID must be a non-empty str, got {text!r}")
        text = text.strip()
        if text.startswith("/ipfs/"):
            text = text[len("/ipfs/") :]
        if len(text) == 46 and text.startswith("Qm"):
            return cls.from_bytes(_b58decode(text))
        if text[0] in "bB":
            return cls.from_bytes(_b32decode(text[1:]))
        if text[0] == "z":
            return cls.from_bytes(_b58decode(text[1:]))
        raise CIDError(f"unsupported CID text {text!r} (base32 'b...', base58 'z...' or 'Qm...')")

    @classmethod
    def parse(cls, value: CID | str | bytes) -> CID:
        """Accept a CID, its text or its bytes."""
        if isinstance(value, CID):
            return value
        if isinstance(value, str):
            return cls.from_string(value)
        return cls.from_bytes(value)

    def to_v1(self) -> CID:
        return CID(1, self.codec, self.digest)


# ---------------------------------------------------------------- dag-pb and UnixFS


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


# ---------------------------------------------------------------- building the DAG


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

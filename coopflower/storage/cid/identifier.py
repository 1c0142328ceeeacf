"""The CID itself: version, codec and sha2-256 digest, to and from bytes and text (pure).

Out: base32 ``b...`` for CIDv1, base58btc ``Qm...`` for CIDv0; in: base32, base58btc ``z...``
and CIDv0 ``Qm...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from coopflower.storage.cid.multiformats import (
    _b32decode,
    _b32encode,
    _b58decode,
    _b58encode,
    _read_varint,
    _varint,
)
from coopflower.storage.errors import CIDError

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}


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

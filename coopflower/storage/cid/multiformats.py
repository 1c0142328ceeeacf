"""Varints and the multibase texts of CIDs; pure functions, no I/O.

Unsigned LEB128 varints (multiformats and protobuf), base32 (lower case, no padding: the
``b...`` text of a CIDv1) and base58btc (``z...`` and CIDv0 ``Qm...``).
"""

from __future__ import annotations

import base64

from coopflower.storage.errors import CIDError

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


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

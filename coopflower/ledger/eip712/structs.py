"""The contract's typed structs (registration consent, submission, vote), its signing domain,
and the digests it keeps beside them: content hash, model digest, seed commitment (pure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from ..errors import SignatureError

NAME = "CoopLedger"
VERSION = "1"
MAX_CID_BYTES = 64


def to_checksum_address(value: str | bytes) -> str:
    """EIP-55 checksum form of a 20-byte address (hex text in any case, or bytes); a
    ``ValueError`` otherwise. Here rather than ``eth_utils``'s, whose import (pydantic and
    all) a node's ClientApp process would pay on every message that signs."""
    if isinstance(value, bytes | bytearray):
        if len(value) != 20:
            raise ValueError(f"an address has 20 bytes, got {len(value)}")
        plain = bytes(value).hex()
    else:
        plain = value[2:] if value[:2] in ("0x", "0X") else value
        if len(plain) != 40 or any(c not in "0123456789abcdefABCDEF" for c in plain):
            raise ValueError(f"not a 20-byte hex address: {value!r}")
        plain = plain.lower()
    digest = bytes(keccak(plain.encode())).hex()
    marks = digest[:40]  # a nibble of 8 or more capitalises the letter beside it
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c
                          for c, d in zip(plain, marks, strict=True))


_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
REGISTRATION_TYPE = [
    {"name": "taskId", "type": "uint256"},
    {"name": "participant", "type": "address"},
    {"name": "deposit", "type": "uint128"},
]
SUBMISSION_TYPE = [
    {"name": "taskId", "type": "uint256"},
    {"name": "round", "type": "uint32"},
    {"name": "contributor", "type": "address"},
    {"name": "cid", "type": "bytes"},
    {"name": "contentHash", "type": "bytes32"},
    {"name": "seedCommit", "type": "bytes32"},
]
VOTE_TYPE = [
    {"name": "taskId", "type": "uint256"},
    {"name": "round", "type": "uint32"},
    {"name": "submission", "type": "uint32"},
    {"name": "modelDigest", "type": "bytes32"},
    {"name": "verifier", "type": "address"},
    {"name": "accept", "type": "bool"},
    {"name": "scoreBps", "type": "uint16"},
]


@dataclass(frozen=True)
class Eip712Domain:
    """The contract's signing domain: name "CoopLedger", version "1", chain id, address."""

    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        """Returns: the domain as ``encode_typed_data`` expects it."""
        return {
            "name": NAME,
            "version": VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


@dataclass(frozen=True)
class SignedRegistration:
    """A node's consent to join ``task_id`` with ``deposit`` wei paid by a relayer."""

    task_id: int
    participant: str
    deposit: int
    signature: bytes


@dataclass(frozen=True)
class SignedSubmission:
    """A contributor's signed model submission: CID (opaque, <= 64 bytes) and content hash."""

    task_id: int
    round: int
    contributor: str
    cid: bytes
    content_hash: bytes
    signature: bytes
    seed_commit: bytes = bytes(32)  # seed_commitment(share, contributor); zero: no reveal

    @property
    def model_digest(self) -> bytes:
        """Returns: the 32-byte digest the contract stores for this model."""
        return model_digest(self.cid, self.content_hash)


@dataclass(frozen=True)
class SignedVote:
    """A verifier's signed vote on one submission (bound to its model digest)."""

    task_id: int
    round: int
    submission: int
    model_digest: bytes
    verifier: str
    accept: bool
    score_bps: int
    signature: bytes



def content_hash(blob: bytes) -> bytes:
    """The content hash recorded on chain beside a CID: keccak-256 of the blob's bytes.

    Returns: 32 bytes.
    """
    return bytes(keccak(blob))


def model_digest(cid: bytes, content_hash: bytes) -> bytes:
    """Digest the contract stores for a model: keccak256(keccak256(cid) || content_hash).

    Args:
        cid: the CID's binary form (1..64 bytes).
        content_hash: 32 bytes.
    Returns: 32 bytes.
    """
    _check_cid(cid)
    _check_b32(content_hash, "content_hash")
    return bytes(keccak(keccak(cid) + content_hash))


def seed_commitment(share: bytes, contributor: str) -> bytes:
    """A contributor's commitment to its seed share: keccak256(abi.encode(share, contributor)),
    bound to the contributor so that nobody can replay another's commitment and share."""
    _check_b32(share, "share")
    return bytes(keccak(bytes(share) + bytes(12) + bytes.fromhex(
        to_checksum_address(contributor)[2:])))


def _check_cid(cid: bytes) -> None:
    if not isinstance(cid, bytes | bytearray) or not 1 <= len(cid) <= MAX_CID_BYTES:
        size = len(cid) if isinstance(cid, bytes | bytearray) else type(cid).__name__
        raise SignatureError(f"cid must be 1..{MAX_CID_BYTES} bytes, got {size}")


def _check_b32(value: bytes, name: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise SignatureError(f"{name} must be 32 bytes")

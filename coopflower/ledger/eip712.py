"""EIP-712 typed data of the contract: registration consent, submission, vote (pure logic).

A node signs with its own key (``eth_account``); the initiator relays the signed item; the
contract recomputes the same digest and checks the signer with ``ecrecover``. These builders
produce exactly the struct hashes ``contracts/CoopLedger.sol`` computes.

Example::

    domain = ledger.domain                       # Eip712Domain(chain_id, contract address)
    sub = sign_submission(key, domain, task_id=1, round=1, cid=cid, content_hash=h)
    assert recover_submission(domain, sub) == sub.contributor
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from .errors import SignatureError

NAME = "CoopLedger"
VERSION = "1"
MAX_CID_BYTES = 64
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

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


def registration_typed_data(
    domain: Eip712Domain, task_id: int, participant: str, deposit: int
) -> dict[str, Any]:
    """Returns: the full EIP-712 message for a registration consent."""
    return _full(
        domain,
        "Registration",
        REGISTRATION_TYPE,
        {
            "taskId": task_id,
            "participant": to_checksum_address(participant),
            "deposit": deposit,
        },
    )


def submission_typed_data(
    domain: Eip712Domain,
    task_id: int,
    round: int,
    contributor: str,
    cid: bytes,
    content_hash: bytes,
) -> dict[str, Any]:
    """Returns: the full EIP-712 message for a submission."""
    _check_cid(cid)
    _check_b32(content_hash, "content_hash")
    return _full(
        domain,
        "Submission",
        SUBMISSION_TYPE,
        {
            "taskId": task_id,
            "round": round,
            "contributor": to_checksum_address(contributor),
            "cid": bytes(cid),
            "contentHash": bytes(content_hash),
        },
    )


def vote_typed_data(
    domain: Eip712Domain,
    task_id: int,
    round: int,
    submission: int,
    model_digest: bytes,
    verifier: str,
    accept: bool,
    score_bps: int,
) -> dict[str, Any]:
    """Returns: the full EIP-712 message for a vote."""
    _check_b32(model_digest, "model_digest")
    if not 0 <= score_bps < 2**16:
        raise SignatureError(f"score_bps must fit uint16, got {score_bps}")
    return _full(
        domain,
        "Vote",
        VOTE_TYPE,
        {
            "taskId": task_id,
            "round": round,
            "submission": submission,
            "modelDigest": bytes(model_digest),
            "verifier": to_checksum_address(verifier),
            "accept": bool(accept),
            "scoreBps": score_bps,
        },
    )


def sign_registration(
    key: bytes | str, domain: Eip712Domain, task_id: int, deposit: int
) -> SignedRegistration:
    """Sign a registration consent with the node's key.

    Args:
        key: the node's private key. domain: the contract's domain.
        task_id: task to join. deposit: wei the relayer pays as this node's deposit.
    Returns: the signed consent.
    """
    acct = Account.from_key(key)
    msg = registration_typed_data(domain, task_id, acct.address, deposit)
    return SignedRegistration(task_id, acct.address, deposit, _sign(acct, msg))


def sign_submission(
    key: bytes | str,
    domain: Eip712Domain,
    task_id: int,
    round: int,
    cid: bytes,
    content_hash: bytes,
) -> SignedSubmission:
    """Sign a model submission with the contributor's key.

    Returns: the signed submission (``contributor`` is the key's address).
    """
    acct = Account.from_key(key)
    msg = submission_typed_data(domain, task_id, round, acct.address, cid, content_hash)
    return SignedSubmission(
        task_id, round, acct.address, bytes(cid), bytes(content_hash), _sign(acct, msg)
    )


def sign_vote(
    key: bytes | str,
    domain: Eip712Domain,
    task_id: int,
    round: int,
    submission: int,
    model_digest: bytes,
    accept: bool,
    score_bps: int = 0,
) -> SignedVote:
    """Sign a vote with the verifier's key.

    Args:
        model_digest: the digest of the model voted on (``SignedSubmission.model_digest`` or
            the ``Submitted`` event's), so a vote cannot be moved to another model.
        score_bps: the measured accuracy in basis points (informative).
    Returns: the signed vote.
    """
    acct = Account.from_key(key)
    msg = vote_typed_data(
        domain, task_id, round, submission, model_digest, acct.address, accept, score_bps
    )
    return SignedVote(
        task_id,
        round,
        submission,
        bytes(model_digest),
        acct.address,
        bool(accept),
        score_bps,
        _sign(acct, msg),
    )


def recover_registration(domain: Eip712Domain, reg: SignedRegistration) -> str:
    """Returns: the address that signed ``reg`` (checksummed)."""
    return _recover(
        registration_typed_data(domain, reg.task_id, reg.participant, reg.deposit), reg.signature
    )


def recover_submission(domain: Eip712Domain, sub: SignedSubmission) -> str:
    """Returns: the address that signed ``sub`` (checksummed)."""
    msg = submission_typed_data(
        domain, sub.task_id, sub.round, sub.contributor, sub.cid, sub.content_hash
    )
    return _recover(msg, sub.signature)


def recover_vote(domain: Eip712Domain, vote: SignedVote) -> str:
    """Returns: the address that signed ``vote`` (checksummed)."""
    msg = vote_typed_data(
        domain,
        vote.task_id,
        vote.round,
        vote.submission,
        vote.model_digest,
        vote.verifier,
        vote.accept,
        vote.score_bps,
    )
    return _recover(msg, vote.signature)


def verify_signer(expected: str, recovered: str) -> None:
    """Raise :class:`SignatureError` unless ``recovered`` is ``expected``."""
    if to_checksum_address(expected) != to_checksum_address(recovered):
        raise SignatureError(f"signature by {recovered}, expected {expected}")


def compact_signature(signature: bytes) -> tuple[bytes, bytes]:
    """Split a 65-byte (r, s, v) signature into EIP-2098 (r, vs), as the contract takes it.

    Returns: (r, vs), 32 bytes each.
    Raises: SignatureError if the signature is malformed or has a high s.
    """
    sig = bytes(signature)
    if len(sig) != 65:
        raise SignatureError(f"signature must be 65 bytes, got {len(sig)}")
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    if v < 27:
        v += 27
    if v not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {v}")
    if s > _HALF_N:
        raise SignatureError("signature s is in the upper half (malleable)")
    vs = s | ((v - 27) << 255)
    return r, vs.to_bytes(32, "big")


def signable(message: dict[str, Any]) -> SignableMessage:
    """Returns: the EIP-712 signable form of a full typed-data message."""
    return encode_typed_data(full_message=message)


def _full(
    domain: Eip712Domain, primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, primary: fields},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": message,
    }


def _sign(acct: Any, message: dict[str, Any]) -> bytes:
    return bytes(acct.sign_message(signable(message)).signature)


def _recover(message: dict[str, Any], signature: bytes) -> str:
    compact_signature(signature)  # shape checks with our own error
    try:
        return str(Account.recover_message(signable(message), signature=bytes(signature)))
    except Exception as exc:  # eth_keys raises several types for bad points
        raise SignatureError(f"cannot recover signer: {exc}") from exc


def _check_cid(cid: bytes) -> None:
    if not isinstance(cid, bytes | bytearray) or not 1 <= len(cid) <= MAX_CID_BYTES:
        size = len(cid) if isinstance(cid, bytes | bytearray) else type(cid).__name__
        raise SignatureError(f"cid must be 1..{MAX_CID_BYTES} bytes, got {size}")


def _check_b32(value: bytes, name: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise SignatureError(f"{name} must be 32 bytes")

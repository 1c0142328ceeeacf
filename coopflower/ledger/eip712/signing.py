"""Signing with a node's own key and recovering the signer, with libsecp256k1 (``coincurve``),
as the contract checks it with ``ecrecover``; EIP-2098 compact signatures.
"""

from __future__ import annotations

from typing import Any

import coincurve
from eth_hash.auto import keccak

from ..errors import SignatureError
from .messages import (
    registration_typed_data,
    submission_typed_data,
    typed_data_digest,
    vote_typed_data,
)
from .structs import (
    Eip712Domain,
    SignedRegistration,
    SignedSubmission,
    SignedVote,
    to_checksum_address,
)

_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def sign_registration(
    key: bytes | str, domain: Eip712Domain, task_id: int, deposit: int
) -> SignedRegistration:
    """Sign a registration consent with the node's key.

    Args:
        key: the node's private key. domain: the contract's domain.
        task_id: task to join. deposit: wei the relayer pays as this node's deposit.
    Returns: the signed consent.
    """
    secret, address = _signer(key)
    msg = registration_typed_data(domain, task_id, address, deposit)
    return SignedRegistration(task_id, address, deposit, _sign(secret, msg))


def sign_submission(
    key: bytes | str,
    domain: Eip712Domain,
    task_id: int,
    round: int,
    cid: bytes,
    content_hash: bytes,
    seed_commit: bytes = bytes(32),
) -> SignedSubmission:
    """Sign a model submission with the contributor's key (``seed_commit``: its commitment to
    the round's seed share, :func:`seed_commitment`; zero in a task without reveals).

    Returns: the signed submission (``contributor`` is the key's address).
    """
    secret, address = _signer(key)
    msg = submission_typed_data(domain, task_id, round, address, cid, content_hash, seed_commit)
    return SignedSubmission(
        task_id, round, address, bytes(cid), bytes(content_hash), _sign(secret, msg),
        bytes(seed_commit),
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
    secret, address = _signer(key)
    msg = vote_typed_data(
        domain, task_id, round, submission, model_digest, address, accept, score_bps
    )
    return SignedVote(
        task_id,
        round,
        submission,
        bytes(model_digest),
        address,
        bool(accept),
        score_bps,
        _sign(secret, msg),
    )


def recover_registration(domain: Eip712Domain, reg: SignedRegistration) -> str:
    """Returns: the address that signed ``reg`` (checksummed)."""
    return _recover(
        registration_typed_data(domain, reg.task_id, reg.participant, reg.deposit), reg.signature
    )


def recover_submission(domain: Eip712Domain, sub: SignedSubmission) -> str:
    """Returns: the address that signed ``sub`` (checksummed)."""
    msg = submission_typed_data(
        domain, sub.task_id, sub.round, sub.contributor, sub.cid, sub.content_hash,
        sub.seed_commit,
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


def address_of(private_key: bytes | str) -> str:
    """Returns: the checksummed Ethereum address of a 32-byte secp256k1 private key.

    Raises: SignatureError for a key of the wrong length, zero, or not below the curve order.
    """
    return _signer(private_key)[1]


def _signer(key: bytes | str) -> tuple[coincurve.PrivateKey, str]:
    """The secp256k1 key and its checksummed Ethereum address."""
    raw = bytes.fromhex(key[2:] if key.startswith("0x") else key) if isinstance(key, str) \
        else bytes(key)
    if len(raw) != 32:
        raise SignatureError(f"a private key is 32 bytes, got {len(raw)}")
    try:
        secret = coincurve.PrivateKey(raw)
    except ValueError as exc:
        raise SignatureError(f"invalid private key: {exc}") from None
    return secret, _address(secret.public_key.format(compressed=False))


def _address(public_key: bytes) -> str:
    return to_checksum_address(bytes(keccak(public_key[1:]))[-20:])


def _sign(secret: coincurve.PrivateKey, message: dict[str, Any]) -> bytes:
    """A 65-byte (r, s, v) signature, v in {27, 28}, low s (libsecp256k1 always gives it)."""
    sig = secret.sign_recoverable(typed_data_digest(message), hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def _recover(message: dict[str, Any], signature: bytes) -> str:
    compact_signature(signature)  # shape checks with our own error
    sig = bytes(signature)
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes([v]), typed_data_digest(message), hasher=None)
    except Exception as exc:  # libsecp256k1 rejects r or s out of range, points off the curve
        raise SignatureError(f"cannot recover signer: {exc}") from exc
    return _address(public.format(compressed=False))

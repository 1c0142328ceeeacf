"""EIP-712 typed data of the contract: registration consent, submission, vote (pure logic).

A node signs with its own key; the initiator relays the signed item; the contract recomputes
the same digest and checks the signer with ``ecrecover``. These builders produce exactly the
struct hashes ``contracts/CoopLedger.sol`` computes. The digest is hashed here directly for the
contract's few fixed types and signed with libsecp256k1 (``coincurve``): about ten times faster
than ``eth_account``'s generic typed-data encoder, which a round calls for every vote and
submission; the tests check both give the same digests and signatures.

Example::

    domain = ledger.domain                       # Eip712Domain(chain_id, contract address)
    sub = sign_submission(key, domain, task_id=1, round=1, cid=cid, content_hash=h)
    assert recover_submission(domain, sub) == sub.contributor
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import coincurve
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from .errors import SignatureError

if TYPE_CHECKING:
    from eth_account.messages import SignableMessage

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
    seed_commit: bytes = bytes(32),
) -> dict[str, Any]:
    """Returns: the full EIP-712 message for a submission."""
    _check_cid(cid)
    _check_b32(content_hash, "content_hash")
    _check_b32(seed_commit, "seed_commit")
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
            "seedCommit": bytes(seed_commit),
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


def seed_commitment(share: bytes, contributor: str) -> bytes:
    """A contributor's commitment to its seed share: keccak256(abi.encode(share, contributor)),
    bound to the contributor so that nobody can replay another's commitment and share."""
    _check_b32(share, "share")
    return bytes(keccak(bytes(share) + bytes(12) + bytes.fromhex(
        to_checksum_address(contributor)[2:])))


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


def signable(message: dict[str, Any]) -> SignableMessage:
    """Returns: the EIP-712 signable form of a full typed-data message (``eth_account``'s
    encoder, for wallets and tools that take it; :func:`typed_data_digest` is the same hash)."""
    from eth_account.messages import encode_typed_data

    return encode_typed_data(full_message=message)


def typed_data_digest(message: dict[str, Any]) -> bytes:
    """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct(message))`` of a
    full typed-data message whose types are flat structs of atomic fields (``uintN``,
    ``address``, ``bool``, ``bytes32``, ``bytes``, ``string``), as all the contract's are.

    Returns: 32 bytes.
    Raises: SignatureError for a field type outside that set or a value that does not fit.
    """
    types = message["types"]
    domain = _hash_struct("EIP712Domain", types["EIP712Domain"], message["domain"])
    struct = _hash_struct(message["primaryType"], types[message["primaryType"]],
                          message["message"])
    return bytes(keccak(b"\x19\x01" + domain + struct))


def _full(
    domain: Eip712Domain, primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, primary: fields},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": message,
    }


def _hash_struct(name: str, fields: list[dict[str, str]], values: dict[str, Any]) -> bytes:
    encoded = [_type_hash(name, tuple((f["name"], f["type"]) for f in fields))]
    encoded += [_encode_field(f["type"], values[f["name"]]) for f in fields]
    return bytes(keccak(b"".join(encoded)))


@functools.lru_cache(maxsize=16)
def _type_hash(name: str, fields: tuple[tuple[str, str], ...]) -> bytes:
    return bytes(keccak(f"{name}({','.join(f'{t} {n}' for n, t in fields)})".encode()))


def _encode_field(kind: str, value: Any) -> bytes:
    if kind == "bytes":
        return bytes(keccak(bytes(value)))
    if kind == "string":
        return bytes(keccak(str(value).encode()))
    if kind == "bytes32":
        _check_b32(value, "bytes32 field")
        return bytes(value)
    if kind == "address":
        return bytes(12) + bytes.fromhex(to_checksum_address(value)[2:])
    if kind == "bool":
        return int(bool(value)).to_bytes(32, "big")
    if kind.startswith("uint") and kind[4:].isdigit():
        number = int(value)
        if not 0 <= number < 2 ** int(kind[4:]):
            raise SignatureError(f"{number} does not fit {kind}")
        return number.to_bytes(32, "big")
    raise SignatureError(f"unsupported EIP-712 field type {kind!r}")


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


def _check_cid(cid: bytes) -> None:
    if not isinstance(cid, bytes | bytearray) or not 1 <= len(cid) <= MAX_CID_BYTES:
        size = len(cid) if isinstance(cid, bytes | bytearray) else type(cid).__name__
        raise SignatureError(f"cid must be 1..{MAX_CID_BYTES} bytes, got {size}")


def _check_b32(value: bytes, name: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise SignatureError(f"{name} must be 32 bytes")

"""The full EIP-712 messages of the contract's structs and their digest, hashed here directly
for the contract's few flat types (the same digest as ``eth_account``'s encoder; pure).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from eth_hash.auto import keccak

from ..errors import SignatureError
from .structs import (
    _DOMAIN_TYPE,
    REGISTRATION_TYPE,
    SUBMISSION_TYPE,
    VOTE_TYPE,
    Eip712Domain,
    _check_b32,
    _check_cid,
    to_checksum_address,
)

if TYPE_CHECKING:
    from eth_account.messages import SignableMessage


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

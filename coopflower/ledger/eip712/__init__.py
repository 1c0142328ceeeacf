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

Where each concept lives (every name is importable from ``coopflower.ledger.eip712`` as
before):

- :mod:`~coopflower.ledger.eip712.structs`: the domain and the signed structs
  (:class:`Eip712Domain`, :class:`SignedRegistration`, :class:`SignedSubmission`,
  :class:`SignedVote`), their field types, :func:`content_hash`, :func:`model_digest` and
  :func:`seed_commitment`;
- :mod:`~coopflower.ledger.eip712.messages`: the full typed-data messages
  (:func:`registration_typed_data`, :func:`submission_typed_data`, :func:`vote_typed_data`),
  :func:`typed_data_digest` and :func:`signable`;
- :mod:`~coopflower.ledger.eip712.signing`: ``sign_*``, ``recover_*``, :func:`verify_signer`,
  :func:`compact_signature` and :func:`address_of`.
"""

from __future__ import annotations

from .messages import (
    registration_typed_data,
    signable,
    submission_typed_data,
    typed_data_digest,
    vote_typed_data,
)
from .signing import (
    address_of,
    compact_signature,
    recover_registration,
    recover_submission,
    recover_vote,
    sign_registration,
    sign_submission,
    sign_vote,
    verify_signer,
)
from .structs import (
    MAX_CID_BYTES,
    NAME,
    REGISTRATION_TYPE,
    SUBMISSION_TYPE,
    VERSION,
    VOTE_TYPE,
    Eip712Domain,
    SignedRegistration,
    SignedSubmission,
    SignedVote,
    content_hash,
    model_digest,
    seed_commitment,
)

__all__ = [
    "NAME",
    "VERSION",
    "MAX_CID_BYTES",
    "REGISTRATION_TYPE",
    "SUBMISSION_TYPE",
    "VOTE_TYPE",
    "Eip712Domain",
    "SignedRegistration",
    "SignedSubmission",
    "SignedVote",
    "content_hash",
    "model_digest",
    "seed_commitment",
    "registration_typed_data",
    "submission_typed_data",
    "vote_typed_data",
    "typed_data_digest",
    "signable",
    "sign_registration",
    "sign_submission",
    "sign_vote",
    "recover_registration",
    "recover_submission",
    "recover_vote",
    "verify_signer",
    "compact_signature",
    "address_of",
]

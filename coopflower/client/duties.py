"""A contributor's duties beside training: publish a model (store, hash, sign) and judge one
(fetch by CID, check, evaluate, vote). Thin adapters over the store, the blob format, the
training loops and the ledger's EIP-712 signing; the node key never leaves this process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from coopflower.client.keys import NodeKey

if TYPE_CHECKING:
    from coopflower.storage.base import ContentStore

__all__ = ["Submission", "Verdict", "make_submission", "judge_model", "sign_vote", "open_store",
           "encrypt_blob",
           "sign_registration", "model_digest", "DutyError"]


class DutyError(ValueError):
    """A duty that cannot be carried out (missing config, unusable store)."""


@dataclass(frozen=True)
class Submission:
    """A published model: binary ``cid``, ``content_hash`` of the blob, EIP-712 ``signature``."""

    cid: bytes
    content_hash: bytes
    signature: bytes
    store_seconds: float


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one model.

    ``approve`` iff the blob matched its CID and content hash, unpacked into a known paper
    model, and reached the task's accuracy on the verifier's data; ``accuracy_bps`` its score
    (0 when unusable); ``reason`` why it was rejected ("" when approved); ``fetched_bytes``,
    ``num_examples`` and ``compute_seconds`` (evaluation only).
    """

    approve: bool
    accuracy_bps: int
    reason: str
    fetched_bytes: int
    num_examples: int
    compute_seconds: float


@functools.lru_cache(maxsize=4)
def _open(spec: str | None) -> ContentStore:
    """One store per spec and process (a Kubo store keeps its HTTP connection pool)."""
    from coopflower.storage import open_store

    return open_store(spec)


def make_submission(key: NodeKey, cfg: Mapping[str, Any], blob: bytes,
                    store_spec: str | None) -> Submission:
    """Put ``blob`` into storage and sign the submission for the round named in ``cfg``."""
    from coopflower.ledger.eip712 import content_hash

    t0 = time.perf_counter()
    cid_bytes = _open(store_spec).put(blob).to_bytes()
    stored = time.perf_counter() - t0
    chash = content_hash(blob)
    sig = _sign("submission", key, cfg, cid=cid_bytes, content_hash=chash)
    return Submission(cid_bytes, chash, sig, stored)


def judge_model(
    store_spec: str | None,
    cid: bytes,
    expected_hash: bytes,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    min_accuracy_bps: int,
) -> Verdict:
    """Fetch the model by CID, check it, and evaluate it on this verifier's data.

    The store checks the bytes against the CID; this checks the content hash and the blob's
    structure. Any failure is a "no" with its reason, never an exception: a bad model is the
    contributor's fault, and the verifier's vote says so.

    Returns:
        The ``Verdict``.
    """
    from coopflower.blob import BlobError, blob_to_state_dict, unpack_arrays
    from coopflower.ledger.eip712 import content_hash
    from coopflower.models import MODEL_NAMES
    from coopflower.storage.errors import StorageError
    from coopflower.training import evaluate_model

    def no(reason: str, fetched: int = 0) -> Verdict:
        return Verdict(False, 0, reason, fetched, 0, 0.0)

    try:
        blob = _open(store_spec).get(cid)
    except StorageError as exc:
        return no(f"fetch failed: {exc}")
    if content_hash(blob) != bytes(expected_hash):
        return no("content hash does not match the blob", len(blob))
    try:
        _, meta = unpack_arrays(blob)
        if meta.get("format") == _ivhe_format():
            return _judge_encrypted(blob, images, labels, min_accuracy_bps)
        name = meta.get("model", "")
        if name not in MODEL_NAMES:
            return no(f"unknown model architecture {name!r}", len(blob))
        model = _scratch_model(name)
        model.load_state_dict(blob_to_state_dict(blob, model))  # strict: every tensor replaced
        classes = [int(c) for c in meta["classes"].split(",")] if meta.get("classes") else None
    except (BlobError, ValueError, KeyError) as exc:
        return no(f"malformed model blob: {exc}", len(blob))
    res = evaluate_model(model, images, labels, classes=classes)
    if res.num_examples == 0:
        return no("no local samples of the model's classes", len(blob))
    bps = int(round(res.accuracy * 10000))
    ok = bps >= min_accuracy_bps
    reason = "" if ok else f"accuracy {bps} bps below {min_accuracy_bps}"
    return Verdict(ok, bps, reason, len(blob), res.num_examples, res.seconds)


@functools.lru_cache(maxsize=8)
def _scratch_model(name: str) -> Any:
    """One module per architecture and process, reloaded for each model judged (building a
    fresh one initialises weights that the blob overwrites at once)."""
    from coopflower.models import build_model

    return build_model(name)


def _ivhe_format() -> str:
    from coopflower.crypto.strategies import FORMAT

    return FORMAT


def encrypt_blob(model: Any, cfg: Mapping[str, Any], store_spec: str | None,
                 metadata: dict[str, str]) -> bytes:
    """The contributor's model with its first layer IVHE-encrypted under the initiator's
    public key (fetched by the CID in ``cfg``, checked by the store), as a blob."""
    from coopflower.client import protocol as P
    from coopflower.crypto import encrypt_model, public_key_from_bytes

    strategy = P.get_str(cfg, "encryption")
    if strategy != "elementwise":
        raise DutyError(f"encryption {strategy!r}: contributors can only do 'elementwise' "
                        "(the pair-wise strategy needs the secret key)")
    key_cid = cfg.get("ivhe-key-cid")
    if not isinstance(key_cid, bytes):
        raise DutyError("config lacks the IVHE public key's CID ('ivhe-key-cid')")
    pk = public_key_from_bytes(_open(store_spec).get(key_cid))
    enc = encrypt_model(model, pk, strategy, P.get_int(cfg, "ivhe-p", 2**7),
                        P.get_int(cfg, "ivhe-q", 1000), metadata=metadata)
    return enc.to_bytes()


def _judge_encrypted(blob: bytes, images: npt.NDArray[np.uint8],
                     labels: npt.NDArray[np.int64], min_accuracy_bps: int) -> Verdict:
    """Evaluate an encrypted model in cipherspace (public material only)."""
    from coopflower.crypto import EncryptedModel, IVHEError, evaluate_encrypted

    try:
        enc = EncryptedModel.from_bytes(blob)
        text = enc.metadata.get("classes", "")
        classes = [int(c) for c in text.split(",")] if text else None
        t0 = time.perf_counter()
        acc = evaluate_encrypted(enc, images, labels, classes)
        seconds = time.perf_counter() - t0
    except (IVHEError, ValueError) as exc:
        return Verdict(False, 0, f"unusable encrypted model: {exc}", len(blob), 0, 0.0)
    n = int(np.isin(labels, classes).sum()) if classes else int(len(labels))
    if not n or not np.isfinite(acc):
        return Verdict(False, 0, "no local samples of the model's classes", len(blob), 0,
                       seconds)
    bps = int(round(acc * 10000))
    ok = bps >= min_accuracy_bps
    reason = "" if ok else f"accuracy {bps} bps below {min_accuracy_bps} (cipherspace)"
    return Verdict(ok, bps, reason, len(blob), n, seconds)


def sign_vote(key: NodeKey, cfg: Mapping[str, Any], submission: int, model_digest: bytes,
              approve: bool, score_bps: int) -> bytes:
    """Sign a vote on ``submission`` (bound to its ``model_digest``) of the round in ``cfg``."""
    return _sign("vote", key, cfg, submission=submission, model_digest=model_digest,
                 accept=approve, score_bps=score_bps)


def model_digest(cid: bytes, chash: bytes) -> bytes:
    """The digest the contract stores for a model (what a vote is bound to)."""
    from coopflower.ledger.eip712 import model_digest as digest

    return digest(cid, chash)


def sign_registration(key: NodeKey, cfg: Mapping[str, Any]) -> bytes:
    """Sign the node's consent to be registered for the task in ``cfg`` with its deposit."""
    return _sign("registration", key, cfg)


def _domain(cfg: Mapping[str, Any]) -> Any:
    from coopflower.client import protocol as P
    from coopflower.ledger.eip712 import Eip712Domain

    return Eip712Domain(P.get_int(cfg, "chain-id"), P.get_str(cfg, "contract"))


def _sign(kind: str, key: NodeKey, cfg: Mapping[str, Any], **fields: Any) -> bytes:
    """Sign one of the contract's EIP-712 messages for the task and round named in ``cfg``."""
    from coopflower.client import protocol as P
    from coopflower.ledger import eip712

    domain = _domain(cfg)
    task_id = P.get_int(cfg, "task-id")
    if kind == "registration":
        deposit = int(P.get_str(cfg, "deposit"))
        return eip712.sign_registration(key.private_key, domain, task_id, deposit).signature
    rnd = P.get_int(cfg, "round")
    if kind == "submission":
        return eip712.sign_submission(key.private_key, domain, task_id, rnd, fields["cid"],
                                      fields["content_hash"]).signature
    if kind == "vote":
        return eip712.sign_vote(key.private_key, domain, task_id, rnd, fields["submission"],
                                fields["model_digest"], fields["accept"],
                                fields["score_bps"]).signature
    raise DutyError(f"unknown signature kind {kind!r}")


def open_store(spec: str | None) -> ContentStore:
    """The content store for ``spec`` (one per spec and process)."""
    return _open(spec)

"""The paper app's verifier: judge a contributor's blob by evaluating it on the node's MNIST
digits with the paper's models (plaintext, or in cipherspace when IVHE-encrypted), and the
contributor's side of encryption."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from coopflower.client.duties import DutyError, Verdict, open_store

__all__ = ["judge_model", "encrypt_blob"]


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
        blob = open_store(store_spec).get(cid)
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
    pk = public_key_from_bytes(open_store(store_spec).get(key_cid))
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

"""The aggregate stage: fetch the accepted models by CID, check them, aggregate, store.

The inner strategy aggregates (on replies rebuilt from the blobs and the contributors' own
metrics), or, with fusion, the strategy's ``aggregate_fn`` fuses them into the initiator's
MetaModel. The result is stored by CID; its CID and content hash go on chain in the record
step.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from logging import WARNING
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.supercore import log

from coopflower.client.copies import arrays_digest
from coopflower.ledger.eip712 import content_hash
from coopflower.strategy import wrapped
from coopflower.strategy.aggregate import AcceptedModel

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy
    from coopflower.strategy.stages import RoundState

__all__ = ["Prefetch", "aggregate", "fetch"]


def aggregate(s: CoordinatedStrategy, st: RoundState,
              accepted_ids: Sequence[int]) -> tuple[bytes, bytes] | None:
    """Aggregate the accepted submissions; returns the stored result's (CID, content hash),
    and sets the report's ``new_arrays`` (``None`` when nothing fits: the model is kept)."""
    report, rnd = st.report, st.rnd
    with s.phases.phase(rnd, "aggregate") as rec:
        # by CID, not by the order replies happened to arrive in: the same accepted models
        # aggregate (and fuse) to the same result, whatever the timing
        subs = sorted((st.by_id[sid] for sid in accepted_ids), key=lambda sub: bytes(sub.cid))
        models = fetch(s, rnd, subs, st.prefetched)
        report.accepted_digests = [arrays_digest(m.arrays) for m in models]
        if s.aggregate_fn is None:
            agg = _inner_aggregate(s, st, models)
        else:
            agg = s.aggregate_fn(models, {k: np.asarray(a.numpy())
                                          for k, a in st.arrays.items()} or None)
        if agg is None:
            rec.detail = "no accepted model fits: global model unchanged"
            return None
        from coopflower.audit.provenance import metamodel_provenance as provenance
        from coopflower.blob import pack_arrays

        blob = pack_arrays(agg, {"round": str(report.chain_round), "task": str(s.task_id or 0),
                                 "aggregated": str(len(models)), **provenance(s, st, models)})
        meta = (s.open_store().put(blob).to_bytes(), content_hash(blob))
        s.meter.add_storage(rnd, len(blob))
        report.meta_cid = meta[0]
        report.new_arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in agg.items()})
        rec.detail = f"{len(models)} accepted models aggregated and stored"
        return meta


def _inner_aggregate(s: CoordinatedStrategy, st: RoundState,
                     models: Sequence[AcceptedModel]) -> dict[str, Any] | None:
    """The accepted models aggregated by the inner strategy (its metrics kept for the round's
    train metrics)."""
    reply_of = {sub.cid: m for sub, m in zip(st.subs, st.replies, strict=True)}
    for m in models:
        if m.cid not in reply_of:  # on chain without a train reply to the initiator
            log(WARNING, "accepted model %s has no train reply (the app's metrics): left out "
                "of the inner strategy's aggregation", m.cid.hex()[:16])
    new, metrics = wrapped.aggregate_accepted(
        s.inner, st.rnd, [(m.arrays, reply_of[m.cid]) for m in models if m.cid in reply_of],
        weights=s.task.weights)
    st.report.app_train_metrics = metrics
    if new is None:
        return None
    return {k: np.asarray(a.numpy()) for k, a in new.items()}


def _decrypt(s: CoordinatedStrategy, blob: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The initiator decrypts an accepted model: plaintext arrays and its metadata."""
    from coopflower.crypto import EncryptedModel, decrypt_model

    enc = EncryptedModel.from_bytes(blob)
    state = decrypt_model(enc, s.secret_key)
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    return arrays, {"model": enc.arch, **enc.metadata}


# one fetched submission: its model (``None`` when unusable), the bytes fetched, and why not
Fetched = tuple["AcceptedModel | None", int, str]


def _fetch_one(s: CoordinatedStrategy, store: Any, sub: Any) -> Fetched:
    """Fetch one blob by CID (the store checks the bytes), check its content hash, unpack (and
    decrypt) it."""
    from coopflower.blob import BlobError, unpack_arrays
    from coopflower.storage.errors import StorageError

    unusable: tuple[type[Exception], ...] = (StorageError, BlobError, ValueError)
    if s.encryption:  # coopflower.crypto imports torch: seconds a plaintext round never needs
        from coopflower.crypto.errors import IVHEError

        unusable += (IVHEError,)
    nbytes = 0
    try:
        blob = store.get(sub.cid)
        nbytes = len(blob)
        if content_hash(blob) != sub.content_hash:
            raise ValueError("content hash mismatch")
        arrays, meta = unpack_arrays(blob)
        if s.encryption and meta.get("format", "").startswith("coopflower-ivhe"):
            arrays, meta = _decrypt(s, blob)
        classes = tuple(int(c) for c in meta.get("classes", "").split(",") if c)
        return (AcceptedModel(sub.cid, sub.contributor, meta.get("model", ""),
                              int(meta.get("num-examples", "1")), arrays, classes), nbytes, "")
    except unusable as exc:
        return None, nbytes, str(exc) or type(exc).__name__


class Prefetch:
    """The round's submitted plaintext blobs fetched, checked and unpacked in a background
    thread while the verifiers evaluate them (the initiator waits for the votes anyway), so
    :func:`aggregate` finds the accepted ones ready instead of fetching them after the votes.
    What :func:`fetch` counts and logs is unchanged: only the accepted ones, when taken."""

    def __init__(self, s: CoordinatedStrategy, subs: Sequence[Any]) -> None:
        self._got: dict[bytes, Fetched] = {}
        store = s.open_store()

        def run() -> None:
            for sub in subs:
                self._got[bytes(sub.cid)] = _fetch_one(s, store, sub)

        self._thread = threading.Thread(target=run, name="coop-prefetch", daemon=True)
        self._thread.start()

    def take(self, cid: bytes) -> Fetched | None:
        """The fetched submission with blob ``cid`` (``None`` if it was not prefetched)."""
        self._thread.join()
        return self._got.get(bytes(cid))


def fetch(s: CoordinatedStrategy, rnd: int, accepted: Sequence[Any],
          prefetched: Prefetch | None = None) -> list[AcceptedModel]:
    """Fetch accepted blobs by CID (the store checks the bytes) and unpack them, or take them
    from ``prefetched``; an unusable one is logged and left out."""
    store = s.open_store()
    out = []
    for sub in accepted:
        got = prefetched.take(sub.cid) if prefetched is not None else None
        model, nbytes, why = got if got is not None else _fetch_one(s, store, sub)
        s.meter.add_storage(rnd, nbytes)
        if model is None:
            log(WARNING, "accepted model %s unusable by the initiator: %s",
                sub.cid.hex()[:16], why)
            continue
        out.append(model)
    return out

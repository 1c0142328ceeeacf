"""The MetaModel check: does the model the initiator recorded follow from the accepted ones?

For the round's ``MetaModelRecorded`` the audit checks, from the chain and storage alone:

- the digest binds the CID and content hash, and the blob matches both;
- it is not a submission's own model, it is a model blob, and it records its provenance
  (:mod:`coopflower.audit.provenance`);
- its inputs are exactly the models the contract accepted: a rejected model, a model of no
  submission of the round and an accepted model left out are each named;
- where the aggregation is deterministic it is recomputed from the accepted blobs and compared
  bit for bit: coopflower's weighted averaging (``weighted_average``, the same function the
  strategy calls) and Flower's FedAvg and FedProx (``aggregate_arrayrecords``, the function
  their ``aggregate_train`` calls, on the same arrays in the same order with the claims
  capped as the strategy caps them);
- for fusion (I or II) that it is a MetaModel over exactly the accepted models' feature
  extractors, bit for bit; the fusion network, trained on the initiator's own data that nobody
  else holds, is taken on trust.

Anything else (a stateful server optimiser such as FedAdam, a robust aggregation such as Krum,
an aggregation function of the user's, IVHE-encrypted models whose plaintexts only the
initiator can read) is not recomputed, and the round's statement says so and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coopflower.audit.provenance import FUSION, WEIGHTED_AVERAGE, Provenance, ProvenanceError
from coopflower.audit.records import STATUS, Fetch, RoundHistory

__all__ = ["check_metamodel", "FEDAVG_LIKE"]

FEDAVG_LIKE = frozenset({"flwr.serverapp.strategy.fedavg.FedAvg",
                         "flwr.serverapp.strategy.fedprox.FedProx"})
"""Inner strategies whose ``aggregate_train`` is FedAvg's weighted mean (recomputed)."""

_NOT_REIMPLEMENTED = (
    "is not an aggregation the audit recomputes (it recomputes coopflower.weighted_average, "
    "FedAvg and FedProx; server optimisers such as FedAdam depend on earlier rounds' state, "
    "robust ones such as Krum or FedMedian are not reimplemented)")

Arrays = dict[str, np.ndarray]


def _accepted(rh: RoundHistory) -> dict[bytes, int]:
    """CID -> submission id of each model the contract accepted in the round."""
    ok = {s.submission for s in rh.settled if s.status == 1}
    return {bytes(s.cid): s.submission for s in rh.submissions if s.submission in ok}


def _status(rh: RoundHistory, sid: int) -> str:
    rec = next((s for s in rh.settled if s.submission == sid), None)
    return "not settled" if rec is None else STATUS.get(rec.status, str(rec.status))


def _input_problems(where: str, rh: RoundHistory, inputs: Sequence[bytes]) -> list[str]:
    """Every recorded input that is not an accepted model, and every accepted model left out."""
    accepted = _accepted(rh)
    by_cid = {bytes(s.cid): s.submission for s in rh.submissions}
    out, seen = [], set()
    for cid in inputs:
        if cid in seen:
            out.append(f"{where}: MetaModel includes submission {by_cid.get(cid)}'s model twice")
        seen.add(cid)
        if cid in accepted:
            continue
        if cid in by_cid:
            out.append(f"{where}: MetaModel includes submission {by_cid[cid]}'s model, which was "
                       f"{_status(rh, by_cid[cid])}")
        else:
            out.append(f"{where}: MetaModel includes {cid.hex()}, which is no submission of "
                       "this round")
    out += [f"{where}: MetaModel leaves out accepted submission {sid} ({cid.hex()})"
            for cid, sid in sorted(accepted.items(), key=lambda kv: kv[1]) if cid not in seen]
    return out


def _inputs(rh: RoundHistory, prov: Provenance, fetch: Fetch) -> list[Any] | str:
    """The accepted models in the recorded order as ``AcceptedModel`` (as the strategy's fetch
    builds them), or why they cannot be recomputed from."""
    from coopflower.blob import unpack_arrays
    from coopflower.strategy.aggregate import AcceptedModel

    by_cid = {bytes(s.cid): s for s in rh.submissions}
    out = []
    for cid in prov.inputs:
        try:
            arrays, meta = unpack_arrays(fetch(cid))
        except Exception as exc:
            return f"accepted submission {by_cid[cid].submission}'s blob is unreadable ({exc})"
        if meta.get("format", "").startswith("coopflower-ivhe"):
            return ("the accepted models are IVHE-encrypted and the audit holds no secret key; "
                    "checked: its inputs are exactly the accepted models")
        classes = tuple(int(c) for c in meta.get("classes", "").split(",") if c)
        out.append(AcceptedModel(cid, by_cid[cid].contributor, meta.get("model", ""),
                                 int(meta.get("num-examples", "1")), arrays, classes))
    return out


def _fedavg(models: Sequence[Any], weighted_by: str, rule: str = "declared") -> Arrays:
    """FedAvg's ``aggregate_arrayrecords`` on the models in order, each weighted as
    ``wrapped.aggregate_accepted`` weighs it: equally, or by its claim capped."""
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    from coopflower.strategy.aggregate import capped_counts

    weights = (capped_counts([m.num_examples for m in models]) if rule == "declared"
               else [1.0] * len(models))
    records = [RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in m.arrays.items()}),
                           "metrics": MetricRecord({weighted_by: int(w)})})
               for m, w in zip(models, weights, strict=True)]
    new = aggregate_arrayrecords(records, weighted_by)
    return {k: np.asarray(a.numpy()) for k, a in new.items()}


def _differences(recorded: Mapping[str, np.ndarray], recomputed: Mapping[str, np.ndarray] | None,
                 ) -> list[str]:
    """The names whose dtype, shape or bytes differ (or that only one side has)."""
    if recomputed is None:
        return ["all (the recomputation keeps no model)"]
    names = sorted(set(recorded) | set(recomputed))
    return [n for n in names if n not in recorded or n not in recomputed
            or recorded[n].dtype != recomputed[n].dtype
            or recorded[n].shape != recomputed[n].shape
            or recorded[n].tobytes() != np.ascontiguousarray(recomputed[n]).tobytes()]


def _text(arr: Any) -> str:
    return bytes(np.asarray(arr, dtype=np.uint8)).decode("utf-8", "replace")


def _same_extractor(arrays: Mapping[str, np.ndarray], i: int, model: Any) -> bool:
    """Whether private model ``i`` of the MetaModel is ``model``: same architecture key and
    every feature-extractor tensor equal to the accepted model's, bit for bit."""
    p = f"model{i}.state."
    state = {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
    if not state or _text(arrays[f"model{i}.arch"]) != model.model:
        return False
    for k, v in state.items():
        mine = model.arrays.get(k)
        if mine is None or np.shape(mine) != v.shape:
            return False
        if np.asarray(mine).astype(v.dtype).tobytes() != np.ascontiguousarray(v).tobytes():
            return False
    return True


def _fusion(where: str, mode: str, arrays: Mapping[str, np.ndarray],
            models: Sequence[Any]) -> list[str]:
    """A MetaModel of fusion ``mode`` over exactly ``models``' feature extractors."""
    from coopflower.fusion.serialize import is_metamodel_arrays

    if not is_metamodel_arrays(arrays):
        return [f"{where}: MetaModel recorded as fusion {mode} holds no fusion network"]
    out = []
    if _text(arrays["fusion.strategy"]) != mode:
        out.append(f"{where}: MetaModel is fusion {_text(arrays['fusion.strategy'])}, its "
                   f"provenance says {mode}")
    count, left = 0, list(models)
    while f"model{count}.arch" in arrays:
        match = next((m for m in left if _same_extractor(arrays, count, m)), None)
        if match is None:
            out.append(f"{where}: MetaModel's private model {count} "
                       f"({_text(arrays[f'model{count}.arch'])}) is none of the accepted models")
        else:
            left.remove(match)
        count += 1
    out += [f"{where}: MetaModel holds no feature extractor of accepted model "
            f"{m.cid.hex()}" for m in left]
    return out


def _recompute(where: str, prov: Provenance, arrays: Arrays, models: Sequence[Any],
               ) -> tuple[list[str], str]:
    """Recompute (or structurally check) the MetaModel from the accepted ``models``."""
    from coopflower.strategy.aggregate import weighted_average

    agg, n = prov.aggregation, len(models)
    if agg.startswith(FUSION + ":"):
        mode = agg.split(":", 1)[1]
        return _fusion(where, mode, arrays, models), (
            f"fusion {mode}: checked that it holds exactly the {n} accepted models' feature "
            "extractors, bit for bit; the fusion network, trained on the initiator's own data, "
            "is taken on trust")
    if agg == WEIGHTED_AVERAGE:
        recomputed = weighted_average(models, arrays)  # current: for its names and shapes only
    elif agg in FEDAVG_LIKE:
        recomputed = _fedavg(models, prov.weighted_by, prov.weights) if models else None
    else:
        return [], f"not recomputed: {agg} {_NOT_REIMPLEMENTED}"
    diff = _differences(arrays, recomputed)
    if diff:
        return [f"{where}: MetaModel does not follow from the accepted models: recomputed by "
                f"{agg} from {n} of them, it differs in {', '.join(diff[:5])}"], (
            f"recomputed by {agg} from {n} accepted models: DIFFERS")
    return [], f"recomputed by {agg} from {n} accepted models: equal bit for bit"


def check_metamodel(where: str, rh: RoundHistory, fetch: Fetch) -> tuple[list[str], str]:
    """Check the round's recorded MetaModel (see the module notes).

    Returns:
        The problems, each naming what is wrong, and a one-line statement of what was checked
        and what was taken on trust (``"none recorded"`` when the round records none).
    """
    from coopflower.blob import unpack_arrays
    from coopflower.ledger.eip712 import content_hash, model_digest

    if rh.meta is None:
        return [], "none recorded"
    cid, chash, digest = rh.meta
    tag = f"{where}: MetaModel {cid.hex()}"
    try:
        bad_digest = model_digest(cid, chash) != digest
        blob = fetch(cid)
    except Exception as exc:
        return [f"{where}: MetaModel blob {cid.hex()} failed its check: {exc}"], "unreadable blob"
    out = [f"{where}: MetaModel digest does not match its CID and hash"] if bad_digest else []
    if content_hash(blob) != chash:
        return [*out, f"{where}: MetaModel blob {cid.hex()} does not match its hash"], (
            "blob does not match its hash")
    own = next((s for s in rh.submissions if bytes(s.cid) == cid or s.content_hash == chash), None)
    if own is not None:
        return [*out, f"{where}: the recorded MetaModel {cid.hex()} is submission "
                f"{own.submission}'s own model ({_status(rh, own.submission)}), not an aggregate "
                "of the accepted models"], "a submission's own model, not an aggregate"
    try:
        arrays, meta = unpack_arrays(blob)
    except Exception as exc:
        return [*out, f"{tag} is not a model blob ({exc}): nothing shows it follows from the "
                "accepted models"], "not a model blob"
    try:
        prov = Provenance.parse(meta)
    except ProvenanceError as exc:
        return [*out, f"{tag}: {exc}: the audit cannot tell that it follows from the accepted "
                "models"], "records no provenance: not checkable"
    wrong = _input_problems(where, rh, prov.inputs)
    if wrong:
        return [*out, *wrong], "not recomputed: its inputs are not the accepted models"
    models = _inputs(rh, prov, fetch)
    if isinstance(models, str):
        return out, f"not recomputed: {models}"
    problems, statement = _recompute(where, prov, arrays, models)
    return [*out, *problems], statement

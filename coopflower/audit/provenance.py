"""What a MetaModel blob says of its own making, in its metadata: written by the strategy when
it stores the round's aggregate, read by the audit to check it against the chain.

``aggregation`` names how the accepted models were combined: ``coopflower.weighted_average``
(the default), ``coopflower.fusion:I`` or ``coopflower.fusion:II`` (a MetaModel), the inner
Flower strategy's class (``flwr.serverapp.strategy.fedavg.FedAvg``) or the aggregation
function's qualified name; ``inputs`` the CIDs (hex, comma-separated) of the accepted models in
the order they were aggregated; ``weighted-by`` the metric an inner strategy weighted by. These
are the initiator's claims: the audit checks the inputs against the contract's settlement and,
where the aggregation is deterministic, recomputes the result from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Provenance", "ProvenanceError", "WEIGHTED_AVERAGE", "FUSION", "aggregation_name",
           "inner_aggregates", "metamodel_provenance"]

WEIGHTED_AVERAGE = "coopflower.weighted_average"
FUSION = "coopflower.fusion"
_AGGREGATION, _INPUTS, _WEIGHTED_BY, _WEIGHTS = "aggregation", "inputs", "weighted-by", "weights"


class ProvenanceError(ValueError):
    """The blob's provenance metadata is missing or malformed."""


@dataclass(frozen=True)
class Provenance:
    """How a MetaModel was made: ``aggregation``, its ``inputs`` (CIDs, in order) and the
    metric an inner strategy weighted by."""

    aggregation: str
    inputs: tuple[bytes, ...]
    weighted_by: str = "num-examples"
    weights: str = "declared"  # the task's rule: "equal", or "declared" (clipped claims)

    def metadata(self) -> dict[str, str]:
        """The blob metadata entries (str to str) that record this provenance."""
        return {_AGGREGATION: self.aggregation,
                _INPUTS: ",".join(cid.hex() for cid in self.inputs),
                _WEIGHTED_BY: self.weighted_by, _WEIGHTS: self.weights}

    @classmethod
    def parse(cls, metadata: Mapping[str, str]) -> Provenance:
        """The provenance a blob's metadata records.

        Raises:
            ProvenanceError: no ``aggregation`` or ``inputs`` entry, or an input that is not hex.
        """
        if _AGGREGATION not in metadata or _INPUTS not in metadata:
            raise ProvenanceError("it records no provenance (no aggregation and inputs in "
                                  "its metadata)")
        try:
            inputs = tuple(bytes.fromhex(c) for c in metadata[_INPUTS].split(",") if c)
        except ValueError:
            raise ProvenanceError(f"its inputs {metadata[_INPUTS][:80]!r} are not hex CIDs") \
                from None
        return cls(metadata[_AGGREGATION], inputs, metadata.get(_WEIGHTED_BY, "num-examples"),
                   metadata.get(_WEIGHTS, "declared"))


def inner_aggregates(inner: Any, aggregate_fn: Any, fusing: bool) -> bool:
    """Whether the inner Flower strategy aggregates: no aggregation function (fusion) is given,
    as ``strategy.accepted.aggregate`` decides."""
    return inner is not None and aggregate_fn is None and not fusing


def aggregation_name(inner: Any, aggregate_fn: Any, fusing: bool) -> str:
    """The ``aggregation`` a strategy uses: fusion I or II, its inner Flower strategy's class,
    coopflower's weighted averaging, or the aggregation function's qualified name."""
    from coopflower.strategy.aggregate import weighted_average

    if fusing:
        return f"{FUSION}:{getattr(aggregate_fn, 'mode', '?')}"
    if inner_aggregates(inner, aggregate_fn, fusing):
        return f"{type(inner).__module__}.{type(inner).__qualname__}"
    if aggregate_fn is weighted_average or getattr(aggregate_fn, "mode", None) == "average":
        return WEIGHTED_AVERAGE
    name = getattr(aggregate_fn, "__qualname__", type(aggregate_fn).__qualname__)
    return f"{getattr(aggregate_fn, '__module__', '?')}.{name}"


def metamodel_provenance(s: Any, st: Any, models: Sequence[Any]) -> dict[str, str]:
    """The provenance entries for the blob of a round's aggregate.

    Args:
        s: the ``CoordinatedStrategy`` (its ``inner``, ``aggregate_fn``, ``fusing``), which
            aggregates as ``strategy.accepted.aggregate`` does.
        st: the ``RoundState`` (its ``subs``: the submissions with a train reply, which are
            the only ones an inner strategy aggregates).
        models: the accepted models handed to the aggregation, in order.
    """
    fusing = bool(getattr(s, "fusing", False))
    inputs = [m.cid for m in models]
    weighted_by, weights = "num-examples", "declared"
    if inner_aggregates(s.inner, s.aggregate_fn, fusing):
        weights = str(getattr(getattr(s, "task", None), "weights", "declared"))
        replied = {sub.cid for sub in st.subs}
        inputs = [cid for cid in inputs if cid in replied]
        weighted_by = str(getattr(s.inner, "weighted_by_key", weighted_by))
    return Provenance(aggregation_name(s.inner, s.aggregate_fn, fusing), tuple(inputs),
                      weighted_by, weights).metadata()

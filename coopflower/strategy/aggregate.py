"""Aggregation of the accepted models: a pluggable step of the coordinated round.

An aggregation function takes the accepted models of a round (already fetched from storage
and checked against their CIDs) and the current global arrays, and returns the new global
arrays, or ``None`` to keep the current ones. The default is weighted averaging by the number
of training examples; the fusion step (the MetaModel) plugs in the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["AcceptedModel", "AggregateFn", "AggregationError", "weighted_average", "signature",
           "capped_counts", "CLAIM_CAP"]

# a contributor's declared number of examples counts at most this many times the round's median
# declaration: nobody checks the claim, so one node declaring 10**12 must not become the model
CLAIM_CAP = 2.0

Arrays = dict[str, npt.NDArray[np.generic]]


class AggregationError(ValueError):
    """Models that cannot be aggregated (no weights, mismatched shapes)."""


@dataclass(frozen=True)
class AcceptedModel:
    """One model the verifiers accepted.

    ``cid`` of its blob, ``contributor`` address, ``model`` architecture name, ``num_examples``
    it was trained on, ``arrays`` (name -> array), ``classes`` it was trained on.
    """

    cid: bytes
    contributor: str
    model: str
    num_examples: int
    arrays: Mapping[str, npt.NDArray[np.generic]]
    classes: tuple[int, ...] = field(default_factory=tuple)


AggregateFn = Callable[[Sequence[AcceptedModel], Mapping[str, npt.NDArray[np.generic]] | None],
                       Arrays | None]


def signature(
    arrays: Mapping[str, npt.NDArray[np.generic]],
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Names and shapes: models with equal signatures can be averaged."""
    return tuple(sorted((k, tuple(np.shape(v))) for k, v in arrays.items()))


def capped_counts(counts: Sequence[float], cap: float = CLAIM_CAP) -> list[float]:
    """The declared example counts with each clipped to ``cap`` times the median of all of
    them: with an honest majority of declarations the median is honest, so an inflated claim
    weighs at most ``cap`` honest contributors' worth."""
    if not counts:
        return []
    limit = cap * float(np.median(np.asarray(counts, dtype=np.float64)))
    return [min(float(c), limit) for c in counts]


def weighted_average(
    models: Sequence[AcceptedModel],
    current: Mapping[str, npt.NDArray[np.generic]] | None = None,
) -> Arrays | None:
    """Average the accepted models weighted by ``num_examples`` (each clipped by
    :func:`capped_counts`: the counts are the contributors' own claims).

    Only models with the current global model's architecture (names and shapes) are averaged;
    when there is no current model, the most common architecture among the accepted ones.
    Heterogeneous models of other architectures are left out (fuse them with the MetaModel).

    Args:
        models: the accepted models.
        current: the current global arrays, or ``None``.

    Returns:
        The averaged arrays (``float32``), or ``None`` when no model fits.
    """
    if not models:
        return None
    if current:
        target = signature(current)
    else:
        target = Counter(signature(m.arrays) for m in models).most_common(1)[0][0]
    chosen = [m for m in models if signature(m.arrays) == target]
    if not chosen:
        return None
    weights = np.array(capped_counts([m.num_examples for m in chosen]), dtype=np.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise AggregationError(f"weights must be positive, got {weights.tolist()}")
    weights /= weights.sum()
    out: Arrays = {}
    for name, _ in target:
        stacked = np.stack([np.asarray(m.arrays[name], dtype=np.float64) for m in chosen])
        out[name] = np.tensordot(weights, stacked, axes=1).astype(np.float32)
    return out

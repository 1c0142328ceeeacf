"""What a verifier refuses as no contribution: the model the contributor was sent, or a model
already accepted in the task, unchanged or within the task's distance of it.

Pure logic over arrays (the verify stage fetches the references by CID): the distance of a
submission ``m`` to a reference ``r`` is ``||m - r|| / ||r||`` over all their arrays (L2,
relative). The task sets ``min_distance`` (``TaskConfig.min_distance``, committed to by the
task's spec hash); 0 refuses only exact copies. A free rider that adds noise above the distance,
and an honest contributor that barely moved the model, are beyond what this check can tell
apart: the relative criterion of issue 12 is the answer to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["Reference", "relative_distance", "copy_check"]

Arrays = Mapping[str, np.ndarray]
BlobCheck = Callable[[Arrays, Mapping[str, str]], str]


class Reference:
    """A model a submission must differ from, and how to name it in a refusal."""

    def __init__(self, arrays: Arrays, name: str, why: str) -> None:
        self.arrays, self.name, self.why = arrays, name, why
        self._flat: _Flat | None = None

    def flat(self) -> _Flat:
        """Its names, shapes, all values as one float64 vector and that vector's squared norm
        (made once: every submission a verifier checks is compared with it)."""
        if self._flat is None:
            self._flat = _flatten(self.arrays)
        return self._flat


class _Flat:
    def __init__(self, signature: tuple[tuple[str, tuple[int, ...]], ...], values: np.ndarray):
        self.signature, self.values = signature, values
        self.norm2 = float(values @ values)


def _flatten(arrays: Arrays) -> _Flat:
    names = sorted(arrays)
    signature = tuple((k, tuple(np.shape(arrays[k]))) for k in names)
    parts = [np.asarray(arrays[k], np.float64).ravel() for k in names]
    return _Flat(signature, np.concatenate(parts) if parts else np.zeros(0))


def _distance(model: _Flat, reference: _Flat) -> float | None:
    if model.signature != reference.signature:
        return None
    d = model.values - reference.values
    diff = float(d @ d)
    if diff == 0.0:
        return 0.0
    return float(np.sqrt(diff / reference.norm2)) if reference.norm2 > 0 else float("inf")


def relative_distance(model: Arrays, reference: Arrays) -> float | None:
    """``||model - reference|| / ||reference||`` over every array (``None`` when the names or
    shapes differ: then they are different models; ``inf`` for a zero reference that differs)."""
    return _distance(_flatten(model), _flatten(reference))


def copy_check(references: Sequence[Reference], min_distance: float,
               then: BlobCheck | None = None) -> BlobCheck:
    """A check refusing a submission equal to, or within ``min_distance`` of, any reference
    (the reason names which and how far), then ``then``. The submission is flattened once, each
    reference once for all submissions."""

    def check(arrays: Arrays, meta: Mapping[str, str]) -> str:
        model = _flatten(arrays)
        for ref in references:
            d = _distance(model, ref.flat())
            if d is None:
                continue
            if d == 0.0:
                return f"{ref.name}, unchanged: {ref.why}"
            if d <= min_distance:
                return (f"within {d:.3g} of {ref.name} (the task's distance {min_distance:g}): "
                        f"{ref.why}")
        return then(arrays, meta) if then is not None else ""

    return check

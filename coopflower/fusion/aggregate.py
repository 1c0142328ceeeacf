"""The fusion step as the coordinated strategy's pluggable aggregation function.

:func:`make_fusion_aggregate` returns a function with the signature of
``coopflower.strategy.aggregate.AggregateFn``: ``(accepted models, current global arrays) ->
new global arrays | None``. It fuses the accepted models (whatever their architectures) into a
MetaModel on the initiator's own data and returns :func:`metamodel_to_arrays`, which the strategy
stores by CID and records on the contract. ``"average"`` delegates to weighted averaging
(homogeneous models).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from coopflower.fusion.metamodel import FusionError
from coopflower.fusion.serialize import metamodel_to_arrays
from coopflower.fusion.train import FusionConfig, FusionResult, PrivateModel, fuse_models

__all__ = ["FusionAggregate", "make_fusion_aggregate"]

Arrays = dict[str, npt.NDArray[np.generic]]


class FusionAggregate:
    """Callable aggregation step; ``last`` holds the latest :class:`FusionResult`.

    Args:
        images, labels: the initiator's own data.
        mode: ``"I"``, ``"II"`` (gradual fusion) or ``"average"``.
        config: fusion settings (its ``strategy`` is replaced by ``mode``).
        num_classes: ``d``.
        on_epoch: optional progress callback.
    """

    def __init__(
        self,
        images: npt.NDArray[np.generic],
        labels: npt.NDArray[np.generic],
        mode: Literal["I", "II", "average"] = "II",
        config: FusionConfig | None = None,
        num_classes: int = 10,
        on_epoch: Callable[[Any], None] | None = None,
    ) -> None:
        if mode not in ("I", "II", "average"):
            raise FusionError(f"unknown aggregation mode {mode!r}; choose I, II or average")
        self.images, self.labels, self.mode = images, labels, mode
        base = config or FusionConfig()
        self.config = FusionConfig(**{**base.__dict__, "strategy": mode}) if mode != "average" \
            else base
        self.num_classes = num_classes
        self.on_epoch = on_epoch
        self.last: FusionResult | None = None

    @property
    def produces_metamodel(self) -> bool:
        """True for fusion (Strategies I and II): the result fits no contributor, so the
        coordinated strategy lets contributors continue their own private models."""
        return self.mode != "average"

    def __call__(
        self,
        models: Sequence[Any],
        current: Mapping[str, npt.NDArray[np.generic]] | None = None,
    ) -> Arrays | None:
        """Fuse (or average) the accepted models; ``None`` when there is none.

        ``models`` are ``coopflower.strategy.aggregate.AcceptedModel`` (``model`` architecture
        name, ``arrays``, ``classes``; empty ``classes`` means all ``d`` classes).
        """
        if self.mode == "average":
            from coopflower.strategy.aggregate import weighted_average

            return weighted_average(models, current)
        if not models:
            return None
        private = [
            PrivateModel(
                arch=m.model,
                weights=m.arrays,
                labels=tuple(m.classes) or tuple(range(self.num_classes)),
                name=getattr(m, "contributor", ""),
            )
            for m in models
        ]
        self.last = fuse_models(private, self.images, self.labels, self.config,
                                self.num_classes, self.on_epoch)
        return metamodel_to_arrays(self.last.meta)


def make_fusion_aggregate(
    images: npt.NDArray[np.generic],
    labels: npt.NDArray[np.generic],
    mode: Literal["I", "II", "average"] = "II",
    config: FusionConfig | None = None,
    num_classes: int = 10,
) -> FusionAggregate:
    """An ``AggregateFn`` for ``CoordinatedStrategy(aggregate_fn=...)`` (see the class)."""
    return FusionAggregate(images, labels, mode, config, num_classes)

"""The fusion step as the coordinated strategy's pluggable aggregation function.

:func:`make_fusion_aggregate` returns a function with the signature of
``coopflower.strategy.aggregate.AggregateFn``: ``(accepted models, current global arrays) ->
new global arrays | None``. The accepted models arrive as named arrays (``name -> ndarray``)
plus an architecture key; each is rebuilt with the caller's ``factories[key]()``, cut at its
head, and all are fused into a MetaModel on the initiator's own data. The result is
:func:`metamodel_to_arrays`, which the strategy stores by CID and records on the contract.
``"average"`` delegates to weighted averaging (homogeneous models; no factories needed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from coopflower.fusion.config import FusionConfig, FusionResult
from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import Factories
from coopflower.fusion.inputs import Inputs, Transform
from coopflower.fusion.private import PrivateModel
from coopflower.fusion.serialize import metamodel_to_arrays
from coopflower.fusion.train import fuse_models

__all__ = ["FusionAggregate", "Heads", "make_fusion_aggregate"]

Arrays = dict[str, npt.NDArray[np.generic]]
Heads = str | Mapping[str, str] | None
Mode = Literal["I", "II", "average"]


class FusionAggregate:
    """Callable aggregation step; ``last`` holds the latest :class:`FusionResult`.

    Args:
        images, labels: the initiator's own data (inputs as the private models take them).
        mode: ``"I"``, ``"II"`` (gradual fusion) or ``"average"``.
        config: fusion settings (its ``strategy`` is replaced by ``mode``).
        num_classes: ``d``.
        on_epoch: optional progress callback.
        factories: ``architecture key -> zero-argument model factory`` for every key the
            accepted models may name (required to fuse).
        heads: the head layer's name: one for every architecture, one per key, or ``None``
            (each model's only ``nn.Linear`` with ``num_classes`` outputs).
        transform: ``transform(x, generator)`` for ``config.augment_copies`` (see
            :func:`~coopflower.fusion.train.fuse_models`).
    """

    def __init__(
        self,
        images: Inputs,
        labels: Inputs,
        mode: Mode = "II",
        config: FusionConfig | None = None,
        num_classes: int = 10,
        on_epoch: Callable[[Any], None] | None = None,
        *,
        factories: Factories | None = None,
        heads: Heads = None,
        transform: Transform | None = None,
    ) -> None:
        if mode not in ("I", "II", "average"):
            raise FusionError(f"unknown aggregation mode {mode!r}; choose I, II or average")
        self.images, self.labels, self.mode = images, labels, mode
        base = config or FusionConfig()
        self.config = FusionConfig(**{**base.__dict__, "strategy": mode}) if mode != "average" \
            else base
        self.num_classes = num_classes
        self.on_epoch = on_epoch
        self.factories = factories
        self.heads = heads
        self.transform = transform
        self.last: FusionResult | None = None

    @property
    def produces_metamodel(self) -> bool:
        """True for fusion (Strategies I and II): the result fits no contributor, so the
        coordinated strategy lets contributors continue their own private models."""
        return self.mode != "average"

    def head_of(self, arch: str) -> str | None:
        """The head name for architecture ``arch`` (``None``: found in the model)."""
        if self.heads is None or isinstance(self.heads, str):
            return self.heads
        if arch not in self.heads:
            raise FusionError(f"no head layer named for architecture {arch!r}; heads know "
                              f"{sorted(self.heads)}")
        return self.heads[arch]

    def private_model(self, m: Any) -> PrivateModel:
        """One accepted model (``model`` key, ``arrays``, ``classes``) rebuilt for fusion."""
        if self.factories is None:
            raise FusionError("fusing accepted models needs make_fusion_aggregate(..., "
                              "factories={architecture key: zero-argument model factory})")
        return PrivateModel.from_arrays(
            m.model, m.arrays, self.factories, self.head_of(m.model),
            tuple(m.classes), getattr(m, "contributor", ""), self.num_classes)

    def __call__(
        self,
        models: Sequence[Any],
        current: Mapping[str, npt.NDArray[np.generic]] | None = None,
    ) -> Arrays | None:
        """Fuse (or average) the accepted models; ``None`` when there is none.

        ``models`` are ``coopflower.strategy.aggregate.AcceptedModel`` (``model`` architecture
        key, ``arrays``, ``classes``; empty ``classes`` means all ``d`` classes).
        """
        if self.mode == "average":
            from coopflower.strategy.aggregate import weighted_average

            return weighted_average(models, current)
        if not models:
            return None
        private = [self.private_model(m) for m in models]
        self.last = fuse_models(private, self.images, self.labels, self.config,
                                self.num_classes, self.on_epoch, transform=self.transform)
        return metamodel_to_arrays(self.last.meta)


def make_fusion_aggregate(
    images: Inputs,
    labels: Inputs,
    mode: Mode = "II",
    config: FusionConfig | None = None,
    num_classes: int = 10,
    *,
    factories: Factories | None = None,
    heads: Heads = None,
    transform: Transform | None = None,
) -> FusionAggregate:
    """An ``AggregateFn`` for ``CoordinatedStrategy(aggregate_fn=...)`` (see the class)."""
    return FusionAggregate(images, labels, mode, config, num_classes,
                           factories=factories, heads=heads, transform=transform)

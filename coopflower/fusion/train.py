"""Fusing accepted private models of any architectures into a MetaModel on the initiator's
data: :func:`fuse_models` cuts each at its head, computes the frozen features once, and trains
the fusion network (Strategy I or gradual Strategy II, :func:`fit_metamodel`). No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from coopflower.fusion.config import EpochRecord, FusionConfig, FusionMetrics, FusionResult
from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import FeatureExtractor
from coopflower.fusion.fit import fit_metamodel, labels_tensor, split_indices
from coopflower.fusion.inputs import (
    Inputs,
    Transform,
    as_inputs,
    default_transform,
    images_to_tensor,
    shift_images,
)
from coopflower.fusion.metamodel import MetaModel
from coopflower.fusion.private import PrivateModel, as_private_model

__all__ = [
    "EpochRecord",
    "FusionConfig",
    "FusionMetrics",
    "FusionResult",
    "PrivateModel",
    "compute_features",
    "fit_metamodel",
    "fuse_models",
    "images_to_tensor",
    "shift_images",
]


@torch.no_grad()
def compute_features(meta: MetaModel, inputs: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``f_c`` for every input, in batches (the extractors are frozen)."""
    meta.eval()
    parts = [meta.concat_features(inputs[i : i + batch_size])
             for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, sum(meta.feature_dims))


def _extractor(pm: PrivateModel, sample: torch.Tensor) -> FeatureExtractor:
    ext = pm.extractor()
    if not ext.has_feature_dim:  # a head other than nn.Linear: measure its input
        ext.measure(sample)
    return ext


def _augmented(meta: MetaModel, x: torch.Tensor, labels: Inputs, config: FusionConfig,
               tf: Transform | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features and labels of ``augment_copies`` transformed copies of the training share."""
    if tf is None or not config.augment_copies:
        return None
    n = int(x.shape[0])
    y = labels_tensor(labels, n, meta.num_classes)
    train_ix, _ = split_indices(n, config.val_fraction, config.seed)
    copies = x[train_ix].repeat(config.augment_copies, *([1] * (x.ndim - 1)))
    out = tf(copies, torch.Generator().manual_seed(config.seed + 7))
    if not isinstance(out, torch.Tensor) or out.shape != copies.shape:
        raise FusionError(f"transform must return a tensor of shape {tuple(copies.shape)}")
    return compute_features(meta, out), y[train_ix].repeat(config.augment_copies)


def fuse_models(
    private_models: Sequence[PrivateModel | tuple[nn.Module, Sequence[int]]],
    inputs: Inputs,
    labels: Inputs,
    config: FusionConfig | None = None,
    num_classes: int = 10,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    transform: Transform | None = None,
) -> FusionResult:
    """Fuse accepted private models (any architectures) into a MetaModel trained on the
    initiator's data.

    Args:
        private_models: :class:`PrivateModel` entries (model, head, labels, architecture key),
            or ``(model, labels)`` pairs whose head is their only ``nn.Linear`` with
            ``num_classes`` outputs. They are copied, never modified.
        inputs: the initiator's inputs ``(N, ...)``, as every private model takes them
            (``uint8`` arrays are images: see :func:`~coopflower.fusion.inputs.as_inputs`).
        labels: ``(N,)`` integer labels.
        config: fusion settings (default: Strategy II, :class:`FusionConfig` defaults).
        num_classes: ``d``.
        on_epoch: progress callback per epoch.
        transform: ``transform(x, generator) -> x'`` making ``config.augment_copies`` copies
            of the training share; ``None``: whole-pixel image shifts (``config.max_shift``).

    Returns:
        :class:`FusionResult` with the MetaModel and its :class:`FusionMetrics`. Raises
        ``FusionError`` on bad models, heads, data or settings.
    """
    config = config or FusionConfig()
    x = as_inputs(inputs)
    if config.augment_copies and transform is None:  # fail before any feature is computed
        transform = default_transform(x, config.max_shift, config.max_rotate, config.max_scale)
    private = [as_private_model(pm, num_classes) for pm in private_models]
    extractors = [_extractor(pm, x) for pm in private]
    label_sets = [pm.labels or tuple(range(num_classes)) for pm in private]
    meta = MetaModel(extractors, label_sets, num_classes, config.strategy, config.seed)
    fc = compute_features(meta, x)
    extra = _augmented(meta, x, labels, config, transform)
    metrics = fit_metamodel(meta, fc, labels, config, on_epoch, extra)
    return FusionResult(meta, metrics)

"""Training the fusion network on precomputed features: Strategy I and gradual fusion (II).

The private extractors are frozen, so ``f_c`` is computed once and only ``A``, ``B`` and the
biases train. A held-out share of the initiator's data picks the best epoch (the test split is
never seen here). Pure torch: no I/O, no knowledge of the private architectures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coopflower.fusion.config import EpochRecord, FusionConfig, FusionMetrics
from coopflower.fusion.errors import FusionError
from coopflower.fusion.inputs import Inputs
from coopflower.fusion.metamodel import MetaModel

__all__ = ["fit_metamodel", "labels_tensor", "split_indices"]


def labels_tensor(labels: Inputs, n: int, d: int) -> torch.Tensor:
    """``(n,)`` integer labels in ``[0, d)`` as a long tensor; ``FusionError`` otherwise."""
    y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if tuple(y.shape) != (n,):
        raise FusionError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise FusionError("labels must be integers")
    if n and (int(y.min()) < 0 or int(y.max()) >= d):
        raise FusionError(f"labels must be in [0, {d})")
    return y.long()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The initiator's ``(train, held-out)`` indices (deterministic for ``seed``)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


@torch.no_grad()
def _accuracy(meta: MetaModel, fc: torch.Tensor, y: torch.Tensor) -> float:
    if fc.shape[0] == 0:
        return float("nan")
    meta.eval()
    return float((meta.fuse_features(fc).argmax(1) == y).float().mean())


@dataclass
class _Data:
    fc_train: torch.Tensor
    y_train: torch.Tensor
    fc_val: torch.Tensor
    y_val: torch.Tensor


def _prepare(meta: MetaModel, features: torch.Tensor, labels: Inputs, config: FusionConfig,
             extra: tuple[torch.Tensor, torch.Tensor] | None) -> _Data:
    if meta.strategy != config.strategy:
        raise FusionError(f"MetaModel built for Strategy {meta.strategy}, config says "
                          f"{config.strategy}")
    if features.ndim != 2 or features.shape[1] != meta.A.shape[0]:
        raise FusionError(f"features must be (N, {meta.A.shape[0]}), got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise FusionError("features contain NaN or Inf")
    y = labels_tensor(labels, int(features.shape[0]), meta.num_classes)
    train_ix, val_ix = split_indices(int(features.shape[0]), config.val_fraction, config.seed)
    if train_ix.numel() == 0:
        raise FusionError("no initiator samples left to train the fusion network on")
    data = _Data(features[train_ix], y[train_ix], features[val_ix], y[val_ix])
    if extra is not None:
        ef, ey = extra
        if ef.ndim != 2 or ef.shape[1] != features.shape[1] or not torch.isfinite(ef).all():
            raise FusionError("extra features must be finite and match the features' width")
        data.fc_train = torch.cat([data.fc_train, ef])
        data.y_train = torch.cat([data.y_train,
                                  labels_tensor(ey, int(ef.shape[0]), meta.num_classes)])
    with torch.no_grad():
        meta.feature_mean.copy_(data.fc_train.mean(0))
        meta.feature_std.copy_(data.fc_train.std(0, unbiased=False).clamp_min(1e-6))
    if config.strategy == "II" and config.block_init == "private":
        meta.init_blocks_from_private_heads()
    return data


def _stages(config: FusionConfig) -> list[tuple[int, int, float, float]]:
    """``(stage, epochs, gamma, lr)`` in order."""
    if config.strategy == "I":
        return [(2, config.epochs_stage1 + config.epochs_stage2, 1.0, config.lr)]
    return [(1, config.epochs_stage1, 0.0, config.lr),
            (2, config.epochs_stage2, 1.0, config.lr * config.stage2_lr_factor)]


def _epoch(meta: MetaModel, opt: torch.optim.Optimizer, data: _Data, batch_size: int,
           gen: torch.Generator) -> float:
    """One pass over the training share; returns the mean loss."""
    meta.train()
    n = int(data.fc_train.shape[0])
    order = torch.randperm(n, generator=gen)
    loss_sum = 0.0
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(meta.fuse_features(data.fc_train[idx]),
                                           data.y_train[idx])
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * idx.numel()
    if not np.isfinite(loss_sum):
        raise FusionError("fusion training diverged (non-finite loss); lower lr")
    return loss_sum / n


def fit_metamodel(
    meta: MetaModel,
    features: torch.Tensor,
    labels: Inputs,
    config: FusionConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FusionMetrics:
    """Train ``meta``'s fusion network in place on precomputed features ``f_c``.

    Strategy II runs stage one (``gamma = 0``: only ``A``'s diagonal blocks, ``B``'s identity
    positions and the biases move) then stage two (``gamma = 1``: everything); Strategy I
    trains everything throughout. The weights of the best held-out epoch are kept.

    Args:
        meta: a fresh :class:`MetaModel` (its ``strategy`` must match ``config.strategy``).
        features: ``(N, |f_c|)`` from ``compute_features`` on the initiator's data.
        labels: ``(N,)`` integer labels.
        config: the training settings.
        on_epoch: called after every epoch (progress lines).
        extra: more ``(features, labels)`` for the training share only (augmented copies).

    Returns:
        :class:`FusionMetrics`. Raises ``FusionError`` on bad inputs.
    """
    # The fusion network is small: with several threads, the per-step thread overhead
    # dominates (10x slower measured on 2 busy cores), so it trains on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(meta, _prepare(meta, features, labels, config, extra), config, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _fit(meta: MetaModel, data: _Data, config: FusionConfig,
         on_epoch: Callable[[EpochRecord], None] | None) -> FusionMetrics:
    params = [meta.A, meta.B, meta.bias_h, meta.bias_y]
    gen = torch.Generator().manual_seed(config.seed)
    history: list[EpochRecord] = []
    best_acc, best_epoch, best_stage = -1.0, 0, 0
    best_state = {k: v.detach().clone() for k, v in meta.state_dict().items()}
    start, epoch = time.perf_counter(), 0
    for stage, epochs, gamma, lr in _stages(config):
        if epochs == 0:
            continue
        meta.set_gamma(gamma)
        # A fresh optimiser per stage: stage two starts without stage one's moments.
        opt = torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
        for _ in range(epochs):
            epoch += 1
            loss = _epoch(meta, opt, data, config.batch_size, gen)
            rec = EpochRecord(stage, epoch, loss, _accuracy(meta, data.fc_train, data.y_train),
                              _accuracy(meta, data.fc_val, data.y_val))
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            score = rec.val_accuracy if data.fc_val.shape[0] else rec.train_accuracy
            if score >= best_acc:  # ties go to the later epoch (more fused)
                best_acc, best_epoch, best_stage = score, epoch, stage
                best_state = {k: v.detach().clone() for k, v in meta.state_dict().items()}
    meta.load_state_dict(best_state)
    meta.eval()
    return FusionMetrics(
        strategy=config.strategy,
        num_models=len(meta.extractors),
        feature_dim=int(meta.A.shape[0]),
        hidden_dim=meta.hidden_dim,
        num_train=int(data.fc_train.shape[0]),
        num_val=int(data.fc_val.shape[0]),
        train_accuracy=_accuracy(meta, data.fc_train, data.y_train),
        val_accuracy=_accuracy(meta, data.fc_val, data.y_val),
        best_epoch=best_epoch,
        best_stage=best_stage,
        seconds=time.perf_counter() - start,
        history=tuple(history),
    )

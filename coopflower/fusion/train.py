"""Training the MetaModel on the initiator's own data: Strategy I and gradual fusion (II).

The private extractors are frozen, so their features are computed once and the fusion network
is trained on the cached ``f_c``. A held-out share of the initiator's data picks the best epoch
(the test split is never seen here). Pure torch/NumPy: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from coopflower.augment import Augment
from coopflower.fusion.metamodel import FusionError, MetaModel, Strategy
from coopflower.models import build_model

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


@dataclass(frozen=True)
class PrivateModel:
    """An accepted private model as the initiator receives it.

    Attributes:
        arch: its architecture name for :func:`coopflower.models.build_model`.
        weights: its state dict (name to array or tensor).
        labels: the classes it was trained on (``l_i``).
        name: a label for reports (e.g. the contributor or its CID).
    """

    arch: str
    weights: Mapping[str, npt.NDArray[np.generic] | torch.Tensor]
    labels: tuple[int, ...]
    name: str = ""

    def build(self, num_classes: int = 10) -> nn.Module:
        """The model with its weights loaded. Raises ``FusionError`` on a mismatch."""
        try:
            model = build_model(self.arch, num_classes)
        except ValueError as e:
            raise FusionError(str(e)) from None
        state = model.state_dict()
        if set(state) != set(self.weights):
            raise FusionError(
                f"weights of {self.name or self.arch!r} do not fit {self.arch}: "
                f"missing {sorted(set(state) - set(self.weights))}, "
                f"extra {sorted(set(self.weights) - set(state))}"
            )
        loaded = {}
        for k, ref in state.items():
            t = torch.as_tensor(np.asarray(self.weights[k]))
            if tuple(t.shape) != tuple(ref.shape):
                raise FusionError(f"{self.name or self.arch}: {k} has shape {tuple(t.shape)}, "
                                  f"{self.arch} needs {tuple(ref.shape)}")
            if not torch.isfinite(t).all():
                raise FusionError(f"{self.name or self.arch}: {k} holds NaN or Inf")
            loaded[k] = t.to(ref.dtype)
        model.load_state_dict(loaded)
        return model


@dataclass(frozen=True)
class FusionConfig:
    """How the initiator trains the fusion network.

    Attributes:
        strategy: ``"I"`` or ``"II"`` (gradual fusion).
        epochs_stage1: Strategy II's first stage (diagonal blocks only, ``gamma = 0``).
        epochs_stage2: Strategy II's second stage (all of ``A`` and ``B``, ``gamma = 1``).
            Strategy I trains for ``epochs_stage1 + epochs_stage2`` epochs, so both strategies
            get the same number of passes.
        lr: Adam's learning rate.
        batch_size: mini-batch size.
        weight_decay: L2 penalty (Adam's ``weight_decay``).
        val_fraction: share of the initiator's data held out to pick the best epoch.
        seed: seeds the initialisation, the hold-out split and the shuffling.
        augment_copies: shifted copies of each of the initiator's training digits added to the
            fusion training data (the held-out share is never augmented); 0: none.
        max_shift: largest shift in pixels (each axis) of an augmented copy.
        max_rotate, max_scale: largest rotation (degrees) and rescaling (fraction) of an
            augmented copy; when both are 0 a copy is a whole-pixel shift, else a random affine
            distortion (:class:`coopflower.augment.Augment`).
        stage2_lr_factor: Strategy II's stage two uses ``lr`` times this (fine-tuning from
            stage one's solution).
        block_init: Strategy II's blocks ``W_i``: ``"random"`` (the paper, eq. 9) or
            ``"private"`` (each contributor's own output layer for its classes).
    """

    strategy: Strategy = "II"
    epochs_stage1: int = 20
    epochs_stage2: int = 20
    lr: float = 1e-3
    batch_size: int = 50
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    augment_copies: int = 0
    max_shift: int = 2
    max_rotate: float = 0.0
    max_scale: float = 0.0
    stage2_lr_factor: float = 1.0
    block_init: str = "random"

    def __post_init__(self) -> None:
        if self.strategy not in ("I", "II"):
            raise FusionError(f"unknown fusion strategy {self.strategy!r}; choose 'I' or 'II'")
        if self.epochs_stage1 < 0 or self.epochs_stage2 < 0:
            raise FusionError("epochs must be non-negative")
        if self.epochs_stage1 + self.epochs_stage2 < 1:
            raise FusionError("at least one epoch of fusion training is needed")
        if not self.lr > 0 or self.batch_size < 1 or self.weight_decay < 0:
            raise FusionError(
                f"bad settings lr={self.lr} batch_size={self.batch_size} "
                f"weight_decay={self.weight_decay}"
            )
        if self.block_init not in ("random", "private"):
            raise FusionError(f"block_init must be 'random' or 'private', got {self.block_init!r}")
        if not self.stage2_lr_factor > 0:
            raise FusionError("stage2_lr_factor must be positive")
        if self.augment_copies < 0 or not 0 <= self.max_shift <= 8:
            raise FusionError("augment_copies must be >= 0 and max_shift in [0, 8]")
        if not (0 <= self.max_rotate <= 45 and 0 <= self.max_scale < 0.5):
            raise FusionError("max_rotate must be in [0, 45] degrees and max_scale in [0, 0.5)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise FusionError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of fusion training: its ``stage`` (1 or 2; Strategy I is all stage 2)."""

    stage: int
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float


@dataclass(frozen=True)
class FusionMetrics:
    """What fusion training did and reached (accuracies in [0, 1]).

    ``val_accuracy`` is on the initiator's held-out share (``nan`` without one) at the
    ``best_epoch`` kept; ``history`` has one record per epoch.
    """

    strategy: Strategy
    num_models: int
    feature_dim: int
    hidden_dim: int
    num_train: int
    num_val: int
    train_accuracy: float
    val_accuracy: float
    best_epoch: int
    best_stage: int
    seconds: float
    history: tuple[EpochRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FusionResult:
    """The fused ``meta`` model and its ``metrics``."""

    meta: MetaModel
    metrics: FusionMetrics


def images_to_tensor(images: npt.NDArray[np.generic] | torch.Tensor) -> torch.Tensor:
    """Digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` as float ``(N, 1, 28, 28)``; uint8 / 255.

    Raises ``FusionError`` on another shape or non-finite values.
    """
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or tuple(t.shape[1:]) != (1, 28, 28):
        raise FusionError(f"images must be (N, 28, 28) or (N, 1, 28, 28), got {tuple(t.shape)}")
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if not torch.isfinite(t).all():
        raise FusionError("images contain NaN or Inf")
    return t


@torch.no_grad()
def compute_features(meta: MetaModel, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``f_c`` for every image, in batches (the extractors are frozen)."""
    meta.eval()
    parts = [meta.concat_features(images[i : i + batch_size])
             for i in range(0, images.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, sum(meta.feature_dims))


def _labels(labels: npt.NDArray[np.generic] | torch.Tensor, n: int, d: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels))
    if tuple(y.shape) != (n,):
        raise FusionError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise FusionError("labels must be integers")
    if n and (int(y.min()) < 0 or int(y.max()) >= d):
        raise FusionError(f"labels must be in [0, {d})")
    return y.long()


@torch.no_grad()
def _accuracy(meta: MetaModel, fc: torch.Tensor, y: torch.Tensor) -> float:
    if fc.shape[0] == 0:
        return float("nan")
    meta.eval()
    return float((meta.fuse_features(fc).argmax(1) == y).float().mean())


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


def fit_metamodel(
    meta: MetaModel,
    features: torch.Tensor,
    labels: npt.NDArray[np.generic] | torch.Tensor,
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
        features: ``(N, |f_c|)`` from :func:`compute_features` on the initiator's data.
        labels: ``(N,)`` integer labels.
        config: the training settings.
        on_epoch: called after every epoch (progress lines).
        extra: more ``(features, labels)`` for the training share only (augmented copies of
            training samples; see :func:`fuse_models`).

    Returns:
        :class:`FusionMetrics`. Raises ``FusionError`` on bad inputs.
    """
    # The fusion network is small: with several threads, the per-step thread overhead
    # dominates (10x slower measured on 2 busy cores), so it trains on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(meta, features, labels, config, on_epoch, extra)
    finally:
        torch.set_num_threads(threads)


def _fit(
    meta: MetaModel,
    features: torch.Tensor,
    labels: npt.NDArray[np.generic] | torch.Tensor,
    config: FusionConfig,
    on_epoch: Callable[[EpochRecord], None] | None,
    extra: tuple[torch.Tensor, torch.Tensor] | None,
) -> FusionMetrics:
    if meta.strategy != config.strategy:
        raise FusionError(f"MetaModel built for Strategy {meta.strategy}, config says "
                          f"{config.strategy}")
    n = int(features.shape[0])
    if features.ndim != 2 or features.shape[1] != meta.A.shape[0]:
        raise FusionError(f"features must be (N, {meta.A.shape[0]}), got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise FusionError("features contain NaN or Inf")
    y = _labels(labels, n, meta.num_classes)
    train_ix, val_ix = _split(n, config.val_fraction, config.seed)
    if train_ix.numel() == 0:
        raise FusionError("no initiator samples left to train the fusion network on")
    fc_train, y_train = features[train_ix], y[train_ix]
    fc_val, y_val = features[val_ix], y[val_ix]
    if extra is not None:
        ef, ey = extra
        if ef.ndim != 2 or ef.shape[1] != features.shape[1] or not torch.isfinite(ef).all():
            raise FusionError("extra features must be finite and match the features' width")
        fc_train = torch.cat([fc_train, ef])
        y_train = torch.cat([y_train, _labels(ey, int(ef.shape[0]), meta.num_classes)])
        train_ix = torch.arange(fc_train.shape[0])
    with torch.no_grad():
        meta.feature_mean.copy_(fc_train.mean(0))
        meta.feature_std.copy_(fc_train.std(0, unbiased=False).clamp_min(1e-6))
    if config.strategy == "II" and config.block_init == "private":
        meta.init_blocks_from_private_heads()

    if config.strategy == "II":
        stages = [(1, config.epochs_stage1, 0.0), (2, config.epochs_stage2, 1.0)]
    else:
        stages = [(2, config.epochs_stage1 + config.epochs_stage2, 1.0)]
    params = [meta.A, meta.B, meta.bias_h, meta.bias_y]
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss()
    history: list[EpochRecord] = []
    best_acc, best_epoch, best_stage = -1.0, 0, 0
    best_state = {k: v.detach().clone() for k, v in meta.state_dict().items()}
    start = time.perf_counter()
    epoch = 0
    for stage, epochs, gamma in stages:
        if epochs == 0:
            continue
        meta.set_gamma(gamma)
        # A fresh optimiser per stage: stage two starts without stage one's moments.
        lr = config.lr * (config.stage2_lr_factor if config.strategy == "II" and stage == 2
                          else 1.0)
        opt = torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
        for _ in range(epochs):
            epoch += 1
            meta.train()
            perm = int(fc_train.shape[0])
            order = torch.randperm(perm, generator=gen)
            loss_sum = 0.0
            for i in range(0, perm, config.batch_size):
                idx = order[i : i + config.batch_size]
                opt.zero_grad()
                loss = loss_fn(meta.fuse_features(fc_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * idx.numel()
            if not np.isfinite(loss_sum):
                raise FusionError("fusion training diverged (non-finite loss); lower lr")
            train_acc = _accuracy(meta, fc_train, y_train)
            val_acc = _accuracy(meta, fc_val, y_val)
            rec = EpochRecord(stage, epoch, loss_sum / perm, train_acc, val_acc)
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            score = val_acc if fc_val.shape[0] else train_acc
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
        num_train=int(fc_train.shape[0]),
        num_val=int(val_ix.numel()),
        train_accuracy=_accuracy(meta, fc_train, y_train),
        val_accuracy=_accuracy(meta, fc_val, y_val),
        best_epoch=best_epoch,
        best_stage=best_stage,
        seconds=time.perf_counter() - start,
        history=tuple(history),
    )


def fuse_models(
    private_models: Sequence[PrivateModel | tuple[nn.Module, Sequence[int]]],
    images: npt.NDArray[np.generic] | torch.Tensor,
    labels: npt.NDArray[np.generic] | torch.Tensor,
    config: FusionConfig | None = None,
    num_classes: int = 10,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FusionResult:
    """Fuse accepted private models into a MetaModel trained on the initiator's data.

    Args:
        private_models: :class:`PrivateModel` entries (architecture, weights, labels) or
            ``(model, labels)`` pairs of already built models (they are not modified).
        images, labels: the initiator's own data (``(N, 28, 28)`` digits, ``(N,)`` labels).
        config: fusion settings (default: Strategy II, :class:`FusionConfig` defaults).
        num_classes: ``d``.
        on_epoch: progress callback per epoch.

    Returns:
        :class:`FusionResult` with the MetaModel and its :class:`FusionMetrics`.
    """
    import copy

    config = config or FusionConfig()
    extractors: list[nn.Module] = []
    label_sets: list[tuple[int, ...]] = []
    for pm in private_models:
        if isinstance(pm, PrivateModel):
            extractors.append(pm.build(num_classes))
            label_sets.append(pm.labels)
        else:
            model, ls = pm
            extractors.append(copy.deepcopy(model))
            label_sets.append(tuple(ls))
    meta = MetaModel(extractors, label_sets, num_classes, config.strategy, config.seed)
    x = images_to_tensor(images)
    fc = compute_features(meta, x)
    extra = None
    if config.augment_copies:
        y = _labels(labels, int(x.shape[0]), num_classes)
        train_ix, _ = _split(int(x.shape[0]), config.val_fraction, config.seed)
        copies = x[train_ix].repeat(config.augment_copies, 1, 1, 1)
        if config.max_rotate or config.max_scale:
            distort = Augment(config.max_shift, config.max_rotate, config.max_scale)
            shifted = distort.apply(copies, torch.Generator().manual_seed(config.seed + 7))
        else:
            shifted = shift_images(copies, config.max_shift, config.seed)
        extra = (compute_features(meta, shifted), y[train_ix].repeat(config.augment_copies))
    metrics = fit_metamodel(meta, fc, labels, config, on_epoch, extra)
    return FusionResult(meta, metrics)


def shift_images(x: torch.Tensor, max_shift: int, seed: int) -> torch.Tensor:
    """Each image ``(N, 1, H, W)`` shifted by a random whole number of pixels in
    ``[-max_shift, max_shift]`` on each axis, zero-filled (deterministic for ``seed``)."""
    if max_shift == 0 or x.shape[0] == 0:
        return x.clone()
    gen = torch.Generator().manual_seed(seed + 7)
    d = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 2), generator=gen)
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):  # N small crops; no per-pixel loop
        top, left = max_shift + int(d[i, 0]), max_shift + int(d[i, 1])
        out[i] = pad[i, :, top : top + h, left : left + w]
    return out

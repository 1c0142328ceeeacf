"""Settings and results of fusion training (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from coopflower.fusion.errors import FusionError
from coopflower.fusion.metamodel import MetaModel, Strategy

__all__ = ["EpochRecord", "FusionConfig", "FusionMetrics", "FusionResult"]


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
        augment_copies: transformed copies of each of the initiator's training inputs added to
            the fusion training data (the held-out share is never augmented); 0: none. The
            copies come from ``fuse_models(..., transform=)``, by default whole-pixel shifts of
            images (:func:`coopflower.fusion.inputs.default_transform`).
        max_shift: the default transform's largest shift in pixels (each axis).
        max_rotate, max_scale: kept for configuration files; non-zero values need a caller's
            ``transform`` (e.g. ``coopflower.augment.Augment(shift, rotate, scale).apply``).
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

"""Local training and evaluation of a paper CNN on numpy digits (plain functions).

Shared by the Flower client (contributors train, verifiers evaluate) and the experiments.
Inputs are ``uint8`` images ``(N, 28, 28)`` (0-255) or float images already scaled to [0, 1],
and integer labels ``(N,)``. Runs on the CPU; deterministic for a given ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from coopflower.augment import Augment

__all__ = [
    "TrainingError",
    "TrainResult",
    "EvalResult",
    "to_tensor",
    "train_model",
    "evaluate_model",
    "get_weights",
    "set_weights",
    "LR_SCHEDULES",
]

LR_SCHEDULES = ("constant", "cosine")  # train_model's lr_schedule choices


class TrainingError(ValueError):
    """Bad inputs to the local training or evaluation loops."""


@dataclass(frozen=True)
class TrainResult:
    """What local training did.

    ``num_examples`` samples, ``epochs`` passes, mean ``loss`` of the last epoch,
    ``accuracy`` on the training data during the last epoch, ``seconds`` of compute.
    """

    num_examples: int
    epochs: int
    loss: float
    accuracy: float
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and mean cross-entropy ``loss`` on ``num_examples`` samples, ``seconds`` spent.

    ``accuracy`` is ``nan`` when there are no samples.
    """

    num_examples: int
    loss: float
    accuracy: float
    seconds: float


def to_tensor(images: npt.NDArray[np.generic]) -> torch.Tensor:
    """Digits as a float tensor ``(N, 1, 28, 28)`` in [0, 1].

    Args:
        images: ``(N, 28, 28)`` or ``(N, 1, 28, 28)``; ``uint8`` is divided by 255.

    Returns:
        A ``float32`` tensor. Raises ``TrainingError`` for any other shape.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    if arr.ndim != 4 or arr.shape[1:] != (1, 28, 28):
        raise TrainingError(f"images must be (N, 28, 28) or (N, 1, 28, 28), got {arr.shape}")
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(out).all():
        raise TrainingError("images contain NaN or Inf")
    return out


def _labels(labels: npt.NDArray[np.generic], n: int, num_classes: int) -> torch.Tensor:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise TrainingError(f"labels must have shape ({n},), got {y.shape}")
    if n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes):
        raise TrainingError(f"labels must be integers in [0, {num_classes})")
    return torch.from_numpy(y.astype(np.int64))


def _num_classes(model: nn.Module) -> int:
    out = getattr(model, "out", None)
    if isinstance(out, nn.Linear):
        return int(out.out_features)
    return 10


def train_model(
    model: nn.Module,
    images: npt.NDArray[np.generic],
    labels: npt.NDArray[np.generic],
    *,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    augment: Augment | None = None,
    lr_schedule: str = "constant",
) -> TrainResult:
    """Train ``model`` in place with SGD and cross-entropy.

    Args:
        model: a classifier returning logits (e.g. ``build_model("table1_c1")``).
        images, labels: local training data.
        epochs, batch_size, lr, momentum: the optimiser's settings.
        seed: seeds the shuffling, the augmentation (and torch's RNG for dropout, if any).
        augment: random distortions of each batch (none by default).
        lr_schedule: ``"constant"`` or ``"cosine"`` (annealed to 0 over the epochs).

    Returns:
        ``TrainResult``. Raises ``TrainingError`` on bad data or settings.
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise TrainingError(f"bad settings: epochs={epochs} batch_size={batch_size} lr={lr}")
    if lr_schedule not in LR_SCHEDULES:
        raise TrainingError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    x = to_tensor(images)
    y = _labels(labels, x.shape[0], _num_classes(model))
    n = int(x.shape[0])
    if n == 0:
        raise TrainingError("no training samples")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
             if lr_schedule == "cosine" else None)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    loss_sum, correct = 0.0, 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment.apply(xb, gen)
            opt.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
        if sched is not None:
            sched.step()
    seconds = time.perf_counter() - start
    if not np.isfinite(loss_sum):
        raise TrainingError("training diverged (non-finite loss); lower the learning rate")
    return TrainResult(
        num_examples=n,
        epochs=epochs,
        loss=loss_sum / n if epochs else float("nan"),
        accuracy=correct / n if epochs else float("nan"),
        seconds=seconds,
    )


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    images: npt.NDArray[np.generic],
    labels: npt.NDArray[np.generic],
    *,
    batch_size: int = 256,
    classes: Sequence[int] | None = None,
) -> EvalResult:
    """Accuracy and loss of ``model`` on the given data.

    Args:
        model: a classifier returning logits.
        images, labels: evaluation data.
        batch_size: evaluation batch size.
        classes: when given, only samples with these labels count (a verifier judging a
            model trained on a label subset, as in the paper's Table II).

    Returns:
        ``EvalResult``. Raises ``TrainingError`` on bad data.
    """
    x = to_tensor(images)
    y = _labels(labels, x.shape[0], _num_classes(model))
    if classes is not None:
        keep = torch.from_numpy(np.isin(y.numpy(), np.asarray(list(classes), dtype=np.int64)))
        x, y = x[keep], y[keep]
    n = int(x.shape[0])
    start = time.perf_counter()
    if n == 0:
        return EvalResult(0, float("nan"), float("nan"), time.perf_counter() - start)
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, correct = 0.0, 0
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        logits = model(xb)
        loss_sum += float(loss_fn(logits, yb))
        correct += int((logits.argmax(1) == yb).sum())
    return EvalResult(n, loss_sum / n, correct / n, time.perf_counter() - start)


def get_weights(model: nn.Module) -> dict[str, npt.NDArray[np.float32]]:
    """The model's state dict as named ``float32`` numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in
            model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, npt.NDArray[np.generic]]) -> None:
    """Load named arrays into ``model`` (strict: same names and shapes).

    Raises ``TrainingError`` when names or shapes differ.
    """
    state = model.state_dict()
    if set(state) != set(weights):
        missing = sorted(set(state) - set(weights))
        extra = sorted(set(weights) - set(state))
        raise TrainingError(f"weights do not match the model: missing {missing}, extra {extra}")
    new = {}
    for k, ref in state.items():
        arr = np.asarray(weights[k])
        if tuple(arr.shape) != tuple(ref.shape):
            raise TrainingError(f"{k}: shape {arr.shape} != model's {tuple(ref.shape)}")
        new[k] = torch.from_numpy(np.ascontiguousarray(arr)).to(ref.dtype)
    model.load_state_dict(new)

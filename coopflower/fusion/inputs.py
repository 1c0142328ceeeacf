"""The initiator's inputs as tensors, and the optional augmentation of its training share.

Fusion knows no dataset: inputs are whatever the private models take. Float arrays are used
as they are (``float32``); ``uint8`` arrays are images, scaled to ``[0, 1]``, and an
``(N, H, W)`` batch gets a channel axis; other integer arrays (e.g. token ids) pass unchanged.
An augmentation is a caller's ``transform(x, generator) -> x'`` (the same signature as
``coopflower.augment.Augment.apply``); without one, ``augment_copies`` shifts images by whole
pixels (:func:`shift_images`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from coopflower.fusion.errors import FusionError

__all__ = ["Inputs", "Transform", "as_inputs", "default_transform", "images_to_tensor",
           "shift_images"]

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Inputs = npt.NDArray[Any] | torch.Tensor


def images_to_tensor(images: Inputs) -> torch.Tensor:
    """Images ``(N, H, W)`` or ``(N, C, H, W)`` as float ``(N, C, H, W)``; ``uint8`` / 255.

    Raises ``FusionError`` on another shape or non-finite values.
    """
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise FusionError(f"images must be (N, H, W) or (N, C, H, W), got {tuple(t.shape)}")
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if not torch.isfinite(t).all():
        raise FusionError("images contain NaN or Inf")
    return t


def as_inputs(inputs: Inputs) -> torch.Tensor:
    """The initiator's inputs ``(N, ...)`` as a tensor (see the module notes)."""
    t = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.asarray(inputs))
    if t.ndim < 2:
        raise FusionError(f"inputs must be a batch (N, ...) of at least 2 dimensions, got "
                          f"{tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return images_to_tensor(t)
    if t.dtype == torch.bool:
        raise FusionError("inputs must be numbers, not booleans")
    if t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise FusionError("inputs contain NaN or Inf")
    return t


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift == 0 or x.shape[0] == 0:
        return x.clone()
    d = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 2), generator=gen)
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):  # N small crops; no per-pixel loop
        top, left = max_shift + int(d[i, 0]), max_shift + int(d[i, 1])
        out[i] = pad[i, :, top : top + h, left : left + w]
    return out


def shift_images(x: torch.Tensor, max_shift: int, seed: int) -> torch.Tensor:
    """Each image ``(N, C, H, W)`` shifted by a random whole number of pixels in
    ``[-max_shift, max_shift]`` on each axis, zero-filled (deterministic for ``seed``)."""
    return _shift(x, max_shift, torch.Generator().manual_seed(seed + 7))


def default_transform(x: torch.Tensor, max_shift: int, max_rotate: float,
                      max_scale: float) -> Transform:
    """The transform ``augment_copies`` uses when the caller passes none: whole-pixel shifts of
    images ``(N, C, H, W)``. Raises ``FusionError`` for other inputs or a rotation/rescaling
    (pass ``transform=`` then, e.g. ``coopflower.augment.Augment(shift, rotate, scale).apply``).
    """
    if max_rotate or max_scale:
        raise FusionError("max_rotate / max_scale need a transform: pass fuse_models(..., "
                          "transform=Augment(shift, rotate, scale).apply) (coopflower.augment)")
    if x.ndim != 4 or not x.is_floating_point():
        raise FusionError(f"augment_copies without a transform shifts images (N, C, H, W); "
                          f"inputs are {tuple(x.shape)}: pass transform=")

    def shift(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return _shift(batch, max_shift, gen)

    return shift

"""Random affine distortions of digits for local training (pure tensor maths, no I/O).

A contributor with a few hundred digits over-fits its CNN quickly; small random shifts,
rotations and rescalings of each training batch (the classic MNIST augmentation) make its
features generalise to digits it never saw, which is what the MetaModel fuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """Largest random distortion of a digit: ``shift`` in pixels (each axis), ``rotate`` in
    degrees (either way), ``scale`` as a fraction (zoom in ``[1 - scale, 1 + scale]``).
    All zero: no change."""

    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.shift <= 8 and 0 <= self.rotate <= 45 and 0 <= self.scale < 0.5):
            raise ValueError(f"augmentation out of range: {self} (shift <= 8 px, rotate <= 45 "
                             "degrees, scale < 0.5)")

    @property
    def active(self) -> bool:
        """True when any distortion is non-zero."""
        return bool(self.shift or self.rotate or self.scale)

    def apply(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Distort each image of ``x`` ``(N, C, H, W)`` by its own random affine map (bilinear,
        zero outside the image).

        Args:
            x: the batch. gen: the random generator (deterministic runs seed it).

        Returns:
            A new tensor of the same shape (``x`` itself when inactive or empty).
        """
        n = int(x.shape[0])
        if not self.active or n == 0:
            return x
        h, w = int(x.shape[-2]), int(x.shape[-1])
        u = torch.rand((n, 4), generator=gen) * 2 - 1  # uniform in [-1, 1)
        angle = u[:, 0] * math.radians(self.rotate)
        zoom = 1 + u[:, 1] * self.scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: a shift of p pixels is 2p / size
        tx, ty = u[:, 2] * self.shift * 2 / w, u[:, 3] * self.shift * 2 / h
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

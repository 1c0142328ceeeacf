"""The MetaModel of the paper's section IV-D (Fig. 7, equations 7-12). Pure torch, no I/O.

The top-layer feature vectors ``f_i`` of the accepted private models, of any architectures (the
input of each model's head layer, see :class:`~coopflower.fusion.extractor.FeatureExtractor`;
frozen: the initiator fuses, it does not retrain the contributors' models) are concatenated
into ``f_c`` and fed to a fully connected fusion network: a linear hidden layer
``h = A^T f_c`` of size ``sum_i |l_i|`` (the classes each private model knows) and a softmax
output ``y = softmax(B^T h)`` over the ``d`` classes.

* Strategy I: ``A`` and ``B`` random, all weights trained (equations 7-8).
* Strategy II, gradual fusion: ``A`` block-diagonal with one random block ``W_i`` of shape
  ``(|f_i|, |l_i|)`` per private model (equation 9) and ``B`` the stacked identities of
  equation 10. A model that knows only some classes gets the rows of ``I_d`` for those classes:
  hidden unit ``k`` of model ``i``'s block maps to class ``sorted(l_i)[k]``. The gate ``gamma``
  of equations 11-12 multiplies every weight of ``A`` outside the diagonal blocks and every
  weight of ``B`` outside the identity positions: ``gamma = 0`` in stage one (those weights
  contribute nothing and receive a zero gradient), ``gamma = 1`` in stage two.

Beyond the paper's equations, each feature is standardised with the mean and standard deviation
of the initiator's training features (buffers of the module, so they travel with it), and the
hidden and output layers carry biases, as usual for fully connected layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import FeatureExtractor

__all__ = ["FusionError", "MetaModel", "Strategy", "block_mask", "identity_mask"]

Strategy = Literal["I", "II"]


def _check_label_sets(label_sets: Sequence[Sequence[int]], num_classes: int) -> list[list[int]]:
    out: list[list[int]] = []
    for i, labels in enumerate(label_sets):
        ls = sorted({int(c) for c in labels})
        if not ls:
            raise FusionError(f"private model {i} has an empty label set")
        if ls[0] < 0 or ls[-1] >= num_classes:
            raise FusionError(f"private model {i}: labels {ls} are not all in [0, {num_classes})")
        out.append(ls)
    return out


def block_mask(feature_dims: Sequence[int], label_sets: Sequence[Sequence[int]]) -> torch.Tensor:
    """The diagonal-block pattern of equation 9, as a bool matrix ``(|f_c|, |h|)``.

    Args:
        feature_dims: ``|f_i|`` per private model.
        label_sets: ``l_i`` per private model (its block has ``|l_i|`` columns).

    Returns:
        ``True`` inside the blocks ``W_i``, ``False`` elsewhere.
    """
    rows, cols = sum(feature_dims), sum(len(ls) for ls in label_sets)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    r = c = 0
    for fd, ls in zip(feature_dims, label_sets, strict=True):
        mask[r : r + fd, c : c + len(ls)] = True
        r, c = r + fd, c + len(ls)
    return mask


def identity_mask(label_sets: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """The stacked identities of equation 10, as a bool matrix ``(|h|, d)``.

    Hidden unit ``k`` of model ``i``'s block is ``True`` at column ``sorted(l_i)[k]``.
    """
    sets = _check_label_sets(label_sets, num_classes)
    mask = torch.zeros(sum(len(ls) for ls in sets), num_classes, dtype=torch.bool)
    row = 0
    for ls in sets:
        for c in ls:
            mask[row, c] = True
            row += 1
    return mask


class MetaModel(nn.Module):
    """Frozen private feature extractors plus the fusion network ``(A, B)``.

    Args:
        extractors: the accepted private models cut at their heads, any architectures
            (their ``feature_dim`` known: a Linear head's, given, or measured).
        label_sets: the classes each private model knows (``l_i``), same order.
        num_classes: ``d``.
        strategy: ``"I"`` (random ``A``, ``B``) or ``"II"`` (gradual fusion initialisation).
        seed: seeds the random initialisation.

    Raises:
        FusionError: no models, label sets not matching the models, labels out of range.
    """

    a_mask: torch.Tensor
    b_mask: torch.Tensor
    gamma: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self,
        extractors: Sequence[nn.Module],
        label_sets: Sequence[Sequence[int]],
        num_classes: int = 10,
        strategy: Strategy = "II",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not extractors:
            raise FusionError("no private models to fuse")
        if len(extractors) != len(label_sets):
            raise FusionError(
                f"{len(extractors)} private models but {len(label_sets)} label sets"
            )
        if strategy not in ("I", "II"):
            raise FusionError(f"unknown fusion strategy {strategy!r}; choose 'I' or 'II'")
        if num_classes < 2:
            raise FusionError("num_classes must be at least 2")
        dims: list[int] = []
        for i, m in enumerate(extractors):
            if not isinstance(m, FeatureExtractor):
                raise FusionError(f"private model {i} is a {type(m).__name__}, not a "
                                  "FeatureExtractor(model, head) (it has no features)")
            if not m.has_feature_dim or m.feature_dim < 1:
                raise FusionError(f"private model {i} ({m.label}): feature size unknown")
            dims.append(m.feature_dim)
        self.label_sets = _check_label_sets(label_sets, num_classes)
        self.feature_dims = dims
        self.num_classes = num_classes
        self.strategy: Strategy = strategy
        self.extractors = nn.ModuleList(extractors)
        for p in self.extractors.parameters():
            p.requires_grad_(False)
        self.extractors.eval()

        fc, h = sum(dims), sum(len(ls) for ls in self.label_sets)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("a_mask", block_mask(dims, self.label_sets))
        self.register_buffer("b_mask", identity_mask(self.label_sets, num_classes))
        self.register_buffer("gamma", torch.tensor(1.0))
        self.register_buffer("feature_mean", torch.zeros(fc))
        self.register_buffer("feature_std", torch.ones(fc))
        if strategy == "I":
            a = (torch.rand(fc, h, generator=gen) * 2 - 1) / math.sqrt(fc)
            b = (torch.rand(h, num_classes, generator=gen) * 2 - 1) / math.sqrt(h)
        else:
            a = torch.zeros(fc, h)
            r = c = 0
            for fd, ls in zip(dims, self.label_sets, strict=True):
                block = (torch.rand(fd, len(ls), generator=gen) * 2 - 1) / math.sqrt(fd)
                a[r : r + fd, c : c + len(ls)] = block
                r, c = r + fd, c + len(ls)
            b = self.b_mask.to(torch.float32).clone()
        self.A = nn.Parameter(a)
        self.B = nn.Parameter(b)
        self.bias_h = nn.Parameter(torch.zeros(h))
        self.bias_y = nn.Parameter(torch.zeros(num_classes))

    def _extractors(self) -> list[FeatureExtractor]:
        return [m for m in self.extractors if isinstance(m, FeatureExtractor)]

    @property
    def hidden_dim(self) -> int:
        """``|h| = sum_i |l_i|``."""
        return int(self.A.shape[1])

    @torch.no_grad()
    def init_blocks_from_private_heads(self) -> None:
        """Strategy II variant: set each block ``W_i`` (and its hidden biases) to private model
        ``i``'s own output layer restricted to its classes ``l_i``, so that at ``gamma = 0``
        the MetaModel's logit for class ``p`` is the sum of the private logits for ``p`` of the
        models that know it. Accounts for the feature standardisation in place; call it after
        ``feature_mean`` / ``feature_std`` are set. Off-block weights stay zero.

        Raises ``FusionError`` when a private model's head is not an ``nn.Linear``.
        """
        r = c = 0
        for i, (m, ls, fd) in enumerate(
            zip(self._extractors(), self.label_sets, self.feature_dims, strict=True)
        ):
            out = m.head_linear
            if out is None or out.in_features != fd or out.bias is None \
                    or out.out_features <= max(ls):
                raise FusionError(f"private model {i} ({m.label}): block_init='private' needs "
                                  f"a Linear head with a bias and an output per class")
            w = out.weight[ls].T  # (|f_i|, |l_i|)
            std = self.feature_std[r : r + fd, None]
            mean = self.feature_mean[r : r + fd]
            self.A[r : r + fd, c : c + len(ls)] = w * std
            self.bias_h[c : c + len(ls)] = out.bias[ls] + mean @ w
            r, c = r + fd, c + len(ls)

    def set_gamma(self, gamma: float) -> None:
        """Set the gate of equations 11-12 (0: stage one, 1: stage two and Strategy I)."""
        if gamma not in (0.0, 1.0):
            raise FusionError(f"gamma must be 0 or 1, got {gamma}")
        self.gamma.fill_(float(gamma))

    def train(self, mode: bool = True) -> MetaModel:
        """Switch the fusion network's mode; the frozen extractors stay in eval mode."""
        super().train(mode)
        self.extractors.eval()
        return self

    def gated_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` and ``B`` as used in equations 11-12: off-pattern weights times ``gamma``.

        For Strategy I the gate is open everywhere (``gamma`` is 1 throughout its training).
        """
        a_gate = self.a_mask + self.gamma * (~self.a_mask)
        b_gate = self.b_mask + self.gamma * (~self.b_mask)
        return self.A * a_gate, self.B * b_gate

    @torch.no_grad()
    def concat_features(self, x: torch.Tensor) -> torch.Tensor:
        """``f_c``: the private models' top-layer features, concatenated, ``(N, |f_c|)``."""
        feats: list[torch.Tensor] = [m.features(x) for m in self._extractors()]
        return torch.cat(feats, dim=1)

    def fuse_features(self, fc: torch.Tensor) -> torch.Tensor:
        """The fusion network on precomputed ``f_c``; returns logits ``(N, d)``."""
        if fc.ndim != 2 or fc.shape[1] != self.A.shape[0]:
            raise FusionError(
                f"concatenated features must be (N, {self.A.shape[0]}), got {tuple(fc.shape)}"
            )
        a, b = self.gated_weights()
        z = (fc - self.feature_mean) / self.feature_std
        h = z @ a + self.bias_h
        logits: torch.Tensor = h @ b + self.bias_y
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, d)`` for inputs the private models take; softmax gives eq. 8 / 12."""
        return self.fuse_features(self.concat_features(x))

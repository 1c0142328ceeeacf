"""Fixed-point integer evaluation of the paper's CNNs (scaling factors p and q).

Weights are scaled by ``p`` and rounded, inputs (pixels in [0, 1]) by ``q``; every linear layer
multiplies the running scale by ``p``, a 2x2 sum pool (the paper's average pooling with the
division folded into the scale) by 4. To keep int64 exact, the input of a layer is shifted right
(rounded) by just enough bits that its *worst-case* bound fits ``act_bits``; the shift divides
the scale. Bounds are computed from the weights before anything runs (row L1 norm times the
input bound plus the bias), so for any input in ``[0, q]`` no value can overflow, and a layer
whose bound would leave int64 raises ``IntegerOverflow`` instead of wrapping.

The same engine runs the plaintext integer network and the cipherspace passes of
``coopflower.crypto.strategies`` (there the batch holds ciphertext components): one code path,
so their times compare. Torch 2.13's CPU ``conv2d`` has an int64 kernel (checked in
tests/test_crypto_network.py), so everything is exact integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from coopflower.crypto.errors import IVHEError
from coopflower.crypto.ivhe import check_int64, l1_rows_bound, max_abs

__all__ = [
    "Scaling",
    "FloatLayer",
    "IntLayer",
    "IntPlan",
    "layers_of",
    "quantise_images",
    "compile_layers",
    "execute",
    "post_ops",
]


@dataclass(frozen=True)
class Scaling:
    """The paper's scaling factors: ``p`` for weights, ``q`` for inputs; ``act_bits`` bounds
    the activations' width between layers (fixed-point headroom)."""

    p: int = 2**7
    q: int = 1000
    act_bits: int = 30

    def __post_init__(self) -> None:
        if self.p < 1 or self.q < 1 or not 8 <= self.act_bits <= 40:
            raise IVHEError(f"bad scaling p={self.p}, q={self.q}, act_bits={self.act_bits}")


@dataclass(frozen=True)
class FloatLayer:
    """One linear layer of a PaperCNN in float, with what follows it."""

    kind: str  # "conv" or "linear"
    name: str  # state-dict prefix, e.g. "conv.0"
    weight: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    relu: bool
    pool: str | None  # "avg", "max" or None (2x2)


@dataclass(frozen=True)
class IntLayer:
    """A compiled integer layer: ``shift`` is applied to its input first."""

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    shift: int
    relu: bool
    pool: str | None


@dataclass(frozen=True)
class IntPlan:
    """Compiled layers with the output's scale (float) and worst-case bound."""

    layers: tuple[IntLayer, ...]
    scale_out: float
    bound_out: int


def layers_of(model: nn.Module) -> list[FloatLayer]:
    """A paper CNN's linear layers in order (a walk over its ``Sequential`` children, the
    first engine; ``coopflower.crypto.trace`` reads any model), with their ReLU and pooling.

    Raises ``IVHEError`` for a module the cipherspace evaluation does not support.
    """
    out: list[FloatLayer] = []
    pending: dict[str, object] = {}

    def flush() -> None:
        if pending:
            out.append(FloatLayer(**pending))  # type: ignore[arg-type]
            pending.clear()

    def visit(prefix: str, mod: nn.Module) -> None:
        if isinstance(mod, nn.Conv2d | nn.Linear):
            flush()
            if isinstance(mod, nn.Conv2d) and (
                mod.stride != (1, 1) or mod.padding != "same" or mod.groups != 1
            ):
                raise IVHEError(f"{prefix}: only stride-1 'same' convolutions are supported")
            bias = mod.bias.detach() if mod.bias is not None else torch.zeros(mod.weight.shape[0])
            pending.update(
                kind="conv" if isinstance(mod, nn.Conv2d) else "linear",
                name=prefix,
                weight=mod.weight.detach().float().numpy().copy(),
                bias=bias.float().numpy().copy(),
                relu=False,
                pool=None,
            )
        elif isinstance(mod, nn.ReLU):
            pending["relu"] = True
        elif isinstance(mod, nn.AvgPool2d | nn.MaxPool2d):
            if mod.kernel_size not in (2, (2, 2)) or mod.stride not in (2, (2, 2)):
                raise IVHEError(f"{prefix}: only 2x2 pooling is supported")
            pending["pool"] = "avg" if isinstance(mod, nn.AvgPool2d) else "max"
        elif isinstance(mod, nn.Sequential):
            for name, child in mod.named_children():
                visit(f"{prefix}.{name}", child)
        elif not isinstance(mod, nn.Identity):
            raise IVHEError(f"{prefix}: module {type(mod).__name__} is not supported")

    for name, child in model.named_children():
        visit(name, child)
    flush()
    return out


def quantise_images(images: npt.ArrayLike, q: int) -> torch.Tensor:
    """uint8 digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` to ``round(q * pixel / 255)`` int64
    ``(N, 1, 28, 28)`` in ``[0, q]``. Raises ``IVHEError`` for other shapes or dtypes."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise IVHEError(f"images must be uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise IVHEError(f"images must be (N, 28, 28) or (N, 1, H, W), got {arr.shape}")
    t = torch.from_numpy(arr.astype(np.int64))
    return (t * q + 127) // 255


def _round_int(a: npt.NDArray[np.floating], what: str) -> torch.Tensor:
    if not np.isfinite(a).all():
        raise IVHEError(f"{what}: weights must be finite")
    check_int64(int(np.abs(a).max(initial=0.0)) + 1, what)
    return torch.from_numpy(np.rint(a.astype(np.float64)).astype(np.int64))


def compile_layers(
    layers: list[FloatLayer],
    scale_in: float,
    bound_in: int,
    scaling: Scaling,
    first_int_weight: torch.Tensor | None = None,
) -> IntPlan:
    """Quantise layers for an input of the given scale and worst-case bound.

    Args:
        layers: float layers (from ``layers_of``).
        scale_in: integer units per real unit of the input (``q`` for pixels).
        bound_in: ``max |input|`` over every admissible input.
        scaling: ``p`` and ``act_bits``.
        first_int_weight: an integer weight (already scaled by ``p``) replacing the first
            layer's (the matrix-pair-wise ``W2' = W2 S'``).

    Returns:
        The plan; raises ``IntegerOverflow`` when a layer's bound would leave int64.
    """
    compiled: list[IntLayer] = []
    scale, bound = float(scale_in), int(bound_in)
    for i, layer in enumerate(layers):
        shift = max(0, bound.bit_length() - scaling.act_bits)
        if shift:
            scale /= 2**shift
            bound = (bound >> shift) + 1
        if i == 0 and first_int_weight is not None:
            w_int = first_int_weight
        else:
            w_int = _round_int(layer.weight * scaling.p, f"{layer.name} weight")
        b_int = _round_int(layer.bias.astype(np.float64) * scaling.p * scale, f"{layer.name} bias")
        row_l1 = l1_rows_bound(w_int.reshape(w_int.shape[0], -1).numpy())
        bound = row_l1 * bound + max_abs(b_int.numpy())
        check_int64(bound, f"{layer.name} output")
        scale *= scaling.p
        if layer.pool == "avg":
            bound, scale = bound * 4, scale * 4
            check_int64(bound, f"{layer.name} sum pool")
        compiled.append(IntLayer(layer.kind, w_int, b_int, shift, layer.relu, layer.pool))
    return IntPlan(tuple(compiled), scale, bound)


def post_ops(y: torch.Tensor, relu: bool, pool: str | None) -> torch.Tensor:
    """ReLU (per entry) and 2x2 pooling (sum for "avg", max for "max") of an int64 tensor."""
    if relu:
        y = y.clamp_min(0)
    if pool == "avg":
        n, c, h, w = y.shape
        y = y[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).sum((3, 5))
    elif pool == "max":
        y = F.max_pool2d(y, 2)
    return y


def execute(plan: IntPlan, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
    """Run a compiled plan on int64 ``x``.

    ``with_bias=False`` leaves the biases out: a plaintext bias is added to the first
    component of an element-wise ciphertext pair only (``S' = [1, t]``).
    """
    if x.dtype != torch.int64:
        raise IVHEError(f"integer evaluation needs int64 input, got {x.dtype}")
    for layer in plan.layers:
        if layer.shift:
            x = (x + (1 << (layer.shift - 1))) >> layer.shift
        if layer.kind == "conv":
            y = F.conv2d(x, layer.weight, padding="same")
            b = layer.bias.view(1, -1, 1, 1)
        else:
            y = x.flatten(1) @ layer.weight.T
            b = layer.bias.view(1, -1)
        if with_bias:
            y += b
        x = post_ops(y, layer.relu, layer.pool)
    return x

"""Fixed-point int64 evaluation of a traced chain (``graph.Structure``), exact or refused.

Inputs are declared once, as a range ``(lo, hi)`` (e.g. ``(-1, 1)`` after normalisation):
``u = round(x q / R)`` with ``R = max(|lo|, |hi|)``, so ``|u| <= q`` and negative inputs are
as exact as positive ones. uint8 inputs with the range ``(0, 1)`` are pixels: ``u =
round(q pixel / 255)`` in integers (the paper's digits, bit for bit as before).

Weights are scaled by ``p``; every conv/linear multiplies the running scale by ``p``, an average
pool becomes a sum pool (the division folded into the scale). Before each conv/linear the input
is shifted right (rounded) by just enough bits that its *worst-case* bound fits ``act_bits``;
bounds are computed from the weights before anything runs (row L1 norm times the input bound
plus the bias), so no admissible input can overflow, and a plan whose bound would leave int64
raises ``IntegerOverflow`` instead of wrapping. The same plan runs the plaintext integer network
and the cipherspace passes (there the batch holds ciphertext components).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from coopflower.crypto.errors import InputRangeError, IVHEError
from coopflower.crypto.graph import LINEAR_KINDS, Op
from coopflower.crypto.ivhe import check_int64, l1_rows_bound, max_abs
from coopflower.crypto.network import Scaling

__all__ = ["Step", "Plan", "check_range", "input_scale", "quantise_inputs", "compile_ops",
           "run_plan", "apply_linear", "int_weight"]

FloatTensors = Mapping[str, npt.NDArray[np.floating]]


@dataclass(frozen=True)
class Step:
    """One compiled operation: conv/linear carry int64 weights and a pre-shift."""

    op: Op
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    shift: int = 0


@dataclass(frozen=True)
class Plan:
    """Compiled steps with the output's scale (float) and worst-case bound."""

    steps: tuple[Step, ...]
    scale_out: float
    bound_out: int


def check_range(input_range: Sequence[float]) -> tuple[float, float]:
    """A valid ``(lo, hi)``: finite, ``lo < hi``, not both zero."""
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise IVHEError(f"input_range must be (lo, hi), got {input_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise IVHEError(f"input_range must be finite with lo < hi, got {(lo, hi)}")
    return lo, hi


def input_scale(input_range: Sequence[float], q: int) -> float:
    """Integer units per real input unit: ``q / max(|lo|, |hi|)``."""
    lo, hi = check_range(input_range)
    return q / max(abs(lo), abs(hi))


def quantise_inputs(
    x: npt.ArrayLike | torch.Tensor, input_range: Sequence[float], q: int,
    input_shape: Sequence[int],
) -> torch.Tensor:
    """int64 ``(N, *input_shape)`` with ``|u| <= q``; ``InputRangeError`` outside the range.

    A trailing per-sample shape whose size matches (e.g. images ``(N, H, W)`` for ``(1, H, W)``
    or for a flatten-first MLP) is reshaped.
    """
    lo, hi = check_range(input_range)
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim < 1:
        raise IVHEError("inputs must have a batch axis")
    shape = tuple(int(d) for d in input_shape)
    if tuple(t.shape[1:]) != shape:
        if t[0].numel() != int(np.prod(shape)):
            raise IVHEError(f"inputs {tuple(t.shape)} do not fit the model's input {shape}")
        t = t.reshape(t.shape[0], *shape)
    if t.dtype == torch.uint8 and (lo, hi) == (0.0, 1.0):
        return (t.long() * q + 127) // 255  # pixels: exact integer rounding
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.uint8)):
        raise IVHEError(f"inputs must be numbers, got {t.dtype}")
    v = t.double()
    if v.numel() and not bool(torch.isfinite(v).all()):
        raise InputRangeError("inputs must be finite")
    tol = 1e-6 * max(abs(lo), abs(hi))
    if v.numel() and (float(v.min()) < lo - tol or float(v.max()) > hi + tol):
        raise InputRangeError(
            f"inputs span [{float(v.min()):g}, {float(v.max()):g}], outside the declared "
            f"input_range ({lo:g}, {hi:g})")
    s = q / max(abs(lo), abs(hi))
    return torch.round(v * s).long().clamp(-q, q)


def int_weight(a: npt.NDArray[np.floating], scale: float, what: str) -> torch.Tensor:
    """``round(a scale)`` as int64 (``IVHEError`` if not finite, ``IntegerOverflow`` past int64)."""
    v = np.asarray(a, dtype=np.float64) * scale
    if not np.isfinite(v).all():
        raise IVHEError(f"{what} must be finite")
    check_int64(int(np.abs(v).max(initial=0.0)) + 1, what)
    return torch.from_numpy(np.rint(v).astype(np.int64))


def compile_ops(
    ops: Sequence[Op],
    tensors: FloatTensors,
    scale_in: float,
    bound_in: int,
    scaling: Scaling,
    int_weights: Mapping[str, torch.Tensor] | None = None,
) -> Plan:
    """Quantise a chain for an input of the given scale and worst-case bound.

    Args:
        ops: the operations (from a ``Structure``).
        tensors: float ``"<name>.weight"`` / ``"<name>.bias"`` arrays.
        scale_in: integer units per real unit of the input.
        bound_in: ``max |input|`` over every admissible input.
        scaling: ``p`` and ``act_bits``.
        int_weights: integer weights (already scaled by ``p``) replacing a layer's, by name
            (the matrix-pair-wise ``W2' = W2 S'``).
    """
    steps: list[Step] = []
    scale, bound = float(scale_in), int(bound_in)
    for op in ops:
        if op.kind in LINEAR_KINDS:
            shift = max(0, bound.bit_length() - scaling.act_bits)
            if shift:
                scale /= 2**shift
                bound = (bound >> shift) + 1
            w_int = (int_weights or {}).get(op.name)
            if w_int is None:
                w_int = int_weight(tensors[f"{op.name}.weight"], scaling.p, f"{op.name} weight")
            b = tensors.get(f"{op.name}.bias")
            b_f = np.zeros(w_int.shape[0]) if b is None else b
            b_int = int_weight(b_f, scaling.p * scale, f"{op.name} bias")
            bound = l1_rows_bound(w_int.reshape(w_int.shape[0], -1).numpy()) * bound
            bound += max_abs(b_int.numpy())
            check_int64(bound, f"{op.name} output")
            scale *= scaling.p
            steps.append(Step(op, w_int, b_int, shift))
            continue
        if op.kind == "avgpool":
            area = op.kernel[0] * op.kernel[1]
            bound, scale = bound * area, scale * area
            check_int64(bound, "sum pool")
        if op.kind != "softmax":
            steps.append(Step(op))
    return Plan(tuple(steps), scale, bound)


def apply_linear(op: Op, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The conv/linear of ``op`` without bias on int64 ``x``."""
    if op.kind == "conv":
        pad: str | tuple[int, int] = op.padding
        return F.conv2d(x, weight, stride=op.stride, padding=pad)
    return x @ weight.T


def _pool(op: Op, x: torch.Tensor) -> torch.Tensor:
    assert not isinstance(op.padding, str)
    if op.kind == "maxpool":
        return F.max_pool2d(x, op.kernel, op.stride, op.padding)
    n, c, h, w = x.shape
    ones = torch.ones((1, 1, *op.kernel), dtype=x.dtype)
    y = F.conv2d(x.reshape(n * c, 1, h, w), ones, stride=op.stride, padding=op.padding)
    return y.reshape(n, c, *y.shape[2:])


def run_plan(plan: Plan, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
    """Run a compiled plan on int64 ``x``.

    ``with_bias=False`` leaves the biases out: a plaintext bias is added to the first
    component of an element-wise ciphertext pair only (``S' = [1, t]``).
    """
    if x.dtype != torch.int64:
        raise IVHEError(f"integer evaluation needs int64 input, got {x.dtype}")
    for st in plan.steps:
        op = st.op
        if op.kind in LINEAR_KINDS:
            assert st.weight is not None and st.bias is not None
            if st.shift:
                x = (x + (1 << (st.shift - 1))) >> st.shift
            x = apply_linear(op, x, st.weight)
            if with_bias:
                x += st.bias.view(1, -1, 1, 1) if op.kind == "conv" else st.bias.view(1, -1)
        elif op.kind == "relu":
            x = x.clamp_min(0)
        elif op.kind == "flatten":
            x = x.flatten(1)
        else:
            x = _pool(op, x)
    return x

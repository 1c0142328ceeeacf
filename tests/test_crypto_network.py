"""The fixed-point engine's static bounds: accepted plans never wrap int64 (checked against
exact Python integers at the edge), plans whose bound would leave int64 are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coopflower.crypto import IntegerOverflow, IVHEError, Scaling
from coopflower.crypto.network import FloatLayer, compile_layers, execute, quantise_images


def _layer(weight: np.ndarray, relu: bool = False) -> FloatLayer:
    return FloatLayer("linear", "fc", weight.astype(np.float32),
                      np.zeros(weight.shape[0], np.float32), relu, None)


def test_torch_int64_conv_is_exact() -> None:
    """The engine relies on torch 2.13's int64 CPU conv2d: compare with unfold + matmul."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-(2**30), 2**30, (3, 4, 9, 9), generator=g)
    k = torch.randint(-(2**20), 2**20, (5, 4, 3, 3), generator=g)
    got = F.conv2d(x, k, padding="same")
    cols = F.unfold(x.double(), 3, padding=1).long()  # exact: |x| < 2^53
    want = torch.einsum("ok,nkp->nop", k.view(5, -1), cols).view(3, 5, 9, 9)
    assert got.dtype == torch.int64 and torch.equal(got, want)


def test_plan_at_the_int64_edge_is_exact_and_past_it_is_refused() -> None:
    # one output summing 4 inputs of bound 2^30 with weight 2^29 each (p = 1): 2^61 < 2^63
    w = np.full((1, 4), 2.0**29)
    plan = compile_layers([_layer(w)], 1.0, 2**30, Scaling(p=1, act_bits=31))
    assert plan.bound_out <= 2**63 - 1
    x = torch.full((3, 4), 2**30, dtype=torch.int64)
    x[1] = -(2**30)
    got = execute(plan, x)
    want = [sum(int(v) * 2**29 for v in row) for row in x.tolist()]
    assert got[:, 0].tolist() == want
    # 16 such inputs would reach 2^63: refused before running
    with pytest.raises(IntegerOverflow, match="int64"):
        compile_layers([_layer(np.full((1, 16), 2.0**29))], 1.0, 2**30, Scaling(p=1, act_bits=31))


def test_shifts_keep_layers_inside_act_bits() -> None:
    rng = np.random.default_rng(0)
    layers = [_layer(rng.normal(size=(8, 8)), relu=True) for _ in range(6)]
    plan = compile_layers(layers, 1000.0, 1000, Scaling(p=2**7, act_bits=20))
    assert any(layer.shift > 0 for layer in plan.layers)
    x = torch.from_numpy(rng.integers(0, 1000, size=(50, 8)))
    out = execute(plan, x)
    # the fixed-point result tracks the network with p-rounded weights within the shifts'
    # rounding (each shift keeps 20 bits of the worst-case bound)
    ref = x.double() / 1000
    for layer in layers:
        w_p = torch.from_numpy(np.rint(layer.weight.astype(np.float64) * 2**7) / 2**7)
        ref = torch.clamp_min(ref @ w_p.T, 0)
    got = out.double() / plan.scale_out
    assert (got - ref).abs().max().item() <= 1e-2 * ref.abs().max().item()


def test_images_must_be_uint8_digits() -> None:
    assert quantise_images(np.full((2, 28, 28), 255, np.uint8), 1000).max().item() == 1000
    with pytest.raises(IVHEError):
        quantise_images(np.zeros((2, 28, 28), np.float32), 1000)
    with pytest.raises(IVHEError):
        quantise_images(np.zeros((2, 3, 28, 28), np.uint8), 1000)

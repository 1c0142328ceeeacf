"""The Taylor sigmoid on ciphertexts: linear part exact with public material, cubic exact
with the key holder's inner-product key while within budget, refused past it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coopflower.crypto import ErrorBudgetExceeded, IntegerOverflow, ivhe
from coopflower.crypto.activations import taylor_sigmoid

PARAMS = ivhe.IVHEParams(w=2**20, l=46, a_bound=4, e_bound=1, t_bound=4)
SK, PK = ivhe.keygen(1, PARAMS, 0)
INNER = ivhe.inner_product_key(SK, [[1]], SK, 1)


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.integers(-30, 30), min_size=1, max_size=8), s=st.integers(1, 12))
def test_taylor_sigmoid_is_exact_in_integers(xs, s) -> None:
    x = np.array(xs, dtype=np.int64)[:, None]
    ct = ivhe.encrypt(PK, x)
    lin, lin_scale = taylor_sigmoid(ct, s, PARAMS.w)
    assert np.array_equal(ivhe.decrypt(SK, lin), 2 * s + x) and lin_scale == 4 * s
    try:
        cub, scale = taylor_sigmoid(ct, s, PARAMS.w, INNER)
    except ErrorBudgetExceeded:
        return
    want = 24 * s**3 + 12 * s * s * x - x**3
    assert np.array_equal(ivhe.decrypt(SK, cub), want) and scale == 48 * s**3


def test_taylor_sigmoid_approximates_sigmoid_near_zero() -> None:
    s = 10
    x = np.arange(-15, 16, dtype=np.int64)[:, None]
    cub, scale = taylor_sigmoid(ivhe.encrypt(PK, x), s, PARAMS.w, INNER)
    got = ivhe.decrypt(SK, cub)[:, 0] / scale
    ref = 1 / (1 + np.exp(-x[:, 0] / s))
    assert np.abs(got - ref).max() < 0.03


def test_cubic_past_the_budget_is_refused() -> None:
    for x in (60, 200):  # the inner products' error bound passes w/2
        with pytest.raises(ErrorBudgetExceeded, match="w/2"):
            taylor_sigmoid(ivhe.encrypt(PK, np.array([[x]])), 100, PARAMS.w, INNER)
    with pytest.raises(IntegerOverflow, match="int64"):  # c_a c_b^T would leave int64
        taylor_sigmoid(ivhe.encrypt(PK, np.array([[3000]])), 100, PARAMS.w, INNER)


def test_fig5_fully_connected_sigmoid_network_in_cipherspace() -> None:
    """The paper's Fig. 5(b): Weight Matrix 1 encrypted element-wise, inputs scaled, the
    Taylor sigmoid, Weight Matrix 2 in plaintext on each component, the output pair decrypted
    by the key holder. Every step is a scheme operation, so the result is exact."""
    rng = np.random.default_rng(0)
    n, m, k, batch = 3, 3, 2, 6  # small: the cubic's two inner products eat the budget fast
    w1 = rng.integers(-1, 2, size=(m, n))  # p-scaled integer weights
    w2 = rng.integers(-1, 2, size=(k, m))
    x = rng.integers(0, 2, size=(batch, n))  # q-scaled non-negative inputs
    enc_w1 = ivhe.encrypt(PK, w1[..., None])  # (m, n, 2): a trailing axis of 2
    pre = ivhe.weighted_sum(x, enc_w1, PARAMS.w)  # (m, batch, 2): W1 x per unit, exact
    pre = ivhe.Ciphertext(np.ascontiguousarray(pre.c.transpose(1, 0, 2)), pre.err, pre.xmax)
    s = 2
    for inner, poly in (
        (None, lambda z: 2 * s + z),
        (INNER, lambda z: 24 * s**3 + 12 * s * s * z - z**3),
    ):
        hidden, _ = taylor_sigmoid(pre, s, PARAMS.w, inner)  # (batch, m, 2)
        out = ivhe.weighted_sum(w2, hidden, PARAMS.w)  # W2 on both components: (batch, k, 2)
        z = x @ w1.T
        assert np.array_equal(ivhe.decrypt(SK, out)[..., 0], poly(z) @ w2.T)

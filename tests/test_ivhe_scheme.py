"""Property-based tests of the IVHE scheme (Zhou-Wornell as in ivhe.md): every operation
decrypts to the plaintext result while within budget, and past the budget it is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coopflower.crypto import ivhe
from coopflower.crypto.errors import CipherFormatError, ErrorBudgetExceeded, IntegerOverflow

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

params_st = st.builds(
    ivhe.IVHEParams,
    w=st.sampled_from([2**16, 2**20, 10**6 + 3]),
    l=st.integers(36, 44),
    a_bound=st.integers(0, 64),
    e_bound=st.integers(0, 3),
    t_bound=st.integers(1, 32),
    nonnegative=st.booleans(),
)


def plaintexts(m: int, bound: int = 1000) -> st.SearchStrategy[np.ndarray]:
    return st.lists(
        st.lists(st.integers(-bound, bound), min_size=m, max_size=m), min_size=1, max_size=6
    ).map(lambda rows: np.array(rows, dtype=np.int64))


@SETTINGS
@given(params=params_st, m=st.integers(1, 5), seed=st.integers(0, 2**32), data=st.data())
def test_decrypt_inverts_encrypt(params, m, seed, data) -> None:
    x = data.draw(plaintexts(m))
    sk, pk = ivhe.keygen(m, params, seed)
    ct = ivhe.encrypt(pk, x)
    assert ct.c.shape == (x.shape[0], m + 1)
    assert ct.err == m * params.l * params.e_bound
    # the relation S'c = w x + e holds with |e| within the public bound
    e = ivhe.decrypt_exact_values(sk, ct.c) - params.w * x
    assert np.abs(e).max() <= ct.err
    assert np.array_equal(ivhe.decrypt(sk, ct), x)


@SETTINGS
@given(params=params_st, m=st.integers(1, 4), seed=st.integers(0, 2**32), data=st.data())
def test_key_switching_is_correct(params, m, seed, data) -> None:
    x = data.draw(plaintexts(m))
    sk1, pk1 = ivhe.keygen(m, params, seed)
    sk2, _ = ivhe.keygen(m, params, seed + 1)
    key = ivhe.key_switch_key(sk1, sk2, seed + 2)
    ct2 = ivhe.switch(ivhe.encrypt(pk1, x), key)
    assert np.array_equal(ivhe.decrypt(sk2, ct2), x)
    e = ivhe.decrypt_exact_values(sk2, ct2.c) - params.w * x
    assert np.abs(e).max() <= ct2.err


@SETTINGS
@given(params=params_st, m=st.integers(1, 4), seed=st.integers(0, 2**32), data=st.data())
def test_addition_and_integer_weighting(params, m, seed, data) -> None:
    x = data.draw(plaintexts(m))
    y = data.draw(st.integers(-50, 50).map(lambda k: x * k + 1))
    sk, pk = ivhe.keygen(m, params, seed)
    cx, cy = ivhe.encrypt(pk, x), ivhe.encrypt(pk, y)
    assert np.array_equal(ivhe.decrypt(sk, ivhe.add(cx, cy, params.w)), x + y)
    k = np.arange(m, dtype=np.int64) - 2
    assert np.array_equal(ivhe.decrypt(sk, ivhe.add_plain(cx, k, params.w)), x + k)
    U = data.draw(
        st.lists(
            st.lists(st.integers(-9, 9), min_size=x.shape[0], max_size=x.shape[0]),
            min_size=1,
            max_size=3,
        ).map(lambda r: np.array(r, dtype=np.int64))
    )
    try:
        ws = ivhe.weighted_sum(U, cx, params.w)
    except ErrorBudgetExceeded:
        # refused only when the bound really reaches w/2
        assert 2 * ivhe.l1_rows_bound(U) * cx.err >= params.w
        return
    assert np.array_equal(ivhe.decrypt(sk, ws), U @ x)


@SETTINGS
@given(params=params_st, seed=st.integers(0, 2**32), data=st.data())
def test_linear_transform_with_published_key(params, seed, data) -> None:
    m_in = data.draw(st.integers(1, 4))
    m_out = data.draw(st.integers(1, 4))
    x = data.draw(plaintexts(m_in, 200))
    G = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(-5, 5), min_size=m_in, max_size=m_in),
                min_size=m_out,
                max_size=m_out,
            )
        ),
        dtype=np.int64,
    )
    sk, pk = ivhe.keygen(m_in, params, seed)
    sk_out, _ = ivhe.keygen(m_out, params, seed + 1)
    key = ivhe.linear_transform_key(sk, G, sk_out, seed + 2)
    try:
        out = ivhe.switch(ivhe.encrypt(pk, x), key)
    except ErrorBudgetExceeded:
        assert 2 * (key.gain * m_in * params.l * params.e_bound + key.err_add) >= params.w
        return
    assert np.array_equal(ivhe.decrypt(sk_out, out), x @ G.T)


@SETTINGS
@given(seed=st.integers(0, 2**32), data=st.data())
def test_weighted_inner_product(seed, data) -> None:
    params = ivhe.IVHEParams(w=2**16, l=40, a_bound=8, e_bound=1, t_bound=4)
    m = data.draw(st.integers(1, 3))
    x1 = data.draw(plaintexts(m, 60))
    x2 = data.draw(st.integers(-3, 3).map(lambda k: x1 * k - 1))
    H = np.array(
        data.draw(st.lists(st.integers(-3, 3), min_size=m * m, max_size=m * m)), dtype=np.int64
    ).reshape(m, m)
    sk, pk = ivhe.keygen(m, params, seed)
    sk1, _ = ivhe.keygen(1, params, seed + 1)
    key = ivhe.inner_product_key(sk, H, sk1, seed + 2)
    c1, c2 = ivhe.encrypt(pk, x1), ivhe.encrypt(pk, x2)
    want = np.einsum("bi,ij,bj->b", x1, H, x2)[:, None]
    try:
        out = ivhe.inner_product(c1, c2, key)
    except ErrorBudgetExceeded:
        return  # refusal is always allowed; correctness when accepted is what must hold
    assert np.array_equal(ivhe.decrypt(sk1, out), want)


def test_inner_product_accepted_for_small_values() -> None:
    params = ivhe.IVHEParams(w=2**16, l=40, a_bound=8, e_bound=1, t_bound=4)
    sk, pk = ivhe.keygen(1, params, 3)
    key = ivhe.inner_product_key(sk, np.array([[1]]), sk, 4)
    x = np.array([[3], [-4], [0], [7]])
    sq = ivhe.inner_product(ivhe.encrypt(pk, x), ivhe.encrypt(pk, x), key)
    assert np.array_equal(ivhe.decrypt(sk, sq), x * x)


def test_past_the_budget_is_a_clear_error() -> None:
    params = ivhe.IVHEParams(w=2**12, l=30, e_bound=2)
    sk, pk = ivhe.keygen(2, params, 0)
    ct = ivhe.encrypt(pk, np.array([[5, -5]]))
    assert 2 * ct.err < params.w
    acc = ct
    with pytest.raises(ErrorBudgetExceeded, match="w/2"):
        for _ in range(100):
            acc = ivhe.add(acc, ct, params.w)
    # everything accepted before the refusal still decrypts exactly
    assert np.array_equal(ivhe.decrypt(sk, acc), np.array([[5, -5]]) * (acc.xmax // 5))
    with pytest.raises(ErrorBudgetExceeded):
        ivhe.weighted_sum(np.array([[10**6]]), ct.__class__(ct.c[None], ct.err, ct.xmax), 2**12)


def test_overflow_and_bit_width_are_clear_errors() -> None:
    params = ivhe.IVHEParams(w=2**20, l=24)
    _, pk = ivhe.keygen(1, params, 0)
    with pytest.raises(IntegerOverflow, match="l bits"):
        ivhe.encrypt(pk, np.array([[2**5]]))
    with pytest.raises(IntegerOverflow):
        ivhe.bit_decompose(np.array([2**24]), 24)
    with pytest.raises(IntegerOverflow):
        ivhe.expand_key(np.array([[4]]), 62)  # 4 * 2^61 leaves int64
    with pytest.raises(CipherFormatError):
        ivhe.encrypt(pk, np.array([[1.5]]))
    with pytest.raises(CipherFormatError):
        ivhe.encrypt(pk, np.array([[1, 2]]))


def test_bit_decomposition_matches_expanded_key() -> None:
    rng = np.random.default_rng(0)
    c = rng.integers(-(2**30), 2**30, size=(7, 3))
    S = rng.integers(-5, 5, size=(2, 3))
    assert np.array_equal(ivhe.expand_key(S, 31) @ ivhe.bit_decompose(c, 31).T, S @ c.T)
    assert set(np.unique(ivhe.bit_decompose(c, 31))) <= {-1, 0, 1}


def test_wrong_key_or_tampering_is_refused_not_misdecrypted() -> None:
    params = ivhe.IVHEParams(w=2**24, l=40)
    sk, pk = ivhe.keygen(4, params, 1)
    other, _ = ivhe.keygen(4, params, 2)
    x = np.arange(-8, 8).reshape(4, 4)
    ct = ivhe.encrypt(pk, x)
    assert np.array_equal(ivhe.decrypt(sk, ct), x)
    with pytest.raises(CipherFormatError, match="wrong key or tampered"):
        ivhe.decrypt(other, ct)
    c = ct.c.copy()
    c[2, 1] += 12345
    with pytest.raises(CipherFormatError, match="wrong key or tampered"):
        ivhe.decrypt(sk, ivhe.Ciphertext(c, ct.err, ct.xmax))

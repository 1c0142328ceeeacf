"""Operations on ciphertexts: key switching, encryption and decryption, and the homomorphic
additions, integer weightings and inner products; each computes its bounds before it runs.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from coopflower.crypto.errors import CipherFormatError, IntegerOverflow, IVHEError
from coopflower.crypto.ivhe.integers import (
    IntArray,
    _as_int64,
    _check_budget,
    bit_decompose,
    check_int64,
    l1_rows_bound,
    max_abs,
)
from coopflower.crypto.ivhe.params import Ciphertext, SecretKey, SwitchingKey


def switch(ct: Ciphertext, key: SwitchingKey) -> Ciphertext:
    """``c' = M c*``: the same plaintext (or ``G x``) under the key's target secret.

    Raises:
        IntegerOverflow: ``|c_i| >= 2^l``. ErrorBudgetExceeded: the new error could reach w/2.
    """
    if ct.n != key.n_from:
        raise CipherFormatError(f"ciphertext length {ct.n} != key input length {key.n_from}")
    err = key.gain * ct.err + key.err_add
    _check_budget(err, key.w, f"{key.kind} key switch")
    c_star = bit_decompose(ct.c, key.l)
    c_new = c_star @ key.M.T  # |entries| <= row_l1 < 2^63 (checked when the key was made)
    return Ciphertext(c=c_new, err=err, xmax=key.gain * ct.xmax)


def encrypt(
    pk: SwitchingKey, x: npt.ArrayLike, xmax: int | None = None
) -> Ciphertext:
    """Encrypt integer plaintexts ``x`` (``(..., m)``) under the public key: switch ``w x``
    from the identity key. ``xmax`` (a public bound on ``|x|``) defaults to ``max |x|``."""
    xi = _as_int64(x, "plaintext")
    if xi.ndim < 1 or xi.shape[-1] != pk.n_from:
        raise CipherFormatError(f"plaintext must be (..., {pk.n_from}), got {xi.shape}")
    bound = max_abs(xi) if xmax is None else int(xmax)
    if max_abs(xi) > bound:
        raise IVHEError("plaintext exceeds the stated bound xmax")
    check_int64(bound * pk.w, "w x")
    if bound * pk.w >= 2**pk.l:
        raise IntegerOverflow(f"|w x| = 2^{math.log2(bound * pk.w):.1f} needs more than l bits")
    return switch(Ciphertext(c=xi * pk.w, err=0, xmax=bound), pk)


def _sc(sk: SecretKey, c: IntArray) -> IntArray:
    """``S' c`` exactly (overflow-checked)."""
    check_int64(max_abs(c) * (1 + max_abs(sk.T)), "S' c")
    return c[..., : sk.m] + c[..., sk.m :] @ sk.T.T


def decrypt(sk: SecretKey, ct: Ciphertext) -> IntArray:
    """``x = round(S' c / w)``, exact while the error bound is below ``w/2`` (else refused).

    Also checks that every residual ``S' c - w x`` is within the ciphertext's error bound: a
    wrong key or a tampered ciphertext gives residuals spread over ``[-w/2, w/2)`` and is
    refused with ``CipherFormatError`` instead of decrypting to wrong numbers.
    """
    if ct.n != sk.m + 1:
        raise CipherFormatError(f"ciphertext length {ct.n} does not match key ({sk.m + 1})")
    w = sk.params.w
    _check_budget(ct.err, w, "decrypt")
    v = _sc(sk, ct.c)
    check_int64(max_abs(v) + w, "rounding S' c")
    x = (v + w // 2) // w
    if max_abs(v - x * w) > ct.err:
        raise CipherFormatError(
            "ciphertext does not decrypt within its error bound: wrong key or tampered data"
        )
    return x


def decrypt_exact_values(sk: SecretKey, c: IntArray) -> IntArray:
    """``S' c`` without the division: the key holder's view of ``w x + e`` (for tests and for
    decrypting network outputs whose scale is tracked elsewhere)."""
    return _sc(sk, _as_int64(c, "ciphertext"))


def add(a: Ciphertext, b: Ciphertext, w: int) -> Ciphertext:
    """``a + b`` decrypts to ``x_a + x_b`` (same key). ``w`` is the public parameter."""
    if a.c.shape != b.c.shape:
        raise CipherFormatError(f"shapes differ: {a.c.shape} vs {b.c.shape}")
    err = a.err + b.err
    _check_budget(err, w, "add")
    check_int64(max_abs(a.c) + max_abs(b.c), "add")
    return Ciphertext(c=a.c + b.c, err=err, xmax=a.xmax + b.xmax)


def add_plain(a: Ciphertext, k: npt.ArrayLike, w: int) -> Ciphertext:
    """Add an integer plaintext ``k`` (``(..., m)``): ``c + [w k, 0]``; the error is unchanged."""
    ki = _as_int64(k, "plaintext")
    m = a.n - 1
    kb = np.broadcast_to(ki, a.c.shape[:-1] + (m,))
    check_int64(max_abs(a.c) + max_abs(ki) * w, "add_plain")
    c = a.c.copy()
    c[..., :m] += kb * w
    return Ciphertext(c=c, err=a.err, xmax=a.xmax + max_abs(ki))


def weighted_sum(U: npt.ArrayLike, ct: Ciphertext, w: int) -> Ciphertext:
    """Integer weighting ``sum_j U_kj c_j`` over the second-to-last axis of ``ct.c``
    (``(..., J, n)`` -> ``(..., K, n)``); decrypts to ``U x``, error grows with ``sum |U_kj|``."""
    Ui = _as_int64(U, "weights")
    if Ui.ndim != 2 or ct.c.ndim < 2 or Ui.shape[1] != ct.c.shape[-2]:
        raise CipherFormatError(f"weights {Ui.shape} do not match ciphertexts {ct.c.shape}")
    g = l1_rows_bound(Ui)
    err = g * ct.err
    _check_budget(err, w, "weighted sum")
    check_int64(g * max_abs(ct.c), "weighted sum")
    return Ciphertext(c=np.einsum("kj,...jn->...kn", Ui, ct.c), err=err, xmax=g * ct.xmax)


def inner_product(a: Ciphertext, b: Ciphertext, key: SwitchingKey) -> Ciphertext:
    """``x_a^T H x_b`` (``H`` fixed in ``key``), batched over leading axes: ``c = round(vec(c_a
    c_b^T) / w)`` then key switching to the key's scalar target. The result's plaintext has
    the scale of the inputs multiplied (no division by anything but ``w``)."""
    if a.c.shape != b.c.shape or key.kind != "inner" or a.n * a.n != key.n_from:
        raise CipherFormatError("inner product needs equal shapes and a matching inner key")
    w = key.w
    check_int64(max_abs(a.c) * max_abs(b.c) + w, "c_a c_b^T")
    err = (
        key.gain * (a.xmax * b.err + a.err * b.xmax)
        + -(-key.gain * a.err * b.err // w)
        + key.round_err
        + key.err_add
    )
    _check_budget(err, w, "inner product")
    outer = (a.c[..., :, None] * b.c[..., None, :]).reshape(*a.c.shape[:-1], a.n * a.n)
    rounded = (outer + w // 2) // w
    c_new = bit_decompose(rounded, key.l) @ key.M.T
    return Ciphertext(c=c_new, err=err, xmax=key.gain * a.xmax * b.xmax)

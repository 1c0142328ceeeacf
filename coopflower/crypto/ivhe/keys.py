"""Key holder: the secret key and the public switching keys (encryption, key switching,
linear transforms, inner products), ``M = [S* - T A + E ; A]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from coopflower.crypto.errors import CipherFormatError, IVHEError
from coopflower.crypto.ivhe.integers import (
    IntArray,
    _as_int64,
    check_int64,
    expand_key,
    l1_rows_bound,
    make_rng,
    max_abs,
)
from coopflower.crypto.ivhe.params import IVHEParams, SecretKey, SwitchingKey


def _sample(rng: np.random.Generator, bound: int, shape: tuple[int, ...], nonneg: bool) -> IntArray:
    low = 0 if nonneg else -bound
    return rng.integers(low, bound, size=shape, endpoint=True, dtype=np.int64)


def switching_key(
    S_from: IntArray,
    sk_to: SecretKey,
    rng: np.random.Generator | int | None = None,
    *,
    kind: str = "switch",
    gain: int = 1,
    round_err: int = 0,
) -> SwitchingKey:
    """Key holder: ``M = [S* - T A + E ; A]`` so that ``S' M = S* + E``.

    Args:
        S_from: the key ciphertexts are under now, ``(m, n)`` with ``m = sk_to.m``.
        sk_to: the target key ``[I, T]``.
        rng: randomness for ``A`` and ``E``.
        kind, gain, round_err: bookkeeping for the error bounds (see ``SwitchingKey``).

    Returns:
        The public switching key.
    """
    S_from = _as_int64(S_from, "S_from")
    p = sk_to.params
    if S_from.ndim != 2 or S_from.shape[0] != sk_to.m:
        raise CipherFormatError(f"S_from must have {sk_to.m} rows, got shape {S_from.shape}")
    gen = make_rng(rng)
    n = S_from.shape[1]
    s_star = expand_key(S_from, p.l)
    A = _sample(gen, p.a_bound, (1, n * p.l), p.nonnegative)
    E = _sample(gen, p.e_bound, (sk_to.m, n * p.l), p.nonnegative)
    check_int64(max_abs(s_star) + max_abs(sk_to.T) * p.a_bound + p.e_bound, "M entries")
    M = np.vstack([s_star - sk_to.T @ A + E, A])
    return SwitchingKey(
        M=M,
        l=p.l,
        w=p.w,
        n_from=n,
        kind=kind,
        gain=gain,
        err_add=n * p.l * p.e_bound,
        round_err=round_err,
        params=p,
    )


def keygen(
    m: int, params: IVHEParams, rng: np.random.Generator | int | None = None
) -> tuple[SecretKey, SwitchingKey]:
    """Key holder: a secret key ``[I, T]`` for plaintexts of length ``m`` and its public key
    ``M`` (the switching key from ``I``), with which anyone can encrypt.

    Returns:
        ``(secret_key, public_key)``.
    """
    if m < 1:
        raise IVHEError(f"plaintext length must be >= 1, got {m}")
    gen = make_rng(rng)
    low = 1 if params.nonnegative else -params.t_bound
    T = gen.integers(low, params.t_bound, size=(m, 1), endpoint=True, dtype=np.int64)
    sk = SecretKey(T=T, params=params)
    pk = switching_key(np.eye(m, dtype=np.int64), sk, gen, kind="encrypt")
    return sk, pk


def key_switch_key(
    sk_from: SecretKey, sk_to: SecretKey, rng: np.random.Generator | int | None = None
) -> SwitchingKey:
    """Key holder: switch ciphertexts from ``sk_from`` to ``sk_to`` (same plaintext length)."""
    if sk_from.m != sk_to.m:
        raise CipherFormatError(f"plaintext lengths differ: {sk_from.m} vs {sk_to.m}")
    return switching_key(sk_from.S, sk_to, rng, kind="switch")


def linear_transform_key(
    sk_from: SecretKey,
    G: npt.ArrayLike,
    sk_to: SecretKey,
    rng: np.random.Generator | int | None = None,
) -> SwitchingKey:
    """Key holder: the key that turns an encryption of ``x`` into one of ``G x`` (from ``G S'``).

    ``G`` is an integer ``(m_out, m_in)`` matrix; ``sk_to`` has length ``m_out``.
    """
    Gi = _as_int64(G, "G")
    if Gi.ndim != 2 or Gi.shape != (sk_to.m, sk_from.m):
        raise CipherFormatError(f"G must be ({sk_to.m}, {sk_from.m}), got {Gi.shape}")
    check_int64(l1_rows_bound(Gi) * max(1, max_abs(sk_from.S)), "G S'")
    return switching_key(
        Gi @ sk_from.S, sk_to, rng, kind="linear", gain=l1_rows_bound(Gi)
    )


def inner_product_key(
    sk: SecretKey,
    H: npt.ArrayLike,
    sk_to: SecretKey,
    rng: np.random.Generator | int | None = None,
) -> SwitchingKey:
    """Key holder: the key for ``x1^T H x2`` of two ciphertexts under ``sk`` (from
    ``vec(S'^T H S')``) to a scalar key ``sk_to`` (``m = 1``)."""
    Hi = _as_int64(H, "H")
    if Hi.shape != (sk.m, sk.m) or sk_to.m != 1:
        raise CipherFormatError(f"H must be ({sk.m}, {sk.m}) and sk_to scalar")
    S = sk.S
    check_int64(max_abs(S) ** 2 * l1_rows_bound(Hi.reshape(1, -1)), "S'^T H S'")
    S_ip = (S.T @ Hi @ S).reshape(1, -1)
    round_err = (l1_rows_bound(S_ip) + 1) // 2
    h_l1 = l1_rows_bound(Hi.reshape(1, -1))
    return switching_key(S_ip, sk_to, rng, kind="inner", gain=h_l1, round_err=round_err)

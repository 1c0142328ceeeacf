"""Integer-Vector Homomorphic Encryption (Zhou and Wornell, 2014), as restated in ivhe.md.

Plaintext ``x`` in Z^m, secret key ``S' = [I, T]`` (``T`` an m x 1 column), ciphertext ``c`` in
Z^(m+1) with ``S' c = w x + e``. Every ciphertext carries public bounds: ``err`` on ``|e|`` and
``xmax`` on ``|x|``. Every operation computes the new bounds *before* it runs and raises
``ErrorBudgetExceeded`` when the error could reach ``w/2`` and ``IntegerOverflow`` when a value
could leave int64 or ``l`` bits: a result is either exact or refused.

All arrays are NumPy ``int64``; leading axes are batch axes (one ciphertext per trailing vector),
so encrypting or switching a whole tensor is a single matrix product, no per-element loop.

Security: this is the paper's scheme, implemented faithfully, *not* a secure one: see
docs/security.md (key recovery by Bogos, Gaspoz and Vaudenay, 2018).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from coopflower.crypto.errors import (
    CipherFormatError,
    ErrorBudgetExceeded,
    IntegerOverflow,
    IVHEError,
)

__all__ = [
    "INT64_MAX",
    "IVHEParams",
    "SecretKey",
    "SwitchingKey",
    "Ciphertext",
    "make_rng",
    "max_abs",
    "l1_rows_bound",
    "check_int64",
    "bit_decompose",
    "expand_key",
    "keygen",
    "switching_key",
    "key_switch_key",
    "linear_transform_key",
    "inner_product_key",
    "encrypt",
    "decrypt",
    "decrypt_exact_values",
    "switch",
    "add",
    "add_plain",
    "weighted_sum",
    "inner_product",
]

IntArray = npt.NDArray[np.int64]
INT64_MAX = 2**63 - 1


def make_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A NumPy generator: ``rng`` itself, seeded from an int, or from OS entropy when ``None``.

    PCG64 is not a cryptographic generator; the scheme is not secure anyway (security.md).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(secrets.randbits(128) if rng is None else rng)


def max_abs(a: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> int:
    """``max |a|`` as a Python int (0 for an empty array)."""
    if a.size == 0:
        return 0
    return int(np.abs(a).max())


def l1_rows_bound(a: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> int:
    """An upper bound (Python int) on ``max_i sum_j |a[..., i, j]|`` (last axis summed).

    Summed in float64 with a safety margin, so it never overflows and never under-estimates.
    """
    if a.size == 0:
        return 0
    s = float(np.abs(a.astype(np.float64)).sum(axis=-1).max())
    if a.dtype.kind in "iub" and s < 2.0**52:
        return int(s)  # integer partial sums below 2^53 are exact in float64
    return int(math.ceil(s * (1.0 + 2.0**-30))) + 1


def check_int64(bound: int, what: str) -> None:
    """Raise ``IntegerOverflow`` unless ``bound`` fits int64."""
    if bound > INT64_MAX:
        raise IntegerOverflow(f"{what}: bound 2^{math.log2(bound):.1f} does not fit int64")


@dataclass(frozen=True)
class IVHEParams:
    """Public parameters.

    Attributes:
        w: the large integer scaling the plaintext (``S' c = w x + e``).
        l: bits per ciphertext entry in key switching (``|c_i| < 2^l``), at most 62.
        a_bound: randomisation bound: entries of ``A`` in ``[0, a_bound]`` (or symmetric).
        e_bound: entries of the error matrix ``E`` in ``[0, e_bound]`` (or symmetric).
        t_bound: entries of the secret ``T`` in ``[1, t_bound]`` (or symmetric).
        nonnegative: the paper's choice for the ReLU trick (non-negative ``T``, ``A``, ``E``).
    """

    w: int = 2**28
    l: int = 48  # noqa: E741 (the paper's name)
    a_bound: int = 8
    e_bound: int = 1
    t_bound: int = 8
    nonnegative: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.w <= 2**40:
            raise IVHEError(f"w must be in [2, 2^40], got {self.w}")
        if not 2 <= self.l <= 62:
            raise IVHEError(f"l must be in [2, 62], got {self.l}")
        if self.a_bound < 0 or self.e_bound < 0 or self.t_bound < 1:
            raise IVHEError("a_bound and e_bound must be >= 0 and t_bound >= 1")

    def as_dict(self) -> dict[str, str]:
        """String metadata for serialisation."""
        return {
            "w": str(self.w),
            "l": str(self.l),
            "a_bound": str(self.a_bound),
            "e_bound": str(self.e_bound),
            "t_bound": str(self.t_bound),
            "nonnegative": "1" if self.nonnegative else "0",
        }

    @classmethod
    def from_dict(cls, meta: dict[str, str]) -> IVHEParams:
        """Inverse of ``as_dict``; raises ``CipherFormatError`` on bad metadata."""
        try:
            return cls(
                w=int(meta["w"]),
                l=int(meta["l"]),
                a_bound=int(meta["a_bound"]),
                e_bound=int(meta["e_bound"]),
                t_bound=int(meta["t_bound"]),
                nonnegative=meta["nonnegative"] == "1",
            )
        except (KeyError, ValueError) as exc:
            raise CipherFormatError(f"bad IVHE parameters in metadata: {exc}") from None


def _as_int64(a: npt.ArrayLike, what: str) -> IntArray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" and arr.dtype != np.bool_:
        raise CipherFormatError(f"{what} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > INT64_MAX:
        raise IntegerOverflow(f"{what} does not fit int64")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True)
class SecretKey:
    """``S' = [I, T]``: ``T`` is an ``(m, 1)`` int64 column. Only the key holder has it."""

    T: IntArray
    params: IVHEParams

    def __post_init__(self) -> None:
        if self.T.dtype != np.int64 or self.T.ndim != 2 or self.T.shape[1] != 1:
            raise CipherFormatError(f"T must be an (m, 1) int64 column, got {self.T.shape}")

    @property
    def m(self) -> int:
        """Plaintext length."""
        return int(self.T.shape[0])

    @property
    def S(self) -> IntArray:
        """The full secret matrix ``[I, T]``, shape ``(m, m + 1)``."""
        return np.hstack([np.eye(self.m, dtype=np.int64), self.T])


@dataclass(frozen=True)
class SwitchingKey:
    """A key-switching matrix ``M = [S* - T A + E ; A]`` from ``S_from`` to a key ``[I, T]``.

    ``gain`` multiplies the input error and plaintext bounds (1 for plain key switching, the
    max row L1 norm of ``G`` for a linear transform, ``sum |H|`` for an inner product);
    ``err_add`` bounds ``|E c*|``; ``round_err`` bounds the inner product's rounding term;
    ``params`` are the public parameters it was made with.
    """

    M: IntArray
    l: int  # noqa: E741
    w: int
    n_from: int
    kind: str
    gain: int = 1
    err_add: int = 0
    round_err: int = 0
    params: IVHEParams | None = None
    row_l1: int = field(default=0)

    def __post_init__(self) -> None:
        if self.M.dtype != np.int64 or self.M.ndim != 2:
            raise CipherFormatError("M must be a 2-D int64 matrix")
        if self.M.shape[1] != self.n_from * self.l or self.M.shape[0] < 2:
            raise CipherFormatError(
                f"M has shape {self.M.shape}, expected (m+1, {self.n_from * self.l})"
            )
        bound = l1_rows_bound(self.M)
        check_int64(bound, "switching key rows")
        object.__setattr__(self, "row_l1", bound)

    @property
    def m_to(self) -> int:
        """Plaintext length under the target key."""
        return int(self.M.shape[0] - 1)


@dataclass(frozen=True)
class Ciphertext:
    """A batch of ciphertexts ``c`` (``(..., m + 1)`` int64) with public bounds on
    ``|e|`` (``err``) and on ``|x|`` (``xmax``)."""

    c: IntArray
    err: int
    xmax: int

    def __post_init__(self) -> None:
        if self.c.dtype != np.int64 or self.c.ndim < 1 or self.c.shape[-1] < 1:
            raise CipherFormatError(f"ciphertext must be int64 (..., n>=1), got {self.c.shape}")
        if self.err < 0 or self.xmax < 0:
            raise CipherFormatError("error and plaintext bounds must be non-negative")

    @property
    def n(self) -> int:
        """Ciphertext length (``m + 1``)."""
        return int(self.c.shape[-1])


def _check_budget(err: int, w: int, what: str) -> None:
    if 2 * err >= w:
        raise ErrorBudgetExceeded(
            f"{what}: error bound {err} would reach w/2 = {w / 2:g}; decryption could be wrong"
        )


def bit_decompose(c: IntArray, l: int) -> IntArray:  # noqa: E741
    """``c*``: each entry as ``l`` signed binary digits, most significant first.

    Args:
        c: int64 array ``(..., n)``.
        l: digits per entry.

    Returns:
        int64 array ``(..., n * l)`` with entries in {-1, 0, 1}.

    Raises:
        IntegerOverflow: some ``|c_i| >= 2^l``.
    """
    if max_abs(c) >= 2**l:
        raise IntegerOverflow(f"ciphertext entry 2^{math.log2(max_abs(c)):.1f} needs > l={l} bits")
    shifts = np.arange(l - 1, -1, -1, dtype=np.int64)
    digits = (np.abs(c)[..., None] >> shifts) & 1
    digits = digits * np.sign(c)[..., None]
    return digits.reshape(*c.shape[:-1], c.shape[-1] * l)


def expand_key(S: IntArray, l: int) -> IntArray:  # noqa: E741
    """``S*``: each ``S_ij`` repeated as ``[2^(l-1) S_ij, ..., 2 S_ij, S_ij]``, so that
    ``S* c* = S c``. Raises ``IntegerOverflow`` if an entry leaves int64."""
    check_int64(max_abs(S) * 2 ** (l - 1), "S* entries")
    pow2 = np.left_shift(np.int64(1), np.arange(l - 1, -1, -1, dtype=np.int64))
    return (S[:, :, None] * pow2[None, None, :]).reshape(S.shape[0], S.shape[1] * l)


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

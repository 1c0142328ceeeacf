"""The scheme's integer arithmetic: int64 arrays, public bounds and overflow checks, the error
budget, and the binary decompositions ``c*`` and ``S*`` of key switching.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import numpy.typing as npt

from coopflower.crypto.errors import CipherFormatError, ErrorBudgetExceeded, IntegerOverflow

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


def _as_int64(a: npt.ArrayLike, what: str) -> IntArray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" and arr.dtype != np.bool_:
        raise CipherFormatError(f"{what} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > INT64_MAX:
        raise IntegerOverflow(f"{what} does not fit int64")
    return arr.astype(np.int64, copy=False)


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

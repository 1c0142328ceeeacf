"""The scheme's values: public parameters, the secret key ``[I, T]``, switching keys and
ciphertexts with their public bounds (frozen, checked at construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coopflower.crypto.errors import CipherFormatError, IVHEError
from coopflower.crypto.ivhe.integers import IntArray, check_int64, l1_rows_bound


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

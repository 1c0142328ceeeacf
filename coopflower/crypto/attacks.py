"""What leaks, shown as code (docs/security.md): the attacks the tests run.

- ``recover_pairwise_key``: under the matrix-pair-wise strategy ``W2' = [W2 | W2 T]`` publishes
  ``W2`` and ``W2 T``; when ``W2`` (rows: output channel x kernel position, columns: the ``r``
  input channels) has full column rank, least squares gives ``T`` exactly, and with it every
  first-layer ciphertext decrypts.
- ``first_component_estimate``: under the element-wise strategy with small non-negative
  randomisation, ``c1 = w x - t c2 + e`` with ``|t c2|`` far below ``w``, so ``round(c1 / w)``
  is (almost always) the plaintext weight itself, with no key at all.

The general key-recovery cryptanalysis of the Zhou-Wornell scheme is Bogos, Gaspoz and
Vaudenay, "Cryptanalysis of a homomorphic encryption scheme", Cryptography and
Communications 10 (2018); these two are simpler, specific to how the paper uses it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from coopflower.crypto.errors import IVHEError
from coopflower.crypto.ivhe import SecretKey
from coopflower.crypto.strategies import EncryptedModel

__all__ = ["recover_pairwise_key", "first_component_estimate"]


def recover_pairwise_key(enc: EncryptedModel) -> SecretKey:
    """Solve ``W2 T = (W2 T)`` from a published pair-wise model; no secret used.

    Raises ``IVHEError`` when ``W2`` lacks full column rank (then ``T`` is not determined).
    """
    if enc.strategy != "pairwise" or enc.pair_weight is None:
        raise IVHEError("key recovery from W2' needs a pair-wise encrypted model")
    pw = enc.pair_weight.astype(np.float64)  # (O2, r + 1, k, k)
    r = pw.shape[1] - 1
    A = np.moveaxis(pw[:, :r], 1, -1).reshape(-1, r)  # W2 as rows x r
    y = pw[:, r].reshape(-1)  # W2 T
    if np.linalg.matrix_rank(A) < r:
        raise IVHEError("W2 does not have full column rank: T is not determined by W2'")
    t, *_ = np.linalg.lstsq(A, y, rcond=None)
    return SecretKey(T=np.rint(t).astype(np.int64).reshape(r, 1), params=enc.params)


def first_component_estimate(enc: EncryptedModel) -> npt.NDArray[np.float32]:
    """Element-wise: the first-layer weights read off the first ciphertext component,
    ``round(c1 / w) / p``, with no key."""
    if enc.strategy != "elementwise":
        raise IVHEError("the first-component estimate applies to the element-wise strategy")
    c1 = enc.enc_weight[..., 0]
    w = enc.params.w
    return (((c1 + w // 2) // w) / enc.scaling.p).astype(np.float32)

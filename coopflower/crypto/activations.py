"""The paper's Taylor sigmoid on IVHE ciphertexts (section IV-C2).

``sigma(x) ~ 1/2 + x/4 - x^3/48`` (the paper prints 348: a typo; 48 is the Taylor coefficient).
With ``x`` held as integers at scale ``s`` (``x_int = s x``):

- order 1 (public material only): ``2 s + x_int`` at scale ``4 s``: an ``add_plain``, exact;
- order 3 (needs the key holder's inner-product key for ``H = [[1]]``):
  ``24 s^3 + 12 s^2 x_int - x_int^3`` at scale ``48 s^3``, with ``x_int^3`` from two inner
  products. Exact while within the error budget; the budget grows with ``|x|^2`` per product,
  so past small values the call raises ``ErrorBudgetExceeded`` instead of answering.

Higher powers without the key holder's help are not possible in this scheme; that is why the
project's CNN passes use ReLU and the element-wise pair, and why the verifier cannot evaluate a
cubic sigmoid alone.
"""

from __future__ import annotations

import numpy as np

from coopflower.crypto import ivhe
from coopflower.crypto.errors import IVHEError
from coopflower.crypto.ivhe import Ciphertext, SwitchingKey

__all__ = ["taylor_sigmoid"]


def taylor_sigmoid(
    ct: Ciphertext, s: int, w: int, inner_key: SwitchingKey | None = None
) -> tuple[Ciphertext, int]:
    """Encrypted Taylor sigmoid of scalar ciphertexts (``(..., 2)``, key ``[1, t]``).

    Args:
        ct: encryptions of ``x_int = s x``.
        s: the integer scale of ``x``.
        w: the public ``w``.
        inner_key: ``inner_product_key(sk, [[1]], sk)`` from the key holder for the cubic
            term; ``None`` gives the first-order (linear) approximation.

    Returns:
        ``(ciphertext, scale)``: decrypting and dividing by ``scale`` gives ``sigma_bar(x)``.
    """
    if ct.n != 2 or s < 1:
        raise IVHEError("taylor_sigmoid needs scalar ciphertexts (n = 2) and a scale s >= 1")
    if inner_key is None:
        return ivhe.add_plain(ct, np.array([2 * s]), w), 4 * s
    x2 = ivhe.inner_product(ct, ct, inner_key)
    x3 = ivhe.inner_product(x2, ct, inner_key)
    lin = ivhe.weighted_sum(
        np.array([[12 * s * s]]), Ciphertext(ct.c[..., None, :], ct.err, ct.xmax), w
    )
    neg_x3 = Ciphertext(-x3.c, x3.err, x3.xmax)
    both = ivhe.add(Ciphertext(lin.c[..., 0, :], lin.err, lin.xmax), neg_x3, w)
    out = ivhe.add_plain(both, np.array([24 * s**3]), w)
    return out, 48 * s**3

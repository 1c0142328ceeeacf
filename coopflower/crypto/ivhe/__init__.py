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

Where each concept lives (every name is importable from ``coopflower.crypto.ivhe`` as before):

- :mod:`~coopflower.crypto.ivhe.integers`: int64 bounds and overflow checks (``INT64_MAX``,
  :func:`make_rng`, :func:`max_abs`, :func:`l1_rows_bound`, :func:`check_int64`) and the
  decompositions :func:`bit_decompose` (``c*``) and :func:`expand_key` (``S*``);
- :mod:`~coopflower.crypto.ivhe.params`: :class:`IVHEParams`, :class:`SecretKey`,
  :class:`SwitchingKey`, :class:`Ciphertext`;
- :mod:`~coopflower.crypto.ivhe.keys`: the key holder's :func:`keygen`,
  :func:`switching_key`, :func:`key_switch_key`, :func:`linear_transform_key`,
  :func:`inner_product_key`;
- :mod:`~coopflower.crypto.ivhe.ciphertexts`: :func:`switch`, :func:`encrypt`,
  :func:`decrypt`, :func:`decrypt_exact_values`, :func:`add`, :func:`add_plain`,
  :func:`weighted_sum`, :func:`inner_product`.
"""

from __future__ import annotations

from coopflower.crypto.ivhe.ciphertexts import (
    add,
    add_plain,
    decrypt,
    decrypt_exact_values,
    encrypt,
    inner_product,
    switch,
    weighted_sum,
)
from coopflower.crypto.ivhe.integers import (
    INT64_MAX,
    bit_decompose,
    check_int64,
    expand_key,
    l1_rows_bound,
    make_rng,
    max_abs,
)
from coopflower.crypto.ivhe.keys import (
    inner_product_key,
    key_switch_key,
    keygen,
    linear_transform_key,
    switching_key,
)
from coopflower.crypto.ivhe.params import Ciphertext, IVHEParams, SecretKey, SwitchingKey

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

"""IVHE (Zhou-Wornell 2014) and the paper's encryption interface (section IV-C, Fig. 4).

Not secure: the scheme has published key-recovery attacks (Bogos, Gaspoz and Vaudenay,
Cryptography and Communications, 2018) and the paper's strategies leak more (docs/security.md).
The project implements it faithfully, measures it and labels it.

The interface the Flower round calls (pure functions, bytes in and out through the blob format):

Initiator (key holder)::

    sk, pk = make_keys("elementwise", "table4", IVHEParams())   # Step 1
    pk_bytes = public_key_to_bytes(pk)                          # Step 2: publish (e.g. by CID)
    state = decrypt_model(EncryptedModel.from_bytes(blob), sk)  # Step 8: accepted models
    build_model(enc.arch).load_state_dict(state)

Computing contributor (public key only)::

    pk = public_key_from_bytes(pk_bytes)
    blob = encrypt_model(model, pk, "elementwise", p=2**7, q=1000).to_bytes()   # Steps 3-4

Verification contributor (public material only)::

    enc = EncryptedModel.from_bytes(blob)                 # validated; CipherFormatError if bad
    acc = evaluate_encrypted(enc, images, labels)         # Step 5: uint8 digits, int labels
    vote = acc >= task_threshold

In the verify handler (``coopflower.app.judge.judge_model``), a blob whose metadata has
``format == strategies.FORMAT`` is an encrypted model: parse it with
``EncryptedModel.from_bytes`` (a ``CipherFormatError`` is a "no" vote with its reason), take
``classes`` from ``enc.metadata`` and vote on ``evaluate_encrypted(enc, x, y, classes)``.

What a verifier needs and decides on: with the element-wise strategy it holds no ``t``; it runs
the cipherspace pass (both components through ReLU, pooling and the plaintext layers) and decides
on the first output component, which approximates ``w`` times the logits. That approximation is
itself a leak (the first weight component is ``w`` times the weight plus small noise). With the
pair-wise strategy the pair cancels the key and the verifier gets the logits; but building the
pair needs ``S'`` (``encrypt_model(..., secret_key=sk)``), and the published ``W2'`` reveals ``T``.
A verifier that can evaluate a model can use it: evaluation access is model access.

Errors: every refusal is an ``IVHEError`` (``ErrorBudgetExceeded``, ``IntegerOverflow``,
``CipherFormatError``); no result is silently wrong.

Modules: ``ivhe`` (the scheme), ``network`` (fixed-point integer CNN engine, p and q),
``strategies`` (element-wise, matrix-pair-wise), ``activations`` (Taylor sigmoid),
``attacks`` (the leaks, as code), ``interface`` (the functions above).
"""

from coopflower.crypto.errors import (
    CipherFormatError,
    ErrorBudgetExceeded,
    IntegerOverflow,
    IVHEError,
)
from coopflower.crypto.interface import (
    arch_of,
    ciphertext_from_bytes,
    ciphertext_to_bytes,
    decrypt_model,
    encrypt_model,
    evaluate_encrypted,
    public_key_from_bytes,
    public_key_to_bytes,
    secret_key_from_bytes,
    secret_key_to_bytes,
)
from coopflower.crypto.ivhe import IVHEParams, SecretKey, SwitchingKey
from coopflower.crypto.network import Scaling
from coopflower.crypto.strategies import (
    STRATEGIES,
    CipherOutputs,
    EncryptedModel,
    cipher_forward,
    decrypt_outputs,
    make_keys,
)

__all__ = [
    "IVHEError",
    "ErrorBudgetExceeded",
    "IntegerOverflow",
    "CipherFormatError",
    "IVHEParams",
    "SecretKey",
    "SwitchingKey",
    "Scaling",
    "STRATEGIES",
    "EncryptedModel",
    "CipherOutputs",
    "make_keys",
    "arch_of",
    "encrypt_model",
    "evaluate_encrypted",
    "decrypt_model",
    "cipher_forward",
    "decrypt_outputs",
    "public_key_to_bytes",
    "public_key_from_bytes",
    "secret_key_to_bytes",
    "secret_key_from_bytes",
    "ciphertext_to_bytes",
    "ciphertext_from_bytes",
]

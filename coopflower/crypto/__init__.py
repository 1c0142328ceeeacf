"""IVHE (Zhou-Wornell 2014) and the paper's encryption interface (section IV-C, Fig. 4), for
any torch model whose forward is a chain ``coopflower.crypto.trace`` supports.

Not secure: the scheme has published key-recovery attacks (Bogos, Gaspoz and Vaudenay,
Cryptography and Communications, 2018) and the paper's strategies leak more (docs/security.md).
The project implements it faithfully, measures it and labels it.

The interface the Flower round calls (pure functions, bytes in and out through the blob format):

Initiator (key holder)::

    check_encryptable(Net())                                  # fail before the round starts
    sk, pk = make_keys("elementwise", Net(), IVHEParams())    # Step 1 (a model, or its size)
    pk_bytes = public_key_to_bytes(pk)                        # Step 2: publish (e.g. by CID)
    state = decrypt_model(EncryptedModel.from_bytes(blob), sk)  # Step 8: the model's names
    Net().load_state_dict(state)

Computing contributor (public key only)::

    pk = public_key_from_bytes(pk_bytes)
    enc = encrypt_model(net, pk, "elementwise", p=2**7, q=1000, input_range=(-1.0, 1.0))
    blob = enc.to_bytes()                                     # Steps 3-4

Verification contributor (public material only)::

    enc = EncryptedModel.from_bytes(blob)                 # validated; CipherFormatError if bad
    scores = evaluate_encrypted(enc, Net(), x)            # Step 5: (N, classes) float64
    acc = encrypted_accuracy(enc, Net(), x, y)            # or directly the accuracy
    vote = acc >= task_threshold

``x`` holds floats in the declared ``input_range`` (uint8 pixels when it is ``(0, 1)``).
The paper's calls keep working: ``make_keys("elementwise", "table4", params)`` and
``evaluate_encrypted(enc, images, labels, classes)`` (accuracy on uint8 digits, the structure
read from the blob).

What is evaluated: Conv2d (any kernel, stride, zero padding; groups 1, dilation 1) and Linear,
ReLU (module, ``F.relu``, ``torch.relu``), max/average pooling (module or functional, adaptive
when it divides evenly), flattening to ``(N, -1)``, Identity and dropout (eval), and a final
softmax/log-softmax (skipped: monotone per row, so the scores are those before it). Anything
else (BatchNorm, sigmoid, tanh, skip connections, ...) is refused with ``UnsupportedOperation``
naming the first such operation (``check_encryptable``, ``encrypt_model``).

What a verifier needs and decides on: with the element-wise strategy it holds no ``t``; it runs
the cipherspace pass (both components through the chain) and decides on the first output
component, which approximates ``w`` times the logits. That approximation is itself a leak
(the first weight component is ``w`` times the weight plus small noise). With the pair-wise
strategy the pair cancels the key and the verifier gets the logits; but building the pair needs
``S'`` (``encrypt_model(..., secret_key=sk)``), and the published ``W2'`` reveals ``T``.
A verifier that can evaluate a model can use it: evaluation access is model access.

Errors: every refusal is an ``IVHEError`` (``ErrorBudgetExceeded``, ``IntegerOverflow``,
``CipherFormatError``, ``UnsupportedOperation``, ``InputRangeError``); no result is silently
wrong. A blob carries a SHA-256 digest of its own content: any altered byte is refused on
parse (``model_format`` says what a checksum can and cannot catch).

Modules: ``ivhe`` (the scheme), ``graph`` (the traced chain), ``trace`` (torch.fx to chain),
``engine`` (fixed-point int64 evaluation, p and q), ``model_format`` (the encrypted model and
its blob), ``strategies`` (element-wise, matrix-pair-wise), ``network`` (the first, paper-only
engine, kept for its tests), ``activations`` (Taylor sigmoid), ``attacks`` (the leaks, as
code), ``interface`` (the functions above).
"""

from coopflower.crypto.errors import (
    CipherFormatError,
    ErrorBudgetExceeded,
    InputRangeError,
    IntegerOverflow,
    IVHEError,
    UnsupportedOperation,
)
from coopflower.crypto.interface import (
    check_encryptable,
    check_template,
    ciphertext_from_bytes,
    ciphertext_to_bytes,
    decrypt_model,
    encrypt_model,
    encrypted_accuracy,
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
    "UnsupportedOperation",
    "InputRangeError",
    "IVHEParams",
    "SecretKey",
    "SwitchingKey",
    "Scaling",
    "STRATEGIES",
    "EncryptedModel",
    "CipherOutputs",
    "make_keys",
    "check_encryptable",
    "check_template",
    "encrypt_model",
    "evaluate_encrypted",
    "encrypted_accuracy",
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

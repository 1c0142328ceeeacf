"""The encryption interface of the paper's Fig. 4, as pure functions for the Flower round,
for any model ``coopflower.crypto.trace`` can read (its first Conv2d or Linear is encrypted).

Step 1 (initiator): ``make_keys`` -> secret key (kept) and public key (published as bytes).
Step 3 (contributor): ``encrypt_model`` -> ``EncryptedModel`` -> ``to_bytes`` -> storage.
Step 5 (verifier): ``EncryptedModel.from_bytes`` -> ``evaluate_encrypted`` on its own inputs.
Step 8 (initiator): ``decrypt_model`` -> a float32 state dict with the model's own names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from coopflower.blob import BlobError, pack_arrays, unpack_arrays
from coopflower.crypto import strategies
from coopflower.crypto.errors import CipherFormatError, IVHEError
from coopflower.crypto.ivhe import Ciphertext, IVHEParams, SecretKey, SwitchingKey
from coopflower.crypto.model_format import digest_of, pairwise_span
from coopflower.crypto.network import Scaling
from coopflower.crypto.strategies import EncryptedModel, make_keys
from coopflower.crypto.trace import trace_structure

__all__ = [
    "make_keys",
    "check_encryptable",
    "encrypt_model",
    "evaluate_encrypted",
    "encrypted_accuracy",
    "check_template",
    "decrypt_model",
    "public_key_to_bytes",
    "public_key_from_bytes",
    "secret_key_to_bytes",
    "secret_key_from_bytes",
    "ciphertext_to_bytes",
    "ciphertext_from_bytes",
]

_PK_FORMAT = "coopflower-ivhe-public-key/1"
_SK_FORMAT = "coopflower-ivhe-secret-key/1"
_CT_FORMAT = "coopflower-ivhe-ciphertext/1"
StateDict = Mapping[str, torch.Tensor | npt.NDArray[np.floating]]


def check_encryptable(
    model: nn.Module, strategy: str = "elementwise", *, input_shape: Sequence[int] | None = None
) -> None:
    """Fail before a round starts: raises ``UnsupportedOperation`` naming the first operation
    the cipherspace pass cannot run (or ``IVHEError`` when the input size cannot be inferred,
    or the pair-wise strategy does not apply)."""
    st = trace_structure(model, tuple(input_shape) if input_shape is not None else None)
    if strategy not in strategies.STRATEGIES:
        raise IVHEError(f"unknown strategy {strategy!r}; choose one of {strategies.STRATEGIES}")
    if strategy == "pairwise":
        pairwise_span(st)


def encrypt_model(
    model: nn.Module | StateDict,
    public_key: SwitchingKey,
    strategy: str = "elementwise",
    p: int = 2**7,
    q: int = 1000,
    *,
    input_range: Sequence[float] = (0.0, 1.0),
    input_shape: Sequence[int] | None = None,
    template: nn.Module | None = None,
    secret_key: SecretKey | None = None,
    metadata: dict[str, str] | None = None,
    arch: str | None = None,
) -> EncryptedModel:
    """Contributor: encrypt the first layer of a model (element-wise needs only the public
    key; pair-wise needs ``secret_key``, see ``strategies``).

    Args:
        model: the trained module, or its state dict with ``template`` (a module of the same
            architecture, traced for the structure).
        public_key: the initiator's ``M``.
        strategy: "elementwise" or "pairwise".
        p, q: the paper's scaling factors (weights times ``p``; ``max(|lo|, |hi|)`` of the
            inputs maps to ``q``).
        input_range: ``(lo, hi)`` of the inputs after the app's preprocessing, e.g.
            ``(-1.0, 1.0)``; verifiers' inputs outside it are refused.
        input_shape: per-sample input shape when it cannot be inferred (see ``trace``).
        metadata: str to str carried in the blob as ``enc.metadata`` (e.g. ``classes``).
        arch: a label for the architecture (default: ``metadata["model"]`` or the class name).

    Returns:
        The encrypted model; ``.to_bytes()`` gives the blob to store.
    """
    module = model if isinstance(model, nn.Module) else template
    if module is None:
        raise IVHEError("a state dict needs template=<a module of its architecture> to trace")
    st = trace_structure(module, tuple(input_shape) if input_shape is not None else None)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    label = arch or (metadata or {}).get("model") or type(module).__name__
    return strategies.encrypt_state(
        state, st, public_key, strategy, Scaling(p=p, q=q), input_range,
        secret_key=secret_key, metadata=metadata, arch=label,
    )


def check_template(enc: EncryptedModel, model: nn.Module) -> None:
    """``CipherFormatError`` unless ``model`` (the verifier's own constructor's output) has
    the blob's structure and tensor shapes: a blob of another architecture is refused."""
    st = trace_structure(model, enc.graph.input_shape)
    if st != enc.graph:
        raise CipherFormatError(
            f"the blob's structure is not the model's: {enc.graph.to_json()[:300]} vs "
            f"{st.to_json()[:300]}")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, arr in enc.plain.items():
        if shapes.get(name) != tuple(arr.shape):
            raise CipherFormatError(
                f"plain/{name} {arr.shape} is not the model's: {shapes.get(name)}")
    w = enc.enc_weight.shape
    w_shape = (w[0] - 1, *w[1:]) if enc.strategy == "pairwise" else w[:-1]
    if shapes.get(f"{st.first.name}.weight") != tuple(w_shape):
        raise CipherFormatError(f"encrypted layer {w_shape} is not the model's first layer")


@overload
def evaluate_encrypted(
    enc: EncryptedModel, model: nn.Module, inputs: npt.ArrayLike | torch.Tensor,
) -> torch.Tensor: ...


@overload
def evaluate_encrypted(
    enc: EncryptedModel, model: npt.ArrayLike, inputs: npt.ArrayLike,
    classes: Sequence[int] | None = None,
) -> float: ...


def evaluate_encrypted(
    enc: EncryptedModel,
    model: nn.Module | npt.ArrayLike,
    inputs: npt.ArrayLike | torch.Tensor,
    classes: Sequence[int] | None = None,
) -> torch.Tensor | float:
    """Verifier: evaluate an encrypted model in cipherspace, from public material only.

    ``evaluate_encrypted(enc, model, inputs)``: ``model`` is the verifier's own module of the
    architecture (checked against the blob, ``check_template``; its weights are not used);
    ``inputs`` are floats in the declared ``enc.input_range``. Returns float64 *logit-like
    scores* ``(N, classes)``: pair-wise the logits up to fixed-point rounding; element-wise
    the first output component over its scale, which approximates the logits (the listed leak
    that makes this possible, docs/ivhe.md). Take ``argmax(1)`` for predictions.

    Legacy (the paper's digits): ``evaluate_encrypted(enc, images, labels, classes=None)``
    returns the accuracy in [0, 1] on uint8 images (``nan`` when no sample counts).

    Raises ``UnsupportedOperation``/``CipherFormatError`` for a structure the model does not
    have, ``InputRangeError`` for inputs outside the range.
    """
    if isinstance(model, nn.Module):
        check_template(enc, model)
        return strategies.cipher_forward(enc, inputs).public_logits()
    return _accuracy(enc, model, inputs, classes)


def encrypted_accuracy(
    enc: EncryptedModel,
    model: nn.Module | None,
    inputs: npt.ArrayLike | torch.Tensor,
    labels: npt.ArrayLike,
    classes: Sequence[int] | None = None,
) -> float:
    """Verifier: accuracy in [0, 1] of the cipherspace predictions (``nan`` when no sample
    counts); ``model`` (optional) is checked against the blob; ``classes`` keeps only samples
    with these labels (a task over a label subset)."""
    if model is not None:
        check_template(enc, model)
    return _accuracy(enc, inputs, labels, classes)


def _accuracy(
    enc: EncryptedModel, inputs: npt.ArrayLike | torch.Tensor, labels: npt.ArrayLike,
    classes: Sequence[int] | None,
) -> float:
    y = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    x = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise IVHEError(f"labels {y.shape} do not match inputs {x.shape}")
    if classes is not None:
        keep = np.isin(y, np.asarray(list(classes)))
        x, y = x[keep], y[keep]
    if y.shape[0] == 0:
        return float("nan")
    pred = strategies.cipher_forward(enc, x).public_logits().argmax(dim=1).numpy()
    return float((pred == y).mean())


def decrypt_model(enc: EncryptedModel, secret_key: SecretKey) -> dict[str, torch.Tensor]:
    """Initiator: the float32 state dict of an encrypted model with the model's own names
    (first layer on the ``p`` grid), ready for the app's ``model.load_state_dict``."""
    return strategies.decrypt_model(enc, secret_key)


def public_key_to_bytes(pk: SwitchingKey) -> bytes:
    """The public key ``M`` and its parameters as a blob."""
    if pk.params is None or pk.kind != "encrypt":
        raise IVHEError("only an encryption key made by keygen/make_keys can be published")
    meta = {"format": _PK_FORMAT, **{f"ivhe.{k}": v for k, v in pk.params.as_dict().items()}}
    return _pack({"M": pk.M}, meta)


def _pack(arrays: dict[str, np.ndarray], meta: dict[str, str]) -> bytes:
    """A blob with the SHA-256 ``digest`` of its content (see ``model_format``)."""
    return pack_arrays(arrays, {**meta, "digest": digest_of(arrays, meta)})


def _unpack(data: bytes, fmt: str) -> tuple[dict[str, np.ndarray], IVHEParams]:
    try:
        arrays, meta = unpack_arrays(data)
        digest = meta.pop("digest", None)
        if digest is None or digest != digest_of(arrays, meta):
            raise CipherFormatError("digest missing or wrong: the blob was altered")
    except BlobError as exc:
        raise CipherFormatError(f"not a key blob: {exc}") from None
    if meta.get("format") != fmt:
        raise CipherFormatError(f"format {meta.get('format')!r} is not {fmt!r}")
    try:
        params = IVHEParams.from_dict({k[5:]: v for k, v in meta.items() if k.startswith("ivhe.")})
    except IVHEError as exc:
        raise CipherFormatError(f"bad IVHE parameters: {exc}") from None
    return arrays, params


def public_key_from_bytes(data: bytes) -> SwitchingKey:
    """Parse and validate a published public key (``CipherFormatError`` on anything wrong)."""
    arrays, params = _unpack(data, _PK_FORMAT)
    M = arrays.get("M")
    if set(arrays) != {"M"} or M is None or M.dtype != np.int64 or M.ndim != 2:
        raise CipherFormatError("public key blob must hold one int64 matrix 'M'")
    m = M.shape[0] - 1
    if m < 1 or M.shape[1] != m * params.l:
        raise CipherFormatError(f"M shape {M.shape} does not match l = {params.l}")
    return SwitchingKey(
        M=M, l=params.l, w=params.w, n_from=m, kind="encrypt",
        err_add=m * params.l * params.e_bound, params=params,
    )


def secret_key_to_bytes(sk: SecretKey) -> bytes:
    """The secret ``T`` and parameters as a blob (keep it private)."""
    meta = {"format": _SK_FORMAT, **{f"ivhe.{k}": v for k, v in sk.params.as_dict().items()}}
    return _pack({"T": sk.T}, meta)


def secret_key_from_bytes(data: bytes) -> SecretKey:
    """Inverse of ``secret_key_to_bytes`` (``CipherFormatError`` on anything wrong)."""
    arrays, params = _unpack(data, _SK_FORMAT)
    T = arrays.get("T")
    if set(arrays) != {"T"} or T is None or T.dtype != np.int64:
        raise CipherFormatError("secret key blob must hold one int64 column 'T'")
    return SecretKey(T=T, params=params)


def ciphertext_to_bytes(ct: Ciphertext, params: IVHEParams) -> bytes:
    """A batch of ciphertexts with its public bounds and parameters as a blob."""
    meta = {
        "format": _CT_FORMAT,
        "err": str(ct.err),
        "xmax": str(ct.xmax),
        **{f"ivhe.{k}": v for k, v in params.as_dict().items()},
    }
    return _pack({"c": ct.c}, meta)


def ciphertext_from_bytes(data: bytes) -> tuple[Ciphertext, IVHEParams]:
    """Parse and validate ciphertexts (``CipherFormatError`` on anything wrong, including a
    declared error bound already past ``w/2``)."""
    arrays, params = _unpack(data, _CT_FORMAT)
    c = arrays.get("c")
    if set(arrays) != {"c"} or c is None or c.dtype != np.int64 or c.ndim < 1:
        raise CipherFormatError("ciphertext blob must hold one int64 array 'c'")
    try:
        _, meta = unpack_arrays(data)
        err, xmax = int(meta["err"]), int(meta["xmax"])
    except (KeyError, ValueError, BlobError) as exc:
        raise CipherFormatError(f"bad ciphertext bounds: {exc}") from None
    if err < 0 or xmax < 0 or 2 * err >= params.w:
        raise CipherFormatError(f"declared error bound {err} is invalid for w = {params.w}")
    return Ciphertext(c=c, err=err, xmax=xmax), params

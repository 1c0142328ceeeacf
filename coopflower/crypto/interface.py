"""The encryption interface of the paper's Fig. 4, as pure functions for the Flower round.

Step 1 (initiator): ``make_keys`` -> secret key (kept) and public key (published as bytes).
Step 3 (contributor): ``encrypt_model`` -> ``EncryptedModel`` -> ``to_bytes`` -> storage.
Step 5 (verifier): ``EncryptedModel.from_bytes`` -> ``evaluate_encrypted`` on its own digits.
Step 8 (initiator): ``decrypt_model`` -> a float32 state dict for fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from coopflower.blob import BlobError, pack_arrays, unpack_arrays
from coopflower.crypto import strategies
from coopflower.crypto.errors import CipherFormatError, IVHEError
from coopflower.crypto.ivhe import Ciphertext, IVHEParams, SecretKey, SwitchingKey
from coopflower.crypto.network import Scaling
from coopflower.crypto.strategies import EncryptedModel
from coopflower.models import CNN_SPECS, PaperCNN

__all__ = [
    "arch_of",
    "encrypt_model",
    "evaluate_encrypted",
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


def arch_of(model: torch.nn.Module) -> str:
    """The paper architecture name of a ``PaperCNN`` (raises ``IVHEError`` otherwise)."""
    if isinstance(model, PaperCNN):
        for name, spec in CNN_SPECS.items():
            if spec == model.spec:
                return name
    raise IVHEError(f"not a paper CNN: {type(model).__name__}")


def encrypt_model(
    model: torch.nn.Module,
    public_key: SwitchingKey,
    strategy: str = "elementwise",
    p: int = 2**7,
    q: int = 1000,
    *,
    secret_key: SecretKey | None = None,
    metadata: dict[str, str] | None = None,
) -> EncryptedModel:
    """Contributor: encrypt the first layer of a paper CNN (element-wise needs only the public
    key; pair-wise needs ``secret_key``, see ``strategies``); ``metadata`` (str to str, e.g.
    ``classes``) travels in the blob as ``enc.metadata``.

    Returns:
        The encrypted model; ``.to_bytes()`` gives the blob to store.
    """
    return strategies.encrypt_model(
        model, arch_of(model), public_key, strategy, Scaling(p=p, q=q),
        secret_key=secret_key, metadata=metadata,
    )


def evaluate_encrypted(
    enc: EncryptedModel,
    images: npt.ArrayLike,
    labels: npt.ArrayLike,
    classes: Sequence[int] | None = None,
) -> float:
    """Verifier: accuracy of an encrypted model on uint8 digits, from public material only.

    Pair-wise: the pair cancels the key, so the logits are exact up to fixed-point rounding.
    Element-wise: without ``t`` the verifier decides on the first output component, which
    approximates ``w`` times the logits (the listed leak that makes this possible).

    Args:
        enc: the model from the blob.
        images: ``(N, 28, 28)`` uint8.
        labels: ``(N,)`` integer labels.
        classes: count only samples with these labels (a task over a label subset).

    Returns:
        Accuracy in [0, 1] (``nan`` when no sample counts).
    """
    y = np.asarray(labels)
    x = np.asarray(images)
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise IVHEError(f"labels {y.shape} do not match images {x.shape}")
    if classes is not None:
        keep = np.isin(y, np.asarray(list(classes)))
        x, y = x[keep], y[keep]
    if y.shape[0] == 0:
        return float("nan")
    pred = strategies.cipher_forward(enc, x).public_logits().argmax(dim=1).numpy()
    return float((pred == y).mean())


def decrypt_model(enc: EncryptedModel, secret_key: SecretKey) -> dict[str, torch.Tensor]:
    """Initiator: the float32 state dict of an encrypted model (first layer on the ``p``
    grid), ready for ``build_model(enc.arch).load_state_dict``."""
    return strategies.decrypt_model(enc, secret_key)


def public_key_to_bytes(pk: SwitchingKey) -> bytes:
    """The public key ``M`` and its parameters as a blob."""
    if pk.params is None or pk.kind != "encrypt":
        raise IVHEError("only an encryption key made by keygen/make_keys can be published")
    meta = {"format": _PK_FORMAT, **{f"ivhe.{k}": v for k, v in pk.params.as_dict().items()}}
    return pack_arrays({"M": pk.M}, meta)


def _unpack(data: bytes, fmt: str) -> tuple[dict[str, np.ndarray], IVHEParams]:
    try:
        arrays, meta = unpack_arrays(data)
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
    return pack_arrays({"T": sk.T}, meta)


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
    return pack_arrays({"c": ct.c}, meta)


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

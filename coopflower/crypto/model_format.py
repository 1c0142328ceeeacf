"""The encrypted model: what a contributor publishes, its validation and its blob.

The blob is the project's safetensors format (``coopflower.blob``): the ciphertext tensors, the
other layers' float32 tensors (``plain/<state-dict name>``), and string metadata: the format,
strategy, scaling, IVHE parameters, the declared input range, the traced ``structure`` (JSON,
``coopflower.crypto.graph``) and ``digest``.

Integrity: ``digest`` is the SHA-256 of the canonical blob without it (same arrays, same
metadata). Parsing recomputes it, so any change of the bytes (a flipped ciphertext integer or
float included, which no structural check could see) is refused with ``CipherFormatError``.
It is a checksum, not a signature: whoever writes a blob can write its digest. A deliberate
change with a recomputed digest passes the structural checks when the shapes still agree;
then only the key holder can notice it, when a ciphertext no longer decrypts within its error
bound (``ivhe.decrypt``); a change by a multiple of ``w`` is a valid encryption of another
weight and is undetectable (IVHE is malleable). The storage layer's content hash and the
contract's record bind the blob to its submission.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays
from coopflower.crypto import ivhe
from coopflower.crypto.engine import check_range
from coopflower.crypto.errors import CipherFormatError, ErrorBudgetExceeded, IVHEError
from coopflower.crypto.graph import LINEAR_KINDS, Structure, propagate
from coopflower.crypto.ivhe import IVHEParams
from coopflower.crypto.network import Scaling

__all__ = [
    "STRATEGIES", "FORMAT", "EncryptedModel", "pairwise_span", "layer_names", "digest_of",
]

STRATEGIES = ("elementwise", "pairwise")
FORMAT = "coopflower-ivhe-model/2"
IntArray = npt.NDArray[np.int64]
_PAIR_BETWEEN = {"conv": {"relu", "maxpool", "avgpool"}, "linear": {"relu", "flatten"}}


def layer_names(structure: Structure, name: str) -> list[str]:
    """State-dict names of one conv/linear layer of ``structure``."""
    op = next(op for op in structure.ops if op.kind in LINEAR_KINDS and op.name == name)
    return [f"{name}.weight"] + ([f"{name}.bias"] if op.bias else [])


def pairwise_span(structure: Structure) -> str:
    """The second layer's name, when the pair-wise strategy applies to this structure.

    Raises ``IVHEError`` otherwise: the second conv/linear must be the same kind as the
    first, with only ReLU and pooling between two convolutions (ReLU between two linears).
    """
    i = structure.first_index()
    first, second = structure.first, structure.second()
    if second is None or second.kind != first.kind:
        raise IVHEError("pair-wise encryption needs two consecutive layers of the same kind"
                        " (Conv2d then Conv2d, or Linear then Linear)")
    j = structure.ops.index(second)
    bad = [op.kind for op in structure.ops[i + 1 : j] if op.kind not in _PAIR_BETWEEN[first.kind]]
    if bad:
        raise IVHEError(f"pair-wise encryption: {bad[0]} between the first two layers")
    return second.name


@dataclass(frozen=True)
class EncryptedModel:
    """A contributor's model with its first layer encrypted.

    Attributes:
        strategy: "elementwise" or "pairwise".
        arch: a label for the architecture (the paper's name, or the model's class name).
        scaling: ``p``, ``q``, ``act_bits``.
        params: the public IVHE parameters.
        enc_weight: first-layer ciphertexts: the weight's shape plus a trailing 2
            element-wise; ``(O + 1, *weight.shape[1:])`` pair-wise.
        enc_bias: ``(O, 2)`` element-wise, ``(O + 1,)`` pair-wise (zeros encrypted when the
            layer has no bias).
        enc_err: public bound on the error of every first-layer ciphertext.
        pair_weight: pair-wise only: ``W2' = round(p W2) S'``, ``(O2, O + 1, ...)``.
        plain: the other tensors, float32, by state-dict name (plaintext, as in the paper).
        metadata: the contributor's own string metadata (e.g. ``classes``), carried in the blob.
        structure: the traced chain (``coopflower.crypto.graph``).
        input_range: the declared ``(lo, hi)`` of the inputs (fixed-point ``q`` maps
            ``max(|lo|, |hi|)`` to ``q``).
    """

    strategy: str
    arch: str
    scaling: Scaling
    params: IVHEParams
    enc_weight: IntArray
    enc_bias: IntArray
    enc_err: int
    pair_weight: IntArray | None = None
    plain: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    structure: Structure | None = None
    input_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def graph(self) -> Structure:
        """The structure (always present on a validated model)."""
        assert self.structure is not None
        return self.structure

    def nbytes_encrypted_layer(self) -> int:
        """Bytes of the encrypted first layer (ciphertexts, plus ``W2'`` pair-wise)."""
        n = self.enc_weight.nbytes + self.enc_bias.nbytes
        return n + (self.pair_weight.nbytes if self.pair_weight is not None else 0)

    def _arrays_meta(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        arrays: dict[str, np.ndarray] = {"enc_weight": self.enc_weight, "enc_bias": self.enc_bias}
        if self.pair_weight is not None:
            arrays["pair_weight"] = self.pair_weight
        arrays.update({f"plain/{k}": v for k, v in self.plain.items()})
        meta = {
            "format": FORMAT, "strategy": self.strategy, "arch": self.arch,
            "p": str(self.scaling.p), "q": str(self.scaling.q),
            "act_bits": str(self.scaling.act_bits), "enc_err": str(self.enc_err),
            "structure": self.graph.to_json(),
            "input_lo": repr(float(self.input_range[0])),
            "input_hi": repr(float(self.input_range[1])),
            **{f"ivhe.{k}": v for k, v in self.params.as_dict().items()},
            **{f"user.{k}": v for k, v in self.metadata.items()},
        }
        return arrays, meta

    def to_bytes(self) -> bytes:
        """Serialise through the project's blob format (safetensors bytes, no pickle)."""
        arrays, meta = self._arrays_meta()
        return pack_arrays(arrays, {**meta, "digest": digest_of(arrays, meta)})

    @classmethod
    def from_bytes(cls, data: bytes, limits: BlobLimits | None = None) -> EncryptedModel:
        """Parse and validate bytes from the network; every failure is a ``CipherFormatError``
        (a digest mismatch included)."""
        try:
            arrays, meta = unpack_arrays(data, limits)
            digest = meta.pop("digest", None)
            if digest is None or digest != digest_of(arrays, meta):
                raise CipherFormatError("digest missing or wrong: the blob was altered")
        except BlobError as exc:
            raise CipherFormatError(f"not an encrypted-model blob: {exc}") from None
        if meta.get("format") != FORMAT:
            raise CipherFormatError(f"format {meta.get('format')!r} is not {FORMAT!r}")
        try:
            return _build(cls, arrays, meta)
        except CipherFormatError:
            raise
        except (IVHEError, KeyError, ValueError) as exc:  # e.g. an error bound past the budget
            raise CipherFormatError(f"invalid encrypted model: {exc!r}") from None


def digest_of(arrays: dict[str, np.ndarray], meta: dict[str, str]) -> str:
    """SHA-256 (hex) of the canonical blob of ``arrays`` and ``meta``."""
    return hashlib.sha256(pack_arrays(arrays, meta)).hexdigest()


def _build(cls: type[EncryptedModel], arrays: dict[str, np.ndarray],
           meta: dict[str, str]) -> EncryptedModel:
    scaling = Scaling(p=int(meta["p"]), q=int(meta["q"]), act_bits=int(meta["act_bits"]))
    params = IVHEParams.from_dict({k[5:]: v for k, v in meta.items() if k.startswith("ivhe.")})
    known = {"enc_weight", "enc_bias", "pair_weight"}
    extra = [k for k in arrays if k not in known and not k.startswith("plain/")]
    if extra or "enc_weight" not in arrays or "enc_bias" not in arrays:
        raise CipherFormatError(f"unexpected or missing tensors: {sorted(arrays)}")
    return cls(
        strategy=meta["strategy"], arch=meta["arch"], scaling=scaling, params=params,
        enc_weight=arrays["enc_weight"], enc_bias=arrays["enc_bias"],
        enc_err=int(meta["enc_err"]), pair_weight=arrays.get("pair_weight"),
        plain={k[6:]: v for k, v in arrays.items() if k.startswith("plain/")},
        metadata={k[5:]: v for k, v in meta.items() if k.startswith("user.")},
        structure=Structure.from_json(meta["structure"]),
        input_range=check_range((float(meta["input_lo"]), float(meta["input_hi"]))),
    )


def _int_array(name: str, arr: object, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or (
        shape is not None and arr.shape != shape
    ):
        got = getattr(arr, "shape", None), getattr(arr, "dtype", None)
        raise CipherFormatError(f"{name} must be int64 {shape or ''}, got {got}")
    if ivhe.max_abs(arr) >= 2**62:
        raise CipherFormatError(f"{name} entries out of range")


def _shapes(enc: EncryptedModel, st: Structure) -> dict[str, tuple[int, ...]]:
    """Tensor shapes the structure must take: plain ones plus the encrypted layer's."""
    first = st.first
    pair = enc.strategy == "pairwise"
    w = enc.enc_weight
    if w.ndim not in (2 + (not pair), 4 + (not pair)) or (not pair and w.shape[-1] != 2):
        raise CipherFormatError(f"enc_weight has shape {w.shape}")
    w_shape = tuple(w.shape) if pair else tuple(w.shape[:-1])
    _int_array("enc_weight", w)
    _int_array("enc_bias", enc.enc_bias, (w_shape[0],) if pair else (w_shape[0], 2))
    shapes = {k: tuple(v.shape) for k, v in enc.plain.items()}
    shapes[f"{first.name}.weight"] = w_shape
    if first.bias:
        shapes[f"{first.name}.bias"] = (w_shape[0],)
    if pair:
        try:
            second = pairwise_span(st)
        except CipherFormatError:
            raise
        except IVHEError as exc:
            raise CipherFormatError(str(exc)) from None
        if enc.pair_weight is None:
            raise CipherFormatError("pair-wise model without pair_weight")
        _int_array("pair_weight", enc.pair_weight)
        shapes[f"{second}.weight"] = tuple(enc.pair_weight.shape)
    elif enc.pair_weight is not None:
        raise CipherFormatError("pair_weight is only for the pair-wise strategy")
    return shapes


def _validate(enc: EncryptedModel) -> None:
    """Shapes, dtypes and budget of an encrypted model against its structure."""
    if enc.strategy not in STRATEGIES:
        raise CipherFormatError(f"unknown strategy {enc.strategy!r}; choose one of {STRATEGIES}")
    st = enc.structure
    if not isinstance(st, Structure):
        raise CipherFormatError("an encrypted model needs its traced structure")
    if not isinstance(enc.arch, str) or len(enc.arch) > 200:
        raise CipherFormatError("arch must be a short string")
    shapes = _shapes(enc, st)
    needed = {n for name in st.layer_names() for n in layer_names(st, name)}
    needed -= {f"{st.first.name}.weight", f"{st.first.name}.bias"}
    if enc.strategy == "pairwise":
        needed.discard(f"{pairwise_span(st)}.weight")  # checked by _shapes
    if not needed <= set(enc.plain):
        raise CipherFormatError(f"plain tensors missing: {sorted(needed - set(enc.plain))}")
    overlap = {f"{st.first.name}.weight", f"{st.first.name}.bias"} & set(enc.plain)
    if overlap:
        raise CipherFormatError(f"the encrypted layer's tensors also in plaintext: {overlap}")
    for name, tensor in enc.plain.items():
        if not isinstance(tensor, np.ndarray) or tensor.dtype != np.float32:
            raise CipherFormatError(f"plain/{name} must be float32")
    propagate(st, shapes)
    check_range(enc.input_range)
    if enc.enc_err < 0:
        raise CipherFormatError("enc_err must be >= 0")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in enc.metadata.items()):
        raise CipherFormatError("metadata must map str to str")
    # exactness of the encrypted layer's pre-activations (integer weighting by |inputs| <= q)
    taps = int(np.prod(shapes[f"{st.first.name}.weight"][1:]))
    pre_err = taps * enc.scaling.q * enc.enc_err + enc.enc_err
    if 2 * pre_err >= enc.params.w:
        raise ErrorBudgetExceeded(
            f"first-layer pre-activation error bound {pre_err} reaches w/2 = {enc.params.w / 2:g}:"
            " raise w or lower q"
        )

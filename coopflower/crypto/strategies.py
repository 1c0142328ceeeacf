"""The paper's two encryption strategies for a CNN's first layer (section IV-C, Figs. 5-6).

Element-wise (Fig. 5): every scalar of the first layer (weights and bias, scaled by ``p``, and
``p q`` for the bias) is a plaintext of length 1 under ``S' = [1, t]``; the layer gains a
trailing axis of 2. The verifier convolves its scaled digits with both components (an integer
weighting: exact), then runs ReLU, pooling and the plaintext rest of the network on each
component. Linear steps are exact in cipherspace; ReLU and the fixed-point shifts are not (see
docs/ivhe.md). The output is a pair ``(y1, y2)``: the key holder decrypts ``y1 + t y2``; a
verifier without ``t`` can only decide on ``y1``, which approximates ``w`` times the logits
(a listed leak).

Matrix-pair-wise (Fig. 6): the ``r`` first-layer filters at each kernel position form a
plaintext vector of length ``r`` under ``S' = [I, T]`` (``r + 1`` output channels), and the
second layer absorbs the key: ``W2' = W2 S'``. Building ``W2'`` needs ``S'`` itself, so only the
key holder (or a contributor holding ``T``) can produce the pair; and ``W2' = [W2 | W2 T]``
publishes ``W2`` and lets anyone solve for ``T`` (``coopflower.crypto.attacks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays
from coopflower.crypto import ivhe
from coopflower.crypto.errors import CipherFormatError, ErrorBudgetExceeded, IVHEError
from coopflower.crypto.ivhe import Ciphertext, IVHEParams, SecretKey, SwitchingKey
from coopflower.crypto.network import (
    FloatLayer,
    Scaling,
    compile_layers,
    execute,
    layers_of,
    post_ops,
    quantise_images,
)
from coopflower.models import CNN_SPECS, build_model

__all__ = [
    "STRATEGIES",
    "FORMAT",
    "EncryptedModel",
    "CipherOutputs",
    "make_keys",
    "encrypt_model",
    "decrypt_model",
    "cipher_forward",
    "plain_int_forward",
    "decrypt_outputs",
    "encrypted_preactivations",
    "first_layer_bound",
]

STRATEGIES = ("elementwise", "pairwise")
FORMAT = "coopflower-ivhe-model/1"
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EncryptedModel:
    """A contributor's model with its first layer encrypted.

    Attributes:
        strategy: "elementwise" or "pairwise".
        arch: the paper model's name (``coopflower.models``).
        scaling: ``p``, ``q``, ``act_bits``.
        params: the public IVHE parameters.
        enc_weight: first-layer ciphertexts: ``(O, C, k, k, 2)`` element-wise,
            ``(O + 1, C, k, k)`` pair-wise.
        enc_bias: ``(O, 2)`` element-wise, ``(O + 1,)`` pair-wise.
        enc_err: public bound on the error of every first-layer ciphertext.
        pair_weight: pair-wise only: ``W2' = round(p W2) S'``, ``(O2, O + 1, k2, k2)``.
        plain: the other layers' float32 tensors by state-dict name (plaintext, as in the paper).
        metadata: the contributor's own string metadata (e.g. ``classes``), carried in the blob.
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

    def __post_init__(self) -> None:
        _validate(self)

    def nbytes_encrypted_layer(self) -> int:
        """Bytes of the encrypted first layer (ciphertexts, plus ``W2'`` pair-wise)."""
        n = self.enc_weight.nbytes + self.enc_bias.nbytes
        return n + (self.pair_weight.nbytes if self.pair_weight is not None else 0)

    def to_bytes(self) -> bytes:
        """Serialise through the project's blob format (safetensors bytes, no pickle)."""
        arrays: dict[str, np.ndarray] = {"enc_weight": self.enc_weight, "enc_bias": self.enc_bias}
        if self.pair_weight is not None:
            arrays["pair_weight"] = self.pair_weight
        arrays.update({f"plain/{k}": v for k, v in self.plain.items()})
        meta = {
            "format": FORMAT,
            "strategy": self.strategy,
            "arch": self.arch,
            "p": str(self.scaling.p),
            "q": str(self.scaling.q),
            "act_bits": str(self.scaling.act_bits),
            "enc_err": str(self.enc_err),
            **{f"ivhe.{k}": v for k, v in self.params.as_dict().items()},
            **{f"user.{k}": v for k, v in self.metadata.items()},
        }
        return pack_arrays(arrays, meta)

    @classmethod
    def from_bytes(cls, data: bytes, limits: BlobLimits | None = None) -> EncryptedModel:
        """Parse and validate bytes from the network; every failure is a ``CipherFormatError``."""
        try:
            arrays, meta = unpack_arrays(data, limits)
        except BlobError as exc:
            raise CipherFormatError(f"not an encrypted-model blob: {exc}") from None
        if meta.get("format") != FORMAT:
            raise CipherFormatError(f"format {meta.get('format')!r} is not {FORMAT!r}")
        try:
            scaling = Scaling(p=int(meta["p"]), q=int(meta["q"]), act_bits=int(meta["act_bits"]))
            enc_err = int(meta["enc_err"])
            strategy, arch = meta["strategy"], meta["arch"]
        except (KeyError, ValueError, IVHEError) as exc:
            raise CipherFormatError(f"bad encrypted-model metadata: {exc}") from None
        try:
            params = IVHEParams.from_dict(
                {k[5:]: v for k, v in meta.items() if k.startswith("ivhe.")}
            )
        except IVHEError as exc:
            raise CipherFormatError(f"bad IVHE parameters: {exc}") from None
        known = {"enc_weight", "enc_bias", "pair_weight"}
        extra = [k for k in arrays if k not in known and not k.startswith("plain/")]
        if extra or "enc_weight" not in arrays or "enc_bias" not in arrays:
            raise CipherFormatError(f"unexpected or missing tensors: {sorted(arrays)}")
        try:
            return cls(
                strategy=strategy,
                arch=arch,
                scaling=scaling,
                params=params,
                enc_weight=arrays["enc_weight"],
                enc_bias=arrays["enc_bias"],
                enc_err=enc_err,
                pair_weight=arrays.get("pair_weight"),
                plain={k[6:]: v for k, v in arrays.items() if k.startswith("plain/")},
                metadata={k[5:]: v for k, v in meta.items() if k.startswith("user.")},
            )
        except CipherFormatError:
            raise
        except IVHEError as exc:  # e.g. a declared error bound past the budget
            raise CipherFormatError(f"invalid encrypted model: {exc}") from None


def _validate(enc: EncryptedModel) -> None:
    """Shapes, dtypes and budget of an encrypted model against its architecture."""
    if enc.strategy not in STRATEGIES:
        raise CipherFormatError(f"unknown strategy {enc.strategy!r}; choose one of {STRATEGIES}")
    if enc.arch not in CNN_SPECS:
        raise CipherFormatError(f"unknown architecture {enc.arch!r}")
    shapes = {k: tuple(v.shape) for k, v in build_model(enc.arch).state_dict().items()}
    names = list(shapes)
    o, c, k, _ = shapes[names[0]]
    pair = enc.strategy == "pairwise"
    want_w = (o + 1, c, k, k) if pair else (o, c, k, k, 2)
    want_b = (o + 1,) if pair else (o, 2)
    checks = (("enc_weight", enc.enc_weight, want_w), ("enc_bias", enc.enc_bias, want_b))
    for name, arr, want in checks:
        if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.shape != want:
            got = getattr(arr, "shape", None), getattr(arr, "dtype", None)
            raise CipherFormatError(f"{name} must be int64 {want}, got {got}")
        if ivhe.max_abs(arr) >= 2**62:
            raise CipherFormatError(f"{name} entries out of range")
    plain_names = set(names[2:])
    if pair:
        w1 = names[2]
        o2, _, k2, _ = shapes[w1]
        pw = enc.pair_weight
        if pw is None or pw.dtype != np.int64 or pw.shape != (o2, o + 1, k2, k2):
            raise CipherFormatError(f"pair_weight must be int64 {(o2, o + 1, k2, k2)}")
        plain_names.discard(w1)
    elif enc.pair_weight is not None:
        raise CipherFormatError("pair_weight is only for the pair-wise strategy")
    if set(enc.plain) != plain_names:
        raise CipherFormatError(f"plain tensors {sorted(enc.plain)} != {sorted(plain_names)}")
    for name, tensor in enc.plain.items():
        if tensor.dtype != np.float32 or tuple(tensor.shape) != shapes[name]:
            raise CipherFormatError(f"plain/{name} must be float32 {shapes[name]}")
    if enc.enc_err < 0:
        raise CipherFormatError("enc_err must be >= 0")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in enc.metadata.items()):
        raise CipherFormatError("metadata must map str to str")
    # exactness of the encrypted layer's pre-activations (integer weighting by inputs <= q)
    taps = c * k * k
    pre_err = taps * enc.scaling.q * enc.enc_err + enc.enc_err
    if 2 * pre_err >= enc.params.w:
        raise ErrorBudgetExceeded(
            f"first-layer pre-activation error bound {pre_err} reaches w/2 = {enc.params.w / 2:g}:"
            " raise w or lower q"
        )


def make_keys(
    strategy: str,
    arch: str,
    params: IVHEParams,
    rng: np.random.Generator | int | None = None,
) -> tuple[SecretKey, SwitchingKey]:
    """Initiator: a key pair for a strategy and architecture (length 1 element-wise, the
    number of first-layer filters pair-wise)."""
    if strategy not in STRATEGIES:
        raise IVHEError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if arch not in CNN_SPECS:
        raise IVHEError(f"unknown architecture {arch!r}")
    m = 1 if strategy == "elementwise" else CNN_SPECS[arch].convs[0][0]
    return ivhe.keygen(m, params, rng)


def _int(a: npt.NDArray[np.floating], scale: float, what: str) -> IntArray:
    v = np.asarray(a, dtype=np.float64) * scale
    if not np.isfinite(v).all():
        raise IVHEError(f"{what} must be finite")
    ivhe.check_int64(int(np.abs(v).max(initial=0.0)) + 1, what)
    return np.rint(v).astype(np.int64)


def encrypt_model(
    model: torch.nn.Module,
    arch: str,
    public_key: SwitchingKey,
    strategy: str = "elementwise",
    scaling: Scaling | None = None,
    *,
    secret_key: SecretKey | None = None,
    metadata: dict[str, str] | None = None,
) -> EncryptedModel:
    """Contributor: encrypt the first layer of a paper CNN.

    Args:
        model: a ``PaperCNN`` built by ``build_model(arch)``.
        arch: its architecture name.
        public_key: the initiator's ``M`` (from ``make_keys``).
        strategy: "elementwise" or "pairwise".
        scaling: ``p``, ``q``, ``act_bits`` (default ``p = 2^7``, ``q = 1000``).
        secret_key: pair-wise only: ``W2' = W2 S'`` cannot be formed without ``S'``.
        metadata: string metadata to carry (e.g. ``{"classes": "0,1,2"}``).

    Returns:
        The encrypted model. Raises ``IntegerOverflow`` when ``w p |W|`` needs more than
        ``l`` bits and ``ErrorBudgetExceeded`` when the parameters cannot keep the first
        layer's pre-activations exact for inputs up to ``q``.
    """
    sc = scaling or Scaling()
    if public_key.params is None:
        raise IVHEError("the public key does not carry its IVHE parameters")
    params = public_key.params
    layers = layers_of(model)  # type: ignore[arg-type]
    first = layers[0]
    if first.kind != "conv":
        raise IVHEError("the first layer must be a convolution")
    state = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    w_int = _int(first.weight, sc.p, "first-layer weights")
    b_int = _int(first.bias, sc.p * sc.q, "first-layer bias")
    o = w_int.shape[0]
    plain = {k: v for k, v in state.items() if not k.startswith(first.name + ".")}
    if strategy == "elementwise":
        if public_key.n_from != 1:
            raise IVHEError("element-wise encryption needs a length-1 key (make_keys)")
        cw = ivhe.encrypt(public_key, w_int[..., None])
        cb = ivhe.encrypt(public_key, b_int[..., None])
        return EncryptedModel(
            strategy, arch, sc, params, cw.c, cb.c, max(cw.err, cb.err),
            None, plain, dict(metadata or {}),
        )
    if strategy != "pairwise":
        raise IVHEError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if public_key.n_from != o:
        raise IVHEError(f"pair-wise encryption needs a length-{o} key (make_keys)")
    if secret_key is None:
        raise IVHEError(
            "pair-wise encryption needs the secret key: W2' = W2 S' cannot be formed from M alone"
        )
    second = layers[1]
    if second.kind != "conv":
        raise IVHEError("pair-wise encryption needs two consecutive convolutions")
    cols = w_int.reshape(o, -1).T  # (C*k*k, r): one plaintext vector per kernel position
    cw = ivhe.encrypt(public_key, cols)
    cb = ivhe.encrypt(public_key, b_int[None, :])
    enc_w = np.ascontiguousarray(cw.c.T.reshape((o + 1,) + w_int.shape[1:]))
    w2 = _int(second.weight, sc.p, "second-layer weights")  # (O2, r, k2, k2)
    ivhe.check_int64(
        ivhe.l1_rows_bound(np.moveaxis(w2, 1, -1)) * ivhe.max_abs(secret_key.S), "W2 S'"
    )
    pair_w = np.einsum("orab,rs->osab", w2, secret_key.S)
    plain.pop(second.name + ".weight")
    return EncryptedModel(
        strategy, arch, sc, params, enc_w, cb.c[0],
        max(cw.err, cb.err), pair_w, plain, dict(metadata or {}),
    )


def decrypt_model(enc: EncryptedModel, secret_key: SecretKey) -> dict[str, torch.Tensor]:
    """Initiator: the model's float32 state dict (first layer to the ``p`` grid; pair-wise,
    the second layer too). Raises ``CipherFormatError`` when the key does not match."""
    if secret_key.params.w != enc.params.w:
        raise CipherFormatError("secret key and model use different w")
    model = build_model(enc.arch)
    names = list(model.state_dict())
    sc = enc.scaling
    out = {k: torch.from_numpy(v.copy()) for k, v in enc.plain.items()}
    if enc.strategy == "elementwise":
        if secret_key.m != 1:
            raise CipherFormatError("element-wise models need a length-1 secret key")
        w = ivhe.decrypt(secret_key, Ciphertext(enc.enc_weight, enc.enc_err, 0))[..., 0]
        b = ivhe.decrypt(secret_key, Ciphertext(enc.enc_bias, enc.enc_err, 0))[..., 0]
    else:
        assert enc.pair_weight is not None
        o = enc.enc_weight.shape[0] - 1
        if secret_key.m != o:
            raise CipherFormatError(f"pair-wise model needs a length-{o} secret key")
        cols = enc.enc_weight.reshape(o + 1, -1).T
        w = ivhe.decrypt(secret_key, Ciphertext(np.ascontiguousarray(cols), enc.enc_err, 0))
        w = w.T.reshape((o,) + enc.enc_weight.shape[1:])
        b = ivhe.decrypt(secret_key, Ciphertext(enc.enc_bias[None, :], enc.enc_err, 0))[0]
        out[names[2]] = torch.from_numpy((enc.pair_weight[:, :o] / sc.p).astype(np.float32))
    out[names[0]] = torch.from_numpy((w / sc.p).astype(np.float32))
    out[names[1]] = torch.from_numpy((b / (sc.p * sc.q)).astype(np.float32))
    return {k: out[k] for k in names}


@dataclass(frozen=True)
class CipherOutputs:
    """Network outputs of a cipherspace pass.

    Element-wise: ``values`` is ``(N, classes, 2)``, the two components; the key holder's
    ``y1 + t y2`` divided by ``scale`` gives the logits; ``y1 / scale`` is what a verifier
    without ``t`` can use. Pair-wise: ``values`` is ``(N, classes)``, ``scale`` times the
    logits, no key needed.
    """

    strategy: str
    values: torch.Tensor
    scale: float

    def public_logits(self) -> torch.Tensor:
        """What public material gives: pair-wise the logits, element-wise ``y1 / scale``."""
        v = self.values[..., 0] if self.strategy == "elementwise" else self.values
        return v.double() / self.scale


def _model_layers(enc: EncryptedModel) -> list[FloatLayer]:
    model = build_model(enc.arch)
    names = list(model.state_dict())
    state = {k: torch.from_numpy(v) for k, v in enc.plain.items()}
    o = enc.enc_bias.shape[0] - (1 if enc.strategy == "pairwise" else 0)
    k = enc.enc_weight.shape[2]
    state[names[0]] = torch.zeros((o, enc.enc_weight.shape[1], k, k))
    state[names[1]] = torch.zeros(o)
    if enc.strategy == "pairwise":
        shp = model.state_dict()[names[2]].shape
        state[names[2]] = torch.zeros(shp)
    model.load_state_dict(state)
    return layers_of(model)


def encrypted_preactivations(enc: EncryptedModel, u: torch.Tensor) -> torch.Tensor:
    """The encrypted first layer applied to scaled inputs ``u`` (int64 ``(N, C, H, W)``):
    element-wise ``(N, O, H, W, 2)``, pair-wise ``(N, O + 1, H, W)``. Exact: decrypts to
    ``round(p W) u + round(p q b)`` (``encrypt_model`` checked the error budget for
    ``|u| <= q``)."""
    import torch.nn.functional as F

    if u.dtype != torch.int64 or (u.numel() and (u.min() < 0 or u.max() > enc.scaling.q)):
        raise IVHEError(f"inputs must be int64 in [0, q={enc.scaling.q}]")
    w = torch.from_numpy(enc.enc_weight)
    b = torch.from_numpy(enc.enc_bias)
    if enc.strategy == "pairwise":
        return F.conv2d(u, w, padding="same") + b.view(1, -1, 1, 1)
    o = w.shape[0]
    y = F.conv2d(u, torch.cat([w[..., 0], w[..., 1]]), padding="same")  # (N, 2O, H, W)
    y = y.view(y.shape[0], 2, o, *y.shape[2:]) + b.T.reshape(1, 2, o, 1, 1)
    return y.permute(0, 2, 3, 4, 1)


def first_layer_bound(enc: EncryptedModel) -> int:
    """Worst-case ``|output|`` of the encrypted first layer for inputs in ``[0, q]``."""
    w = enc.enc_weight
    if enc.strategy == "elementwise":
        per: IntArray = np.moveaxis(w, -1, 0).reshape(2, w.shape[0], -1)  # (2, O, C*k*k)
    else:
        per = w.reshape(w.shape[0], -1)
    bound = ivhe.l1_rows_bound(per) * enc.scaling.q + ivhe.max_abs(enc.enc_bias)
    ivhe.check_int64(bound, "encrypted first layer output")
    return bound


def cipher_forward(
    enc: EncryptedModel, images: npt.ArrayLike, batch_size: int = 250
) -> CipherOutputs:
    """Verifier: the cipherspace forward pass on uint8 digits, using public material only.

    Element-wise: each ciphertext component goes through the first layer, ReLU, pooling and
    the plaintext layers (twice the plaintext work). Pair-wise: ``r + 1`` channels through
    the first layer and ``W2'`` (``(r + 1) / r`` of the work in both).
    """
    import torch.nn.functional as F

    sc = enc.scaling
    layers = _model_layers(enc)
    u_all = quantise_images(images, sc.q)
    w = torch.from_numpy(enc.enc_weight)
    b = torch.from_numpy(enc.enc_bias)
    scale = float(enc.params.w) * sc.p * sc.q
    bound = first_layer_bound(enc)
    first = layers[0]
    if first.pool == "avg":
        bound, scale = bound * 4, scale * 4
    override = torch.from_numpy(enc.pair_weight) if enc.pair_weight is not None else None
    plan = compile_layers(layers[1:], scale, bound, sc, override)
    outs: list[torch.Tensor] = []
    # element-wise: the two components as contiguous (weight, bias) pairs; pair-wise: one
    comps = (
        [(w[..., i].contiguous(), b[:, i].contiguous().view(1, -1, 1, 1)) for i in (0, 1)]
        if enc.strategy == "elementwise"
        else [(w, b.view(1, -1, 1, 1))]
    )
    for start in range(0, u_all.shape[0], batch_size):
        u = u_all[start : start + batch_size]
        res = []
        for i, (wc, bc) in enumerate(comps):
            y = F.conv2d(u, wc, padding="same")
            y += bc
            res.append(execute(plan, post_ops(y, first.relu, first.pool), with_bias=i == 0))
        outs.append(torch.stack(res, dim=-1) if len(res) == 2 else res[0])
    return CipherOutputs(enc.strategy, torch.cat(outs), plan.scale_out)


def plain_int_forward(
    model: torch.nn.Module, images: npt.ArrayLike, scaling: Scaling, batch_size: int = 250
) -> tuple[torch.Tensor, float]:
    """The same integer engine on the plaintext model: ``(outputs, scale)``; the baseline the
    cipherspace passes are timed against (same code path, same batches)."""
    plan = compile_layers(layers_of(model), float(scaling.q), scaling.q, scaling)  # type: ignore[arg-type]
    u_all = quantise_images(images, scaling.q)
    outs = [
        execute(plan, u_all[s : s + batch_size]) for s in range(0, u_all.shape[0], batch_size)
    ]
    return torch.cat(outs), plan.scale_out


def decrypt_outputs(out: CipherOutputs, secret_key: SecretKey) -> torch.Tensor:
    """Key holder: float64 logits from element-wise output pairs (``(y1 + t y2) / scale``);
    pair-wise outputs need no key and are returned as they are, scaled down."""
    if out.strategy != "elementwise":
        return out.values.double() / out.scale
    if secret_key.m != 1:
        raise CipherFormatError("element-wise outputs need a length-1 secret key")
    t = int(secret_key.T[0, 0])
    v = out.values
    bound = ivhe.max_abs(v.numpy()) * (1 + abs(t))
    ivhe.check_int64(bound, "y1 + t y2")
    return (v[..., 0] + t * v[..., 1]).double() / out.scale

"""The paper's two encryption strategies for the first layer of any traced model (section IV-C,
Figs. 5-6), generalised from the paper's CNNs to the chains ``coopflower.crypto.trace`` reads.

Element-wise (Fig. 5): every scalar of the first layer (weights scaled by ``p``, the bias by
``p`` times the input scale) is a plaintext of length 1 under ``S' = [1, t]``; the layer gains
a trailing axis of 2. The verifier applies the layer to its quantised inputs with both
components (an integer weighting: exact), then runs the rest of the chain on each component.
Linear steps are exact in cipherspace; ReLU, max pooling and the fixed-point shifts are not
(docs/ivhe.md). The output is a pair ``(y1, y2)``: the key holder decrypts ``y1 + t y2``; a
verifier without ``t`` can only decide on ``y1``, which approximates ``w`` times the logits (a
listed leak). Inputs may be negative: the sign condition of the ReLU trick concerns the
pre-activation pair, whose error per unit stays within ``t |y2|`` either way.

Matrix-pair-wise (Fig. 6): the ``r`` first-layer outputs at each input position form a
plaintext vector of length ``r`` under ``S' = [I, T]`` (``r + 1`` outputs), and the second
layer (same kind; only ReLU and pooling between) absorbs the key: ``W2' = W2 S'``. Building
``W2'`` needs ``S'``, and ``W2' = [W2 | W2 T]`` lets anyone solve for ``T`` (``attacks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from coopflower.crypto import ivhe
from coopflower.crypto.engine import (
    Plan,
    apply_linear,
    compile_ops,
    input_scale,
    int_weight,
    quantise_inputs,
    run_plan,
)
from coopflower.crypto.errors import CipherFormatError, IVHEError
from coopflower.crypto.graph import Structure
from coopflower.crypto.ivhe import Ciphertext, IVHEParams, SecretKey, SwitchingKey
from coopflower.crypto.model_format import FORMAT, STRATEGIES, EncryptedModel, pairwise_span
from coopflower.crypto.network import Scaling
from coopflower.crypto.trace import first_layer_of, trace_structure

__all__ = [
    "STRATEGIES", "FORMAT", "EncryptedModel", "CipherOutputs", "make_keys", "encrypt_model",
    "encrypt_state", "decrypt_model", "cipher_forward", "plain_int_forward", "decrypt_outputs",
    "encrypted_preactivations", "first_layer_bound",
]

IntArray = npt.NDArray[np.int64]
FloatState = Mapping[str, torch.Tensor | npt.NDArray[np.floating]]
# legacy: first-layer filters of the paper's named CNNs (coopflower.models), for make_keys(str)
PAPER_FIRST_FILTERS = {"table1_c1": 32, "table1_c2": 64, "table1_c3": 32, "table4": 32}


def _outputs_of(layer: int | nn.Module | Sequence[int] | str) -> int:
    if isinstance(layer, str):
        if layer not in PAPER_FIRST_FILTERS:
            raise IVHEError(f"unknown architecture {layer!r}: pass the model or its layer size")
        return PAPER_FIRST_FILTERS[layer]
    if isinstance(layer, nn.Module):
        mod = first_layer_of(layer)
        return int(mod.weight.shape[0])
    if isinstance(layer, int | np.integer):
        out = int(layer)
    else:
        out = int(tuple(layer)[0])
    if out < 1:
        raise IVHEError(f"a layer needs at least one output, got {layer!r}")
    return out


def make_keys(
    strategy: str,
    layer: int | nn.Module | Sequence[int] | str,
    params: IVHEParams | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[SecretKey, SwitchingKey]:
    """Initiator: a key pair for a strategy and a first layer.

    Args:
        strategy: "elementwise" (plaintexts of length 1, whatever the layer) or "pairwise"
            (length = the first layer's outputs).
        layer: the model (its first Conv2d/Linear in trace order), the number of the first
            layer's outputs (filters / out_features), its weight shape, or (legacy) a paper
            architecture name.
        params: public parameters (default ``IVHEParams()``).
        rng: randomness (seed, generator, or OS entropy when ``None``).
    """
    if strategy not in STRATEGIES:
        raise IVHEError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    r = _outputs_of(layer)
    return ivhe.keygen(1 if strategy == "elementwise" else r, params or IVHEParams(), rng)


def _state(model_or_state: nn.Module | FloatState) -> dict[str, npt.NDArray[np.float32]]:
    items = (model_or_state.state_dict() if isinstance(model_or_state, nn.Module)
             else model_or_state).items()
    out = {}
    for k, v in items:
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.dtype.kind != "f":
            raise IVHEError(f"tensor {k!r} is {a.dtype}: only float parameters can be sent")
        out[k] = np.array(a, dtype=np.float32)
    return out


def encrypt_state(
    state: FloatState,
    structure: Structure,
    public_key: SwitchingKey,
    strategy: str = "elementwise",
    scaling: Scaling | None = None,
    input_range: Sequence[float] = (0.0, 1.0),
    *,
    secret_key: SecretKey | None = None,
    metadata: dict[str, str] | None = None,
    arch: str = "",
) -> EncryptedModel:
    """Contributor: encrypt the first layer of ``state`` (named as ``structure`` names it).

    Raises ``IntegerOverflow`` when ``w p |W|`` needs more than ``l`` bits and
    ``ErrorBudgetExceeded`` when the parameters cannot keep the first layer's pre-activations
    exact for inputs up to ``q``; pair-wise without ``secret_key`` is an ``IVHEError``.
    """
    sc = scaling or Scaling()
    if public_key.params is None:
        raise IVHEError("the public key does not carry its IVHE parameters")
    if strategy not in STRATEGIES:
        raise IVHEError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    plain = _state(state)
    first = structure.first
    try:
        w = plain.pop(f"{first.name}.weight")
        b = plain.pop(f"{first.name}.bias") if first.bias else np.zeros(w.shape[0], np.float32)
    except KeyError as exc:
        raise IVHEError(f"the state dict lacks the first layer's tensor {exc}") from None
    w_int = int_weight(w, sc.p, "first-layer weights").numpy()
    b_int = int_weight(b, sc.p * input_scale(input_range, sc.q), "first-layer bias").numpy()
    lo, hi = (float(v) for v in input_range)
    common = {"strategy": strategy, "arch": arch, "scaling": sc, "params": public_key.params,
              "metadata": dict(metadata or {}), "structure": structure, "input_range": (lo, hi)}
    if strategy == "elementwise":
        if public_key.n_from != 1:
            raise IVHEError("element-wise encryption needs a length-1 key (make_keys)")
        cw = ivhe.encrypt(public_key, w_int[..., None])
        cb = ivhe.encrypt(public_key, b_int[..., None])
        return EncryptedModel(enc_weight=cw.c, enc_bias=cb.c, enc_err=max(cw.err, cb.err),
                              plain=plain, **common)  # type: ignore[arg-type]
    o = w_int.shape[0]
    if public_key.n_from != o:
        raise IVHEError(f"pair-wise encryption needs a length-{o} key (make_keys)")
    if secret_key is None:
        raise IVHEError(
            "pair-wise encryption needs the secret key: W2' = W2 S' cannot be formed from M alone"
        )
    second = pairwise_span(structure)
    cw = ivhe.encrypt(public_key, w_int.reshape(o, -1).T)  # one plaintext per input position
    cb = ivhe.encrypt(public_key, b_int[None, :])
    enc_w = np.ascontiguousarray(cw.c.T.reshape((o + 1,) + w_int.shape[1:]))
    w2 = int_weight(plain.pop(f"{second}.weight"), sc.p, "second-layer weights").numpy()
    ivhe.check_int64(
        ivhe.l1_rows_bound(np.moveaxis(w2, 1, -1)) * ivhe.max_abs(secret_key.S), "W2 S'"
    )
    pair_w = np.ascontiguousarray(np.einsum("or...,rs->os...", w2, secret_key.S))
    return EncryptedModel(enc_weight=enc_w, enc_bias=cb.c[0], enc_err=max(cw.err, cb.err),
                          pair_weight=pair_w, plain=plain, **common)  # type: ignore[arg-type]


def encrypt_model(
    model: nn.Module,
    arch: str,
    public_key: SwitchingKey,
    strategy: str = "elementwise",
    scaling: Scaling | None = None,
    *,
    secret_key: SecretKey | None = None,
    metadata: dict[str, str] | None = None,
    input_range: Sequence[float] = (0.0, 1.0),
    input_shape: Sequence[int] | None = None,
) -> EncryptedModel:
    """Contributor: trace ``model`` and encrypt its first layer (the paper's call, kept; any
    traceable model works). ``arch`` is a label carried in the blob."""
    st = trace_structure(model, tuple(input_shape) if input_shape is not None else None)
    return encrypt_state(model.state_dict(), st, public_key, strategy, scaling, input_range,
                         secret_key=secret_key, metadata=metadata, arch=arch)


def decrypt_model(enc: EncryptedModel, secret_key: SecretKey) -> dict[str, torch.Tensor]:
    """Initiator: the model's float32 state dict by its own names (first layer on the ``p``
    grid; pair-wise, the second layer too). ``CipherFormatError`` when the key does not match
    or a ciphertext does not decrypt within its error bound (tampering)."""
    for name in ("w", "l"):  # l, the key's decomposition length, matters to no evaluation
        if getattr(secret_key.params, name) != getattr(enc.params, name):
            raise CipherFormatError(f"secret key and model use different {name}: "
                                    f"{getattr(secret_key.params, name)} and "
                                    f"{getattr(enc.params, name)}")
    st, sc = enc.graph, enc.scaling
    first = st.first
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
        cols = np.ascontiguousarray(enc.enc_weight.reshape(o + 1, -1).T)
        w = ivhe.decrypt(secret_key, Ciphertext(cols, enc.enc_err, 0))
        w = w.T.reshape((o,) + enc.enc_weight.shape[1:])
        b = ivhe.decrypt(secret_key, Ciphertext(enc.enc_bias[None, :], enc.enc_err, 0))[0]
        w2 = (enc.pair_weight[:, :o] / sc.p).astype(np.float32)
        out[f"{pairwise_span(st)}.weight"] = torch.from_numpy(np.ascontiguousarray(w2))
    out[f"{first.name}.weight"] = torch.from_numpy((w / sc.p).astype(np.float32))
    if first.bias:
        s_in = input_scale(enc.input_range, sc.q)
        out[f"{first.name}.bias"] = torch.from_numpy((b / (sc.p * s_in)).astype(np.float32))
    order = [n for name in st.layer_names() for n in (f"{name}.weight", f"{name}.bias")]
    return {k: out[k] for k in [*dict.fromkeys(order), *sorted(out)] if k in out}


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


def _lead(st: Structure, u: torch.Tensor) -> torch.Tensor:
    """Operations before the first layer (only flattens are allowed there)."""
    return u.flatten(1) if st.first_index() > 0 else u


def _bias_view(b: torch.Tensor, kind: str) -> torch.Tensor:
    return b.view(1, -1, 1, 1) if kind == "conv" else b.view(1, -1)


def encrypted_preactivations(enc: EncryptedModel, u: torch.Tensor) -> torch.Tensor:
    """The encrypted first layer applied to quantised inputs ``u`` (int64, ``|u| <= q``):
    element-wise the layer's output shape plus a trailing 2, pair-wise ``O + 1`` outputs.
    Exact: decrypts to ``round(p W) u + round(p s b)`` (budget checked for ``|u| <= q``)."""
    if u.dtype != torch.int64 or (u.numel() and int(u.abs().max()) > enc.scaling.q):
        raise IVHEError(f"inputs must be int64 with |u| <= q = {enc.scaling.q}")
    first = enc.graph.first
    w, b = torch.from_numpy(enc.enc_weight), torch.from_numpy(enc.enc_bias)
    u = _lead(enc.graph, u)
    if enc.strategy == "pairwise":
        return apply_linear(first, u, w) + _bias_view(b, first.kind)
    comps = [apply_linear(first, u, w[..., i].contiguous()) + _bias_view(b[:, i], first.kind)
             for i in (0, 1)]
    return torch.stack(comps, dim=-1)


def first_layer_bound(enc: EncryptedModel) -> int:
    """Worst-case ``|output|`` of the encrypted first layer for ``|inputs| <= q``."""
    w = enc.enc_weight
    if enc.strategy == "elementwise":
        per: IntArray = np.moveaxis(w, -1, 0).reshape(2, w.shape[0], -1)  # (2, O, taps)
    else:
        per = w.reshape(w.shape[0], -1)
    bound = ivhe.l1_rows_bound(per) * enc.scaling.q + ivhe.max_abs(enc.enc_bias)
    ivhe.check_int64(bound, "encrypted first layer output")
    return bound


def cipher_plan(enc: EncryptedModel) -> Plan:
    """The compiled chain after the encrypted layer (pair-wise: with ``W2'``)."""
    st, sc = enc.graph, enc.scaling
    scale = float(enc.params.w) * sc.p * input_scale(enc.input_range, sc.q)
    override = ({pairwise_span(st): torch.from_numpy(enc.pair_weight)}
                if enc.pair_weight is not None else None)
    return compile_ops(st.ops[st.first_index() + 1 :], enc.plain, scale,
                       first_layer_bound(enc), sc, override)


def cipher_forward(
    enc: EncryptedModel, inputs: npt.ArrayLike | torch.Tensor, batch_size: int = 250
) -> CipherOutputs:
    """Verifier: the cipherspace forward pass on inputs in the declared range, from public
    material only (uint8 pixels when the range is ``(0, 1)``).

    Element-wise: each ciphertext component goes through the first layer and the rest of the
    chain (twice the plaintext work). Pair-wise: ``r + 1`` outputs through the first layer
    and ``W2'`` (``(r + 1) / r`` of the work in both).
    """
    st = enc.graph
    u_all = quantise_inputs(inputs, enc.input_range, enc.scaling.q, st.input_shape)
    plan = cipher_plan(enc)
    outs: list[torch.Tensor] = []
    for start in range(0, u_all.shape[0], batch_size):
        pre = encrypted_preactivations(enc, u_all[start : start + batch_size])
        if enc.strategy == "pairwise":
            outs.append(run_plan(plan, pre))
            continue
        res = [run_plan(plan, pre[..., i].contiguous(), with_bias=i == 0) for i in (0, 1)]
        outs.append(torch.stack(res, dim=-1))
    return CipherOutputs(enc.strategy, torch.cat(outs), plan.scale_out)


def plain_int_forward(
    model: nn.Module,
    inputs: npt.ArrayLike | torch.Tensor,
    scaling: Scaling,
    batch_size: int = 250,
    *,
    input_range: Sequence[float] = (0.0, 1.0),
    structure: Structure | None = None,
) -> tuple[torch.Tensor, float]:
    """The same integer engine on the plaintext model: ``(outputs, scale)``; the baseline the
    cipherspace passes are timed against (same code path, same batches)."""
    st = structure or trace_structure(model)
    q = scaling.q
    plan = compile_ops(st.ops[st.first_index() :], _state(model), input_scale(input_range, q),
                       q, scaling)
    u_all = _lead(st, quantise_inputs(inputs, input_range, q, st.input_shape))
    outs = [run_plan(plan, u_all[s : s + batch_size]) for s in range(0, u_all.shape[0], batch_size)]
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

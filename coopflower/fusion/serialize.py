"""The MetaModel as named arrays and as a model blob (:mod:`coopflower.blob`, safetensors;
never pickle).

The arrays describe themselves, so the coordinated strategy can carry them as plain global
arrays, and name no architecture of their own: private model ``i`` is stored as

* ``model<i>.arch``: the caller's architecture key (UTF-8 ``uint8``), resolved on load by the
  ``factories`` the caller passes (``key -> zero-argument model factory``);
* ``model<i>.head``: the name of its head layer (UTF-8 ``uint8``);
* ``model<i>.feature_dim`` (``int64``, one value) and ``model<i>.labels`` (``int64``);
* ``model<i>.state.<name>``: its feature extractor's state by the user's own names (the head's
  entries are left out: the head is never run).

``fusion.<name>`` holds the fusion network and ``fusion.strategy`` ``I`` or ``II``. Loading
checks every name, shape, dtype and value; every mismatch raises ``FusionError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import torch

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays
from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import (
    Factories,
    FeatureExtractor,
    build_from_factory,
    head_keys,
    load_state,
)
from coopflower.fusion.metamodel import MetaModel, Strategy

__all__ = [
    "FORMAT",
    "arrays_to_metamodel",
    "blob_to_metamodel",
    "is_metamodel_arrays",
    "metamodel_to_arrays",
    "metamodel_to_blob",
]

FORMAT = "coopflower.metamodel/2"
_FUSION_KEYS = ("A", "B", "bias_h", "bias_y", "feature_mean", "feature_std", "gamma")
_MAX_TEXT = 256


def _text(s: str, what: str) -> np.ndarray:
    raw = s.encode("utf-8")
    if not raw or len(raw) > _MAX_TEXT:
        raise FusionError(f"MetaModel: {what} must be 1 to {_MAX_TEXT} bytes, got {s!r}")
    return np.frombuffer(raw, dtype=np.uint8).copy()


def _untext(arr: object, what: str) -> str:
    a = np.asarray(arr) if arr is not None else None
    if a is None or a.ndim != 1 or a.dtype != np.uint8 or not 0 < a.size <= _MAX_TEXT:
        raise FusionError(f"MetaModel arrays: {what} missing or not a short uint8 string")
    try:
        return bytes(a).decode("utf-8")
    except UnicodeDecodeError:
        raise FusionError(f"MetaModel arrays: {what} is not UTF-8") from None


def _private_arrays(i: int, ext: FeatureExtractor, labels: list[int]) -> dict[str, np.ndarray]:
    if not ext.arch:
        raise FusionError(f"private model {i} ({ext.label}) has no architecture key: fuse "
                          "PrivateModel(model, head, labels, arch=<key>) to serialise it")
    p = f"model{i}."
    out = {
        p + "arch": _text(ext.arch, f"model{i}.arch"),
        p + "head": _text(ext.head, f"model{i}.head"),
        p + "feature_dim": np.asarray([ext.feature_dim], dtype=np.int64),
        p + "labels": np.asarray(labels, dtype=np.int64),
    }
    for k, v in ext.backbone_state().items():
        out[f"{p}state.{k}"] = v.detach().cpu().numpy().copy()
    return out


def metamodel_to_arrays(meta: MetaModel) -> dict[str, np.ndarray]:
    """A MetaModel as self-describing named arrays (see the module notes).

    Raises ``FusionError`` when a private model has no architecture key.
    """
    state = meta.state_dict()
    arrays: dict[str, np.ndarray] = {
        f"fusion.{key}": state[key].detach().cpu().numpy().copy() for key in _FUSION_KEYS
    }
    arrays["fusion.strategy"] = _text(meta.strategy, "fusion.strategy")
    for i, (ext, labels) in enumerate(zip(meta._extractors(), meta.label_sets, strict=True)):
        arrays.update(_private_arrays(i, ext, labels))
    return arrays


def metamodel_to_blob(meta: MetaModel) -> bytes:
    """Serialise a MetaModel (fusion network, private extractors, label sets) to blob bytes."""
    try:
        return pack_arrays(metamodel_to_arrays(meta), {"format": FORMAT})
    except BlobError as e:
        raise FusionError(f"MetaModel cannot be serialised: {e}") from None


def _tensor(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key not in arrays:
        raise FusionError(f"MetaModel arrays lack {key!r}")
    arr = np.asarray(arrays[key])
    if tuple(arr.shape) != shape:
        raise FusionError(f"MetaModel arrays: {key} has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise FusionError(f"MetaModel arrays: {key} must be finite floats (no NaN or Inf)")
    return torch.from_numpy(np.array(arr, copy=True)).to(torch.float32)


def _ints(arrays: Mapping[str, np.ndarray], key: str) -> list[int]:
    arr = arrays.get(key)
    if arr is None or np.ndim(arr) != 1 or np.asarray(arr).dtype.kind not in "iu":
        raise FusionError(f"MetaModel arrays: {key} missing or not integers")
    return [int(c) for c in np.asarray(arr)]


def is_metamodel_arrays(arrays: Mapping[str, object]) -> bool:
    """Whether named arrays (numpy arrays, or a Flower ``ArrayRecord``) look like
    :func:`metamodel_to_arrays` output."""
    return "fusion.A" in arrays and "fusion.strategy" in arrays


def _load_private(arrays: Mapping[str, np.ndarray], i: int,
                  factories: Factories | None) -> tuple[FeatureExtractor, list[int], set[str]]:
    """Private model ``i``, its labels, and the array names it used."""
    p = f"model{i}."
    arch = _untext(arrays.get(p + "arch"), p + "arch")
    head = _untext(arrays.get(p + "head"), p + "head")
    dim = _ints(arrays, p + "feature_dim")
    if len(dim) != 1 or dim[0] < 1:
        raise FusionError(f"MetaModel arrays: {p}feature_dim must be one positive integer")
    what = f"MetaModel arrays, model {i} ({arch!r})"
    model = build_from_factory(factories, arch, what)
    try:
        ext = FeatureExtractor(model, head, arch, dim[0])
    except FusionError as e:
        raise FusionError(f"{what}: {e}") from None
    state = {k[len(p + "state."):]: v for k, v in arrays.items() if k.startswith(p + "state.")}
    load_state(ext.model, state, what, skip=head_keys(ext.model, head))
    used = {p + s for s in ("arch", "head", "feature_dim", "labels")}
    return ext, _ints(arrays, p + "labels"), used | {p + "state." + k for k in state}


def arrays_to_metamodel(arrays: Mapping[str, np.ndarray],
                        factories: Factories | None = None) -> MetaModel:
    """Rebuild a MetaModel from :func:`metamodel_to_arrays` output.

    Args:
        arrays: the named arrays.
        factories: ``architecture key -> zero-argument factory`` of every private
            architecture the MetaModel holds (required; ``None`` raises ``FusionError``).

    Raises ``FusionError`` on no factories, an unknown key, a head the rebuilt model lacks, a
    missing, extra or misshapen array, or NaN/Inf.
    """
    if factories is None:
        raise FusionError("arrays_to_metamodel needs factories={architecture key: "
                          "zero-argument model factory} to rebuild the private models")
    strategy = _untext(arrays.get("fusion.strategy"), "fusion.strategy")
    if strategy not in ("I", "II"):
        raise FusionError(f"MetaModel arrays: unknown strategy {strategy!r}")
    b = arrays.get("fusion.B")
    if b is None or np.ndim(b) != 2 or int(np.shape(b)[1]) < 2:
        raise FusionError("MetaModel arrays lack a two-dimensional fusion.B (2+ classes)")
    extractors: list[FeatureExtractor] = []
    label_sets: list[list[int]] = []
    expected = {f"fusion.{k}" for k in _FUSION_KEYS} | {"fusion.strategy"}
    while f"model{len(extractors)}.arch" in arrays:
        ext, labels, used = _load_private(arrays, len(extractors), factories)
        extractors.append(ext)
        label_sets.append(labels)
        expected |= used
    extra = sorted(set(arrays) - expected)
    if extra:
        raise FusionError(f"MetaModel arrays: unexpected tensors {extra[:5]}")
    meta = MetaModel(extractors, label_sets, int(np.shape(b)[1]), cast(Strategy, strategy))
    own = meta.state_dict()
    fusion = {k: _tensor(arrays, f"fusion.{k}", tuple(own[k].shape)) for k in _FUSION_KEYS}
    meta.load_state_dict({**own, **fusion})
    meta.eval()
    return meta


def blob_to_metamodel(data: bytes, factories: Factories | None = None,
                      limits: BlobLimits | None = None) -> MetaModel:
    """Rebuild a MetaModel from blob bytes with the caller's ``factories`` (see
    :func:`arrays_to_metamodel`); every malformed input raises ``FusionError``."""
    try:
        arrays, meta_info = unpack_arrays(data, limits)
    except BlobError as e:
        raise FusionError(f"not a MetaModel blob: {e}") from None
    if meta_info.get("format") != FORMAT:
        raise FusionError(f"not a MetaModel blob (format {meta_info.get('format')!r}, "
                          f"expected {FORMAT!r})")
    return arrays_to_metamodel(arrays, factories)


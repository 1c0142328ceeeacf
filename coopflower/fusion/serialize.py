"""The MetaModel as a model blob (:mod:`coopflower.blob`, safetensors; never pickle).

The arrays describe themselves (see :func:`metamodel_to_arrays`), so the coordinated strategy
can carry them as plain global arrays; the blob adds a ``format`` metadata tag. Reading rebuilds
every private model from :func:`coopflower.models.build_model` and checks every name and shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import torch

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays
from coopflower.fusion.metamodel import FusionError, MetaModel, Strategy
from coopflower.models import CNN_SPECS, build_model

__all__ = [
    "FORMAT",
    "arch_name",
    "arrays_to_metamodel",
    "blob_to_metamodel",
    "is_metamodel_arrays",
    "metamodel_to_arrays",
    "metamodel_to_blob",
]

FORMAT = "coopflower.metamodel/1"
_FUSION_KEYS = ("A", "B", "bias_h", "bias_y", "feature_mean", "feature_std", "gamma")


def arch_name(model: torch.nn.Module) -> str:
    """The :data:`coopflower.models.CNN_SPECS` name of a paper CNN (by its ``spec``).

    Raises ``FusionError`` for a model that is not one of the paper's CNNs.
    """
    spec = getattr(model, "spec", None)
    for name, s in CNN_SPECS.items():
        if s == spec:
            return name
    raise FusionError(f"{type(model).__name__} is not one of the paper's CNNs {list(CNN_SPECS)}")


def _text(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("ascii"), dtype=np.uint8).copy()


def _untext(arr: np.ndarray | None, what: str) -> str:
    if arr is None or arr.ndim != 1 or arr.dtype != np.uint8 or arr.size > 256:
        raise FusionError(f"MetaModel arrays: {what} missing or not a short uint8 string")
    try:
        return bytes(arr).decode("ascii")
    except UnicodeDecodeError:
        raise FusionError(f"MetaModel arrays: {what} is not ASCII") from None


def metamodel_to_arrays(meta: MetaModel) -> dict[str, np.ndarray]:
    """A MetaModel as self-describing named arrays (what the coordinated strategy stores).

    ``fusion.<name>`` for the fusion network, ``fusion.strategy`` and ``model<i>.arch`` as
    ASCII ``uint8`` arrays, ``model<i>.<name>`` for private model ``i``'s weights and
    ``model<i>.labels`` for its label set.
    """
    state = meta.state_dict()
    arrays: dict[str, np.ndarray] = {
        f"fusion.{key}": state[key].detach().cpu().numpy() for key in _FUSION_KEYS
    }
    arrays["fusion.strategy"] = _text(meta.strategy)
    for i, (model, labels) in enumerate(zip(meta.extractors, meta.label_sets, strict=True)):
        arrays[f"model{i}.arch"] = _text(arch_name(model))
        for k, v in model.state_dict().items():
            arrays[f"model{i}.{k}"] = v.detach().cpu().numpy()
        arrays[f"model{i}.labels"] = np.asarray(labels, dtype=np.int64)
    return arrays


def metamodel_to_blob(meta: MetaModel) -> bytes:
    """Serialise a MetaModel (fusion network, private models, label sets) to blob bytes."""
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
        raise FusionError(f"MetaModel arrays: {key} must be finite floats")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)


def is_metamodel_arrays(arrays: Mapping[str, object]) -> bool:
    """Whether named arrays (numpy arrays, or a Flower ``ArrayRecord``) look like
    :func:`metamodel_to_arrays` output."""
    return "fusion.A" in arrays and "fusion.strategy" in arrays


def arrays_to_metamodel(arrays: Mapping[str, np.ndarray]) -> MetaModel:
    """Rebuild a MetaModel from :func:`metamodel_to_arrays` output.

    Raises ``FusionError`` on a missing, extra or misshapen array or an unknown architecture.
    """
    strategy = _untext(arrays.get("fusion.strategy"), "fusion.strategy")
    if strategy not in ("I", "II"):
        raise FusionError(f"MetaModel arrays: unknown strategy {strategy!r}")
    b = arrays.get("fusion.B")
    if b is None or np.ndim(b) != 2:
        raise FusionError("MetaModel arrays lack a two-dimensional fusion.B")
    num_classes = int(np.shape(b)[1])
    if num_classes < 2:
        raise FusionError(f"MetaModel arrays: {num_classes} classes")
    extractors, label_sets = [], []
    i = 0
    while f"model{i}.arch" in arrays:
        arch = _untext(arrays[f"model{i}.arch"], f"model{i}.arch")
        try:
            model = build_model(arch, num_classes)
        except ValueError as e:
            raise FusionError(f"MetaModel arrays, model {i}: {e}") from None
        state = {k: _tensor(arrays, f"model{i}.{k}", tuple(v.shape))
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        labels = arrays.get(f"model{i}.labels")
        if labels is None or np.ndim(labels) != 1 or np.asarray(labels).dtype.kind not in "iu":
            raise FusionError(f"MetaModel arrays: model{i}.labels missing or not integers")
        extractors.append(model)
        label_sets.append([int(c) for c in np.asarray(labels)])
        i += 1
    expected = {f"fusion.{k}" for k in _FUSION_KEYS} | {"fusion.strategy"}
    for j, m in enumerate(extractors):
        expected |= {f"model{j}.{k}" for k in m.state_dict()}
        expected |= {f"model{j}.labels", f"model{j}.arch"}
    extra = sorted(set(arrays) - expected)
    if extra:
        raise FusionError(f"MetaModel arrays: unexpected tensors {extra[:5]}")
    meta = MetaModel(extractors, label_sets, num_classes, cast(Strategy, strategy))
    own = meta.state_dict()
    fusion = {k: _tensor(arrays, f"fusion.{k}", tuple(own[k].shape)) for k in _FUSION_KEYS}
    meta.load_state_dict({**own, **fusion})
    meta.eval()
    return meta


def blob_to_metamodel(data: bytes, limits: BlobLimits | None = None) -> MetaModel:
    """Rebuild a MetaModel from blob bytes; every malformed input raises ``FusionError``."""
    try:
        arrays, meta_info = unpack_arrays(data, limits)
    except BlobError as e:
        raise FusionError(f"not a MetaModel blob: {e}") from None
    if meta_info.get("format") != FORMAT:
        raise FusionError(f"not a MetaModel blob (format {meta_info.get('format')!r})")
    return arrays_to_metamodel(arrays)

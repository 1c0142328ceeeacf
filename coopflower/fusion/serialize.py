"""The MetaModel as a model blob (:mod:`coopflower.blob`, safetensors; never pickle).

Layout: ``fusion.<name>`` for the fusion network's parameters and buffers, ``model<i>.<name>``
for private model ``i``'s weights, ``model<i>.labels`` for its label set; metadata holds the
format tag, the strategy, ``d`` and the architecture names (JSON list). Reading a blob rebuilds
every private model from :func:`coopflower.models.build_model` and checks every name and shape.
"""

from __future__ import annotations

import json
from typing import cast

import numpy as np
import torch

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays
from coopflower.fusion.metamodel import FusionError, MetaModel, Strategy
from coopflower.models import CNN_SPECS, build_model

__all__ = ["FORMAT", "arch_name", "metamodel_to_blob", "blob_to_metamodel"]

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


def metamodel_to_blob(meta: MetaModel) -> bytes:
    """Serialise a MetaModel (fusion network, private models, label sets) to blob bytes."""
    arrays: dict[str, np.ndarray] = {}
    state = meta.state_dict()
    for key in _FUSION_KEYS:
        arrays[f"fusion.{key}"] = state[key].detach().cpu().numpy()
    archs = []
    for i, (model, labels) in enumerate(zip(meta.extractors, meta.label_sets, strict=True)):
        archs.append(arch_name(model))
        for k, v in model.state_dict().items():
            arrays[f"model{i}.{k}"] = v.detach().cpu().numpy()
        arrays[f"model{i}.labels"] = np.asarray(labels, dtype=np.int64)
    metadata = {
        "format": FORMAT,
        "strategy": meta.strategy,
        "num_classes": str(meta.num_classes),
        "archs": json.dumps(archs),
    }
    try:
        return pack_arrays(arrays, metadata)
    except BlobError as e:
        raise FusionError(f"MetaModel cannot be serialised: {e}") from None


def _tensor(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key not in arrays:
        raise FusionError(f"MetaModel blob lacks {key!r}")
    arr = arrays[key]
    if tuple(arr.shape) != shape:
        raise FusionError(f"MetaModel blob: {key} has shape {arr.shape}, expected {shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)


def blob_to_metamodel(data: bytes, limits: BlobLimits | None = None) -> MetaModel:
    """Rebuild a MetaModel from blob bytes; every malformed input raises ``FusionError``."""
    try:
        arrays, meta_info = unpack_arrays(data, limits)
    except BlobError as e:
        raise FusionError(f"not a MetaModel blob: {e}") from None
    if meta_info.get("format") != FORMAT:
        raise FusionError(f"not a MetaModel blob (format {meta_info.get('format')!r})")
    try:
        archs = json.loads(meta_info["archs"])
        num_classes = int(meta_info["num_classes"])
        strategy = meta_info["strategy"]
    except (KeyError, ValueError) as e:
        raise FusionError(f"MetaModel blob metadata is malformed: {e}") from None
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise FusionError("MetaModel blob metadata 'archs' must be a list of names")
    if not 2 <= num_classes <= 100_000:
        raise FusionError(f"MetaModel blob: num_classes {num_classes} out of range")
    extractors, label_sets = [], []
    for i, arch in enumerate(archs):
        try:
            model = build_model(arch, num_classes)
        except ValueError as e:
            raise FusionError(f"MetaModel blob, model {i}: {e}") from None
        state = {k: _tensor(arrays, f"model{i}.{k}", tuple(v.shape))
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        labels = arrays.get(f"model{i}.labels")
        if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise FusionError(f"MetaModel blob: model{i}.labels missing or not integers")
        extractors.append(model)
        label_sets.append([int(c) for c in labels])
    expected = {f"fusion.{k}" for k in _FUSION_KEYS}
    expected |= {f"model{i}.{k}" for i, m in enumerate(extractors) for k in m.state_dict()}
    expected |= {f"model{i}.labels" for i in range(len(extractors))}
    extra = sorted(set(arrays) - expected)
    if extra:
        raise FusionError(f"MetaModel blob has unexpected tensors {extra[:5]}")
    if strategy not in ("I", "II"):
        raise FusionError(f"MetaModel blob: unknown strategy {strategy!r}")
    meta = MetaModel(extractors, label_sets, num_classes, cast(Strategy, strategy))
    own = meta.state_dict()
    fusion = {k: _tensor(arrays, f"fusion.{k}", tuple(own[k].shape)) for k in _FUSION_KEYS}
    meta.load_state_dict({**own, **fusion})
    meta.eval()
    return meta

"""Torch ``state_dict`` to blob and back (torch is imported lazily: client processes keep
imports light).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from coopflower.blob.limits import BlobError, BlobLimits
from coopflower.blob.pack import pack_arrays
from coopflower.blob.unpack import unpack_arrays

if TYPE_CHECKING:
    import torch


def state_dict_to_blob(
    state: Mapping[str, torch.Tensor] | torch.nn.Module,
    metadata: Mapping[str, str] | None = None,
    limits: BlobLimits | None = None,
) -> bytes:
    """Serialise a torch ``state_dict`` (or a module's) to a blob.

    Args:
        state: a state_dict or an ``nn.Module``.
        metadata: optional str -> str metadata.
        limits: limits the blob must respect.

    Returns:
        The blob bytes.
    """
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    arrays: dict[str, np.ndarray] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise BlobError(f"state entry {name!r} is not a tensor ({type(t).__name__})")
        try:
            arrays[name] = t.detach().cpu().contiguous().numpy()
        except (TypeError, RuntimeError) as e:
            raise BlobError(f"tensor {name!r}: dtype {t.dtype} cannot be stored: {e}") from None
    return pack_arrays(arrays, metadata, limits)


def blob_to_state_dict(
    data: bytes,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    limits: BlobLimits | None = None,
) -> dict[str, torch.Tensor]:
    """Unpack a blob into a state_dict that fits ``model``: same names, shapes and dtypes.

    Args:
        data: the blob.
        model: the module (or a reference state_dict) the weights are meant for.
        limits: limits to enforce while unpacking.

    Returns:
        name -> tensor, ready for ``model.load_state_dict``.

    Raises:
        BlobError: malformed blob, or names/shapes/dtypes that do not match the model.
    """
    import torch

    reference = model.state_dict() if isinstance(model, torch.nn.Module) else model
    arrays, _ = unpack_arrays(data, limits)
    missing = sorted(set(reference) - set(arrays))
    extra = sorted(set(arrays) - set(reference))
    if missing or extra:
        raise BlobError(f"blob does not fit the model: missing {missing}, unexpected {extra}")
    out: dict[str, torch.Tensor] = {}
    for name, ref in reference.items():
        arr = arrays[name]
        if tuple(arr.shape) != tuple(ref.shape):
            raise BlobError(
                f"tensor {name!r}: shape {tuple(arr.shape)} but the model expects "
                f"{tuple(ref.shape)}"
            )
        t = torch.from_numpy(arr)
        if t.dtype != ref.dtype:
            raise BlobError(f"tensor {name!r}: dtype {t.dtype} but the model expects {ref.dtype}")
        out[name] = t
    return out

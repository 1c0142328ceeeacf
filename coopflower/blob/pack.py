"""Packing named arrays into a canonical safetensors blob: tensors by decreasing item size,
then name; compact header JSON (same arrays and metadata -> same bytes, hence the same CID).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from coopflower.blob.limits import (
    _NAME_TO_CODE,
    METADATA_KEY,
    BlobError,
    BlobLimits,
    _check_array,
    _check_metadata,
    _limits,
)


def pack_arrays(
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    limits: BlobLimits | None = None,
) -> bytes:
    """Serialise named arrays to a canonical safetensors blob.

    Args:
        arrays: tensor name -> numpy array (any byte order; stored little-endian, C order).
        metadata: optional small str -> str dict stored in the header.
        limits: limits the result must respect (the defaults of :class:`BlobLimits`).

    Returns:
        The blob bytes; equal inputs give equal bytes.

    Raises:
        BlobError: a name, dtype, shape, value or size the limits do not allow.
    """
    limits = _limits(limits)
    if not isinstance(arrays, Mapping):
        raise BlobError(f"arrays must be a mapping of str to numpy arrays, got {type(arrays)}")
    if len(arrays) > limits.max_tensors:
        raise BlobError(f"{len(arrays)} tensors exceed max_tensors {limits.max_tensors}")
    prepared: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if not isinstance(name, str):
            raise BlobError(f"tensor names must be str, got {name!r}")
        if name == METADATA_KEY:
            raise BlobError(f"tensor name {METADATA_KEY!r} is reserved")
        if not isinstance(arr, np.ndarray):
            raise BlobError(f"tensor {name!r}: expected a numpy array, got {type(arr).__name__}")
        _check_array(name, arr, limits)
        le = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        prepared[name] = np.asarray(arr, dtype=le, order="C")  # keeps 0-d shapes
    order = sorted(prepared, key=lambda n: (-prepared[n].dtype.itemsize, n))
    header: dict[str, Any] = {}
    if metadata is not None:
        header[METADATA_KEY] = dict(sorted(_check_metadata(metadata, limits).items()))
    offset = 0
    for name in order:
        arr = prepared[name]
        header[name] = {
            "dtype": _NAME_TO_CODE[arr.dtype.name],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    head = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    head += b" " * (-len(head) % 8)
    total = 8 + len(head) + offset
    if len(head) > limits.max_header_bytes:
        raise BlobError(f"header of {len(head)} bytes exceeds max_header_bytes")
    if total > limits.max_total_bytes:
        raise BlobError(f"blob of {total} bytes exceeds max_total_bytes {limits.max_total_bytes}")
    parts = [struct.pack("<Q", len(head)), head]
    parts.extend(prepared[name].tobytes() for name in order)
    return b"".join(parts)

"""Unpacking a blob from the network: the header parsed and validated within the
:class:`BlobLimits` before any tensor data is touched; every failure is a :class:`BlobError`.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from coopflower.blob.limits import (
    _CODE_TO_DTYPE,
    METADATA_KEY,
    BlobError,
    BlobLimits,
    _check_array,
    _check_metadata,
    _limits,
)


def _reject_constant(token: str) -> Any:
    raise BlobError(f"header JSON contains the non-standard constant {token}")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BlobError(f"header JSON repeats the key {k!r}")
        out[k] = v
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    begin: int
    end: int


def _parse_entry(name: str, info: Any, limits: BlobLimits) -> _Entry:
    """Validate one tensor entry of the header."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise BlobError(
            f"tensor {name!r}: entry must be an object with exactly dtype, shape, data_offsets"
        )
    code = info["dtype"]
    if not isinstance(code, str) or code not in _CODE_TO_DTYPE:
        raise BlobError(f"tensor {name!r}: unknown dtype {code!r}")
    dtype = _CODE_TO_DTYPE[code]
    if dtype.name not in limits.allowed_dtypes:
        raise BlobError(
            f"tensor {name!r}: dtype {dtype.name} not allowed "
            f"(allowed: {sorted(limits.allowed_dtypes)})"
        )
    shape = info["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise BlobError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if len(shape) > limits.max_rank:
        raise BlobError(f"tensor {name!r}: rank {len(shape)} exceeds max_rank {limits.max_rank}")
    elements = math.prod(shape)
    if elements > limits.max_elements:
        raise BlobError(
            f"tensor {name!r}: {elements} elements exceed max_elements {limits.max_elements}"
        )
    if math.prod(d for d in shape if d) > limits.max_elements:  # numpy cannot hold such a shape
        raise BlobError(
            f"tensor {name!r}: shape {shape} is empty but its other dimensions multiply past "
            f"max_elements {limits.max_elements}"
        )
    offsets = info["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise BlobError(
            f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end"
        )
    begin, end = offsets
    if end - begin != elements * dtype.itemsize:
        raise BlobError(
            f"tensor {name!r}: data_offsets span {end - begin} bytes but shape {shape} of "
            f"{dtype.name} needs {elements * dtype.itemsize}"
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _parse_header(data: memoryview, limits: BlobLimits) -> tuple[list[_Entry], dict[str, str], int]:
    """Parse and validate the header; return entries, metadata and the data start offset."""
    if len(data) < 8:
        raise BlobError(f"blob of {len(data)} bytes is shorter than the 8-byte header length")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > limits.max_header_bytes:
        raise BlobError(f"declared header length {n} exceeds max_header_bytes")
    if 8 + n > len(data):
        raise BlobError(
            f"declared header length {n} runs past the end of the {len(data)}-byte blob"
        )
    raw = bytes(data[8 : 8 + n])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BlobError(f"header is not valid UTF-8: {exc}") from None
    if not text.startswith("{"):
        raise BlobError("header must be a JSON object starting with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)
    except BlobError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BlobError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BlobError("header must be a JSON object")
    metadata: dict[str, str] = {}
    if METADATA_KEY in header:
        meta = header.pop(METADATA_KEY)
        if not isinstance(meta, dict):
            raise BlobError(f"{METADATA_KEY} must be an object of str to str")
        metadata = _check_metadata(meta, limits)
    if len(header) > limits.max_tensors:
        raise BlobError(f"{len(header)} tensors exceed max_tensors {limits.max_tensors}")
    entries = [_parse_entry(name, info, limits) for name, info in header.items()]
    # The data must be exactly covered by the tensors, in order, without holes or overlaps.
    data_len = len(data) - 8 - n
    entries.sort(key=lambda e: (e.begin, e.end))
    pos = 0
    for e in entries:
        if e.begin != pos:
            what = "overlaps the previous tensor" if e.begin < pos else "leaves a gap"
            raise BlobError(
                f"tensor {e.name!r}: data_offsets begin {e.begin} {what} (expected {pos})"
            )
        pos = e.end
    if pos != data_len:
        raise BlobError(f"tensors cover {pos} data bytes but the blob holds {data_len}")
    return entries, metadata, 8 + n


def unpack_arrays(
    data: bytes, limits: BlobLimits | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a blob into named arrays and metadata, validating everything first.

    Args:
        data: the blob (bytes, bytearray or memoryview).
        limits: limits to enforce (the defaults of :class:`BlobLimits`).

    Returns:
        ``(arrays, metadata)``: fresh native-byte-order arrays (writable, not views of
        ``data``) and the metadata dict (empty when absent).

    Raises:
        BlobError: on any malformed input or broken limit; nothing else.
    """
    limits = _limits(limits)
    try:
        return _unpack(data, limits)
    except BlobError:
        raise
    except Exception as exc:  # a safety net: every known failure has its own check above it
        raise BlobError(f"{_UNEXPECTED} ({type(exc).__name__}: {exc})") from exc


_UNEXPECTED = "blob could not be decoded, unexpected failure"


def _unpack(data: bytes, limits: BlobLimits) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BlobError(f"blob must be bytes, got {type(data).__name__}")
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:
        raise BlobError(f"blob is not a contiguous byte buffer: {exc}") from None
    if len(view) > limits.max_total_bytes:
        raise BlobError(
            f"blob of {len(view)} bytes exceeds max_total_bytes {limits.max_total_bytes}"
        )
    entries, metadata, start = _parse_header(view, limits)
    arrays: dict[str, np.ndarray] = {}
    for e in entries:
        native = e.dtype.newbyteorder("=")
        count = (e.end - e.begin) // e.dtype.itemsize
        if count == 0:
            arrays[e.name] = np.zeros(e.shape, dtype=native)
            continue
        flat = np.frombuffer(view, dtype=e.dtype, count=count, offset=start + e.begin)
        if e.dtype.kind == "b" and flat.view(np.uint8).max() > 1:
            raise BlobError(f"tensor {e.name!r}: bool data holds bytes other than 0 and 1")
        arr = flat.astype(native, copy=True).reshape(e.shape)
        _check_array(e.name, arr, limits)
        arrays[e.name] = arr
    return {name: arrays[name] for name in sorted(arrays)}, metadata

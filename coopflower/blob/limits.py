"""The format's dtypes, :class:`BlobError`, and the :class:`BlobLimits` every blob (and every
array to pack) is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METADATA_KEY = "__metadata__"


# safetensors dtype code <-> little-endian numpy dtype
_CODE_TO_DTYPE: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_TO_CODE: dict[str, str] = {dt.name: code for code, dt in _CODE_TO_DTYPE.items()}

DEFAULT_DTYPES: frozenset[str] = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}
)


class BlobError(ValueError):
    """A blob (or the arrays to pack) is malformed or breaks the :class:`BlobLimits`."""


@dataclass(frozen=True)
class BlobLimits:
    """Limits a blob must respect, checked before any tensor data is read.

    Attributes:
        max_total_bytes: size of the whole blob.
        max_header_bytes: size of the JSON header.
        max_tensors: number of named tensors.
        allowed_dtypes: numpy dtype names accepted (``"float32"``, ``"int64"``, ...).
        max_elements: elements per tensor.
        max_rank: dimensions per tensor.
        max_metadata_entries: entries in the metadata dict.
        allow_nonfinite: accept NaN/Inf in float tensors (default: rejected).
    """

    max_total_bytes: int = 512 * 1024 * 1024
    max_header_bytes: int = 4 * 1024 * 1024
    max_tensors: int = 10_000
    allowed_dtypes: frozenset[str] = field(default=DEFAULT_DTYPES)
    max_elements: int = 1 << 28
    max_rank: int = 8
    max_metadata_entries: int = 1024
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.allowed_dtypes) - set(_NAME_TO_CODE)
        if unknown:
            raise BlobError(
                f"BlobLimits.allowed_dtypes has unsupported dtypes {sorted(unknown)}; "
                f"supported: {sorted(_NAME_TO_CODE)}"
            )
        for name in ("max_total_bytes", "max_header_bytes", "max_tensors", "max_elements",
                     "max_rank", "max_metadata_entries"):
            if int(getattr(self, name)) < 0:
                raise BlobError(f"BlobLimits.{name} must be >= 0")


_DEFAULT_LIMITS = BlobLimits()


def _check_array(name: str, arr: np.ndarray, limits: BlobLimits) -> None:
    """Check one tensor (name, dtype, rank, size, finiteness) against the limits."""
    if arr.dtype.name not in _NAME_TO_CODE:
        raise BlobError(f"tensor {name!r}: dtype {arr.dtype} is not supported")
    if arr.dtype.name not in limits.allowed_dtypes:
        raise BlobError(
            f"tensor {name!r}: dtype {arr.dtype.name} not allowed "
            f"(allowed: {sorted(limits.allowed_dtypes)})"
        )
    if arr.ndim > limits.max_rank:
        raise BlobError(f"tensor {name!r}: rank {arr.ndim} exceeds max_rank {limits.max_rank}")
    if arr.size > limits.max_elements:
        raise BlobError(
            f"tensor {name!r}: {arr.size} elements exceed max_elements {limits.max_elements}"
        )
    if not limits.allow_nonfinite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BlobError(f"tensor {name!r}: contains NaN or Inf")


def _check_metadata(metadata: Mapping[Any, Any], limits: BlobLimits) -> dict[str, str]:
    """Return the metadata as a plain dict after checking it maps str to str."""
    if not isinstance(metadata, Mapping):
        raise BlobError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    if len(metadata) > limits.max_metadata_entries:
        raise BlobError(
            f"metadata has {len(metadata)} entries, over max_metadata_entries "
            f"{limits.max_metadata_entries}"
        )
    out: dict[str, str] = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise BlobError(f"metadata must map str to str; got {k!r}: {v!r}")
        out[k] = v
    return out


def _limits(limits: BlobLimits | None) -> BlobLimits:
    if limits is None:
        return _DEFAULT_LIMITS
    if not isinstance(limits, BlobLimits):
        raise BlobError(f"limits must be a BlobLimits, got {type(limits).__name__}")
    return limits

"""The model-blob format: named arrays (and a small str->str metadata dict) to bytes and back.

The bytes are the safetensors format (``safetensors.numpy.load`` reads them, and blobs written
by the safetensors package unpack here): an 8-byte little-endian header length, a JSON header
mapping each name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional
``"__metadata__"`` dict of strings), then the raw little-endian tensor data.

Blobs arrive from the network (IPFS, other nodes), so :func:`unpack_arrays` parses and
validates the header itself before touching the data, within :class:`BlobLimits`, and every
failure raises :class:`BlobError`; no other exception escapes. Never pickle.

Packing is canonical (same arrays and metadata -> same bytes, hence the same CID): tensors are
laid out by decreasing item size, then name, and the header JSON is compact with sorted keys.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: client processes keep imports light
    import torch

__all__ = [
    "BlobError",
    "BlobLimits",
    "DEFAULT_DTYPES",
    "pack_arrays",
    "unpack_arrays",
    "state_dict_to_blob",
    "blob_to_state_dict",
]

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


def _limits(limits: BlobLimits | None) -> BlobLimits:
    if limits is None:
        return _DEFAULT_LIMITS
    if not isinstance(limits, BlobLimits):
        raise BlobError(f"limits must be a BlobLimits, got {type(limits).__name__}")
    return limits


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

"""The model-blob format: round trips, interoperability with safetensors, limits, errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from coopflower.blob import (
    BlobError,
    BlobLimits,
    blob_to_state_dict,
    pack_arrays,
    state_dict_to_blob,
    unpack_arrays,
)
from coopflower.models import build_model


def _sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "fc.bias": rng.normal(size=(10,)),
        "cipher": rng.integers(-(2**62), 2**62, size=(3, 7), dtype=np.int64),
        "idx": np.arange(5, dtype=np.int32),
        "mask": np.array([0, 255, 7], dtype=np.uint8),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def _header(blob: bytes) -> dict:
    (n,) = struct.unpack_from("<Q", blob, 0)
    return json.loads(blob[8 : 8 + n])


def _with_header(header: dict, data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def test_round_trip_preserves_names_dtypes_shapes_values_and_metadata() -> None:
    arrays = _sample()
    blob = pack_arrays(arrays, {"model": "table4", "round": "3"})
    out, meta = unpack_arrays(blob)
    assert meta == {"model": "table4", "round": "3"}
    assert set(out) == set(arrays)
    for name, arr in arrays.items():
        assert out[name].dtype == arr.dtype
        assert out[name].shape == arr.shape
        np.testing.assert_array_equal(out[name], arr)
        assert out[name].flags.writeable


def test_packing_is_canonical_and_byte_order_independent() -> None:
    arrays = _sample()
    reordered = dict(reversed(list(arrays.items())))
    big_endian = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
    fortran = {k: np.asfortranarray(v) if v.ndim else v for k, v in arrays.items()}
    meta = {"b": "2", "a": "1"}
    blob = pack_arrays(arrays, meta)
    assert pack_arrays(reordered, dict(reversed(list(meta.items())))) == blob
    assert pack_arrays(reordered, meta) == blob
    assert pack_arrays(big_endian, meta) == blob
    assert pack_arrays(fortran, meta) == blob
    assert len(struct.unpack_from("<Q", blob)) == 1 and (8 + _hdr_len(blob)) % 8 == 0


def _hdr_len(blob: bytes) -> int:
    return int(struct.unpack_from("<Q", blob)[0])


def test_safetensors_package_reads_our_blobs_and_we_read_its_blobs() -> None:
    arrays = _sample()
    theirs = st_load(pack_arrays(arrays))
    for name, arr in arrays.items():
        np.testing.assert_array_equal(theirs[name], arr)
    ours, meta = unpack_arrays(st_save(arrays, metadata={"k": "v"}))
    assert meta == {"k": "v"}
    for name, arr in arrays.items():
        np.testing.assert_array_equal(ours[name], arr)


def test_nan_and_inf_are_rejected_unless_allowed() -> None:
    bad = {"w": np.array([1.0, np.nan], dtype=np.float32)}
    with pytest.raises(BlobError, match="NaN or Inf"):
        pack_arrays(bad)
    allow = BlobLimits(allow_nonfinite=True)
    blob = pack_arrays({"w": np.array([np.inf, -np.inf, np.nan])}, limits=allow)
    with pytest.raises(BlobError, match="'w': contains NaN or Inf"):
        unpack_arrays(blob)
    out, _ = unpack_arrays(blob, allow)
    assert np.isinf(out["w"][0]) and np.isnan(out["w"][2])


def test_limits_are_enforced_on_unpack() -> None:
    blob = pack_arrays(_sample())
    with pytest.raises(BlobError, match="max_total_bytes"):
        unpack_arrays(blob, BlobLimits(max_total_bytes=len(blob) - 1))
    with pytest.raises(BlobError, match="max_tensors"):
        unpack_arrays(blob, BlobLimits(max_tensors=3))
    with pytest.raises(BlobError, match="dtype int64 not allowed"):
        unpack_arrays(blob, BlobLimits(allowed_dtypes=frozenset({"float32", "float64"})))
    with pytest.raises(BlobError, match="max_elements"):
        unpack_arrays(blob, BlobLimits(max_elements=20))
    with pytest.raises(BlobError, match="rank 4 exceeds max_rank 2"):
        unpack_arrays(blob, BlobLimits(max_rank=2))
    with pytest.raises(BlobError, match="max_header_bytes"):
        unpack_arrays(blob, BlobLimits(max_header_bytes=16))


def test_bad_inputs_to_pack_raise_blob_error() -> None:
    with pytest.raises(BlobError, match="numpy array"):
        pack_arrays({"w": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(BlobError, match="not supported"):
        pack_arrays({"w": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(BlobError, match="reserved"):
        pack_arrays({"__metadata__": np.zeros(2)})
    with pytest.raises(BlobError, match="str to str"):
        pack_arrays({"w": np.zeros(2)}, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(BlobError, match="unsupported dtypes"):
        BlobLimits(allowed_dtypes=frozenset({"complex128"}))


def test_header_lies_are_named() -> None:
    blob = pack_arrays({"a": np.zeros(4, np.float32), "b": np.ones(2, np.float64)})
    header = _header(blob)
    data = blob[8 + _hdr_len(blob) :]
    lying = dict(header, a=dict(header["a"], data_offsets=[0, 16]))  # overlaps b
    with pytest.raises(BlobError, match="tensor 'a'"):
        unpack_arrays(_with_header(lying, data))
    huge = dict(header, a=dict(header["a"], shape=[2**40, 2**40]))
    with pytest.raises(BlobError, match="max_elements"):
        unpack_arrays(_with_header(huge, data))
    empty_but_huge = dict(header, a=dict(header["a"], shape=[0, 3795, 3795, 3795, 42188531],
                                         data_offsets=[0, 0]),
                          b=dict(header["b"], data_offsets=[0, 16]))
    with pytest.raises(BlobError, match="other dimensions"):  # found by the fuzz test
        unpack_arrays(_with_header(empty_but_huge, data[16:]))
    with pytest.raises(BlobError, match="unknown dtype"):
        unpack_arrays(_with_header(dict(header, a=dict(header["a"], dtype="C64")), data))
    with pytest.raises(BlobError, match="cover"):
        unpack_arrays(_with_header(header, data + b"\0" * 8))
    with pytest.raises(BlobError, match="past the end"):
        unpack_arrays(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(BlobError, match="repeats the key"):
        unpack_arrays(struct.pack("<Q", 14) + b'{"a":1, "a":2}')
    with pytest.raises(BlobError, match="shorter"):
        unpack_arrays(b"abc")
    with pytest.raises(BlobError, match="must be bytes"):
        unpack_arrays("not bytes")  # type: ignore[arg-type]


def test_torch_state_dict_round_trip_and_mismatch() -> None:
    model = build_model("table4")
    blob = state_dict_to_blob(model, {"arch": "table4"})
    state = blob_to_state_dict(blob, build_model("table4"))
    other = build_model("table4")
    other.load_state_dict(state)
    for name, t in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], t)
    with pytest.raises(BlobError, match="missing|unexpected"):
        blob_to_state_dict(blob, build_model("table1_c1"))
    sd = model.state_dict()
    first = next(iter(sd))
    wrong_shape = dict(sd, **{first: torch.zeros(1)})
    with pytest.raises(BlobError, match="shape"):
        blob_to_state_dict(state_dict_to_blob(wrong_shape), model)
    wrong_dtype = dict(sd, **{first: sd[first].double()})
    with pytest.raises(BlobError, match="dtype"):
        blob_to_state_dict(state_dict_to_blob(wrong_dtype), model)

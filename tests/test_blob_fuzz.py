"""Fuzzing the blob parser with Hypothesis: malformed bytes only ever raise BlobError.

Six families of inputs, at least 10,000 in all (each test asserts its own count): random bytes,
random headers behind a valid length prefix, truncations and bit flips of valid blobs, header
JSON mutations, lying offsets, and huge declared shapes. Every rejection must come from one of
the parser's own checks (never from its last-resort safety net), and every accepted blob must
re-pack to bytes that unpack to the same arrays, and load in the safetensors package as the
same arrays.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as safetensors_load

from coopflower.blob import BlobError, BlobLimits, pack_arrays, unpack_arrays

LIMITS = BlobLimits(max_total_bytes=1 << 20, max_elements=1 << 16, max_tensors=64)
FAST = settings(deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck))


def _corpus() -> list[bytes]:
    rng = np.random.default_rng(42)
    return [
        pack_arrays({"w": rng.normal(size=(3, 4)).astype(np.float32)}),
        pack_arrays({"a": np.arange(6, dtype=np.int64).reshape(2, 3),
                     "b": np.array([1, 0, 1], dtype=bool),
                     "c": np.array(2.5)}, {"round": "1", "arch": "table4"}),
        pack_arrays({"u": np.arange(7, dtype=np.uint8), "h": np.ones(3, np.float16),
                     "e": np.zeros((0, 2), np.int32)}),
        pack_arrays({}, {"only": "metadata"}),
        pack_arrays({f"t{i}": rng.integers(-9, 9, size=i + 1, dtype=np.int16) for i in range(5)}),
    ]


CORPUS = _corpus()


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack_from("<Q", blob)
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header_text: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header_text)) + header_text + data


def check(blob: bytes) -> bool:
    """Unpack; return whether it was accepted. Fails the test on any other exception."""
    try:
        arrays, meta = unpack_arrays(blob, LIMITS)
    except BlobError as e:
        assert "unexpected failure" not in str(e), f"safety net reached: {e}"
        return False
    again, meta2 = unpack_arrays(pack_arrays(arrays, meta, LIMITS), LIMITS)
    assert meta2 == meta and set(again) == set(arrays)
    for name, arr in arrays.items():
        assert again[name].dtype == arr.dtype and again[name].shape == arr.shape
        np.testing.assert_array_equal(again[name], arr)
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all()
    theirs = safetensors_load(blob)  # whatever we accept is valid safetensors, same arrays
    assert set(theirs) == set(arrays)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(theirs[name], arr)
    return True


def run(strategy: st.SearchStrategy[Any], n: int, make: Callable[[Any], bytes]) -> int:
    """Run ``n`` Hypothesis examples of ``make(example)`` through :func:`check`."""
    seen = 0

    @settings(FAST, max_examples=n)
    @given(strategy)
    def body(example: Any) -> None:
        nonlocal seen
        seen += 1
        check(make(example))

    body()
    return seen


def test_random_bytes() -> None:
    assert run(st.binary(max_size=300), 1500, lambda b: b) >= 1500


def test_random_headers_behind_a_valid_length() -> None:
    assert run(st.binary(max_size=300), 1500, lambda b: _join(b"{" + b, b"")) >= 1500


def test_truncations_of_valid_blobs() -> None:
    def make(ex: tuple[int, float]) -> bytes:
        blob = CORPUS[ex[0]]
        return blob[: int(ex[1] * (len(blob) - 1))]

    strat = st.tuples(st.integers(0, len(CORPUS) - 1), st.floats(0, 1))
    assert run(strat, 1500, make) >= 1500


def test_bit_flips_of_valid_blobs() -> None:
    def make(ex: tuple[int, list[tuple[float, int]]]) -> bytes:
        blob = bytearray(CORPUS[ex[0]])
        (n,) = struct.unpack_from("<Q", blob)
        for where, bit in ex[1]:  # mostly the length prefix and the header
            blob[int(where * (8 + n + 8)) % len(blob)] ^= 1 << bit
        return bytes(blob)

    strat = st.tuples(st.integers(0, len(CORPUS) - 1),
                      st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1,
                               max_size=6))
    assert run(strat, 2000, make) >= 2000


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=4),
    max_leaves=12,
)


def test_header_json_mutations() -> None:
    fields = ["dtype", "shape", "data_offsets", "__metadata__", "extra"]

    def make(ex: tuple[int, int, str, Any, int]) -> bytes:
        index, kind, field, value, pick = ex
        header, data = _split(CORPUS[index])
        names = [k for k in header if k != "__metadata__"] or ["__metadata__"]
        name = names[pick % len(names)]
        if kind == 0:  # replace a field of a tensor entry (or the metadata) by random JSON
            if isinstance(header.get(name), dict):
                header[name][field] = value
            else:
                header[name] = value
        elif kind == 1:  # delete a field
            if isinstance(header.get(name), dict):
                header[name].pop(field, None)
        elif kind == 2:  # replace a whole entry
            header[name] = value
        elif kind == 3:  # the metadata becomes random JSON
            header["__metadata__"] = value
        elif kind == 4:  # a dtype code that does not exist or is not allowed
            if isinstance(header.get(name), dict):
                header[name]["dtype"] = str(value)[:6] if not isinstance(value, str) else value
        text = json.dumps(header).encode()
        if kind == 5:  # duplicate a key textually
            text = text[:-1] + b"," + json.dumps(name).encode() + b":{}}"
        return _join(text, data)

    strat = st.tuples(st.integers(0, len(CORPUS) - 1), st.integers(0, 5),
                      st.sampled_from(fields), _json_values, st.integers(0, 10))
    assert run(strat, 2000, make) >= 2000


def test_lying_offsets() -> None:
    big = st.integers(-(2**70), 2**70) | st.integers(-3, 200)

    def make(ex: tuple[int, int, int, int]) -> bytes:
        index, pick, begin, end = ex
        header, data = _split(CORPUS[index])
        names = [k for k in header if k != "__metadata__"]
        if names:
            header[names[pick % len(names)]]["data_offsets"] = [begin, end]
        return _join(json.dumps(header).encode(), data)

    strat = st.tuples(st.integers(0, len(CORPUS) - 1), st.integers(0, 10), big, big)
    assert run(strat, 1000, make) >= 1000


def test_huge_declared_shapes() -> None:
    dims = st.lists(st.integers(0, 2**64) | st.integers(0, 70000), min_size=0, max_size=12)

    def make(ex: tuple[int, int, list[int]]) -> bytes:
        index, pick, shape = ex
        header, data = _split(CORPUS[index])
        names = [k for k in header if k != "__metadata__"]
        if names:
            entry = header[names[pick % len(names)]]
            entry["shape"] = shape
        return _join(json.dumps(header).encode(), data)

    strat = st.tuples(st.integers(0, len(CORPUS) - 1), st.integers(0, 10), dims)
    assert run(strat, 1000, make) >= 1000


def test_corpus_itself_is_accepted() -> None:
    assert all(check(blob) for blob in CORPUS)
    # deep nesting, huge numbers, NaN constants, non-UTF-8: each its own clear error
    for text in (b"{" + b'"a":' * 0 + b"[" * 100_000 + b"]" * 100_000 + b"}",
                 b'{"a":' + b"9" * 5000 + b"}", b'{"a":NaN}', b"{\xff}"):
        try:
            unpack_arrays(_join(text, b""), LIMITS)
        except BlobError as e:
            assert "unexpected failure" not in str(e)
        else:
            raise AssertionError(f"accepted {text[:20]!r}")

"""The verifier's copy check (``coopflower.client.copies``): pure arithmetic over arrays."""

from __future__ import annotations

import numpy as np

from coopflower.client.copies import Reference, copy_check, flatten, relative_distance


def test_relative_distance_is_l2_over_all_arrays_and_none_for_other_shapes() -> None:
    ref = {"a": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    moved = {"a": np.ones((2, 2), np.float32), "b": np.array([0.0, 0.0, 0.2], np.float32)}
    assert relative_distance(ref, ref) == 0.0
    assert abs((relative_distance(moved, ref) or 0) - 0.2 / 2.0) < 1e-6  # ||diff|| / ||ref||
    assert relative_distance({"a": np.ones((4,), np.float32), "b": ref["b"]}, ref) is None
    assert relative_distance({"a": ref["a"]}, ref) is None
    assert relative_distance(moved, {"a": np.zeros((2, 2)), "b": np.zeros(3)}) == float("inf")


def test_copy_check_names_the_reference_and_the_distance() -> None:
    ref = {"w": np.linspace(1, 2, 10)}
    check = copy_check([Reference(ref, "the global model it was sent", "free rider")], 1e-3,
                       lambda arrays, meta: "then")
    assert check(dict(ref), {}) == "the global model it was sent, unchanged: free rider"
    near = check({"w": ref["w"] * (1 + 1e-5)}, {})
    assert near.startswith("within 1e-05 of the global model") and "0.001" in near
    assert check({"w": ref["w"] * 1.01}, {}) == "then"  # far enough: the next check decides
    assert copy_check([], 0.0)({"w": ref["w"]}, {}) == ""
    exact_only = copy_check([Reference(ref, "x", "y")], 0.0)
    assert exact_only({"w": ref["w"] * (1 + 1e-9)}, {}) == ""


def test_screened_check_decides_as_the_exact_distance_does() -> None:
    """The one-dot-product screen only skips references surely beyond the distance: over
    models at relative distances from 0 to 1e-1 around the threshold, the check refuses
    exactly those whose exact distance is within it, with references kept as ``Flat``s."""
    rng = np.random.default_rng(7)
    ref = {"a": rng.normal(size=(30, 40)).astype(np.float32),
           "b": rng.normal(size=500).astype(np.float32)}
    min_distance = 1e-3
    check = copy_check([Reference(flatten(ref), "r", "copy")], min_distance)
    seen = {"refused": 0, "passed": 0}
    for scale in [0.0, 1e-9, 1e-6, 5e-4, 9e-4, 1.1e-3, 2e-3, 1e-2, 1e-1]:
        for _ in range(5):
            moved = {k: (v + scale * rng.normal(size=v.shape) * np.abs(v).mean()).astype(
                np.float32) for k, v in ref.items()}
            d = relative_distance(moved, ref)
            assert d is not None
            refused = check(moved, {}) != ""
            assert refused == (d <= min_distance), (scale, d)
            seen["refused" if refused else "passed"] += 1
    assert seen["refused"] and seen["passed"]
    # another shape is another model, never a copy; a NaN model is left to the next check
    assert check({"a": ref["a"]}, {}) == ""
    assert check({k: np.full_like(v, np.nan) for k, v in ref.items()}, {}) == ""


def test_the_arrays_digest_names_the_arrays_not_the_blob() -> None:
    """Two blobs of the same arrays (other metadata) share one digest; any change of a value,
    a dtype, a shape or a name gives another; the digest check refuses only the former."""
    import numpy as np

    from coopflower.blob import pack_arrays, unpack_arrays
    from coopflower.client.copies import arrays_digest, digest_check

    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    a = unpack_arrays(pack_arrays(arrays, {"round": "1"}))[0]
    b = unpack_arrays(pack_arrays(arrays, {"round": "3", "num-examples": "7"}))[0]
    assert arrays_digest(a) == arrays_digest(b)
    changed = [
        {**arrays, "b": arrays["b"] + np.float32(1e-7)},
        {**arrays, "b": arrays["b"].astype(np.float64)},
        {**arrays, "w": arrays["w"].reshape(3, 2)},
        {"w": arrays["w"], "c": arrays["b"]},
    ]
    assert len({arrays_digest(c) for c in changed} | {arrays_digest(a)}) == 5
    check = digest_check([arrays_digest(a)])
    assert "already accepted" in check(b, {})
    assert all(check(c, {}) == "" for c in changed)

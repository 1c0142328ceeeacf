import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coopflower.data.partition import (
    PAPER_TABLE2_LABELS,
    dirichlet_partition,
    iid_partition,
    label_subset_partition,
    stratified_split,
)

LABELS = np.repeat(np.arange(10), 500)  # like the shipped MNIST subset


def _disjoint(parts: list[np.ndarray]) -> bool:
    allidx = np.concatenate(parts)
    return len(np.unique(allidx)) == len(allidx)


def test_stratified_split_is_disjoint_sized_and_balanced() -> None:
    out = stratified_split(LABELS, {"train": 3000, "verify": 1000, "test": 1000}, seed=1)
    assert {k: len(v) for k, v in out.items()} == {"train": 3000, "verify": 1000, "test": 1000}
    assert _disjoint(list(out.values()))
    for part in out.values():
        counts = np.bincount(LABELS[part], minlength=10)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="5000"):
        stratified_split(LABELS, {"a": 4000, "b": 1001})


def test_label_subset_partition_matches_table2() -> None:
    sets = [PAPER_TABLE2_LABELS[f"contributor_{i}"] for i in (1, 2, 3)]
    parts = label_subset_partition(np.arange(LABELS.size), LABELS, sets, per_part=1000, seed=0)
    assert _disjoint(parts)
    for part, label_set in zip(parts, sets, strict=True):
        assert len(part) == 1000
        assert set(np.unique(LABELS[part]).tolist()) == set(label_set)
    with pytest.raises(ValueError, match="label 0"):
        # label 0 is wanted by two parts: 2 x 300 > 500
        label_subset_partition(np.arange(LABELS.size), LABELS, [{0}, {0}], per_part=300)


@settings(max_examples=40, deadline=None)
@given(
    num_parts=st.integers(1, 12),
    alpha=st.floats(0.05, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_partition_covers_once(num_parts: int, alpha: float, seed: int) -> None:
    idx = np.arange(0, LABELS.size, 7)
    parts = dirichlet_partition(idx, LABELS, num_parts, alpha, seed=seed, min_size=0)
    assert len(parts) == num_parts and _disjoint(parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), idx)


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    def skew(alpha: float) -> float:
        parts = dirichlet_partition(np.arange(LABELS.size), LABELS, 10, alpha, seed=3)
        fractions = [np.bincount(LABELS[p], minlength=10) / len(p) for p in parts]
        return float(np.mean([f.max() for f in fractions]))

    assert skew(0.1) > skew(100.0) + 0.3


def test_iid_partition_even_and_deterministic() -> None:
    parts = iid_partition(np.arange(103), 10, seed=5)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    again = iid_partition(np.arange(103), 10, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError):
        iid_partition(np.arange(3), 4)

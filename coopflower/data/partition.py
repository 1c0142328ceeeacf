"""Partitions of a labelled dataset into parties, as index arrays. Pure NumPy, no I/O.

Every function returns indices into the dataset it was given, disjoint across the parts it
returns, and is deterministic for a given ``seed``. Not enough samples is a ``ValueError``
saying which label or part ran short, never a silently smaller part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

# Table II (Case Study I): the verifiers see every label, each computing contributor a subset.
PAPER_TABLE2_LABELS: dict[str, frozenset[int]] = {
    "verifiers": frozenset(range(10)),
    "contributor_1": frozenset({0, 1, 2, 3, 4}),
    "contributor_2": frozenset({0, 6, 7, 8, 9}),
    "contributor_3": frozenset({5, 6, 7, 8, 9}),
}
# Table III (Case Study II).
PAPER_TABLE3_LABELS: dict[str, frozenset[int]] = {
    "contributor_1": frozenset({0, 1, 2, 3, 4, 5, 6}),
    "contributor_2": frozenset({0, 1, 2, 3, 4, 8, 9}),
    "contributor_3": frozenset({0, 1, 2, 6, 7, 8, 9}),
}


def _check_labels(labels: npt.ArrayLike) -> IntArray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise ValueError("labels must be non-negative integers")
    return arr.astype(np.int64)


def stratified_split(
    labels: npt.ArrayLike, sizes: Mapping[str, int], seed: int = 0
) -> dict[str, IntArray]:
    """Split a dataset into disjoint named parts of the given sizes, each stratified by label.

    Args:
        labels: one label per sample.
        sizes: part name to number of samples (e.g. ``{"train": 3000, "verify": 1000,
            "test": 1000}``); their sum must not exceed the number of samples.
        seed: the random seed.

    Returns:
        Part name to sorted sample indices. Each part holds each label in the dataset's
        proportions (up to rounding).
    """
    y = _check_labels(labels)
    total = sum(sizes.values())
    if any(s < 0 for s in sizes.values()):
        raise ValueError(f"sizes must be non-negative: {dict(sizes)}")
    if total > y.size:
        raise ValueError(f"asked for {total} samples in all, the dataset has {y.size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(y.size)
    # Interleave classes so that any prefix of `order` is close to stratified.
    by_class = [order[y[order] == c] for c in np.unique(y)]
    ranks = np.concatenate([np.arange(len(ix)) / max(len(ix), 1) for ix in by_class])
    pooled = np.concatenate(by_class)
    interleaved = pooled[np.argsort(ranks, kind="stable")]
    out: dict[str, IntArray] = {}
    start = 0
    for name, size in sizes.items():
        out[name] = np.sort(interleaved[start : start + size]).astype(np.int64)
        start += size
    return out


def iid_partition(indices: npt.ArrayLike, num_parts: int, seed: int = 0) -> list[IntArray]:
    """Shuffle ``indices`` and deal them into ``num_parts`` parts of near-equal size."""
    if num_parts < 1:
        raise ValueError("num_parts must be at least 1")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size < num_parts:
        raise ValueError(f"{idx.size} samples cannot fill {num_parts} parts")
    shuffled = np.random.default_rng(seed).permutation(idx)
    return [np.sort(p) for p in np.array_split(shuffled, num_parts)]


def dirichlet_partition(
    indices: npt.ArrayLike,
    labels: npt.ArrayLike,
    num_parts: int,
    alpha: float,
    seed: int = 0,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[IntArray]:
    """Label-skewed parts: each label's samples are shared out by Dirichlet(alpha) proportions.

    Args:
        indices: the samples to partition.
        labels: the labels of the *whole* dataset (indexed by ``indices``).
        num_parts: how many parties.
        alpha: concentration; small alpha means strong label skew, large alpha near IID.
        seed: the random seed.
        min_size: redraw until every part holds at least this many samples.
        max_tries: how many draws before giving up with a ``ValueError``.

    Returns:
        ``num_parts`` disjoint sorted index arrays covering ``indices``.
    """
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    if num_parts < 1:
        raise ValueError("num_parts must be at least 1")
    idx = np.asarray(indices, dtype=np.int64)
    y = _check_labels(labels)[idx]
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[IntArray]] = [[] for _ in range(num_parts)]
        for c in np.unique(y):
            members = rng.permutation(idx[y == c])
            shares = rng.dirichlet(np.full(num_parts, alpha))
            cuts = (np.cumsum(shares)[:-1] * members.size).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                part.append(chunk)
        merged = [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]
        if min(m.size for m in merged) >= min_size:
            return merged
    raise ValueError(
        f"no Dirichlet({alpha}) draw gave every one of {num_parts} parts {min_size} samples"
    )


def label_subset_partition(
    indices: npt.ArrayLike,
    labels: npt.ArrayLike,
    label_sets: Sequence[frozenset[int] | set[int]],
    per_part: int,
    seed: int = 0,
) -> list[IntArray]:
    """The paper's partial-view parts (Tables II, III): part i holds only ``label_sets[i]``.

    Each part gets ``per_part`` samples spread evenly over its labels; parts are disjoint even
    where their label sets overlap.

    Raises:
        ValueError: when a label has too few samples for the parts that want it.
    """
    idx = np.asarray(indices, dtype=np.int64)
    y = _check_labels(labels)[idx]
    rng = np.random.default_rng(seed)
    pools = {int(c): list(rng.permutation(idx[y == c])) for c in np.unique(y)}
    parts: list[IntArray] = []
    for i, label_set in enumerate(label_sets):
        wanted = sorted(label_set)
        if not wanted:
            raise ValueError(f"part {i} has an empty label set")
        base, extra = divmod(per_part, len(wanted))
        chosen: list[int] = []
        for j, c in enumerate(wanted):
            n = base + (1 if j < extra else 0)
            pool = pools.get(c, [])
            if len(pool) < n:
                raise ValueError(
                    f"part {i} needs {n} samples of label {c}, only {len(pool)} are left"
                )
            chosen.extend(pool[:n])
            pools[c] = pool[n:]
        parts.append(np.sort(np.asarray(chosen, dtype=np.int64)))
    return parts

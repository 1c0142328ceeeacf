"""Which digits a node holds: its local training and verification data (pure index logic).

The dataset is split once into a held-out ``test`` part (the initiator's, for central
evaluation) and a ``pool`` shared out among ``num_partitions`` nodes (IID, Dirichlet(alpha)
label skew, or IID restricted to a node's own label subset, as in the paper's Table II). Each
node's share is split again into its ``train`` part (as a computing contributor) and its
``verify`` part (as a verification contributor). Parts are disjoint and deterministic by seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coopflower.data.partition import dirichlet_partition, iid_partition, stratified_split

__all__ = ["NodeDataError", "NodeSplit", "node_split", "test_indices", "parse_labels"]

IntArray = npt.NDArray[np.int64]
SCHEMES = ("iid", "dirichlet", "labels")


class NodeDataError(ValueError):
    """A node's data settings that cannot be satisfied."""


@dataclass(frozen=True)
class NodeSplit:
    """Indices into the dataset: the node's ``train`` and ``verify`` parts."""

    train: IntArray
    verify: IntArray


def _pool_and_test(labels: npt.ArrayLike, test_fraction: float, seed: int) -> dict[str, IntArray]:
    y = np.asarray(labels)
    if not 0.0 <= test_fraction < 1.0:
        raise NodeDataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(y.size * test_fraction))
    return stratified_split(y, {"pool": y.size - n_test, "test": n_test}, seed=seed)


def test_indices(labels: npt.ArrayLike, *, test_fraction: float = 0.2, seed: int = 0) -> IntArray:
    """The held-out test part (disjoint from every node's data), for central evaluation."""
    return _pool_and_test(labels, test_fraction, seed)["test"]


def parse_labels(text: str | Sequence[int] | None) -> frozenset[int] | None:
    """A label subset from node config text such as ``"0,1,2,3,4"`` (``None``/empty: all)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        items = text.split(",") if isinstance(text, str) else list(text)
        out = frozenset(int(t) for t in items)
    except ValueError:
        raise NodeDataError(f"labels must be comma-separated integers, got {text!r}") from None
    if not out or min(out) < 0:
        raise NodeDataError(f"labels must be non-negative integers, got {text!r}")
    return out


def node_split(
    labels: npt.ArrayLike,
    partition_id: int,
    num_partitions: int,
    *,
    scheme: str = "iid",
    alpha: float = 0.5,
    label_subset: frozenset[int] | None = None,
    verify_fraction: float = 0.25,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> NodeSplit:
    """The node's own disjoint training and verification indices.

    Args:
        labels: every sample's label.
        partition_id, num_partitions: this node's place among the nodes.
        scheme: ``"iid"``, ``"dirichlet"`` (label skew, ``alpha``) or ``"labels"`` (the IID
            share restricted to ``label_subset``).
        verify_fraction: share of the node's data kept for verifying others' models.
        test_fraction: share of the whole dataset held out for the initiator.
        seed: the random seed (the same on every node).

    Returns:
        ``NodeSplit``. Raises ``NodeDataError`` on impossible settings.
    """
    if not 0 <= partition_id < num_partitions:
        raise NodeDataError(f"partition_id {partition_id} not in [0, {num_partitions})")
    if scheme not in SCHEMES:
        raise NodeDataError(f"unknown partition scheme {scheme!r}; choose one of {SCHEMES}")
    if not 0.0 < verify_fraction < 1.0:
        raise NodeDataError(f"verify_fraction must be in (0, 1), got {verify_fraction}")
    y = np.asarray(labels)
    pool = _pool_and_test(y, test_fraction, seed)["pool"]
    try:
        if scheme == "dirichlet":
            parts = dirichlet_partition(pool, y, num_partitions, alpha, seed=seed)
        else:
            parts = iid_partition(pool, num_partitions, seed=seed)
    except ValueError as exc:
        raise NodeDataError(str(exc)) from None
    mine = parts[partition_id]
    if scheme == "labels":
        if label_subset is None:
            raise NodeDataError("scheme 'labels' needs a label subset (node config 'labels')")
        mine = mine[np.isin(y[mine], np.asarray(sorted(label_subset)))]
    if mine.size < 2:
        raise NodeDataError(f"node {partition_id} holds {mine.size} samples: too few")
    shuffled = np.random.default_rng([seed, partition_id]).permutation(mine)
    n_verify = max(1, int(round(mine.size * verify_fraction)))
    return NodeSplit(train=np.sort(shuffled[n_verify:]), verify=np.sort(shuffled[:n_verify]))

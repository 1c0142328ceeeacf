"""Which digits a node holds: its local training and verification data (pure index logic).

The dataset is split once into a held-out ``test`` part (the initiator's, for central
evaluation) and a ``pool`` shared out among ``num_partitions`` nodes (IID, Dirichlet(alpha)
label skew, or IID restricted to a node's own label subset, as in the paper's Table II). Each
node's share is split again into its ``train`` part (as a computing contributor) and its
``verify`` part (as a verification contributor). Parts are disjoint and deterministic by seed.

An experiment that needs its own split writes it with ``write_partition_file`` (an ``.npz``
with ``train-<pid>`` and ``verify-<pid>`` per node) and points each node's ``partition-file``
key at it; ``partition_from_file`` reads and checks the node's parts (no pickles).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from coopflower.data.partition import dirichlet_partition, iid_partition, stratified_split

__all__ = ["NodeDataError", "NodeSplit", "node_split", "test_indices", "parse_labels",
           "partition_from_file", "write_partition_file", "check_split"]

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


def check_split(train: npt.ArrayLike, verify: npt.ArrayLike, num_samples: int | None = None,
                *, where: str = "split") -> NodeSplit:
    """Check one node's parts: 1-D integer indices, no repeats, ``train`` and ``verify``
    disjoint, ``train`` non-empty (``verify`` may be empty: a pure contributor), every index in
    ``[0, num_samples)`` (only non-negative when ``num_samples`` is None).

    Args:
        train, verify: the node's index arrays.
        num_samples: the dataset's size, if known.
        where: names the parts in error messages (e.g. the file and partition id).

    Returns:
        The ``NodeSplit`` (int64 copies). Raises ``NodeDataError`` naming the problem.
    """
    parts: dict[str, IntArray] = {}
    for name, value in (("train", train), ("verify", verify)):
        arr = np.asarray(value)
        if arr.ndim != 1:
            raise NodeDataError(f"{where}: {name} must be 1-D indices, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise NodeDataError(f"{where}: {name} must hold integers, got dtype {arr.dtype}")
        idx = arr.astype(np.int64)
        if idx.size and idx.min() < 0:
            raise NodeDataError(f"{where}: {name} holds a negative index {int(idx.min())}")
        if num_samples is not None and idx.size and idx.max() >= num_samples:
            raise NodeDataError(f"{where}: {name} index {int(idx.max())} out of range for "
                                f"{num_samples} samples")
        if np.unique(idx).size != idx.size:
            raise NodeDataError(f"{where}: {name} repeats indices")
        parts[name] = idx
    if parts["train"].size == 0:
        raise NodeDataError(f"{where}: train is empty")
    both = np.intersect1d(parts["train"], parts["verify"])
    if both.size:
        raise NodeDataError(f"{where}: train and verify overlap in {both.size} indices "
                            f"(e.g. {int(both[0])})")
    return NodeSplit(train=parts["train"], verify=parts["verify"])


def partition_from_file(path: str | os.PathLike[str], partition_id: int,
                        num_samples: int) -> NodeSplit:
    """This node's parts from a partition file (``write_partition_file``'s format).

    Args:
        path: the ``.npz`` file, holding 1-D integer arrays ``train-<pid>``, ``verify-<pid>``.
        partition_id: this node's ``pid``.
        num_samples: the size of the dataset the indices point into.

    Returns:
        ``NodeSplit``. Raises ``NodeDataError`` naming the file and the problem (missing file,
        not an npz, pickled or missing arrays, bad indices).
    """
    where = f"partition file {os.fspath(path)}"
    keys = (f"train-{partition_id}", f"verify-{partition_id}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise NodeDataError(f"{where}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NodeDataError(f"{where}: not an npz file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise NodeDataError(f"{where}: not an npz file (a single .npy array)")
    with loaded:
        missing = [k for k in keys if k not in loaded.files]
        if missing:
            raise NodeDataError(f"{where}: lacks {missing} for partition {partition_id}")
        try:
            train, verify = (loaded[k] for k in keys)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:  # object arrays, bad members
            raise NodeDataError(f"{where}: unreadable arrays for partition {partition_id} "
                                f"({exc})") from None
    return check_split(train, verify, num_samples, where=f"{where}, partition {partition_id}")


def write_partition_file(path: str | os.PathLike[str], parts: Sequence[NodeSplit]) -> None:
    """Write every node's parts (partition id = position in ``parts``) to an ``.npz`` file,
    atomically (written beside ``path``, then renamed), at exactly ``path``.

    Args:
        path: the file to write.
        parts: one ``NodeSplit`` per node, each checked as ``check_split`` does.

    Raises ``NodeDataError`` on a bad part (nothing is written then).
    """
    if not parts:
        raise NodeDataError("write_partition_file needs at least one node's parts")
    arrays: dict[str, IntArray] = {}
    for pid, part in enumerate(parts):
        split = check_split(part.train, part.verify, where=f"partition {pid}")
        arrays[f"train-{pid}"], arrays[f"verify-{pid}"] = split.train, split.verify
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""The bench's data override: the app's own ``load_data`` under a partition and a label flip.

The app (a patched copy of ``tests/apps/<name>``) is not edited: :func:`install` replaces
``load_data`` in the app's task module and in its client module (which imported the name) by
a wrapper, in every process that runs the app (the Ray workers call it from the attack mod
before the app's handler; the import of this module does it too). The wrapper reads the grid
cell from ``$COOPBENCH_CELL`` (JSON, set by the driver before each simulation, which Ray's
workers inherit):

- ``partition``: ``"iid"`` is the app's own ``load_data`` untouched (each partition an IID
  share); ``"dirichlet"`` pools every partition's train and validation samples the app's own
  ``load_data`` gives and re-splits them by label with Dirichlet(``alpha``) shares per class
  (seeded by ``seed``; at least ``MIN_SIZE`` samples per node), then 80/20 train/validation per
  node, with the app's batch sizes.
- ``labelflip``: the partition ids whose *training* labels are flipped (``C - 1 - y``); their
  validation data stays clean, so as verifiers they judge honestly.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

CELL_ENV = "COOPBENCH_CELL"
MIN_SIZE = 10
_installed: dict[str, str] = {}  # package -> the cell JSON its wrapper was built for
_pools: dict[tuple[Any, ...], Any] = {}
_clean = [False]  # inside clean(): no label flip (one message at a time per Ray actor)


@contextmanager
def clean() -> Iterator[None]:
    """Within: the app's data without the label flip (an attack-free baseline's train)."""
    _clean[0] = True
    try:
        yield
    finally:
        _clean[0] = False


def cell() -> dict[str, Any]:
    """The grid cell this process runs (``{}`` outside a bench run)."""
    text = os.environ.get(CELL_ENV, "")
    return json.loads(text) if text else {}


def install() -> None:
    """Wrap the app's ``load_data`` for the current cell (idempotent per cell)."""
    text = os.environ.get(CELL_ENV, "")
    if not text:
        return
    c = json.loads(text)
    pkg = c["package"]
    if _installed.get(pkg) == text:
        return
    task = importlib.import_module(f"{pkg}.task")
    client = importlib.import_module(f"{pkg}.client_app")
    original = getattr(task, "_coopbench_original_load_data", None) or task.load_data
    wrapper = make_load_data(original, c)
    setattr(task, "_coopbench_original_load_data", original)  # noqa: B010
    setattr(task, "load_data", wrapper)  # noqa: B010
    setattr(client, "load_data", wrapper)  # noqa: B010
    _installed[pkg] = text


def _tensors(loader: Any) -> tuple[Any, Any]:
    """A loader's samples and labels as two tensors (any map-style dataset of pairs)."""
    import torch

    ds = loader.dataset
    if hasattr(ds, "tensors") and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1]
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys)


def _loader(x: Any, y: Any, like: Any, shuffle: bool) -> Any:
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(x, y), batch_size=like.batch_size or 1, shuffle=shuffle)


def dirichlet_split(labels: np.ndarray, nodes: int, alpha: float, seed: int,
                    min_size: int = MIN_SIZE) -> list[np.ndarray]:
    """Indices per node: each class's samples shared by Dirichlet(alpha) proportions (drawn
    again, up to 1000 times, until every node holds at least ``min_size`` samples)."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(nodes)]
        for c in np.unique(labels):
            ids = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * nodes)) * len(ids)).astype(int)[:-1]
            for node, chunk in enumerate(np.split(ids, cuts)):
                parts[node].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"no Dirichlet({alpha}) split of {len(labels)} samples gives every one of "
                     f"{nodes} nodes {min_size} samples")


def _dirichlet(original: Callable[[int, int], Any], pid: int, n: int, alpha: float,
               seed: int) -> tuple[Any, Any]:
    import torch

    key = (id(original), n, alpha, seed)
    if key not in _pools:
        xs, ys, like = [], [], None
        for p in range(n):
            train, val = original(p, n)
            like = like or (train, val)
            for loader in (train, val):
                x, y = _tensors(loader)
                xs.append(x)
                ys.append(y)
        x_all, y_all = torch.cat(xs), torch.cat(ys)
        parts = dirichlet_split(y_all.numpy(), n, alpha, seed)
        _pools[key] = (x_all, y_all, parts, like)
    x_all, y_all, parts, (train_like, val_like) = _pools[key]
    idx = torch.as_tensor(parts[pid])
    cut = int(0.8 * len(idx))
    return (_loader(x_all[idx[:cut]], y_all[idx[:cut]], train_like, True),
            _loader(x_all[idx[cut:]], y_all[idx[cut:]], val_like, False))


def make_load_data(original: Callable[[int, int], Any],
                   c: dict[str, Any]) -> Callable[[int, int], Any]:
    """The app's ``load_data`` under the cell's partition and label flip."""
    flipped = {int(p) for p in c.get("labelflip", [])}
    classes = int(c.get("classes", 0))

    def load_data(partition_id: int, num_partitions: int) -> tuple[Any, Any]:
        pid, n = int(partition_id), int(num_partitions)
        if c.get("partition", "iid") == "dirichlet":
            train, val = _dirichlet(original, pid, n, float(c.get("alpha", 0.5)),
                                    int(c.get("seed", 0)))
        else:
            train, val = original(pid, n)
        if pid in flipped and not _clean[0]:
            x, y = _tensors(train)
            train = _loader(x, (classes - 1) - y, train, True)
        return train, val

    load_data.__doc__ = "The app's load_data under the bench's partition and label flip."
    return load_data


install()

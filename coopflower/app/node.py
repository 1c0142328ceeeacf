"""The paper app's node: its settings (node config), its local MNIST digits and its training
recipe (train config). Pure parsing and data loading; the app's ``train`` and ``evaluate``
(``coopflower.app.client_app``) use them.

Node config keys (``flower-supernode --node-config "..."``; simulation sets the first two):
``partition-id``, ``num-partitions``, ``model`` (a Table I/IV name; default: the global model's
architecture, else ``table4``), ``partition`` (``iid``, ``dirichlet``, ``labels``), ``alpha``,
``labels`` (e.g. ``"0,1,2,3,4"``), ``data-seed``, ``mnist-dir``, ``partition-file`` (an ``.npz``
of ``train-<pid>``/``verify-<pid>`` index arrays, written by
``coopflower.app.data.write_partition_file``; when set it replaces ``partition``, ``alpha`` and
``data-seed`` for the split, and an empty ``verify-<pid>`` makes a pure contributor). The keys
coopflower's mod reads (``key-file``, ``store``) are the mod's, not the app's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from coopflower.app.data import node_split, parse_labels, partition_from_file

if TYPE_CHECKING:
    from coopflower.augment import Augment

__all__ = ["DEFAULT_MODEL", "NodeConfigError", "NodeSettings", "LocalData", "local_data",
           "TrainRecipe", "train_recipe", "config_float", "config_str"]

DEFAULT_MODEL = "table4"


class NodeConfigError(ValueError):
    """A node config or train config value the paper app cannot use."""


def config_float(cfg: Mapping[str, Any], key: str, default: float) -> float:
    """A number from a config record (``default`` when absent); ``NodeConfigError`` otherwise."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NodeConfigError(f"config {key!r} must be a number, got {value!r}")
    return float(value)


def config_str(cfg: Mapping[str, Any], key: str, default: str) -> str:
    """A text from a config record (``default`` when absent); ``NodeConfigError`` otherwise."""
    value = cfg.get(key, default)
    if not isinstance(value, str):
        raise NodeConfigError(f"config {key!r} must be text, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class NodeSettings:
    """A node's settings, read from its node config (see the module docstring)."""

    partition_id: int
    num_partitions: int
    model: str | None
    partition: str
    alpha: float
    labels: frozenset[int] | None
    data_seed: int
    mnist_dir: str | None
    partition_file: str | None = None

    @classmethod
    def from_node_config(cls, cfg: Mapping[str, Any]) -> NodeSettings:
        """Parse a node config; raises ``NodeConfigError`` on a bad value."""
        try:
            pid = int(cfg.get("partition-id", 0))
            num = int(cfg.get("num-partitions", 1))
            mnist_dir = str(cfg["mnist-dir"]) if cfg.get("mnist-dir") else None
            pfile = cfg.get("partition-file")
            partition_file = str(Path(str(pfile)).expanduser()) if pfile else None
            return cls(
                partition_id=pid,
                num_partitions=num,
                model=str(cfg["model"]) if cfg.get("model") else None,
                partition=str(cfg.get("partition", "iid")),
                alpha=float(cfg.get("alpha", 0.5)),
                labels=parse_labels(str(cfg["labels"])) if cfg.get("labels") else None,
                data_seed=int(cfg.get("data-seed", 0)),
                mnist_dir=mnist_dir,
                partition_file=partition_file,
            )
        except (TypeError, ValueError) as exc:
            raise NodeConfigError(f"bad node config {dict(cfg)}: {exc}") from None


@dataclass(frozen=True)
class LocalData:
    """The node's own digits: ``train`` (contributor) and ``verify`` (verifier) parts."""

    train_x: npt.NDArray[np.uint8]
    train_y: npt.NDArray[np.int64]
    verify_x: npt.NDArray[np.uint8]
    verify_y: npt.NDArray[np.int64]


def local_data(settings: NodeSettings) -> LocalData:
    """Load MNIST and cut out this node's parts: from its ``partition-file`` when set, else by
    ``node_split`` (cached per process: a simulation worker serves many nodes in turn, and
    reloading the digits for each message costs more than evaluating a small model).

    Returns:
        ``LocalData``. Raises ``NodeDataError`` on an unusable split or partition file.
    """
    stamp: tuple[int, int] | None = None
    if settings.partition_file:
        try:  # a rewritten file is read again, not served from the cache
            st = os.stat(settings.partition_file)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None  # partition_from_file names the missing file
    return _local_data(settings, stamp)


@functools.lru_cache(maxsize=64)
def _local_data(settings: NodeSettings, stamp: tuple[int, int] | None) -> LocalData:
    from coopflower.data.mnist import load_mnist

    data = load_mnist(settings.mnist_dir)
    if settings.partition_file:
        split = partition_from_file(settings.partition_file, settings.partition_id,
                                    int(data.labels.shape[0]))
    else:
        split = node_split(
            data.labels,
            settings.partition_id,
            settings.num_partitions,
            scheme=settings.partition,
            alpha=settings.alpha,
            label_subset=settings.labels,
            seed=settings.data_seed,
        )
    return LocalData(
        data.images[split.train], data.labels[split.train],
        data.images[split.verify], data.labels[split.verify],
    )


@dataclass(frozen=True)
class TrainRecipe:
    """How a contributor trains locally, from the train config: SGD ``momentum``,
    ``lr_schedule`` (``"constant"`` or ``"cosine"``) and random ``augment`` (None: none)."""

    momentum: float = 0.9
    lr_schedule: str = "constant"
    augment: Augment | None = None


def train_recipe(cfg: Mapping[str, Any]) -> TrainRecipe:
    """Read ``momentum`` (default 0.9), ``lr-schedule`` (``constant``/``cosine``) and
    ``augment-shift`` (pixels), ``augment-rotate`` (degrees), ``augment-scale`` (fraction), all
    default 0 = no augmentation, from a train config.

    Returns:
        ``TrainRecipe``. Raises ``NodeConfigError`` on a bad value.
    """
    from coopflower.augment import Augment
    from coopflower.training import LR_SCHEDULES

    momentum = config_float(cfg, "momentum", 0.9)
    if not 0.0 <= momentum < 1.0:
        raise NodeConfigError(f"config 'momentum' must be in [0, 1), got {momentum}")
    schedule = config_str(cfg, "lr-schedule", "constant")
    if schedule not in LR_SCHEDULES:
        raise NodeConfigError(f"config 'lr-schedule' must be one of {LR_SCHEDULES}, "
                              f"got {schedule!r}")
    shift, rotate, scale = (config_float(cfg, f"augment-{k}", 0.0)
                            for k in ("shift", "rotate", "scale"))
    augment = None
    if shift or rotate or scale:
        try:
            augment = Augment(shift=shift, rotate=rotate, scale=scale)
        except ValueError as exc:
            raise NodeConfigError(f"config augment-*: {exc}") from None
    return TrainRecipe(momentum=momentum, lr_schedule=schedule, augment=augment)

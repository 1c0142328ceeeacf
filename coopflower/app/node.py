"""The paper app's node: its settings (node config), its local MNIST digits and its training
recipe (train config). Pure parsing and data loading; the handlers use them."""

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
from coopflower.client import protocol as P

if TYPE_CHECKING:
    from coopflower.augment import Augment

__all__ = ["DEFAULT_MODEL", "NodeSettings", "LocalData", "local_data", "TrainRecipe",
           "train_recipe"]

DEFAULT_MODEL = "table4"


@dataclass(frozen=True)
class NodeSettings:
    """A node's settings, read from its node config (see ``coopflower.client``)."""

    partition_id: int
    num_partitions: int
    key_file: Path
    model: str | None
    partition: str
    alpha: float
    labels: frozenset[int] | None
    data_seed: int
    store: str | None
    mnist_dir: str | None
    partition_file: str | None = None

    @classmethod
    def from_node_config(cls, cfg: Mapping[str, Any]) -> NodeSettings:
        """Parse a node config; raises ``ProtocolError`` on a bad value."""
        try:
            pid = int(cfg.get("partition-id", 0))
            num = int(cfg.get("num-partitions", 1))
            home = Path(os.environ.get("COOPFLOWER_HOME", "~/.coopflower"))
            key_default = home / "keys" / f"node-{pid}.json"
            key_file = Path(str(cfg.get("key-file", key_default))).expanduser()
            store = str(cfg["store"]) if cfg.get("store") else None
            mnist_dir = str(cfg["mnist-dir"]) if cfg.get("mnist-dir") else None
            pfile = cfg.get("partition-file")
            partition_file = str(Path(str(pfile)).expanduser()) if pfile else None
            return cls(
                partition_id=pid,
                num_partitions=num,
                key_file=key_file,
                model=str(cfg["model"]) if cfg.get("model") else None,
                partition=str(cfg.get("partition", "iid")),
                alpha=float(cfg.get("alpha", 0.5)),
                labels=parse_labels(str(cfg["labels"])) if cfg.get("labels") else None,
                data_seed=int(cfg.get("data-seed", 0)),
                store=store,
                mnist_dir=mnist_dir,
                partition_file=partition_file,
            )
        except (TypeError, ValueError) as exc:
            raise P.ProtocolError(f"bad node config {dict(cfg)}: {exc}") from None


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
        ``TrainRecipe``. Raises ``ProtocolError`` on a bad value.
    """
    from coopflower.augment import Augment
    from coopflower.training import LR_SCHEDULES

    momentum = P.get_float(cfg, "momentum", 0.9)
    if not 0.0 <= momentum < 1.0:
        raise P.ProtocolError(f"config 'momentum' must be in [0, 1), got {momentum}")
    schedule = P.get_str(cfg, "lr-schedule", "constant")
    if schedule not in LR_SCHEDULES:
        raise P.ProtocolError(f"config 'lr-schedule' must be one of {LR_SCHEDULES}, "
                              f"got {schedule!r}")
    shift, rotate, scale = (P.get_float(cfg, f"augment-{k}", 0.0)
                            for k in ("shift", "rotate", "scale"))
    augment = None
    if shift or rotate or scale:
        try:
            augment = Augment(shift=shift, rotate=rotate, scale=scale)
        except ValueError as exc:
            raise P.ProtocolError(f"config augment-*: {exc}") from None
    return TrainRecipe(momentum=momentum, lr_schedule=schedule, augment=augment)

"""A paper-app node that attacks: the poisoning its node config names, done inside its own
``train`` handler, so what the node replies (and, in the coordinated round, what coopflower's
mod packs, signs and submits to the verifiers' vote) is the attacked model. Only training is
attacked: the node evaluates and verifies honestly, on its clean verification digits.

Node config keys (``flower-supernode --node-config "attack='label-flip'"``):

- ``attack``: ``none`` (default), or one of
  - ``label-flip``: trains on flipped labels (``9 - y``);
  - ``sign-flip``: ``global - attack-scale * (trained - global)``, the negated update scaled;
  - ``noise``: the trained model plus ``N(0, attack-std^2)`` on every floating array;
  - ``free-rider``: returns the model it was sent, untrained (its metrics are that model's on
    its training digits); free riders holding as many digits submit byte-identical models, of
    which the contract keeps the first (``DuplicateModel``);
  - ``copy``: a stale copy: the global model it was sent in the previous round (the current
    one in a first round), plus ``N(0, 1e-4^2)`` so it is not byte-identical (kept in
    ``attack-dir``);
- ``attack-scale`` (default 5), ``attack-std`` (default 1), ``attack-dir`` (default
  ``$COOPFLOWER_HOME/attack``), ``attack-seed`` (default 0; with the partition id and the
  round, seeds the noise).

The same attacks as ``bench/robust/attacks.py``'s mod, for the paper app's own handler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord

from coopflower.app.node import NodeConfigError

__all__ = ["ATTACKS", "NodeAttack", "flip_labels", "scaled"]

ATTACKS = ("none", "label-flip", "sign-flip", "noise", "free-rider", "copy")
CLASSES = 10
COPY_NOISE = 1e-4

Arrays = dict[str, np.ndarray]


def flip_labels(y: npt.NDArray[np.int64], classes: int = CLASSES) -> npt.NDArray[np.int64]:
    """The label flip: class ``c`` becomes ``classes - 1 - c``."""
    return (classes - 1) - y


def _floating(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def scaled(sent: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray],
           lam: float) -> Arrays:
    """``sent + lam * (trained - sent)`` on floating arrays (``lam = -s``: the sign flip)."""
    return {k: np.asarray(sent[k] + lam * (t.astype(np.float64) - sent[k]), dtype=t.dtype)
            if _floating(t) else t for k, t in trained.items()}


def _noisy(arrays: Mapping[str, np.ndarray], std: float, rng: np.random.Generator) -> Arrays:
    return {k: np.asarray(v + rng.normal(0.0, std, v.shape), dtype=v.dtype) if _floating(v)
            else v for k, v in arrays.items()}


def _plain(record: ArrayRecord | None) -> Arrays:
    return {k: np.asarray(a.numpy()) for k, a in (record or ArrayRecord()).items()}


@dataclass(frozen=True)
class NodeAttack:
    """What a node's node config says it does to its train reply (see the module docstring)."""

    kind: str = "none"
    scale: float = 5.0
    std: float = 1.0
    folder: str = ""
    seed: int = 0

    @classmethod
    def from_node_config(cls, cfg: Mapping[str, Any]) -> NodeAttack:
        """Parse the ``attack*`` keys; ``NodeConfigError`` names a bad value."""
        kind = str(cfg.get("attack", "none") or "none")
        if kind not in ATTACKS:
            raise NodeConfigError(f"node config attack={kind!r}: choose from "
                                  f"{', '.join(ATTACKS)}")
        try:
            scale, std = float(cfg.get("attack-scale", 5.0)), float(cfg.get("attack-std", 1.0))
            seed = int(cfg.get("attack-seed", 0))
        except (TypeError, ValueError) as exc:
            raise NodeConfigError(f"node config attack-scale/-std/-seed: {exc}") from None
        if std < 0:
            raise NodeConfigError(f"node config attack-std must be >= 0, got {std}")
        home = os.environ.get("COOPFLOWER_HOME", "~/.coopflower")
        folder = str(cfg.get("attack-dir") or Path(home) / "attack")
        return cls(kind, scale, std, str(Path(folder).expanduser()), seed)

    @property
    def trains(self) -> bool:
        """Whether the node trains at all (a free rider does not)."""
        return self.kind != "free-rider"

    def labels(self, y: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The training labels the node trains on."""
        return flip_labels(y) if self.kind == "label-flip" else y

    def replied(self, sent: ArrayRecord | None, trained: ArrayRecord, partition_id: int,
                server_round: int) -> ArrayRecord:
        """The record the node replies with: ``trained``, or the attack's (from ``sent``, the
        global model it was sent)."""
        if self.kind in ("none", "label-flip"):
            return trained
        out = self.reply(_plain(sent), _plain(trained), partition_id, server_round)
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()})

    def reply(self, sent: Arrays, trained: Arrays, partition_id: int, server_round: int
              ) -> Arrays:
        """The arrays the node replies with instead of ``trained`` (from ``sent``)."""
        if self.kind in ("none", "label-flip"):
            return trained
        if self.kind != "copy" and not sent:
            raise NodeConfigError(f"attack {self.kind} needs the global model it was sent")
        rng = np.random.default_rng([self.seed, partition_id, server_round])
        if self.kind == "sign-flip":
            return scaled(sent, trained, -self.scale)
        if self.kind == "noise":
            return _noisy(trained, self.std, rng)
        if self.kind == "free-rider":
            return sent
        return _noisy(self._stale(sent, partition_id, server_round), COPY_NOISE, rng)

    def _stale(self, sent: Arrays, partition_id: int, server_round: int) -> Arrays:
        """The global model of the previous round (when this node kept it), else ``sent``;
        keeps ``sent`` for the next round."""
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"copy-{partition_id}.npz"
        old: Arrays = sent
        if path.exists():
            with np.load(path) as kept:
                if int(kept["__round__"]) == server_round - 1:
                    old = {k: kept[k] for k in kept.files if k != "__round__"}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, __round__=np.asarray(server_round), **sent)  # type: ignore[arg-type]
        tmp.replace(path)
        return old

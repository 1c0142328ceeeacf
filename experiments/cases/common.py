"""Shared pieces of the paper's case studies: disjoint data splits, local training, verifier
votes, progress lines. Thin adapters over coopflower (data, training, fusion)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from coopflower.augment import Augment
from coopflower.data.partition import label_subset_partition, stratified_split
from coopflower.fusion import FusionConfig, MetaModel, compute_features, images_to_tensor
from coopflower.models import build_model
from coopflower.training import evaluate_model, train_model

IntArray = npt.NDArray[np.int64]
_T0 = time.perf_counter()


class ExperimentError(ValueError):
    """Settings the experiment cannot satisfy (sizes larger than the data, bad names)."""


def log(msg: str) -> None:
    """One progress line on stderr, with the elapsed time."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PartySplit:
    """Disjoint index sets of one case study (indices into the loaded dataset).

    ``test`` is held out for reporting only; ``initiator`` is the initiator's own data (it trains
    the fusion network); ``verifiers[v]`` is verifier ``v``'s verification data;
    ``contributors[i]`` is contributor ``i``'s ``(train, verify)`` pair.
    """

    test: IntArray
    initiator: IntArray
    verifiers: list[IntArray]
    contributors: list[tuple[IntArray, IntArray]]
    label_sets: list[tuple[int, ...]]

    def sizes(self) -> dict[str, Any]:
        """Sizes of every part, for the report."""
        return {
            "test": int(self.test.size),
            "initiator": int(self.initiator.size),
            "verifiers": [int(v.size) for v in self.verifiers],
            "contributors_train": [int(t.size) for t, _ in self.contributors],
            "contributors_verify": [int(v.size) for _, v in self.contributors],
        }

    def all_indices(self) -> IntArray:
        """Every index used, to check disjointness."""
        parts = [self.test, self.initiator, *self.verifiers]
        parts += [a for pair in self.contributors for a in pair]
        return np.concatenate(parts)


def split_parties(
    labels: npt.NDArray[np.int64],
    label_sets: Sequence[Sequence[int]],
    sizes: Mapping[str, int],
    num_verifiers: int,
    seed: int,
) -> PartySplit:
    """Split a dataset into the parties of a case study (all parts disjoint).

    Args:
        labels: the dataset's labels.
        label_sets: each contributor's classes (Table II / III).
        sizes: ``test``, ``initiator``, ``verifiers`` (total, shared out), ``contributor_train``
            and ``contributor_verify`` (per contributor).
        num_verifiers: how many verifiers share the verification data.
        seed: the random seed.

    Raises:
        ExperimentError: when the data is too small for the sizes.
    """
    n = int(labels.size)
    need = {k: int(sizes[k]) for k in ("test", "initiator", "verifiers")}
    per = int(sizes["contributor_train"]) + int(sizes["contributor_verify"])
    if num_verifiers < 1:
        raise ExperimentError("at least one verifier is needed")
    try:
        top = stratified_split(labels, {**need, "pool": n - sum(need.values())}, seed=seed)
        sets = [frozenset(int(c) for c in ls) for ls in label_sets]
        parts = label_subset_partition(top["pool"], labels, sets, per_part=per, seed=seed)
    except ValueError as e:
        raise ExperimentError(f"{n} digits cannot fill the split {dict(sizes)}: {e}") from None
    contributors = []
    for i, part in enumerate(parts):
        sub = stratified_split(labels[part], {"train": int(sizes["contributor_train"]),
                                              "verify": int(sizes["contributor_verify"])},
                               seed=seed + 1 + i)
        contributors.append((part[sub["train"]], part[sub["verify"]]))
    verifiers = [np.sort(v) for v in np.array_split(
        np.random.default_rng(seed).permutation(top["verifiers"]), num_verifiers)]
    out = PartySplit(top["test"], top["initiator"], verifiers, contributors,
                     [tuple(sorted(s)) for s in sets])
    idx = out.all_indices()
    if np.unique(idx).size != idx.size:  # a bug guard, never expected
        raise ExperimentError("parties overlap")
    return out


def train_options(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``train_model`` keyword arguments from the Hydra ``train`` node (batch size, learning
    rate, momentum, optional ``schedule`` and ``augment``)."""
    aug = train_cfg.get("augment") or {}
    return {
        "batch_size": int(train_cfg["batch_size"]),
        "lr": float(train_cfg["lr"]),
        "momentum": float(train_cfg["momentum"]),
        "lr_schedule": str(train_cfg.get("schedule", "constant")),
        "augment": Augment(**{str(k): float(v) for k, v in aug.items()}),
    }


def train_private(
    arch: str,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    train_cfg: Mapping[str, Any],
    epochs: int,
    seed: int,
) -> tuple[torch.nn.Module, float]:
    """A paper CNN trained locally with coopflower.training; returns it and seconds taken."""
    torch.manual_seed(seed)
    model = build_model(arch)
    res = train_model(model, images, labels, epochs=epochs, seed=seed, **train_options(train_cfg))
    model.eval()
    return model, res.seconds


def accuracy(
    model: torch.nn.Module,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    classes: Sequence[int] | None = None,
) -> float:
    """Accuracy in [0, 1] (optionally on the samples of ``classes`` only)."""
    return float(evaluate_model(model, images, labels, classes=classes).accuracy)


def meta_accuracy(meta: MetaModel, images: npt.NDArray[np.uint8],
                  labels: npt.NDArray[np.int64]) -> float:
    """MetaModel accuracy in [0, 1] on digits."""
    feats = compute_features(meta, images_to_tensor(images))
    with torch.no_grad():
        pred = meta.fuse_features(feats).argmax(1).numpy()
    return float((pred == labels).mean())


@dataclass(frozen=True)
class Votes:
    """Verifier votes on one private model: per-verifier accuracy and yes/no, the verdict."""

    accuracies: list[float]
    yes: list[bool]
    accepted: bool
    extra: dict[str, Any] = field(default_factory=dict)


def vote(accuracies: Sequence[float], criterion: float) -> Votes:
    """Each verifier votes yes when the accuracy meets the criterion; majority accepts."""
    yes = [bool(a >= criterion) for a in accuracies]
    return Votes([float(a) for a in accuracies], yes, sum(yes) * 2 > len(yes))


def fusion_config(cfg: Mapping[str, Any], strategy: str, seed: int) -> FusionConfig:
    """FusionConfig from the Hydra ``fusion`` node."""
    return FusionConfig(
        strategy="I" if strategy == "I" else "II",
        epochs_stage1=int(cfg["epochs_stage1"]),
        epochs_stage2=int(cfg["epochs_stage2"]),
        lr=float(cfg["lr"]),
        batch_size=int(cfg["batch_size"]),
        weight_decay=float(cfg["weight_decay"]),
        val_fraction=float(cfg["val_fraction"]),
        seed=seed,
        augment_copies=int(cfg.get("augment_copies", 0)),
        max_shift=int(cfg.get("max_shift", 2)),
        max_rotate=float(cfg.get("max_rotate", 0.0)),
        max_scale=float(cfg.get("max_scale", 0.0)),
        stage2_lr_factor=float(cfg.get("stage2_lr_factor", 1.0)),
    )


def fusion_seed(seed: int, repeat: int) -> int:
    """The fusion seed of repeat ``repeat`` (0, 1, ...) on split ``seed``; repeat 0 uses the
    split's own seed."""
    return seed + 100 * repeat


def pct(x: float) -> float:
    """A fraction as a percentage rounded to two decimals."""
    return round(100.0 * float(x), 2)

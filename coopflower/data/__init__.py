"""Data: MNIST loading (hub, local IDX files, or the shipped subset) and partitions."""

from coopflower.data.mnist import MnistData, load_mnist
from coopflower.data.partition import (
    PAPER_TABLE2_LABELS,
    PAPER_TABLE3_LABELS,
    dirichlet_partition,
    iid_partition,
    label_subset_partition,
    stratified_split,
)

__all__ = [
    "MnistData",
    "load_mnist",
    "PAPER_TABLE2_LABELS",
    "PAPER_TABLE3_LABELS",
    "dirichlet_partition",
    "iid_partition",
    "label_subset_partition",
    "stratified_split",
]

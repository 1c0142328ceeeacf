"""Data: MNIST loading (hub, local IDX files, or the shipped subset) and partitions."""

from coopflower.data.mnist import MnistData, load_mnist

__all__ = ["MnistData", "load_mnist"]

"""MNIST from the Hugging Face hub, when the machine is online and ``datasets`` is installed.

Optional: ``pip install coopflower[hub]`` adds ``datasets``. Without it, or with
``HF_HUB_OFFLINE=1``, :func:`load_from_hub` returns ``None`` at once and sends nothing, and
:func:`coopflower.data.mnist.load_mnist` falls back to the 5000 shipped digits.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

HUB_DATASET = "ylecun/mnist"


def hub_enabled() -> bool:
    """Whether a hub download may be tried: ``datasets`` is importable and neither
    ``HF_HUB_OFFLINE`` nor ``COOPFLOWER_OFFLINE`` is set to a true value."""
    for var in ("HF_HUB_OFFLINE", "COOPFLOWER_OFFLINE"):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            return False
    return importlib.util.find_spec("datasets") is not None


def images_to_array(images: Iterable[Any]) -> npt.NDArray[np.uint8]:
    """Stack 28x28 grey images (PIL images or arrays) into ``uint8 (N, 28, 28)``.

    Raises ``ValueError`` naming the first image of another shape or range.
    """
    out = []
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.shape != (28, 28):
            raise ValueError(f"hub image {i} has shape {arr.shape}, MNIST's is (28, 28)")
        if arr.dtype != np.uint8:
            if arr.min() < 0 or arr.max() > 255:
                raise ValueError(f"hub image {i} has values outside 0-255")
            arr = arr.astype(np.uint8)
        out.append(arr)
    return np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)


def load_from_hub() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """All 70000 digits (train then test) from the hub, or ``None`` when not enabled or not
    reachable (the caller falls back to local data)."""
    if not hub_enabled():
        return None
    try:
        import datasets

        splits = datasets.load_dataset(HUB_DATASET)
    except Exception:  # offline, hub down, dataset moved: the caller falls back
        return None
    images, labels = [], []
    for name in ("train", "test"):
        if name in splits:
            images.append(images_to_array(splits[name]["image"]))
            labels.append(np.asarray(splits[name]["label"], dtype=np.int64))
    if not images:
        return None
    return np.concatenate(images), np.concatenate(labels)

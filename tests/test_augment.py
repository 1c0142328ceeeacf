"""Random affine distortions for local training, and the cosine learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coopflower.augment import Augment
from coopflower.data.mnist import load_mnist
from coopflower.fusion import FusionConfig, FusionError, shift_images
from coopflower.models import build_model
from coopflower.training import TrainingError, evaluate_model, train_model


def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_mnist()
    order = np.random.default_rng(0).permutation(data.labels.size)
    return data.images[order], data.labels[order]


def test_inactive_augment_returns_the_batch_and_bad_ranges_raise() -> None:
    x = torch.rand(4, 1, 28, 28)
    assert Augment().apply(x, torch.Generator()) is x
    for bad in ({"shift": 9.0}, {"rotate": 46.0}, {"scale": 0.5}, {"shift": -1.0}):
        with pytest.raises(ValueError, match="out of range"):
            Augment(**bad)
    with pytest.raises(FusionError, match="max_rotate"):
        FusionConfig(max_rotate=60.0)


def test_distortions_are_seeded_per_image_and_keep_the_digit() -> None:
    x, _ = _digits()
    batch = torch.from_numpy(x[:64].astype(np.float32) / 255)[:, None]
    aug = Augment(shift=2, rotate=10, scale=0.1)
    a = aug.apply(batch, torch.Generator().manual_seed(3))
    b = aug.apply(batch, torch.Generator().manual_seed(3))
    c = aug.apply(batch, torch.Generator().manual_seed(4))
    assert a.shape == batch.shape and torch.equal(a, b) and not torch.equal(a, c)
    # each image moved differently, yet keeps about its ink (MNIST digits sit inside a
    # 20x20 box, so a 2-pixel shift and a 10% zoom lose little at the borders)
    moved = (a - batch).abs().flatten(1).sum(1)
    assert bool((moved > 1).all())
    ink = a.flatten(1).sum(1) / batch.flatten(1).sum(1)
    assert float(ink.min()) > 0.75 and float(ink.max()) < 1.3


def test_shift_augmentation_makes_a_model_robust_to_shifted_digits() -> None:
    """Trained on 300 digits, evaluated on 1000 others shifted by up to 3 pixels: the model
    trained with random shifts of the same size keeps far more of its accuracy."""
    x, y = _digits()
    test = torch.from_numpy(x[4000:].astype(np.float32) / 255)[:, None]
    shifted = shift_images(test, 3, seed=1)[:, 0].numpy()
    acc = {}
    for name, aug in (("plain", None), ("augmented", Augment(shift=3))):
        torch.manual_seed(0)
        model = build_model("table4")
        train_model(model, x[:300], y[:300], epochs=8, lr=0.05, seed=0, augment=aug)
        acc[name] = evaluate_model(model, shifted, y[4000:]).accuracy
    assert acc["augmented"] > acc["plain"] + 0.08, acc


def test_cosine_schedule_trains_and_bad_schedules_raise() -> None:
    x, y = _digits()
    weights = {}
    for schedule in ("constant", "cosine"):
        torch.manual_seed(0)
        model = build_model("table4")
        res = train_model(model, x[:300], y[:300], epochs=8, lr=0.05, seed=0,
                          lr_schedule=schedule)
        assert res.accuracy > 0.5, (schedule, res)
        weights[schedule] = model.out.weight.detach().clone()
    assert not torch.allclose(weights["constant"], weights["cosine"])  # the schedule is applied
    with pytest.raises(TrainingError, match="lr_schedule"):
        train_model(model, x[:10], y[:10], lr_schedule="step")

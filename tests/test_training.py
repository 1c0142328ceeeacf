"""Local train/evaluate loops on real MNIST digits (the shipped subset)."""

from __future__ import annotations

import numpy as np
import pytest

from coopflower.data.mnist import load_mnist
from coopflower.models import build_model
from coopflower.training import (
    TrainingError,
    evaluate_model,
    get_weights,
    set_weights,
    to_tensor,
    train_model,
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_mnist()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data))
    tr, te = idx[:1200], idx[1200:1700]
    return data.images[tr], data.labels[tr], data.images[te], data.labels[te]


def test_training_learns_real_digits(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    model = build_model("table4")
    before = evaluate_model(model, xte, yte)
    res = train_model(model, xtr, ytr, epochs=2, seed=1)
    after = evaluate_model(model, xte, yte)
    assert res.num_examples == 1200 and res.epochs == 2
    assert after.accuracy > 0.8 > before.accuracy
    assert after.loss < before.loss


def test_training_is_deterministic_for_a_seed(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    runs = []
    for seed in (3, 3, 4):
        import torch

        torch.manual_seed(0)
        model = build_model("table4")
        train_model(model, xtr[:200], ytr[:200], epochs=1, seed=seed)
        runs.append(get_weights(model))
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_weights_round_trip_and_class_filter(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    a, b = build_model("table4"), build_model("table4")
    train_model(a, xtr[:300], ytr[:300], epochs=1)
    set_weights(b, get_weights(a))
    ra, rb = evaluate_model(a, xte, yte), evaluate_model(b, xte, yte)
    assert ra == rb.__class__(ra.num_examples, rb.loss, rb.accuracy, ra.seconds)
    sub = evaluate_model(a, xte, yte, classes=[0, 1])
    assert sub.num_examples == int(np.isin(yte, [0, 1]).sum())
    with pytest.raises(TrainingError, match="missing"):
        set_weights(build_model("table1_c1"), get_weights(a))


def test_bad_inputs_raise_training_error() -> None:
    model = build_model("table4")
    with pytest.raises(TrainingError):
        to_tensor(np.zeros((2, 27, 28), dtype=np.uint8))
    with pytest.raises(TrainingError):
        train_model(model, np.zeros((2, 28, 28), np.uint8), np.array([0, 10]))
    with pytest.raises(TrainingError):
        train_model(model, np.zeros((2, 28, 28), np.uint8), np.array([0]))
    with pytest.raises(TrainingError):
        to_tensor(np.full((1, 28, 28), np.nan, dtype=np.float32))
    with pytest.raises(TrainingError):
        train_model(model, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))

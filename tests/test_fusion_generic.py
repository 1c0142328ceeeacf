"""Fusion of the user's own models of any architectures (no paper model, no MNIST): an MLP and
a small CNN with batch norm on scikit-learn's 8x8 digits (bundled, offline), cut at the heads
the test names; Strategies I and II, the aggregation step over named arrays plus an
architecture key, serialisation through the caller's factories, and the named errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.fusion import (
    FusionConfig,
    FusionError,
    MetaModel,
    PrivateModel,
    arrays_to_metamodel,
    blob_to_metamodel,
    fuse_models,
    make_fusion_aggregate,
    metamodel_to_arrays,
    metamodel_to_blob,
)


class MLP(nn.Module):
    """Flattens the image; head ``fc``."""

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU())
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.fc(self.body(x)), dim=1)  # runs after the head: cut off


class SmallCNN(nn.Module):
    """Convolutions with batch norm; head ``classifier`` (dropout then linear, so the feature
    size is measured, not read)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16 * 2 * 2, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.conv(x), 1))


FACTORIES: dict[str, Callable[[], nn.Module]] = {"mlp": MLP, "cnn": SmallCNN,
                                                 "mlp-wide": lambda: MLP(96)}
HEADS = {"mlp": "fc", "cnn": "classifier", "mlp-wide": "fc"}
Split = dict[str, tuple[torch.Tensor, torch.Tensor]]


@pytest.fixture(scope="module")
def digits() -> Split:
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]  # (1797, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cuts = {"a": perm[:450], "b": perm[450:900], "init": perm[900:1300], "test": perm[1300:]}
    return {k: (x[ix], y[ix]) for k, ix in cuts.items()}


def _train(arch: str, x: torch.Tensor, y: torch.Tensor, epochs: int = 15) -> nn.Module:
    torch.manual_seed(0)
    model = FACTORIES[arch]()
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            ix = perm[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[ix]), y[ix]).backward()
            opt.step()
    return model.eval()


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _private(digits: Split, archs: tuple[str, str], sets: tuple[tuple[int, ...], ...]
             ) -> list[PrivateModel]:
    out = []
    for part, arch, ls in zip(("a", "b"), archs, sets, strict=True):
        x, y = digits[part]
        keep = torch.isin(y, torch.tensor(ls)) if ls else torch.ones_like(y, dtype=torch.bool)
        out.append(PrivateModel(_train(arch, x[keep], y[keep]), HEADS[arch], ls, arch, part))
    return out


CFG = {"I": FusionConfig("I", epochs_stage1=15, epochs_stage2=15, weight_decay=1e-3),
       "II": FusionConfig("II", epochs_stage1=15, epochs_stage2=15, weight_decay=1e-3)}
HALVES = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))


@pytest.fixture(scope="module")
def full_view(digits: Split) -> list[PrivateModel]:
    """An MLP and a CNN, each trained on all ten classes of its own 450 digits."""
    return _private(digits, ("mlp", "cnn"), ((), ()))


@pytest.mark.parametrize("strategy", ["I", "II"])
def test_fusing_an_mlp_and_a_cnn_matches_the_best_of_them(
    digits: Split, full_view: list[PrivateModel], strategy: str
) -> None:
    xt, yt = digits["test"]
    private = [_acc(pm.model, xt, yt) for pm in full_view]
    res = fuse_models(full_view, *digits["init"], CFG[strategy])
    fused = _acc(res.meta, xt, yt)
    print(f"full view, Strategy {strategy}: private {private}, MetaModel {fused:.3f}")
    assert min(private) > 0.85
    assert fused >= max(private) - 0.02 and fused > 0.85  # chance: 0.10
    # the feature sizes come from the heads: a Linear's in_features, the CNN's measured
    assert res.meta.feature_dims == [48, 64] and res.metrics.hidden_dim == 20
    assert all(p.requires_grad for p in full_view[0].model.parameters())  # copied, not frozen


@pytest.mark.parametrize("strategy", ["I", "II"])
@pytest.mark.parametrize("archs", [("mlp", "cnn"), ("mlp", "mlp-wide")])
def test_fusing_partial_views_of_different_architectures_beats_each(
    digits: Split, archs: tuple[str, str], strategy: str
) -> None:
    xt, yt = digits["test"]
    pms = _private(digits, archs, HALVES)
    private = [_acc(pm.model, xt, yt) for pm in pms]
    res = fuse_models(pms, *digits["init"], CFG[strategy])
    fused = _acc(res.meta, xt, yt)
    print(f"partial views {archs}, Strategy {strategy}: private {private}, MetaModel {fused:.3f}")
    assert max(private) < 0.55  # each knows half the classes
    assert fused > 0.85 and fused > max(private) + 0.3
    assert res.metrics.hidden_dim == 10 and res.meta.label_sets == [list(s) for s in HALVES]


def test_round_trip_through_the_callers_factories(
    digits: Split, full_view: list[PrivateModel]
) -> None:
    res = fuse_models(full_view, *digits["init"], FusionConfig(epochs_stage1=2, epochs_stage2=2))
    arrays = metamodel_to_arrays(res.meta)
    # the user's own parameter names (batch-norm buffers included), never the head's
    assert "model1.state.conv.1.running_mean" in arrays
    assert arrays["model1.state.conv.1.num_batches_tracked"].dtype == np.int64
    assert "model0.state.body.1.weight" in arrays and "model0.state.fc.weight" not in arrays
    assert not any(k.startswith("model1.state.classifier") for k in arrays)
    assert bytes(arrays["model1.arch"]) == b"cnn" and bytes(arrays["model1.head"]) == b"classifier"
    blob = metamodel_to_blob(res.meta)
    again = blob_to_metamodel(blob, FACTORIES)
    xt, _ = digits["test"]
    with torch.no_grad():
        assert torch.equal(again(xt), res.meta(xt))
    assert metamodel_to_blob(again) == blob  # canonical bytes: the same CID
    assert isinstance(arrays_to_metamodel(arrays, FACTORIES), MetaModel)


def test_aggregate_fuses_named_arrays_by_architecture_key(
    digits: Split, full_view: list[PrivateModel]
) -> None:
    from coopflower.strategy.aggregate import AcceptedModel

    accepted = [AcceptedModel(bytes([i]), f"0x{i}", pm.arch, 450,
                              {k: v.numpy() for k, v in pm.model.state_dict().items()}, ls)
                for i, (pm, ls) in enumerate(zip(full_view, ((), (0, 1, 2)), strict=True))]
    agg = make_fusion_aggregate(*digits["init"], "II",
                                FusionConfig(epochs_stage1=2, epochs_stage2=2),
                                factories=FACTORIES, heads=HEADS)
    out = agg(accepted, None)
    assert out is not None and agg.last is not None and agg.produces_metamodel
    assert agg.last.meta.label_sets == [list(range(10)), [0, 1, 2]]
    meta = arrays_to_metamodel(unpack_arrays(pack_arrays(out))[0], FACTORIES)
    xt, _ = digits["test"]
    with torch.no_grad():
        assert torch.equal(meta(xt), agg.last.meta(xt))
    # one head name for every architecture, or found: the only Linear with d outputs
    found = make_fusion_aggregate(*digits["init"], "I", FusionConfig("I", 1, 1),
                                  factories=FACTORIES)
    assert found(accepted, None) is not None and found.last is not None
    assert [e.head for e in found.last.meta._extractors()] == ["fc", "classifier.1"]
    with pytest.raises(FusionError, match="factories"):
        make_fusion_aggregate(*digits["init"])(accepted, None)
    with pytest.raises(FusionError, match="no head layer named for architecture 'cnn'"):
        make_fusion_aggregate(*digits["init"], factories=FACTORIES,
                              heads={"mlp": "fc"})(accepted, None)


@pytest.fixture(scope="module")
def stored(digits: Split, full_view: list[PrivateModel]) -> tuple[dict[str, np.ndarray], bytes]:
    res = fuse_models(full_view, *digits["init"][:1], digits["init"][1],
                      FusionConfig(epochs_stage1=1, epochs_stage2=1))
    return metamodel_to_arrays(res.meta), metamodel_to_blob(res.meta)


def test_loading_names_every_mismatch(stored: tuple[dict[str, np.ndarray], bytes]) -> None:
    arrays, blob = stored
    cases: list[tuple[dict[str, np.ndarray], str]] = [
        ({"model1.arch": np.frombuffer(b"resnet", np.uint8).copy()},
         "unknown architecture key 'resnet'; the factories know"),
        ({"model0.head": np.frombuffer(b"fc9", np.uint8).copy()}, "no head layer named 'fc9'"),
        ({"model0.state.body.1.weight": np.zeros((48, 65), np.float32)},
         r"body.1.weight has shape \(48, 65\), the model needs \(48, 64\)"),
        ({"model1.state.conv.0.bias": np.full(8, np.nan, np.float32)}, "NaN or Inf"),
        ({"fusion.A": np.full_like(arrays["fusion.A"], np.nan)}, "fusion.A must be finite"),
        ({"model0.feature_dim": np.asarray([47], np.int64)}, "feature_dim 47 but its head"),
        ({"model1.state.conv.1.num_batches_tracked": np.zeros((), np.float32)},
         "dtype float32, the model needs torch.int64"),
    ]
    for change, message in cases:
        with pytest.raises(FusionError, match=message):
            arrays_to_metamodel({**arrays, **change}, FACTORIES)
    missing = {k: v for k, v in arrays.items() if k != "model0.state.body.1.bias"}
    with pytest.raises(FusionError, match=r"missing \['body.1.bias'\]"):
        arrays_to_metamodel(missing, FACTORIES)
    # the same key resolving to another width: the stored shapes no longer fit
    with pytest.raises(FusionError, match="model 0 .*head 'fc' takes 32 features"):
        blob_to_metamodel(blob, {**FACTORIES, "mlp": lambda: MLP(32)})
    with pytest.raises(FusionError, match=r"conv.0.weight has shape \(8, 1, 3, 3\)"):
        blob_to_metamodel(blob, {**FACTORIES, "cnn": lambda: SmallCNN(4)})
    with pytest.raises(FusionError, match="returned str"):
        blob_to_metamodel(blob, {**FACTORIES, "cnn": lambda: cast(nn.Module, "cnn")})
    with pytest.raises(FusionError, match="factories"):
        arrays_to_metamodel(arrays)


def test_fusing_names_bad_models_and_data(digits: Split, full_view: list[PrivateModel]) -> None:
    x, y = digits["init"]
    mlp = full_view[0].model
    cfg = FusionConfig(epochs_stage1=1, epochs_stage2=1)
    with pytest.raises(FusionError, match="no head layer named 'head'"):
        fuse_models([PrivateModel(mlp, "head")], x, y, cfg)

    class Skips(MLP):  # a head that forward never calls
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)[:, :10]

    with pytest.raises(FusionError, match="never called"):
        fuse_models([PrivateModel(Skips(), "fc")], x, y, cfg)
    with pytest.raises(FusionError, match="cannot tell its head"):
        fuse_models([(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Linear(10, 10)),
                      range(10))], x, y, cfg)
    unnamed = fuse_models([(mlp, range(10))], x, y, cfg)  # head found: the only 10-way Linear
    with pytest.raises(FusionError, match="no architecture key"):
        metamodel_to_blob(unnamed.meta)
    state = {k: v.clone() for k, v in mlp.state_dict().items()}
    state["fc.bias"][0] = float("nan")
    with pytest.raises(FusionError, match="fc.bias holds NaN"):
        PrivateModel.from_arrays("mlp", state, FACTORIES, "fc")
    with pytest.raises(FusionError, match="unknown architecture key 'vgg'"):
        PrivateModel.from_arrays("vgg", state, FACTORIES, "fc")
    with pytest.raises(FusionError, match="inputs contain NaN"):
        fuse_models(full_view, torch.full_like(x, float("nan")), y, cfg)
    with pytest.raises(FusionError, match="cnn: forward failed on inputs of shape"):
        fuse_models(full_view[1:], x.flatten(1), y, cfg)  # the CNN takes images
    with pytest.raises(FusionError, match="block_init='private' needs"):
        fuse_models(full_view, x, y, FusionConfig(epochs_stage1=1, block_init="private"))


def test_augmentation_takes_the_callers_transform(digits: Split) -> None:
    """Tabular inputs (the flattened digits) to an MLP: the default image shift does not apply,
    a caller's transform (here Gaussian noise) makes the copies."""
    x, y = digits["init"]
    flat = x.flatten(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cfg = FusionConfig(epochs_stage1=1, epochs_stage2=1, augment_copies=2, val_fraction=0.25)
    with pytest.raises(FusionError, match="pass transform="):
        fuse_models([PrivateModel(model, "2")], flat, y, cfg)

    def noise(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return batch + 0.05 * torch.randn(batch.shape, generator=gen)

    res = fuse_models([PrivateModel(model, "2")], flat, y, cfg, transform=noise)
    assert res.metrics.num_train == 300 * 3 and res.metrics.num_val == 100
    with pytest.raises(FusionError, match="need a transform"):
        fuse_models([PrivateModel(model, "2")], x, y,
                    FusionConfig(epochs_stage1=1, augment_copies=1, max_rotate=10))

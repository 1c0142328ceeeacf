"""The MetaModel on the paper's own models (its CNNs, head ``out``, rebuilt from factories the
test passes): initialisations (eqs. 9-10), the two stages of gradual fusion (eqs. 11-12),
Strategy I, serialisation, bad inputs, and fusion of real models on real MNIST digits. Fusion
of other architectures: tests/test_fusion_generic.py."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.data.mnist import load_mnist
from coopflower.data.partition import label_subset_partition, stratified_split
from coopflower.fusion import (
    FeatureExtractor,
    FusionConfig,
    FusionError,
    MetaModel,
    PrivateModel,
    arrays_to_metamodel,
    blob_to_metamodel,
    block_mask,
    compute_features,
    fit_metamodel,
    fuse_models,
    identity_mask,
    images_to_tensor,
    make_fusion_aggregate,
    metamodel_to_blob,
    shift_images,
)
from coopflower.models import MODEL_NAMES, build_model

LABELS = [(0, 1, 2, 3, 4), (0, 6, 7, 8, 9), (5, 6, 7, 8, 9)]
PAPER = {name: partial(build_model, name) for name in MODEL_NAMES}  # the app's factories
HEAD = "out"  # PaperCNN's output layer


def _models(names: tuple[str, ...] = ("table4", "table1_c1", "table4")) -> list[FeatureExtractor]:
    torch.manual_seed(0)
    return [FeatureExtractor(build_model(n), HEAD, n) for n in names]


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    data = load_mnist()
    return data.images, data.labels


def test_block_mask_is_block_diagonal() -> None:
    m = block_mask([3, 2], [(0, 1), (2, 3, 4)])
    assert m.shape == (5, 5)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0:3, 0:2] = True
    expected[3:5, 2:5] = True
    assert torch.equal(m, expected)


def test_identity_mask_maps_each_block_to_its_classes() -> None:
    m = identity_mask([(4, 0), (1, 2, 3, 4)], num_classes=5)
    # model 0 knows {0, 4}: its hidden units 0, 1 map to classes 0 and 4 (sorted)
    assert m.shape == (6, 5)
    assert m[0].nonzero().flatten().tolist() == [0]
    assert m[1].nonzero().flatten().tolist() == [4]
    assert [int(r.nonzero()) for r in m[2:]] == [1, 2, 3, 4]
    # all classes known by every model: eq. 10 exactly, stacked identities
    full = identity_mask([range(4), range(4)], num_classes=4)
    assert torch.equal(full, torch.cat([torch.eye(4, dtype=torch.bool)] * 2))


def test_strategy2_initialisation_eqs_9_10() -> None:
    models = _models()
    meta = MetaModel(models, LABELS, 10, "II", seed=3)
    dims = [m.feature_dim for m in models]
    assert meta.A.shape == (sum(dims), 15) and meta.B.shape == (15, 10)
    assert meta.hidden_dim == 15
    off = ~meta.a_mask
    assert torch.count_nonzero(meta.A[off]) == 0
    r = c = 0
    for fd, ls in zip(dims, LABELS, strict=True):
        block = meta.A[r : r + fd, c : c + len(ls)]
        assert torch.count_nonzero(block) == block.numel()  # random, dense
        assert float(block.detach().abs().max()) <= 1 / fd**0.5
        r, c = r + fd, c + len(ls)
    assert torch.equal(meta.B.detach(), identity_mask(LABELS, 10).float())


def test_strategy1_initialisation_is_dense_random() -> None:
    meta = MetaModel(_models(), LABELS, 10, "I", seed=3)
    assert torch.count_nonzero(meta.A) == meta.A.numel()
    assert torch.count_nonzero(meta.B) == meta.B.numel()
    other = MetaModel(_models(), LABELS, 10, "I", seed=4)
    assert not torch.equal(meta.A, other.A)


def test_gamma_zero_ignores_off_block_weights() -> None:
    meta = MetaModel(_models(), LABELS, 10, "II")
    fc = torch.randn(7, meta.A.shape[0])
    meta.set_gamma(0.0)
    before = meta.fuse_features(fc)
    with torch.no_grad():
        meta.A[~meta.a_mask] = 5.0
        meta.B[~meta.b_mask] = -3.0
    assert torch.equal(meta.fuse_features(fc), before)
    meta.set_gamma(1.0)
    assert not torch.allclose(meta.fuse_features(fc), before)
    with pytest.raises(FusionError):
        meta.set_gamma(0.5)


def _snapshot(meta: MetaModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in meta.state_dict().items()}


def test_stage_one_moves_only_diagonal_blocks_and_stage_two_moves_all() -> None:
    torch.manual_seed(0)
    meta = MetaModel(_models(("table4", "table4")), [(0, 1, 2), (2, 3)], 4, "II")
    n = 120
    fc = torch.randn(n, meta.A.shape[0])
    y = torch.randint(0, 4, (n,))
    before = _snapshot(meta)
    stage1 = FusionConfig(strategy="II", epochs_stage1=2, epochs_stage2=0, val_fraction=0.0)
    fit_metamodel(meta, fc, y, stage1)
    after1 = _snapshot(meta)
    a_off, b_off = ~meta.a_mask, ~meta.b_mask
    assert torch.equal(after1["A"][a_off], before["A"][a_off])  # exactly zero change
    assert torch.equal(after1["B"][b_off], before["B"][b_off])
    assert torch.count_nonzero(after1["A"][a_off]) == 0
    r = c = 0
    for fd, ls in zip(meta.feature_dims, meta.label_sets, strict=True):
        moved = after1["A"][r : r + fd, c : c + len(ls)] != before["A"][r : r + fd, c : c + len(ls)]
        assert moved.float().mean() > 0.9  # every diagonal block W_i is trained
        r, c = r + fd, c + len(ls)
    assert not torch.equal(after1["B"][meta.b_mask], before["B"][meta.b_mask])
    for k in before:  # frozen private models never move
        if k.startswith("extractors."):
            assert torch.equal(after1[k], before[k]), k

    # stage two (gamma = 1) trains all of A and B, extractors still frozen
    meta2 = MetaModel(_models(("table4", "table4")), [(0, 1, 2), (2, 3)], 4, "II")
    before2 = _snapshot(meta2)
    both = FusionConfig(strategy="II", epochs_stage1=1, epochs_stage2=2, val_fraction=0.0)
    metrics = fit_metamodel(meta2, fc, y, both)
    after2 = _snapshot(meta2)
    assert [h.stage for h in metrics.history] == [1, 2, 2]
    assert float(meta2.gamma) == 1.0 or metrics.best_stage == 1
    assert (after2["A"][a_off] != 0).float().mean() > 0.9
    assert (after2["B"][b_off] != 0).float().mean() > 0.9
    for k in before2:
        if k.startswith("extractors."):
            assert torch.equal(after2[k], before2[k]), k


def test_private_head_blocks_sum_the_private_logits() -> None:
    models = _models(("table4", "table4"))
    sets = [(0, 1, 2), (2, 3)]
    meta = MetaModel(models, sets, 4, "II")
    x = torch.rand(5, 1, 28, 28)
    fc = meta.concat_features(x)
    with torch.no_grad():
        meta.feature_mean.copy_(fc.mean(0))
        meta.feature_std.copy_(fc.std(0).clamp_min(1e-6))
    meta.init_blocks_from_private_heads()
    meta.set_gamma(0.0)
    with torch.no_grad():
        got = meta.fuse_features(fc)
        la, lb = models[0].model(x), models[1].model(x)
    want = torch.stack([la[:, 0], la[:, 1], la[:, 2] + lb[:, 2], lb[:, 3]], dim=1)
    assert torch.allclose(got, want, atol=1e-4)
    assert torch.count_nonzero(meta.A[~meta.a_mask]) == 0
    with pytest.raises(FusionError):
        FusionConfig(block_init="zeros")


def test_strategy1_trains_everything_from_the_start() -> None:
    torch.manual_seed(1)
    meta = MetaModel(_models(("table4",)), [(0, 1, 2)], 3, "I")
    fc = torch.randn(60, meta.A.shape[0])
    y = torch.randint(0, 3, (60,))
    before = _snapshot(meta)
    m = fit_metamodel(meta, fc, y, FusionConfig("I", 1, 1, val_fraction=0.0))
    assert [h.stage for h in m.history] == [2, 2]
    assert (meta.A != before["A"]).float().mean() > 0.9
    assert (meta.B != before["B"]).float().mean() > 0.9


def test_bad_inputs_raise_fusion_error() -> None:
    with pytest.raises(FusionError, match="no private models"):
        MetaModel([], [], 10)
    with pytest.raises(FusionError, match="label sets"):
        MetaModel(_models(("table4",)), LABELS, 10)
    with pytest.raises(FusionError, match="not all in"):
        MetaModel(_models(("table4",)), [(0, 12)], 10)
    with pytest.raises(FusionError, match="empty label set"):
        MetaModel(_models(("table4",)), [()], 10)
    with pytest.raises(FusionError, match="features"):
        MetaModel([torch.nn.Linear(3, 3)], [(0,)], 10)
    with pytest.raises(FusionError, match="strategy"):
        FusionConfig(strategy="III")  # type: ignore[arg-type]
    with pytest.raises(FusionError):
        FusionConfig(epochs_stage1=0, epochs_stage2=0)
    meta = MetaModel(_models(("table4",)), [(0, 1)], 10)
    with pytest.raises(FusionError, match="labels must be in"):
        fit_metamodel(meta, torch.randn(4, meta.A.shape[0]), torch.tensor([0, 1, 2, 11]),
                      FusionConfig(val_fraction=0.0))
    with pytest.raises(FusionError, match="NaN"):
        fit_metamodel(meta, torch.full((4, meta.A.shape[0]), float("nan")),
                      torch.tensor([0, 1, 0, 1]), FusionConfig())
    with pytest.raises(FusionError, match="images must be"):
        images_to_tensor(np.zeros((3, 28), np.uint8))
    good = build_model("table4").state_dict()
    with pytest.raises(FusionError, match="missing"):
        PrivateModel.from_arrays("table4", {k: v for k, v in good.items() if k != "out.bias"},
                                 PAPER, HEAD, (0,))
    with pytest.raises(FusionError, match="unknown architecture key 'resnet'"):
        PrivateModel.from_arrays("resnet", good, PAPER, HEAD, (0,))
    bad = dict(good)
    bad["out.bias"] = torch.zeros(3)
    with pytest.raises(FusionError, match="shape"):
        PrivateModel.from_arrays("table4", bad, PAPER, HEAD, (0,))


def test_blob_round_trip_and_malformed_blobs() -> None:
    meta = MetaModel(_models(("table4", "table1_c1")), [(0, 1), (1, 2, 3)], 10, "II", seed=5)
    with torch.no_grad():
        meta.A.add_(0.01)
        meta.feature_std.fill_(2.0)
    meta.set_gamma(0.0)
    blob = metamodel_to_blob(meta)
    again = blob_to_metamodel(blob, PAPER)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(meta(x), again(x))
    assert again.label_sets == [[0, 1], [1, 2, 3]] and again.strategy == "II"
    assert metamodel_to_blob(again) == blob  # canonical bytes, same CID
    with pytest.raises(FusionError):
        blob_to_metamodel(b"\x00" * 20, PAPER)
    arrays, md = unpack_arrays(blob)
    wrong = dict(arrays)
    wrong["fusion.A"] = arrays["fusion.A"][:-1]
    with pytest.raises(FusionError, match="fusion.A"):
        blob_to_metamodel(pack_arrays(wrong, md), PAPER)
    vgg = {**arrays, "model0.arch": np.frombuffer(b"vgg", np.uint8).copy()}
    with pytest.raises(FusionError, match="unknown architecture key 'vgg'"):
        blob_to_metamodel(pack_arrays(vgg, md), PAPER)
    with pytest.raises(FusionError, match="format"):
        blob_to_metamodel(pack_arrays(arrays, {**md, "format": "x"}), PAPER)
    with pytest.raises(FusionError, match="unexpected"):
        blob_to_metamodel(pack_arrays({**arrays, "evil": np.zeros(2, np.float32)}, md), PAPER)
    with pytest.raises(FusionError, match="factories"):
        blob_to_metamodel(blob)
    assert not any("table" in k for k in arrays)  # names: the user's, plus model<i>.<field>
    assert "model1.state.conv.0.weight" in arrays and "model1.state.out.weight" not in arrays


def test_fusion_aggregate_fits_the_strategy_step(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    from coopflower.strategy.aggregate import AcceptedModel

    images, labels = mnist
    torch.manual_seed(0)
    a, b = build_model("table4"), build_model("table1_c1")
    accepted = [
        AcceptedModel(b"c1", "0xa", "table4", 10, {k: v.numpy() for k, v in a.state_dict().items()},
                      (0, 1, 2, 3, 4)),
        AcceptedModel(b"c2", "0xb", "table1_c1", 10,
                      {k: v.numpy() for k, v in b.state_dict().items()}, ()),
    ]
    agg = make_fusion_aggregate(images[:60], labels[:60], "II",
                                FusionConfig(epochs_stage1=1, epochs_stage2=1),
                                factories=PAPER, heads=HEAD)
    out = agg(accepted, None)
    assert out is not None and agg.last is not None
    assert agg.last.metrics.hidden_dim == 15  # 5 known classes + all 10
    assert unpack_arrays(pack_arrays(out))[0].keys() == out.keys()  # the strategy packs it
    meta = arrays_to_metamodel(out, PAPER)
    assert meta.label_sets == [[0, 1, 2, 3, 4], list(range(10))]
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(meta(x), agg.last.meta(x))
    assert agg([], None) is None
    avg = make_fusion_aggregate(images[:60], labels[:60], "average")
    same = [accepted[0], AcceptedModel(b"c3", "0xc", "table4", 30, accepted[0].arrays, ())]
    averaged = avg(same, None)
    assert averaged is not None
    assert np.allclose(averaged["out.bias"], accepted[0].arrays["out.bias"])
    with pytest.raises(FusionError, match="mode"):
        make_fusion_aggregate(images[:60], labels[:60], "median")  # type: ignore[arg-type]


def test_shift_images_moves_digits_and_zero_fills() -> None:
    x = torch.zeros(50, 1, 28, 28)
    x[:, 0, 10:18, 10:18] = 1.0
    y = shift_images(x, 2, seed=0)
    assert torch.equal(y, shift_images(x, 2, seed=0))  # deterministic
    assert torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing cut off, nothing added
    assert not torch.equal(y, x)
    for img in y:
        rows, cols = img[0].nonzero(as_tuple=True)
        assert 8 <= int(rows.min()) <= 12 and 8 <= int(cols.min()) <= 12
    assert torch.equal(shift_images(x, 0, seed=0), x)


def test_augmentation_only_enlarges_the_training_share(
    mnist: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = mnist
    torch.manual_seed(0)
    pair = [(build_model("table4"), (0, 1, 2, 3, 4))]
    cfg = FusionConfig(epochs_stage1=1, epochs_stage2=1, augment_copies=3, val_fraction=0.25)
    res = fuse_models(pair, images[:80], labels[:80], cfg)
    assert res.metrics.num_val == 20 and res.metrics.num_train == 60 * 4
    with pytest.raises(FusionError):
        FusionConfig(augment_copies=-1)
    with pytest.raises(FusionError):
        FusionConfig(stage2_lr_factor=0.0)


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 50):
            ix = perm[i : i + 50]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[ix]), y[ix]).backward()
            opt.step()


def test_fusing_partial_view_models_beats_each_on_real_digits(
    mnist: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = mnist
    split = stratified_split(labels, {"pool": 1500, "initiator": 600, "test": 500}, seed=0)
    sets = [frozenset(range(5)), frozenset(range(5, 10))]
    parts = label_subset_partition(split["pool"], labels, sets, per_part=500, seed=0)
    private = []
    for part, ls in zip(parts, sets, strict=True):
        torch.manual_seed(0)
        model = build_model("table4")
        _train(model, images_to_tensor(images[part]), torch.from_numpy(labels[part]), 3)
        private.append(PrivateModel(model, HEAD, tuple(sorted(ls)), "table4"))
    x_test = images_to_tensor(images[split["test"]])
    y_test = torch.from_numpy(labels[split["test"]])
    single = []
    for pm in private:
        with torch.no_grad():
            single.append(float((pm.model(x_test).argmax(1) == y_test).float().mean()))
    cfg = FusionConfig(strategy="II", epochs_stage1=5, epochs_stage2=5)
    result = fuse_models(private, images[split["initiator"]], labels[split["initiator"]], cfg)
    feats = compute_features(result.meta, x_test)
    with torch.no_grad():
        fused = float((result.meta.fuse_features(feats).argmax(1) == y_test).float().mean())
    assert max(single) < 0.55  # each knows half the classes
    assert fused > 0.85 and fused > max(single) + 0.3
    m = result.metrics
    assert m.num_models == 2 and m.hidden_dim == 10 and m.num_train + m.num_val == 600
    assert len(m.history) == 10 and 0.8 < m.val_accuracy <= 1.0

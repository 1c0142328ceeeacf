"""IVHE on models that are not the paper's: a Linear-first MLP on inputs in [-1, 1], Flower's
PyTorch-template CNN (tests/apps/shapes32) on images normalised to [-1, 1], functional and
module variants of the supported operations; decryption by the model's own names."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coopflower.crypto import (
    CipherFormatError,
    EncryptedModel,
    InputRangeError,
    IVHEParams,
    Scaling,
    check_encryptable,
    decrypt_model,
    decrypt_outputs,
    encrypt_model,
    encrypted_accuracy,
    evaluate_encrypted,
    make_keys,
    strategies,
)

TASK = Path(__file__).resolve().parent / "apps" / "shapes32" / "imgapp" / "task.py"


def _task() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shapes32_task", TASK)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 32)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 32]), y[i : i + 32]).backward()
            opt.step()
    return model.eval()


def _tabular(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand((3, 12), generator=torch.Generator().manual_seed(99)) * 1.6 - 0.8
    y = torch.randint(0, 3, (n,), generator=g)
    x = (centres[y] + 0.25 * torch.randn((n, 12), generator=g)).clamp(-1, 1)
    return x, y


@pytest.fixture(scope="module")
def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, y = _tabular(400, 1)
    xt, yt = _tabular(200, 2)
    return _fit(MLP(), x, y, 5), xt, yt


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    task = _task()
    torch.manual_seed(0)
    x, y = task._images(5, 320)
    xt, yt = task._images(7, 120)
    return _fit(task.Net(), x, y, 3), xt, yt


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).double().mean())


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_mlp_on_inputs_in_minus_one_one(mlp, strategy) -> None:
    model, x, y = mlp
    assert float(x.min()) < -0.5  # negative inputs are part of the test
    sk, pk = make_keys(strategy, model, IVHEParams(), 3)
    assert pk.n_from == (1 if strategy == "elementwise" else 32)
    enc = encrypt_model(model, pk, strategy, input_range=(-1.0, 1.0), secret_key=sk,
                        metadata={"classes": "0,1,2"})
    enc = EncryptedModel.from_bytes(enc.to_bytes())
    assert enc.arch == "MLP" and enc.input_range == (-1.0, 1.0)
    with torch.no_grad():
        ref = model(x)
    scores = evaluate_encrypted(enc, MLP(), x)  # the verifier's own, untrained module
    assert scores.shape == (200, 3) and scores.dtype == torch.float64
    assert _agree(scores, ref) >= 0.97
    assert (scores - ref.double()).abs().max().item() < 0.05 * ref.abs().max().item()
    acc = encrypted_accuracy(enc, MLP(), x, y)
    assert abs(acc - float((ref.argmax(1) == y).double().mean())) <= 0.03 and acc > 0.8
    full = decrypt_outputs(strategies.cipher_forward(enc, x), sk)
    assert _agree(full, ref) >= 0.97


def test_decrypt_round_trip_uses_the_models_names(mlp) -> None:
    model, _, _ = mlp
    sk, pk = make_keys("elementwise", (32, 12), IVHEParams(), 4)
    enc = encrypt_model(model, pk, input_range=(-1.0, 1.0), p=2**7, q=1000)
    state = decrypt_model(EncryptedModel.from_bytes(enc.to_bytes()), sk)
    ref = model.state_dict()
    assert list(state) == list(ref)
    w = ref["fc1.weight"].double()
    assert torch.equal(state["fc1.weight"].double(), torch.round(w * 128) / 128)
    # the bias is on the grid of p times the input scale (q / max|range| = 1000)
    assert (state["fc1.bias"] - ref["fc1.bias"]).abs().max().item() <= 0.5 / (128 * 1000) + 1e-7
    assert torch.equal(state["fc2.weight"], ref["fc2.weight"])
    MLP().load_state_dict(state)
    # a state dict with a template encrypts the same way
    again = encrypt_model(model.state_dict(), pk, input_range=(-1.0, 1.0), template=MLP())
    assert torch.equal(decrypt_model(again, sk)["fc1.weight"], state["fc1.weight"])


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_template_cnn_encrypted_agrees_with_plain(cnn, strategy) -> None:
    model, x, y = cnn
    assert float(x.min()) < -0.9 and float(x.max()) > 0.9
    sk, pk = make_keys(strategy, model, IVHEParams(), 5)
    enc = encrypt_model(model, pk, strategy, input_range=(-1.0, 1.0), secret_key=sk)
    enc = EncryptedModel.from_bytes(enc.to_bytes())
    assert enc.graph.input_shape == (3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    net = _task().Net()
    scores = evaluate_encrypted(enc, net, x)
    assert _agree(scores, ref) >= 0.95
    plain_acc = float((ref.argmax(1) == y).double().mean())
    assert plain_acc > 0.5  # trained, not chance (4 classes)
    assert abs(encrypted_accuracy(enc, net, x, y) - plain_acc) <= 0.05
    state = decrypt_model(enc, sk)
    assert set(state) == set(model.state_dict())
    net.load_state_dict(state)
    with torch.no_grad():
        assert _agree(net(x), ref) >= 0.95


class Variants(nn.Module):
    """Strided padded conv without bias, functional pools, adaptive pooling, view(size(0), -1),
    dropout, log-softmax at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 8, 3, stride=2, padding=1, bias=False)
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding="same"), nn.Identity())
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Dropout(),
                                  nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.block(self.stem(x)), 2)
        x = F.avg_pool2d(torch.relu(x), 3, stride=1, padding=1)
        x = self.gap(x)
        x = x.view(x.size(0), -1)
        x = x.reshape(-1, 32)
        return F.log_softmax(self.head(x), dim=1)


def test_operation_variants_evaluate_like_the_float_model() -> None:
    torch.manual_seed(3)
    model = Variants().eval()
    x = torch.rand((40, 2, 16, 16)) * 4 - 2  # inputs in [-2, 2]
    check_encryptable(model, input_shape=(2, 16, 16))
    sk, pk = make_keys("elementwise", model, IVHEParams(), 6)
    enc = encrypt_model(model, pk, input_range=(-2.0, 2.0), input_shape=(2, 16, 16))
    enc = EncryptedModel.from_bytes(enc.to_bytes())
    kinds = [op.kind for op in enc.graph.ops]
    assert kinds.count("avgpool") == 2 and kinds[-1] == "softmax"
    with torch.no_grad():
        ref = model(x)
        logits = ref - torch.logsumexp(ref, 1, keepdim=True)  # log-softmax is idempotent
    scores = evaluate_encrypted(enc, Variants(), x)
    assert _agree(scores, logits) >= 0.95
    full = decrypt_outputs(strategies.cipher_forward(enc, x), sk)
    plain, scale = strategies.plain_int_forward(model, x, Scaling(), input_range=(-2.0, 2.0),
                                                structure=enc.graph)
    assert (full - plain.double() / scale).abs().max().item() < 1e-3
    assert "stem.bias" not in decrypt_model(enc, sk)


class _Bad(nn.Module):
    def __init__(self, body: nn.Module, fn: str = "") -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.body = body
        self.fc = nn.Linear(4 * 6 * 6, 2)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv(x)
        h = self.body(c)
        if self.fn == "sigmoid":
            h = torch.sigmoid(h)
        elif self.fn == "residual":
            h = h + c  # a skip connection
        elif self.fn == "tanh":
            h = h.tanh()
        return self.fc(h.flatten(1))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (_Bad(nn.BatchNorm2d(4)), "BatchNorm2d (module 'body')"),
        (_Bad(nn.Identity(), "sigmoid"), "sigmoid"),
        (_Bad(nn.Identity(), "tanh"), "tanh"),
        (_Bad(nn.Identity(), "residual"), "add"),
        (_Bad(nn.LeakyReLU()), "LeakyReLU"),
        (_Bad(nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
    ],
)
def test_unsupported_operations_are_refused_by_name(model, name) -> None:
    from coopflower.crypto import UnsupportedOperation

    with pytest.raises(UnsupportedOperation, match=re.escape(name)):
        check_encryptable(model, input_shape=(1, 8, 8))
    _, pk = make_keys("elementwise", 4, IVHEParams(), 0)
    with pytest.raises(UnsupportedOperation, match=re.escape(name)):
        encrypt_model(model, pk, input_shape=(1, 8, 8))


def test_grouped_conv_and_bad_pairwise_and_inputs_are_refused(mlp) -> None:
    from coopflower.crypto import IVHEError, UnsupportedOperation

    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 36, 2))
    with pytest.raises(UnsupportedOperation, match="groups=1"):
        check_encryptable(grouped, input_shape=(2, 8, 8))
    conv_then_linear = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2))
    with pytest.raises(IVHEError, match="pair-wise"):
        check_encryptable(conv_then_linear, "pairwise", input_shape=(1, 8, 8))
    model, x, _ = mlp
    _, pk = make_keys("elementwise", model, IVHEParams(), 1)
    enc = encrypt_model(model, pk, input_range=(-1.0, 1.0))
    with pytest.raises(InputRangeError, match="outside the declared"):
        evaluate_encrypted(enc, MLP(), x * 3)
    with pytest.raises(IVHEError, match="do not fit"):
        evaluate_encrypted(enc, MLP(), x[:, :5])
    other = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
    with pytest.raises(CipherFormatError, match="structure"):  # another architecture
        evaluate_encrypted(enc, other, x)

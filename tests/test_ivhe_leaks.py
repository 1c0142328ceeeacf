"""The leaks docs/security.md lists, shown on a real trained Table IV CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coopflower.crypto import IVHEError, IVHEParams, Scaling, decrypt_model, make_keys, strategies
from coopflower.crypto.attacks import first_component_estimate, recover_pairwise_key
from coopflower.data.mnist import load_mnist
from coopflower.models import build_model
from coopflower.training import train_model


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    data = load_mnist()
    idx = np.random.default_rng(3).permutation(len(data))
    torch.manual_seed(1)
    model = build_model("table4")
    train_model(model, data.images[idx[:800]], data.labels[idx[:800]], epochs=1, seed=1)
    model.eval()
    return model, data.images[idx[4500:4600]], data.labels[idx[4500:4600]]


def test_pairwise_pair_reveals_T_and_then_the_first_layer(trained) -> None:
    model, _, _ = trained
    sk, pk = make_keys("pairwise", "table4", IVHEParams(), 5)
    enc = strategies.encrypt_model(model, "table4", pk, "pairwise", Scaling(), secret_key=sk)
    stolen = recover_pairwise_key(enc)  # public material only
    assert np.array_equal(stolen.T, sk.T)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            decrypt_model(enc, stolen).values(), decrypt_model(enc, sk).values(), strict=True
        )
    )
    # W2 itself is in the clear: the first r columns of W2'
    w2 = model.state_dict()["conv.3.weight"].numpy()
    assert np.array_equal(enc.pair_weight[:, :32], np.rint(w2.astype(np.float64) * 128))


def test_rank_deficient_W2_does_not_determine_T(trained) -> None:
    model, _, _ = trained
    sk, pk = make_keys("pairwise", "table4", IVHEParams(), 6)
    enc = strategies.encrypt_model(model, "table4", pk, "pairwise", Scaling(), secret_key=sk)
    pw = enc.pair_weight.copy()
    pw[:, 1] = pw[:, 0]  # two identical input channels: W2 loses column rank
    pw[:, 32] = np.einsum("orab,r->oab", pw[:, :32], sk.T[:, 0])
    weak = strategies.EncryptedModel(**{**enc.__dict__, "pair_weight": pw})
    with pytest.raises(IVHEError, match="column rank"):
        recover_pairwise_key(weak)


@pytest.mark.parametrize("a_bound", [1, 8, 64])
def test_elementwise_first_component_is_w_times_the_weight(trained, a_bound) -> None:
    model, _, _ = trained
    _, pk = make_keys("elementwise", "table4", IVHEParams(a_bound=a_bound), 7)
    enc = strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
    est = first_component_estimate(enc)  # no key
    w0 = model.state_dict()["conv.0.weight"].numpy().astype(np.float64)
    truth = np.rint(w0 * 128) / 128
    assert np.mean(est == truth) >= 0.99


def test_large_randomisation_hides_the_first_component_but_breaks_relu(trained) -> None:
    model, x, y = trained
    _, pk = make_keys("elementwise", "table4", IVHEParams(a_bound=2**26), 7)
    enc = strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
    est = first_component_estimate(enc)
    truth = np.rint(model.state_dict()["conv.0.weight"].numpy().astype(np.float64) * 128) / 128
    assert np.mean(est == truth) < 0.5


def test_key_holder_decrypts_every_model_and_evaluation_is_model_access(trained) -> None:
    model, x, _ = trained
    sk, pk = make_keys("elementwise", "table4", IVHEParams(), 8)
    # any model under the initiator's key decrypts, accepted or not (no acceptance check exists)
    other = build_model("table4")
    for m in (model, other):
        enc = strategies.encrypt_model(m, "table4", pk, "elementwise", Scaling())
        state = decrypt_model(enc, sk)
        assert torch.equal(state["out.weight"], m.state_dict()["out.weight"])
    # a verifier's public pass labels any input like the plaintext model does
    enc = strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
    pred = strategies.cipher_forward(enc, x).public_logits().argmax(1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:, None].astype(np.float32) / 255)).argmax(1)
    assert (pred == ref).double().mean().item() >= 0.97

"""The paper's element-wise and matrix-pair-wise strategies on a real trained Table IV CNN and
real MNIST digits: exactness where ivhe.md says exact, closeness where it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coopflower.crypto import (
    CipherFormatError,
    EncryptedModel,
    ErrorBudgetExceeded,
    IntegerOverflow,
    IVHEParams,
    Scaling,
    decrypt_model,
    encrypt_model,
    evaluate_encrypted,
    ivhe,
    make_keys,
    public_key_from_bytes,
    public_key_to_bytes,
    secret_key_from_bytes,
    secret_key_to_bytes,
    strategies,
)
from coopflower.crypto.network import compile_layers, execute, layers_of, quantise_images
from coopflower.data.mnist import load_mnist
from coopflower.models import build_model
from coopflower.training import train_model

PARAMS = IVHEParams()  # the documented defaults: w = 2^28, l = 48


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    data = load_mnist()
    idx = np.random.default_rng(7).permutation(len(data))
    torch.manual_seed(0)
    model = build_model("table4")
    train_model(model, data.images[idx[:1200]], data.labels[idx[:1200]], epochs=1, seed=0)
    model.eval()
    return model, data.images[idx[4000:4200]], data.labels[idx[4000:4200]]


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[ivhe.SecretKey, ivhe.SwitchingKey]]:
    return {s: make_keys(s, "table4", PARAMS, 11) for s in strategies.STRATEGIES}


def test_plain_integer_network_tracks_float(trained) -> None:
    model, x, _ = trained
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:, None].astype(np.float32) / 255))
    for p in (2**5, 2**7):
        out, scale = strategies.plain_int_forward(model, x, Scaling(p=p))
        logits = out.double() / scale
        agree = (logits.argmax(1) == ref.argmax(1)).double().mean().item()
        assert agree >= 0.97, (p, agree)
        assert (logits - ref.double()).abs().max().item() < (2.0 if p == 32 else 0.6)


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_encrypted_preactivations_decrypt_exactly(trained, keys, strategy) -> None:
    model, x, _ = trained
    sk, pk = keys[strategy]
    sc = Scaling(p=2**7)
    enc = strategies.encrypt_model(model, "table4", pk, strategy, sc, secret_key=sk)
    u = quantise_images(x[:20], sc.q)
    first = layers_of(model)[0]
    w_int = torch.from_numpy(np.rint(first.weight.astype(np.float64) * sc.p).astype(np.int64))
    b_int = torch.from_numpy(np.rint(first.bias.astype(np.float64) * sc.p * sc.q).astype(np.int64))
    want = F.conv2d(u, w_int, padding="same") + b_int.view(1, -1, 1, 1)
    pre = strategies.encrypted_preactivations(enc, u)
    if strategy == "elementwise":
        vals = ivhe.decrypt_exact_values(sk, pre.numpy())[..., 0]
    else:
        vals = ivhe.decrypt_exact_values(sk, np.moveaxis(pre.numpy(), 1, -1))
        vals = np.moveaxis(vals, -1, 1)
    err = vals - PARAMS.w * want.numpy()
    bound = 25 * sc.q * enc.enc_err + enc.enc_err
    assert np.abs(err).max() <= bound < PARAMS.w // 2
    decrypted = (vals + PARAMS.w // 2) // PARAMS.w
    assert np.array_equal(decrypted, want.numpy())


def test_pairwise_pair_evaluates_both_layers_without_decryption(trained, keys) -> None:
    """W2' (C1 u) = W2 (S' C1 u) = W2 (w W1 u + e): exact with no nonlinearity between."""
    model, x, _ = trained
    sk, pk = keys["pairwise"]
    sc = Scaling(p=2**7)
    enc = strategies.encrypt_model(model, "table4", pk, "pairwise", sc, secret_key=sk)
    u = quantise_images(x[:4], sc.q)
    h = strategies.encrypted_preactivations(enc, u)  # (N, 33, 28, 28)
    h = h // 2**20  # keep int64 headroom: any integer tensor works for the identity
    pair = F.conv2d(h, torch.from_numpy(enc.pair_weight), padding="same")
    S = torch.from_numpy(sk.S)  # (32, 33)
    w2_int = torch.from_numpy(enc.pair_weight[:, :32].copy())
    decrypted_h = torch.einsum("rs,nshw->nrhw", S, h)
    assert torch.equal(pair, F.conv2d(decrypted_h, w2_int, padding="same"))


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
@pytest.mark.parametrize("p", [2**5, 2**7])
def test_cipherspace_forward_matches_plaintext(trained, keys, strategy, p) -> None:
    model, x, y = trained
    sk, pk = keys[strategy]
    sc = Scaling(p=p)
    enc = strategies.encrypt_model(model, "table4", pk, strategy, sc, secret_key=sk)
    plain, plain_scale = strategies.plain_int_forward(model, x, sc)
    out = strategies.cipher_forward(enc, x)
    logits = strategies.decrypt_outputs(out, sk)
    ref = plain.double() / plain_scale
    agree = (logits.argmax(1) == ref.argmax(1)).double().mean().item()
    assert agree >= 0.99
    assert (logits - ref).abs().max().item() < 0.05 * ref.abs().max().item()
    acc_plain = float((ref.argmax(1).numpy() == y).mean())
    acc_verifier = evaluate_encrypted(enc, x, y)
    assert abs(acc_verifier - acc_plain) <= 0.02
    assert acc_plain > 0.7  # a real trained model, not chance


def test_relu_on_components_error_is_bounded_by_t_times_second(trained, keys) -> None:
    """ivhe.md: ReLU per component errs by at most t |z2| per unit; larger randomisation
    makes it worse (the trade-off the experiment plots)."""
    model, x, _ = trained
    u = quantise_images(x[:10], 1000)
    worst = []
    for a_bound in (8, 2**22):
        params = IVHEParams(a_bound=a_bound)
        sk, pk = make_keys("elementwise", "table4", params, 3)
        enc = strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
        z = strategies.encrypted_preactivations(enc, u).numpy()
        t = int(sk.T[0, 0])
        z1, z2 = z[..., 0], z[..., 1]
        exact = np.maximum(z1 + t * z2, 0)
        approx = np.maximum(z1, 0) + t * np.maximum(z2, 0)
        gap = np.abs(approx - exact)
        assert (gap <= t * np.abs(z2)).all()
        worst.append(gap.max() / np.abs(z1 + t * z2).max())
    assert worst[0] < 1e-6 < worst[1]


def test_decrypt_model_and_interface_round_trip(trained, keys) -> None:
    model, x, y = trained
    sk, pk = keys["elementwise"]
    pk2 = public_key_from_bytes(public_key_to_bytes(pk))
    sk2 = secret_key_from_bytes(secret_key_to_bytes(sk))
    assert np.array_equal(pk2.M, pk.M) and np.array_equal(sk2.T, sk.T)
    enc = encrypt_model(model, pk2, "elementwise", p=2**7, q=1000, metadata={"classes": "0,1"})
    blob = enc.to_bytes()
    back = EncryptedModel.from_bytes(blob)
    assert back.to_bytes() == blob and back.metadata == {"classes": "0,1"}
    # a task over a label subset: the verifier counts only those digits
    acc01 = evaluate_encrypted(back, x, y, classes=[0, 1])
    keep = np.isin(y, [0, 1])
    assert acc01 == evaluate_encrypted(back, x[keep], y[keep])
    state = decrypt_model(back, sk2)
    ref = model.state_dict()
    w0 = ref["conv.0.weight"].numpy()
    want0 = (np.rint(w0 * 128) / 128).astype(np.float32)
    assert np.array_equal(state["conv.0.weight"].numpy(), want0)
    for k in ("conv.3.weight", "out.bias"):
        assert torch.equal(state[k], ref[k])
    m2 = build_model("table4")
    m2.load_state_dict(state)
    for strategy in strategies.STRATEGIES:
        s_k, p_k = keys[strategy]
        e = encrypt_model(model, p_k, strategy, secret_key=s_k)
        st = decrypt_model(EncryptedModel.from_bytes(e.to_bytes()), s_k)
        assert set(st) == set(ref)


def test_malformed_blobs_and_keys_are_clear_errors(trained, keys) -> None:
    model, _, _ = trained
    sk, pk = keys["elementwise"]
    enc = encrypt_model(model, pk)
    blob = enc.to_bytes()
    for bad in (b"", b"garbage" * 10, blob[:-5], blob[: len(blob) // 2]):
        with pytest.raises(CipherFormatError):
            EncryptedModel.from_bytes(bad)
    with pytest.raises(CipherFormatError):
        EncryptedModel.from_bytes(public_key_to_bytes(pk))
    with pytest.raises(CipherFormatError):
        public_key_from_bytes(blob)
    # wrong shapes and dtypes are refused when the object is built
    with pytest.raises(CipherFormatError):
        EncryptedModel(**{**enc.__dict__, "enc_weight": enc.enc_weight[:, :, :, :, :1]})
    with pytest.raises(CipherFormatError):
        EncryptedModel(**{**enc.__dict__, "enc_bias": enc.enc_bias.astype(np.int32)})
    with pytest.raises(CipherFormatError):
        EncryptedModel(**{**enc.__dict__, "strategy": "magic"})
    with pytest.raises(ValueError):  # pair-wise without the secret is refused plainly
        encrypt_model(model, keys["pairwise"][1], "pairwise")


def test_parameters_past_the_budget_are_refused(trained) -> None:
    model, _, _ = trained
    _, pk = make_keys("elementwise", "table4", IVHEParams(w=2**16, l=40), 0)
    with pytest.raises(ErrorBudgetExceeded, match="w/2"):
        strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
    _, pk = make_keys("elementwise", "table4", IVHEParams(w=2**28, l=30), 0)
    with pytest.raises(IntegerOverflow, match="l bits"):
        strategies.encrypt_model(model, "table4", pk, "elementwise", Scaling())
    # a fixed-point plan whose worst case leaves int64 is refused, never wrapped
    layers = layers_of(model)
    with pytest.raises(IntegerOverflow):
        compile_layers(layers, 1000.0, 1000, Scaling(p=2**20, act_bits=40))
    plan = compile_layers(layers, 1000.0, 1000, Scaling())
    assert execute(plan, quantise_images(np.zeros((1, 28, 28), np.uint8), 1000)).shape == (1, 10)

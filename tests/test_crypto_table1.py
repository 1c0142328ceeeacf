"""Both strategies on the first layer of the paper's Table I CNNs (max pooling, hidden layer,
even kernels), and ciphertext blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coopflower.crypto import (
    CipherFormatError,
    IVHEParams,
    Scaling,
    ciphertext_from_bytes,
    ciphertext_to_bytes,
    ivhe,
    strategies,
)
from coopflower.data.mnist import load_mnist
from coopflower.models import build_model


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("arch", ["table1_c1", "table1_c2", "table1_c3"])
@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_table1_first_layer_encrypts_and_evaluates(arch, strategy) -> None:
    x = load_mnist().images[:12]
    torch.manual_seed(0)
    model = build_model(arch).eval()
    sk, pk = strategies.make_keys(strategy, arch, IVHEParams(), 1)
    enc = strategies.encrypt_model(model, arch, pk, strategy, Scaling(), secret_key=sk)
    enc = strategies.EncryptedModel.from_bytes(enc.to_bytes())
    dec = strategies.decrypt_outputs(strategies.cipher_forward(enc, x), sk)
    plain, scale = strategies.plain_int_forward(model, x, Scaling())
    ref = plain.double() / scale
    # max pooling per component is not exact in general; with the default small
    # randomisation the gap is far below the logits' size
    assert (dec - ref).abs().max().item() <= 1e-3 * ref.abs().max().item()
    state = strategies.decrypt_model(enc, sk)
    assert set(state) == set(model.state_dict())


def test_ciphertext_blob_round_trip_and_validation() -> None:
    params = IVHEParams(w=2**20, l=40)
    sk, pk = ivhe.keygen(3, params, 0)
    ct = ivhe.encrypt(pk, np.array([[1, -2, 3], [4, 5, -6]]))
    back, p2 = ciphertext_from_bytes(ciphertext_to_bytes(ct, params))
    assert p2 == params and back.err == ct.err
    assert np.array_equal(ivhe.decrypt(sk, back), [[1, -2, 3], [4, 5, -6]])
    bad = ivhe.Ciphertext(ct.c, params.w, 0)  # a declared error already past w/2
    with pytest.raises(CipherFormatError, match="error bound"):
        ciphertext_from_bytes(ciphertext_to_bytes(bad, params))
    with pytest.raises(CipherFormatError):
        ciphertext_from_bytes(b"\x00" * 40)

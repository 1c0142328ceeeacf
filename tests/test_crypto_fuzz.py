"""Malformed encrypted-model and key blobs only ever raise CipherFormatError (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coopflower.blob import pack_arrays
from coopflower.crypto import (
    CipherFormatError,
    EncryptedModel,
    IVHEParams,
    encrypt_model,
    make_keys,
    public_key_from_bytes,
    public_key_to_bytes,
)
from coopflower.models import build_model

_SK, _PK = make_keys("elementwise", "table4", IVHEParams(), 0)
with torch.random.fork_rng():  # no global RNG side effect at collection time
    torch.manual_seed(0)
    _ENC = encrypt_model(build_model("table4"), _PK)
BLOB = _ENC.to_bytes()
PK_BLOB = public_key_to_bytes(_PK)


def _parse(data: bytes) -> None:
    try:
        EncryptedModel.from_bytes(data)
    except CipherFormatError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.tuples(st.integers(0, len(BLOB) - 1), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, len(BLOB)),
)
def test_mutated_model_blobs_raise_only_cipher_format_errors(cuts, cut) -> None:
    data = bytearray(BLOB)
    for pos, val in cuts:
        data[pos] = val
    _parse(bytes(data[:cut]) if cut % 3 == 0 else bytes(data))


@settings(max_examples=150, deadline=None)
@given(
    meta=st.dictionaries(
        st.sampled_from(
            [
                "format",
                "strategy",
                "arch",
                "p",
                "q",
                "act_bits",
                "enc_err",
                "ivhe.w",
                "ivhe.l",
                "ivhe.a_bound",
                "ivhe.e_bound",
                "ivhe.t_bound",
                "ivhe.nonnegative",
            ]
        ),
        st.one_of(
            st.sampled_from(
                [
                    "0",
                    "1",
                    "-5",
                    "2",
                    "99999999999999999999",
                    "table4",
                    "pairwise",
                    "elementwise",
                    "coopflower-ivhe-model/1",
                    "x",
                ]
            ),
            st.text(max_size=5),
        ),
    )
)
def test_bad_metadata_raises_only_cipher_format_errors(meta) -> None:
    arrays = {"enc_weight": _ENC.enc_weight, "enc_bias": _ENC.enc_bias}
    arrays.update({f"plain/{k}": v for k, v in _ENC.plain.items()})
    _parse(pack_arrays(arrays, meta))


@settings(max_examples=100, deadline=None)
@given(pos=st.integers(0, len(PK_BLOB) - 1), val=st.integers(0, 255))
def test_mutated_public_keys_raise_only_cipher_format_errors(pos, val) -> None:
    data = bytearray(PK_BLOB)
    data[pos] = val
    try:
        public_key_from_bytes(bytes(data))
    except CipherFormatError:
        pass


def test_declared_error_past_budget_is_refused_on_load() -> None:
    meta_err = _ENC.params.w  # far past what the first layer can absorb
    bad = EncryptedModel.__new__(EncryptedModel)
    object.__setattr__(bad, "__dict__", {**_ENC.__dict__, "enc_err": meta_err})
    with pytest.raises(CipherFormatError, match="budget|w/2"):
        EncryptedModel.from_bytes(bad.to_bytes())
    assert np.array_equal(EncryptedModel.from_bytes(BLOB).enc_weight, _ENC.enc_weight)

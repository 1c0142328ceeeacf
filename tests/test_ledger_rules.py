"""Pure ledger logic: EIP-712 signing and recovery, verifier assignment, tally, settlement."""

from __future__ import annotations

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from coopflower.ledger import (
    Eip712Domain,
    LedgerError,
    SignatureError,
    Status,
    assign_verifiers,
    model_digest,
    recover_registration,
    recover_submission,
    recover_vote,
    round_seed,
    settle_submission,
    sign_registration,
    sign_submission,
    sign_vote,
    tally,
)
from coopflower.ledger.eip712 import (
    compact_signature,
    registration_typed_data,
    signable,
    submission_typed_data,
    typed_data_digest,
    vote_typed_data,
)
from coopflower.ledger.rules import PenaltyReason, assign_verifier_indices

DOMAIN = Eip712Domain(1337, "0x" + "ab" * 20)
KEY = "0x" + "11" * 32
ADDR = Account.from_key(KEY).address
CID = b"\x01\x55\x12\x20" + bytes(range(32))
HASH = b"\x42" * 32


def test_signatures_recover_to_their_signer() -> None:
    reg = sign_registration(KEY, DOMAIN, 3, 10**15)
    assert reg.participant == ADDR and recover_registration(DOMAIN, reg) == ADDR
    sub = sign_submission(KEY, DOMAIN, 3, 2, CID, HASH)
    assert recover_submission(DOMAIN, sub) == ADDR
    vote = sign_vote(KEY, DOMAIN, 3, 2, 7, sub.model_digest, True, 9100)
    assert recover_vote(DOMAIN, vote) == ADDR


def test_any_changed_field_changes_the_signer() -> None:
    sub = sign_submission(KEY, DOMAIN, 3, 2, CID, HASH)
    for change in (
        {"round": 3},
        {"task_id": 4},
        {"cid": CID + b"\x00"},
        {"content_hash": b"\x43" * 32},
    ):
        moved = type(sub)(**{**sub.__dict__, **change})
        assert recover_submission(DOMAIN, moved) != ADDR
    other_domain = Eip712Domain(1338, DOMAIN.verifying_contract)
    assert recover_submission(other_domain, sub) != ADDR
    vote = sign_vote(KEY, DOMAIN, 3, 2, 7, sub.model_digest, True)
    flipped = type(vote)(**{**vote.__dict__, "accept": False})
    assert recover_vote(DOMAIN, flipped) != ADDR


def test_bad_inputs_raise_signature_error() -> None:
    with pytest.raises(SignatureError, match="cid"):
        sign_submission(KEY, DOMAIN, 1, 1, b"", HASH)
    with pytest.raises(SignatureError, match="cid"):
        sign_submission(KEY, DOMAIN, 1, 1, b"x" * 65, HASH)
    with pytest.raises(SignatureError, match="content_hash"):
        model_digest(CID, b"short")
    with pytest.raises(SignatureError, match="65 bytes"):
        compact_signature(b"\x00" * 64)
    sig = sign_submission(KEY, DOMAIN, 1, 1, CID, HASH).signature
    high_s = sig[:32] + (2**256 - 1 - 5).to_bytes(32, "big") + sig[64:]
    with pytest.raises(SignatureError, match="upper half"):
        compact_signature(high_s)
    with pytest.raises(SignatureError, match="v must be"):
        compact_signature(sig[:64] + b"\x05")
    with pytest.raises(SignatureError, match="uint16"):
        sign_vote(KEY, DOMAIN, 1, 1, 0, HASH, True, 70000)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32).filter(
        lambda k: 0 < int.from_bytes(k, "big") < 2**256 - 2**129),
    chain_id=st.integers(1, 2**64),
    task=st.integers(0, 2**256 - 1),
    rnd=st.integers(0, 2**32 - 1),
    cid=st.binary(min_size=1, max_size=64),
    digest=st.binary(min_size=32, max_size=32),
    accept=st.booleans(),
    score=st.integers(0, 2**16 - 1),
    deposit=st.integers(0, 2**128 - 1),
)
def test_own_digest_and_signature_equal_eth_accounts(
    key: bytes, chain_id: int, task: int, rnd: int, cid: bytes, digest: bytes, accept: bool,
    score: int, deposit: int,
) -> None:
    """The fast EIP-712 path (own struct hashing, libsecp256k1) gives eth_account's exact
    digest and signature bytes for every message type, and recovers the same signer."""
    acct = Account.from_key(key)
    domain = Eip712Domain(chain_id, "0x" + digest[:20].hex())
    messages = [
        (registration_typed_data(domain, task, acct.address, deposit),
         sign_registration(key, domain, task, deposit).signature),
        (submission_typed_data(domain, task, rnd, acct.address, cid, digest),
         sign_submission(key, domain, task, rnd, cid, digest).signature),
        (vote_typed_data(domain, task, rnd, rnd, digest, acct.address, accept, score),
         sign_vote(key, domain, task, rnd, rnd, digest, accept, score).signature),
    ]
    for message, ours in messages:
        ref = acct.sign_message(signable(message))
        assert typed_data_digest(message) == bytes(ref.message_hash)
        assert ours == bytes(ref.signature)
        assert Account.recover_message(signable(message), signature=ours) == acct.address


def test_digest_rejects_values_outside_their_type() -> None:
    msg = vote_typed_data(DOMAIN, 1, 1, 1, HASH, ADDR, True, 1)
    msg["message"]["round"] = 2**32
    with pytest.raises(SignatureError, match="uint32"):
        typed_data_digest(msg)
    msg["types"]["Vote"] = [{"name": "round", "type": "int8"}]
    with pytest.raises(SignatureError, match="int8"):
        typed_data_digest(msg)
    with pytest.raises(SignatureError, match="32 bytes"):
        sign_vote(b"\x01" * 31, DOMAIN, 1, 1, 1, HASH, True)


def test_compact_signature_is_eip2098() -> None:
    sig = sign_submission(KEY, DOMAIN, 1, 1, CID, HASH).signature
    r, vs = compact_signature(sig)
    assert r == sig[:32]
    v = int.from_bytes(vs, "big") >> 255
    assert v == sig[64] - 27
    assert (int.from_bytes(vs, "big") & ((1 << 255) - 1)).to_bytes(32, "big") == sig[32:64]


@settings(max_examples=200, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    sub=st.integers(0, 2**32 - 1),
    pool=st.integers(2, 60),
    data=st.data(),
)
def test_assignment_is_k_distinct_others(
    seed: bytes, sub: int, pool: int, data: st.DataObject
) -> None:
    exclude = data.draw(st.integers(0, pool - 1))
    k = data.draw(st.integers(1, min(16, pool - 1)))
    idx = assign_verifier_indices(seed, sub, pool, k, exclude)
    assert len(idx) == k == len(set(idx))
    assert exclude not in idx and all(0 <= i < pool for i in idx)
    assert idx == assign_verifier_indices(seed, sub, pool, k, exclude)  # reproducible


def test_assignment_by_address_and_errors() -> None:
    people = [Account.from_key("0x" + f"{i + 1:064x}").address for i in range(6)]
    seed = round_seed(b"\x09" * 32, 1, 1)
    got = assign_verifiers(seed, 0, people, 3, exclude=people[2].lower())
    assert people[2] not in got and len(set(got)) == 3 and set(got) <= set(people)
    with pytest.raises(LedgerError, match="cannot draw"):
        assign_verifier_indices(seed, 0, 4, 4, exclude=0)
    with pytest.raises(LedgerError, match="32 bytes"):
        round_seed(b"\x00", 1, 1)


def test_assignment_spreads_over_the_pool() -> None:
    seed = round_seed(b"\x01" * 32, 7, 3)
    counts = [0] * 10
    for s in range(2000):
        for i in assign_verifier_indices(seed, s, 10, 3, exclude=s % 10):
            counts[i] += 1
    # each index is picked about 2000 * 3 / 10 = 600 times
    assert all(480 < c < 720 for c in counts), counts


@given(cast=st.integers(0, 16), data=st.data())
def test_tally_is_majority_of_votes_cast_with_quorum(cast: int, data: st.DataObject) -> None:
    yes = data.draw(st.integers(0, cast))
    quorum = data.draw(st.integers(1, 16))
    t = tally(yes, cast, quorum)
    assert t.accepted == (cast >= quorum and 2 * yes > cast)
    assert (t.status is Status.NO_QUORUM) == (cast < quorum)
    assert t.majority == (cast >= quorum and 2 * yes != cast)


def test_tally_rejects_nonsense() -> None:
    with pytest.raises(LedgerError):
        tally(3, 2, 1)
    with pytest.raises(LedgerError):
        tally(0, 0, 0)


def test_settlement_rules() -> None:
    s = settle_submission([True, True, False], 2, 100, 10, 7, 5)
    assert s.tally.accepted and s.contributor_reward == 100
    assert s.fees == {0: 10, 1: 10} and s.penalties == {2: (PenaltyReason.WRONG_VOTE, 7)}
    s = settle_submission([True, False, None], 2, 100, 10, 7, 5)  # tie: no majority
    assert s.tally.status is Status.REJECTED and s.contributor_reward == 0
    assert s.fees == {0: 10, 1: 10} and s.penalties == {2: (PenaltyReason.NO_VOTE, 5)}
    s = settle_submission([None, False, None], 2, 100, 10, 7, 5)  # no quorum
    assert s.tally.status is Status.NO_QUORUM and s.fees == {1: 10}
    assert set(s.penalties) == {0, 2}


def test_lazy_ledger_exports_agree_and_signing_needs_no_web3() -> None:
    """``coopflower.ledger`` names each export three times (types, lazy map, ``__all__``):
    they must agree, every name must resolve, and the signing path must stay free of web3."""
    import subprocess
    import sys

    import coopflower.ledger as ledger

    assert sorted(ledger._LAZY) == sorted(ledger.__all__)
    for name in ledger.__all__:
        assert getattr(ledger, name) is not None
    code = ("import sys, coopflower.ledger.eip712, coopflower.client.keys; "
            "print('web3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"

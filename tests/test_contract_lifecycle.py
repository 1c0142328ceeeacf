"""The contract's life-cycle and every named rejection, through web3, on the embedded EVM and
on anvil (a real JSON-RPC node)."""

from __future__ import annotations

import pytest
from eth_account import Account

from coopflower.ledger import (
    Chain,
    ContractRevertError,
    CoopLedger,
    SignedRegistration,
    Status,
    settle_submission,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.ledger.eip712 import compact_signature
from tests.fixtures_chain import (  # noqa: F401
    Scenario,
    anvil_node,
    held_by_contract,
    new_scenario,
)


@pytest.fixture
def sc(chain: Chain) -> Scenario:
    return new_scenario(chain, n=5, vote_blocks=6)


def _reverts(name: str) -> pytest.RaisesExc[ContractRevertError]:
    return pytest.raises(ContractRevertError, match=rf"reverted: {name}\(")


def _conserved(sc: Scenario, extra: list[str] | None = None) -> None:
    accounts = [sc.address(i) for i in range(len(sc.keys))] + [sc.chain.address] + (extra or [])
    assert sc.chain.balance(sc.ledger.address) == held_by_contract(
        sc.ledger, [sc.task_id], accounts
    )


def _open_and_submit(sc: Scenario, who: list[int]) -> tuple[int, list]:
    rnd = sc.ledger.open_round(sc.task_id).round
    subs = sc.submissions(rnd, who)
    sc.ledger.submit_batch(sc.task_id, rnd, subs, close=True)
    return rnd, subs


def test_full_lifecycle_pays_by_majority_and_conserves_funds(sc: Scenario) -> None:
    led, t = sc.ledger, sc.task_id
    assert led.is_authority(sc.chain.address) and led.authorities() == [sc.chain.address]
    assert led.participants(t) == [sc.address(i) for i in range(5)]
    _conserved(sc)
    rnd, subs = _open_and_submit(sc, [0, 1, 2, 3, 4])
    info = led.round(t, rnd)
    assert info.state == 2 and info.n_submissions == 5 and info.n_participants == 5
    plan = led.assignments(t, rnd)
    for s in range(5):  # the off-chain assignment is exactly the contract's
        assert plan.verifiers[s] == led.assigned_verifiers_on_chain(t, rnd, s)
        assert sc.address(s) not in plan.verifiers[s] and len(set(plan.verifiers[s])) == 3
        assert led.submission(t, rnd, s).model_digest == subs[s].model_digest
    # planned ballots per submission (None = does not vote)
    ballots: dict[int, list[bool | None]] = {
        0: [True, True, True],  # accepted
        1: [False, False, False],  # rejected
        2: [True, True, False],  # accepted, the third verifier against the majority
        3: [True, None, None],  # no quorum
        4: [True, False, None],  # tie: rejected, no majority
    }
    votes = [
        sc.vote(rnd, s, subs[s].model_digest, v, bool(b))
        for s, bs in ballots.items()
        for v, b in zip(plan.verifiers[s], bs, strict=True)
        if b is not None
    ]
    vote_tx = led.submit_votes(t, rnd, votes)
    assert led.submissions(t, rnd) == [led.submission(t, rnd, s) for s in range(5)]
    fn, call = led.decode_input(vote_tx.tx_hash)  # the signed items are in the calldata
    assert fn == "submitVotes" and len(call["votes"]) == len(votes)
    with _reverts("SettlementTooEarly"):
        led.settle(t, rnd)
    sc.chain.mine(8)
    before = {a: led.balance_of(a) for a in led.participants(t)}
    deposits = {a: led.participant(t, a).deposit for a in led.participants(t)}
    result = led.settle(t, rnd)
    # expected from the pure rules
    p = sc.params
    want_paid: dict[str, int] = {}
    want_pen: dict[str, int] = {}
    for s, bs in ballots.items():
        exp = settle_submission(
            bs, p.quorum, p.reward, p.verifier_fee, p.penalty_wrong_vote, p.penalty_no_vote
        )
        if exp.contributor_reward:
            want_paid[sc.address(s)] = want_paid.get(sc.address(s), 0) + exp.contributor_reward
        for j, fee in exp.fees.items():
            v = plan.verifiers[s][j]
            want_paid[v] = want_paid.get(v, 0) + fee
        for j, (_, amount) in exp.penalties.items():
            v = plan.verifiers[s][j]
            want_pen[v] = want_pen.get(v, 0) + amount
        assert led.submission(t, rnd, s).status == exp.tally.status
    assert [x.status for x in result.submissions] == [
        Status.ACCEPTED,
        Status.REJECTED,
        Status.ACCEPTED,
        Status.NO_QUORUM,
        Status.REJECTED,
    ]
    assert result.accepted == 2
    assert result.paid == want_paid and result.penalized == want_pen
    for a in led.participants(t):
        assert led.balance_of(a) - before[a] == want_paid.get(a, 0)
        assert deposits[a] - led.participant(t, a).deposit == want_pen.get(a, 0)
    assert result.total_paid == sum(want_paid.values())
    assert result.returned_to_escrow == p.escrow_per_round() - result.total_paid
    _conserved(sc)
    # MetaModel, once
    led.record_metamodel(t, rnd, b"\x01\x70" + b"m" * 34, b"\x07" * 32)
    assert led.round(t, rnd).meta_digest != bytes(32)
    with _reverts("MetaModelAlreadyRecorded"):
        led.record_metamodel(t, rnd, b"\x01\x70" + b"m" * 34, b"\x07" * 32)
    # the round replays from events alone
    rec = led.round_record(t, rnd)
    assert len(rec.submissions) == 5 and len(rec.votes) == len(votes)
    assert len(rec.randomness) == 1 and rec.randomness[0].args["seed"] == plan.seed
    assert len(rec.settled) == 5 and len(rec.metamodel) == 1
    # withdraw: a node that earned something takes it out with its own gas
    earner = max(want_paid, key=lambda a: want_paid[a])
    sc.chain.send_value(earner, 10**17)
    node = sc.chain.with_account(sc.key_of(earner))
    owed = led.balance_of(earner)
    eth_before = node.balance(earner)
    out = CoopLedger.at(node, led.address).withdraw()
    assert led.balance_of(earner) == 0
    assert node.balance(earner) > eth_before + owed - 10**16
    assert out.named("Withdrawn")[0].args["amount"] == owed
    _conserved(sc)
    # close the task: escrow back to the initiator, deposits released
    led.close_task(t)
    with _reverts("TaskIsClosed"):
        led.open_round(t)
    led.release_deposits(t, led.participants(t))
    assert all(led.participant(t, a).deposit == 0 for a in led.participants(t))
    _conserved(sc)


def test_log_round_is_one_cheap_event(sc: Scenario) -> None:
    out = sc.ledger.log_round(99, 3, b"\x01\x55" + b"c" * 34, b"\x05" * 32)
    ev = out.named("RoundLogged")[0].args
    assert ev["taskId"] == 99 and ev["round"] == 3 and ev["cid"] == b"\x01\x55" + b"c" * 34
    assert out.gas_used < 40_000
    other = _other_sender(sc)
    with _reverts("NotAuthority"):
        CoopLedger.at(other, sc.ledger.address).log_round(99, 4, b"\x01", b"\x05" * 32)


def _other_sender(sc: Scenario) -> Chain:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    sc.chain.send_value(Account.from_key(key).address, 10**17)
    return sc.chain.with_account(key)


def test_only_authorities_publish_and_open(sc: Scenario) -> None:
    other = CoopLedger.at(_other_sender(sc), sc.ledger.address)
    with _reverts("NotAuthority"):
        other.publish_task(sc.params, 0)
    with _reverts("NotAuthority"):
        other.open_round(sc.task_id)


def test_unregistered_contributor_is_rejected(sc: Scenario) -> None:
    rnd = sc.ledger.open_round(sc.task_id).round
    stranger = Account.create().key
    sub = sign_submission(stranger, sc.ledger.domain, sc.task_id, rnd, b"\x01" * 36, b"\x02" * 32)
    with _reverts("NotRegistered"):
        sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0]) + [sub], close=False)
    assert sc.ledger.round(sc.task_id, rnd).n_submissions == 0  # the batch is atomic


def test_forged_submission_signature_is_rejected(sc: Scenario) -> None:
    rnd = sc.ledger.open_round(sc.task_id).round
    good = sc.submissions(rnd, [0])[0]
    # signed by participant 1 but claiming to be participant 0
    forged = sign_submission(
        sc.keys[1], sc.ledger.domain, sc.task_id, rnd, good.cid, good.content_hash
    )
    forged = type(good)(**{**good.__dict__, "signature": forged.signature})
    with _reverts("InvalidSignature"):
        sc.ledger.submit_batch(sc.task_id, rnd, [forged], close=False)
    # a relayer altering the CID after signing
    tampered = type(good)(**{**good.__dict__, "cid": b"\x01\x55" + b"x" * 34})
    with _reverts("InvalidSignature"):
        sc.ledger.submit_batch(sc.task_id, rnd, [tampered], close=False)


def test_replayed_submission_signature_is_rejected(sc: Scenario) -> None:
    """A replayed or second submission is left out (a named skip), never recorded twice."""
    rnd = sc.ledger.open_round(sc.task_id).round
    subs = sc.submissions(rnd, [0, 1])
    sc.ledger.submit_batch(sc.task_id, rnd, subs, close=False)
    out = sc.ledger.submit_batch(sc.task_id, rnd, [subs[0]], close=False)
    assert [(s.reason, s.held) for s in out.skipped] == [("SignatureReplayed", (rnd, 0))]
    assert out.by_id == {0: subs[0]}  # the model on chain is the relayed one
    second = sc.submissions(rnd, [1])  # a second, different model in the same round
    out = sc.ledger.submit_batch(sc.task_id, rnd, second, close=False)
    assert [(s.reason, s.held) for s in out.skipped] == [("AlreadySubmitted", (rnd, 1))]
    assert out.by_id == {} and not out.named("Submitted")
    assert sc.ledger.round(sc.task_id, rnd).n_submissions == 2
    sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [2, 3]), close=True)
    plan = sc.ledger.assignments(sc.task_id, rnd)
    votes = [
        sc.vote(rnd, s, sc.ledger.submission(sc.task_id, rnd, s).model_digest, v, True)
        for s, vs in plan.verifiers.items()
        for v in vs
    ]
    sc.ledger.submit_votes(sc.task_id, rnd, votes)
    sc.ledger.settle(sc.task_id, rnd)  # everyone voted: settles before the deadline
    rnd2 = sc.ledger.open_round(sc.task_id).round
    old = subs[0]  # round 1's signature replayed into round 2
    moved = type(old)(**{**old.__dict__, "round": rnd2})
    with _reverts("InvalidSignature"):
        sc.ledger.submit_batch(sc.task_id, rnd2, [moved], close=False)


def _closed_round(sc: Scenario, who: list[int]) -> tuple[int, list, dict[int, list[str]]]:
    rnd, subs = _open_and_submit(sc, who)
    plan = sc.ledger.assignments(sc.task_id, rnd)
    return rnd, subs, plan.verifiers


def test_double_vote_is_rejected(sc: Scenario) -> None:
    """A second ballot is skipped (AlreadyVoted, named), the first one stands."""
    rnd, subs, ver = _closed_round(sc, [0, 1])
    v = ver[0][0]
    sc.ledger.submit_votes(sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, v, True)])
    for accept in (True, False):  # the same vote replayed; a changed mind
        out = sc.ledger.submit_votes(
            sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, v, accept)]
        )
        assert [(s.reason, s.who, s.submission) for s in out.skipped] == [("AlreadyVoted", v, 0)]
        assert out.recorded == [] and not out.named("VoteCast")
    second = sc.vote(rnd, 0, subs[0].model_digest, ver[0][1], True)
    out = sc.ledger.submit_votes(sc.task_id, rnd, [second, second])  # twice in one batch
    assert out.recorded == [second] and [s.item for s in out.skipped] == [1]
    info = sc.ledger.submission(sc.task_id, rnd, 0)
    assert (info.voted_mask, info.yes_mask) == (0b011, 0b011)


def test_vote_by_unassigned_verifier_is_rejected(sc: Scenario) -> None:
    rnd, subs, ver = _closed_round(sc, [0, 1])
    outsider = next(sc.address(i) for i in range(5) if sc.address(i) not in ver[0] and i != 0)
    with _reverts("NotAssigned"):
        sc.ledger.submit_votes(
            sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, outsider, True)]
        )
    with _reverts("NotAssigned"):  # the contributor voting on its own model
        sc.ledger.submit_votes(
            sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, sc.address(0), True)]
        )
    # a vote signed for another model's digest does not verify
    wrong = sc.vote(rnd, 0, subs[1].model_digest, ver[0][0], True)
    with _reverts("ModelMismatch"):
        sc.ledger.submit_votes(sc.task_id, rnd, [wrong])
    # a vote relayed under another verifier's name does not verify either
    v = sign_vote(
        sc.key_of(ver[0][0]), sc.ledger.domain, sc.task_id, rnd, 0, subs[0].model_digest, True
    )
    relabeled = type(v)(**{**v.__dict__, "verifier": ver[0][1]})
    with _reverts("InvalidSignature"):
        sc.ledger.submit_votes(sc.task_id, rnd, [relabeled])


def test_late_vote_is_rejected(sc: Scenario) -> None:
    rnd, subs, ver = _closed_round(sc, [0, 1])
    sc.chain.mine(10)  # past vote_end (vote_blocks = 6)
    with _reverts("VoteTooLate"):
        sc.ledger.submit_votes(
            sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, ver[0][0], True)]
        )
    result = sc.ledger.settle(sc.task_id, rnd)  # nobody voted: no quorum, all penalised
    assert [s.status for s in result.submissions] == [Status.NO_QUORUM, Status.NO_QUORUM]
    assert result.accepted == 0 and result.total_paid == 0
    assert sum(result.penalized.values()) == 2 * 3 * sc.params.penalty_no_vote
    _conserved(sc)


def test_settlement_before_deadline_is_rejected(sc: Scenario) -> None:
    rnd, subs, ver = _closed_round(sc, [0, 1])
    sc.ledger.submit_votes(
        sc.task_id, rnd, [sc.vote(rnd, 0, subs[0].model_digest, ver[0][0], True)]
    )
    with _reverts("SettlementTooEarly"):
        sc.ledger.settle(sc.task_id, rnd)
    with _reverts("RoundInProgress"):
        sc.ledger.open_round(sc.task_id)


def test_randomness_comes_from_a_later_block(sc: Scenario) -> None:
    rnd, subs = _open_and_submit(sc, [0, 1])
    info = sc.ledger.round(sc.task_id, rnd)
    assert info.rand_block == sc.chain.block_number() + 1  # unknown when the window closed
    assert sc.ledger.seed_of(sc.task_id, rnd) == bytes(32)
    # the next transaction lands in the randomness block itself: its hash is not known yet
    with _reverts("RandomnessNotReady"):
        sc.ledger.fix_randomness(sc.task_id, rnd)
    plan = sc.ledger.assignments(sc.task_id, rnd)
    out = sc.ledger.fix_randomness(sc.task_id, rnd)
    assert out.named("RandomnessFixed")[0].args["seed"] == plan.seed
    assert sc.ledger.round(sc.task_id, rnd).seed == plan.seed


def test_registration_rules(chain: Chain) -> None:
    sc = new_scenario(chain, n=4, invite_only=False)
    led, t, dep = sc.ledger, sc.task_id, sc.params.min_deposit
    key = Account.create().key
    reg = sign_registration(key, led.domain, t, dep)
    with _reverts("DepositMismatch"):
        led._send("registerFor", [t, [_reg_tuple(reg)]], value=dep - 1)
    low = sign_registration(key, led.domain, t, dep - 1)
    with _reverts("InsufficientDeposit"):
        led.register_for(t, [low])
    forged = type(reg)(**{**reg.__dict__, "deposit": dep * 2})  # relayer changes the amount
    with _reverts("InvalidSignature"):
        led.register_for(t, [forged])
    out = led.register_for(t, [reg])
    ev = out.named("Registered")[0].args
    assert ev["participant"] == reg.participant and ev["payer"] == chain.address
    assert led.participant(t, reg.participant).deposit == dep
    with _reverts("AlreadyRegistered"):
        led.register_for(t, [reg])
    with _reverts("UnknownTask"):
        led.register_for(t + 100, [sign_registration(key, led.domain, t + 100, dep)])
    # a node with its own gas registers itself
    other = _other_sender(sc)
    CoopLedger.at(other, led.address).register(t, dep)
    assert led.participants(t)[-1] == other.address


def _reg_tuple(reg: SignedRegistration) -> tuple[str, int, bytes, bytes]:
    r, vs = compact_signature(reg.signature)
    return (reg.participant, reg.deposit, r, vs)


def test_not_enough_verifiers_and_bad_params(chain: Chain) -> None:
    sc = new_scenario(chain, n=3, k=3, quorum=2)  # 3 participants: 2 others per contributor
    rnd = sc.ledger.open_round(sc.task_id).round
    with _reverts("NotEnoughVerifiers"):
        sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0]), close=True)
    from dataclasses import replace

    with _reverts("InvalidTaskParameter"):
        sc.ledger.publish_task(replace(sc.params, quorum=4), 0)
    with _reverts("InsufficientEscrow"):
        t2 = sc.ledger.publish_task(sc.params, 0)
        sc.ledger.open_round(t2)

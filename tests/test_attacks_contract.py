"""Issue 11's contract-side attacks, performed on the real contract (embedded EVM and anvil).

Each test does what an attacker would and asserts it fails; its docstring says what the same
steps did before (every one of them succeeded, or sank the round).
"""

from __future__ import annotations

import os

import pytest
from eth_account import Account

from coopflower.ledger import (
    Chain,
    ContractRevertError,
    CoopLedger,
    Status,
    sign_registration,
    sign_submission,
)
from coopflower.ledger.eip712 import compact_signature
from tests.fixtures_chain import (  # noqa: F401
    Scenario,
    anvil_node,
    held_by_contract,
    new_scenario,
)


def _reverts(name: str) -> pytest.RaisesExc[ContractRevertError]:
    return pytest.raises(ContractRevertError, match=rf"reverted: {name}\(")


def _as(sc: Scenario, key: str | None = None) -> CoopLedger:
    """The contract bound to another sender (a participant's key, or a fresh funded one)."""
    key = key or "0x" + Account.create().key.hex().removeprefix("0x")
    sc.chain.send_value(Account.from_key(key).address, 10**17)
    return CoopLedger.at(sc.chain.with_account(key), sc.ledger.address)


def _conserved(sc: Scenario, extra: list[str] | None = None) -> None:
    accounts = [sc.address(i) for i in range(len(sc.keys))] + [sc.chain.address] + (extra or [])
    assert sc.chain.balance(sc.ledger.address) == held_by_contract(
        sc.ledger, [sc.task_id], accounts
    )


def _vote_all(sc: Scenario, rnd: int, accept: bool = True) -> None:
    plan = sc.ledger.assignments(sc.task_id, rnd)
    digests = {s.submission: s.model_digest for s in sc.ledger.submissions(sc.task_id, rnd)}
    sc.ledger.submit_votes(sc.task_id, rnd, [
        sc.vote(rnd, sid, digests[sid], v, accept)
        for sid, vs in plan.verifiers.items() for v in vs
    ])


def _copy(sc: Scenario, i: int, rnd: int, cid: bytes, chash: bytes):  # noqa: ANN202
    """Participant ``i``'s own valid signature on somebody else's CID and content hash."""
    return sign_submission(sc.keys[i], sc.ledger.domain, sc.task_id, rnd, cid, chash)


# ------------------------------------------------------------------ 1. copied model
def test_copied_model_in_the_same_round_is_skipped_and_never_paid(chain: Chain) -> None:
    """Attack 1a. Before: contributor 1 signed contributor 0's CID and content hash; both
    submissions were recorded, accepted and paid. Now the copy is skipped (DuplicateModel),
    gets no submission id, no verifiers and no reward; the rest of the batch is recorded."""
    sc = new_scenario(chain, n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    honest = sc.submissions(rnd, [0, 2])
    copy = _copy(sc, 1, rnd, honest[0].cid, honest[0].content_hash)
    out = led.submit_batch(t, rnd, [honest[0], copy, honest[1]], close=True)
    assert [(s.item, s.who, s.reason, s.held) for s in out.skipped] == [
        (1, sc.address(1), "DuplicateModel", (rnd, 0))]
    assert out.by_id == {0: honest[0], 1: honest[1]}
    assert [s.contributor for s in led.submissions(t, rnd)] == [sc.address(0), sc.address(2)]
    assert led.model_submitted(t, honest[0].content_hash)
    _vote_all(sc, rnd)
    result = led.settle(t, rnd)
    assert [s.status for s in result.submissions] == [Status.ACCEPTED, Status.ACCEPTED]
    assert sc.address(1) not in result.paid or result.paid[sc.address(1)] < sc.params.reward
    assert result.paid[sc.address(0)] >= sc.params.reward
    _conserved(sc)


def test_model_from_an_earlier_round_read_from_the_public_event_is_skipped(chain: Chain) -> None:
    """Attack 1b. Before: in round 2 a third node resubmitted round 1's model, read from the
    public ``Submitted`` event, and was accepted and paid again. Now it is skipped as a
    DuplicateModel naming round 1's submission, also under another CID; only the content hash
    counts (a reused CID with another content hash is a new record whose blob cannot match it,
    which the verifiers' content-hash check refuses)."""
    sc = new_scenario(chain, n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    r1 = led.open_round(t).round
    led.submit_batch(t, r1, sc.submissions(r1, [0, 1]), close=True)
    _vote_all(sc, r1)
    led.settle(t, r1)
    r2 = led.open_round(t).round
    public = next(e for e in led.events("Submitted", task_id=t) if e.args["submission"] == 1)
    cid, chash = bytes(public.args["cid"]), bytes(public.args["contentHash"])
    resubmitted = _copy(sc, 2, r2, cid, chash)
    recid = _copy(sc, 3, r2, b"\x01\x55\x12\x20" + os.urandom(32), chash)  # same bytes, new CID
    fresh = sc.submissions(r2, [4])[0]
    out = led.submit_batch(t, r2, [resubmitted, recid, fresh], close=True)
    assert [(s.who, s.reason, s.held) for s in out.skipped] == [
        (sc.address(2), "DuplicateModel", (r1, 1)), (sc.address(3), "DuplicateModel", (r1, 1))]
    assert out.by_id == {0: fresh} and led.round(t, r2).n_submissions == 1
    # the boundary, stated: the same CID with another content hash is not a copy on chain
    r3_sub = _copy(sc, 0, r2, cid, os.urandom(32))
    assert not led.model_submitted(t, r3_sub.content_hash)


# ------------------------------------------------------------------ 7. threshold from the relayer
def test_a_vote_is_a_yes_only_at_the_tasks_threshold_on_chain(chain: Chain) -> None:
    """Attack 7. Before: a verifier signed "accept" when its score reached the threshold the
    relayer's message carried, and the contract counted every signed "accept" as a yes: a
    relayer telling verifiers 0 bps got a model scoring 5000 bps accepted in a 9000 bps task.
    Now the contract compares each vote's signed score with the task's own threshold: the
    same sound-model votes at 5000 bps reject the model, at 9000 bps accept it."""
    sc = new_scenario(chain, n=5, vote_blocks=6)  # minAccuracyBps 9000
    led, t = sc.ledger, sc.task_id
    assert led.task(t).params.min_accuracy_bps == 9000
    rnd = led.open_round(t).round
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=True)
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    scores = {0: 5000, 1: 9000}  # what the verifiers measured, signed with accept=True
    led.submit_votes(t, rnd, [sc.vote(rnd, sid, digests[sid], v, True, scores[sid])
                              for sid, vs in plan.verifiers.items() for v in vs])
    result = led.settle(t, rnd)
    assert [s.status for s in result.submissions] == [Status.REJECTED, Status.ACCEPTED]
    assert sc.address(0) not in result.paid or result.paid[sc.address(0)] < sc.params.reward
    _conserved(sc)


# ------------------------------------------------------------------ 8. one node sinks a batch
def test_contributor_submitting_itself_does_not_sink_the_relayers_batch(chain: Chain) -> None:
    """Attack 8a. Before: contributor 2 sent its own signed submission directly and the
    relayer's whole ``submitBatch`` reverted (AlreadySubmitted / SignatureReplayed): the round
    failed. Now the item is skipped with a named event, the others are recorded, and the ids
    come from the events by contributor and model: contributor 2 holds id 0 (its own
    transaction), which a positional mapping of the batch would have given to contributor 0."""
    sc = new_scenario(chain, n=6, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, [0, 1, 2, 3])
    _as(sc, sc.keys[2]).submit_batch(t, rnd, [subs[2]], close=False)  # the node itself
    other = sc.submissions(rnd, [3])[0]  # and 3 sends a different model of its own first
    _as(sc, sc.keys[3]).submit_batch(t, rnd, [other], close=False)
    out = led.submit_batch(t, rnd, subs, close=True)
    assert [(s.item, s.reason) for s in out.skipped] == [
        (2, "SignatureReplayed"), (3, "AlreadySubmitted")]
    assert out.by_id == {0: subs[2], 2: subs[0], 3: subs[1]}  # 1 is 3's own, not relayed
    on_chain = {s.submission: s.contributor for s in led.submissions(t, rnd)}
    assert on_chain == {0: sc.address(2), 1: sc.address(3), 2: sc.address(0), 3: sc.address(1)}
    assert led.round(t, rnd).state == 2  # closed in the same transaction


def test_duplicate_ballot_does_not_sink_the_vote_batch(chain: Chain) -> None:
    """Attack 8b. Before: a verifier returning two ballots for one submission (or sending its
    vote itself first) made the whole vote batch revert (AlreadyVoted), and every verifier of
    the round lost ``penalty_no_vote``. Now the second ballot is skipped, the first stands, and
    the round settles on everyone's votes."""
    sc = new_scenario(chain, n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, [0, 1])
    led.submit_batch(t, rnd, subs, close=True)
    plan = led.assignments(t, rnd)
    votes = [sc.vote(rnd, s, subs[s].model_digest, v, True)
             for s, vs in plan.verifiers.items() for v in vs]
    v0 = plan.verifiers[0][0]
    changed_mind = sc.vote(rnd, 0, subs[0].model_digest, v0, False)
    own = sc.vote(rnd, 1, subs[1].model_digest, plan.verifiers[1][2], True)
    _as(sc, sc.key_of(own.verifier)).submit_votes(t, rnd, [own])  # the verifier itself
    out = led.submit_votes(t, rnd, votes[:1] + [changed_mind] + votes[1:])
    assert [(s.item, s.who, s.reason) for s in out.skipped] == [
        (1, v0, "AlreadyVoted"), (len(votes), own.verifier, "AlreadyVoted")]
    assert len(out.recorded) == len(votes) - 1 and changed_mind not in out.recorded
    result = led.settle(t, rnd)  # everyone voted: settles at once
    assert [s.status for s in result.submissions] == [Status.ACCEPTED, Status.ACCEPTED]
    assert [(s.yes, s.cast) for s in result.submissions] == [(3, 3), (3, 3)]
    assert result.penalized == {}


# ------------------------------------------------------------------ 9. outsiders
def test_outsider_cannot_register_mid_round_nor_take_a_submission_id(chain: Chain) -> None:
    """Attack 9. Before: an address that was no participant registered in the middle of a
    round (``register``, its own deposit), took a submission id and entered the verifier pool.
    Now registration is refused while a round is in progress (RoundInProgress), so it cannot
    submit (NotRegistered); in an open task it may join between rounds, by design."""
    sc = new_scenario(chain, n=4, vote_blocks=6, invite_only=False)
    led, t, dep = sc.ledger, sc.task_id, sc.params.min_deposit
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    outsider = _as(sc, key)
    rnd = led.open_round(t).round
    with _reverts("RoundInProgress"):
        outsider.register(t, dep)
    with _reverts("RoundInProgress"):  # nor through a relayer, with its signed consent
        led.register_for(t, [sign_registration(key, led.domain, t, dep)])
    mine = sign_submission(key, led.domain, t, rnd, b"\x01" * 36, os.urandom(32))
    with _reverts("NotRegistered"):
        outsider.submit_batch(t, rnd, [mine], close=False)
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=True)
    assert led.round(t, rnd).n_participants == 4
    _vote_all(sc, rnd)
    led.settle(t, rnd)
    outsider.register(t, dep)  # between rounds, in an open task
    assert led.participants(t)[-1] == Account.from_key(key).address


def test_invite_only_task_takes_no_outsider(chain: Chain) -> None:
    """Attack 9, closed task (the default): only the initiator or an authority registers
    participants, from their signed consent. Before: anyone could ``register`` or relay its own
    consent through ``registerFor``."""
    sc = new_scenario(chain, n=4)
    assert sc.params.invite_only
    led, t, dep = sc.ledger, sc.task_id, sc.params.min_deposit
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    outsider = _as(sc, key)
    with _reverts("RegistrationClosed"):
        outsider.register(t, dep)
    with _reverts("NotInitiatorOrAuthority"):
        outsider.register_for(t, [sign_registration(key, led.domain, t, dep)])
    led.register_for(t, [sign_registration(key, led.domain, t, dep)])  # invited
    assert led.participant(t, Account.from_key(key).address).registered


# ------------------------------------------------------------------ 4. re-rolled verifiers
def test_randomness_is_refreshed_once_and_only_after_the_horizon(chain: Chain) -> None:
    """Attack 4. Before: whoever controls when the seed is fixed let 256 blocks pass and
    called ``refreshRandomness`` again and again (15 draws, 8 verifier sets, the wanted one
    kept). Now: not while the hash is available (RandomnessAvailable), at most once per round
    (RefreshLimitReached), and when the second randomness expires too the round settles void
    (RandomnessLost: no decision, no payment, no penalty, the reservation back in escrow)."""
    sc = new_scenario(chain, n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=True)
    first = led.round(t, rnd).rand_block
    sc.chain.mine(250)
    with _reverts("RandomnessAvailable"):
        led.refresh_randomness(t, rnd)
    sc.chain.mine(first + 257 - sc.chain.block_number())
    with _reverts("RandomnessExpired"):
        led.fix_randomness(t, rnd)
    out = led.refresh_randomness(t, rnd)
    ev = out.named("RandomnessRefreshed")[0].args
    assert ev["expiredBlock"] == first and ev["randBlock"] == out.block_number + 1
    assert led.round(t, rnd).refreshes == 1
    sc.chain.mine(260)
    with _reverts("RefreshLimitReached"):
        led.refresh_randomness(t, rnd)
    escrow = led.task(t).escrow
    result = led.settle(t, rnd)
    assert result.tx.named("RandomnessLost")
    assert [(s.status, s.cast) for s in result.submissions] == [(Status.NO_QUORUM, 0)] * 2
    assert result.paid == {} and result.penalized == {} and result.total_paid == 0
    assert led.task(t).escrow == escrow + result.returned_to_escrow
    _conserved(sc)


# ------------------------------------------------------------------ 11. locked money
def test_anyone_closes_an_abandoned_task_and_nodes_withdraw_their_deposits(chain: Chain) -> None:
    """Attack 11. Before: only the initiator or an authority could close a task, with no
    timeout: an initiator that vanished mid-round locked every deposit forever. Now anyone
    drives the abandoned round to its end (closeSubmissions after submitEnd, settle after
    voteEnd) and, ``idle_blocks`` after the last round event, closes the task; each node then
    releases and withdraws its deposit."""
    sc = new_scenario(chain, n=4, submit_blocks=5, vote_blocks=5, idle_blocks=30)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round  # ... and the initiator disappears
    node = _as(sc, sc.keys[0])
    with _reverts("SubmissionWindowOpen"):
        node.close_submissions(t, rnd)
    sc.chain.mine(6)
    node.close_submissions(t, rnd)
    with _reverts("RoundInProgress"):
        led.close_task(t)
    sc.chain.mine(7)
    node.settle(t, rnd)
    expires = led.task(t).last_active + 30
    with _reverts("TaskNotExpired"):
        node.close_task(t)
    # one block past: anvil's gas estimate runs with block.number = latest
    sc.chain.mine(expires + 1 - sc.chain.block_number())
    node.close_task(t)
    assert led.task(t).closed
    addr = sc.address(0)
    node.release_deposits(t, [addr])
    before = sc.chain.balance(addr)
    out = node.withdraw()
    assert out.named("Withdrawn")[0].args["amount"] == sc.params.min_deposit
    assert sc.chain.balance(addr) > before
    _conserved(sc)


# ------------------------------------------------------------------ 11. who pays a deposit
def test_a_node_that_topped_up_pays_its_own_deposit_and_its_own_penalty(chain: Chain) -> None:
    """Attack 11, the initiator pays every deposit. Before: ``registerFor`` took every deposit
    from the relayer's value, so a node risked nothing and its penalty came out of the
    initiator's money. Now a node's own balance in the contract (``topUp``) pays its deposit
    first: registered by the same signed consent, the relayer pays only for the others, and
    the node's missed vote costs the node."""
    sc = new_scenario(chain, n=4, vote_blocks=6, k=4)  # k = 4: the node verifies every model
    led, t = sc.ledger, sc.task_id
    own = _as(sc)  # a node with ETH of its own
    node = own.chain.address
    own.top_up(sc.params.min_deposit)
    assert led.balance_of(node) == sc.params.min_deposit
    consent = sign_registration(own.chain.account.key, led.domain, t, sc.params.min_deposit)
    r, vs = compact_signature(consent.signature)
    with _reverts("DepositMismatch"):  # the node's own balance pays: the relayer's value is 0
        led._send("registerFor", [t, [(node, consent.deposit, r, vs)]],
                  value=sc.params.min_deposit)
    before = chain.balance(chain.address)
    tx = led.register_for(t, [consent])
    (reg,) = tx.named("Registered")
    assert str(reg.args["payer"]) == node and led.balance_of(node) == 0
    assert chain.balance(chain.address) >= before - 10**16  # gas only: no deposit sent
    rnd = led.open_round(t).round
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=True)
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    led.submit_votes(t, rnd, [sc.vote(rnd, sid, digests[sid], v, True)
                              for sid, vs in plan.verifiers.items() for v in vs if v != node])
    chain.wait_for_block(led.round(t, rnd).vote_end + 1)
    result = led.settle(t, rnd)
    assert all(node in vs for vs in plan.verifiers.values())
    assert result.penalized.get(node, 0) == 2 * sc.params.penalty_no_vote
    assert led.participant(t, node).deposit == sc.params.min_deposit - result.penalized.get(
        node, 0)
    _conserved(sc, [node])

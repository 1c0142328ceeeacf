"""Issue 13, batches across blocks: registrations, submissions, seed shares and votes go out in
as many transactions as the block gas needs (here forced small with ``max_batch``), each
checked on chain as a whole batch is; ids, skipped items and the round's outcome are those of
one batch. On the real contract (embedded EVM and anvil)."""

from __future__ import annotations

import os

import pytest

from coopflower.ledger import Chain, CoopLedger, Status, TaskParams, sign_registration
from coopflower.ledger.batches import batch_size, slices
from tests.fixtures_chain import Scenario, anvil_node, new_scenario  # noqa: F401


def test_batch_sizes_follow_the_block_gas_limit() -> None:
    assert batch_size(30_000_000, "submission") == 237  # 60 % of the block, 75 k per item
    assert batch_size(30_000_000, "vote") == 445
    assert batch_size(30_000_000, "vote", cap=50) == 50
    assert batch_size(100_000, "registration") == 1  # never 0
    assert [(o, list(p)) for o, p in slices([1, 2, 3, 4, 5], 2)] == [
        (0, [1, 2]), (2, [3, 4]), (4, [5])]
    assert slices([], 3) == [(0, [])]


def _scenario(chain: Chain, n: int, batch: int) -> Scenario:
    led = CoopLedger.deploy(chain)
    led.max_batch = batch
    return new_scenario(chain, n=n, ledger=led, vote_blocks=30, reveal_blocks=5, k=3)


def test_a_round_of_ten_in_batches_of_three(chain: Chain) -> None:
    tx0 = chain.tx_count
    sc = _scenario(chain, 10, 3)
    led, t = sc.ledger, sc.task_id
    assert len(led.participants(t)) == 10
    assert chain.tx_count - tx0 == 2 + 4  # deploy, publish; 10 registrations in 4 batches
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, range(10))
    own = sc.submissions(rnd, [4])[0]  # node 4 sends a model of its own first
    chain.send_value(sc.address(4), 10**17)
    CoopLedger.at(chain.with_account(sc.keys[4]), led.address).submit_batch(
        t, rnd, [own], close=False)
    before = chain.tx_count
    out = led.submit_batch(t, rnd, subs, close=True)
    assert chain.tx_count - before == 4  # 10 items in batches of 3, the last closing
    assert [(s.item, s.reason) for s in out.skipped] == [(4, "AlreadySubmitted")]
    assert sorted(out.by_id) == [i for i in range(10) if i != 0]  # id 0 is node 4's own
    assert all(out.by_id[sid].contributor == s.contributor
               for sid, s in zip(sorted(out.by_id), [s for i, s in enumerate(subs) if i != 4],
                                 strict=True))
    info = led.round(t, rnd)
    assert info.n_submissions == 10 and info.state == 2  # closed by the last batch only
    chain.wait_for_block(info.rand_block + 1)
    before = chain.tx_count
    led.reveal_seeds(t, rnd, sc.shares_of(rnd))
    assert chain.tx_count - before == 4 and led.round(t, rnd).revealed == 10
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    votes = [sc.vote(rnd, sid, digests[sid], v, True) for sid, vs in plan.verifiers.items()
             for v in vs]
    before = chain.tx_count
    cast = led.submit_votes(t, rnd, [*votes, votes[7]])  # a second ballot in a later batch
    assert chain.tx_count - before == 11  # 31 ballots in batches of 3
    assert [(s.item, s.reason) for s in cast.skipped] == [(30, "AlreadyVoted")]
    assert len(cast.recorded) == 30
    result = led.settle(t, rnd)
    assert [s.status for s in result.submissions] == [Status.ACCEPTED] * 10


def test_the_default_batch_is_one_transaction_at_this_size(chain: Chain) -> None:
    led = CoopLedger.deploy(chain)
    params = TaskParams(spec_hash=os.urandom(32), max_submissions=40)
    t = led.publish_task(params, params.escrow_per_round())
    keys = ["0x" + os.urandom(32).hex() for _ in range(40)]
    before = chain.tx_count
    led.register_for(t, [sign_registration(k, led.domain, t, params.min_deposit) for k in keys])
    assert chain.tx_count - before == 1


def _voted_round(sc: Scenario, n: int) -> int:
    """A closed, revealed, fully voted round of ``n`` submissions: every third one rejected by
    all its verifiers, submission 1 with one verifier against the majority."""
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    led.submit_batch(t, rnd, sc.submissions(rnd, range(n)), close=True)
    sc.chain.wait_for_block(led.round(t, rnd).rand_block + 1)
    led.reveal_seeds(t, rnd, sc.shares_of(rnd))
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    votes = [sc.vote(rnd, sid, digests[sid], v, sid % 3 != 0 and (sid, j) != (1, 0))
             for sid, vs in plan.verifiers.items() for j, v in enumerate(vs)]
    led.submit_votes(t, rnd, votes)
    return rnd


def test_a_settlement_in_batches_takes_nothing_else_and_conserves_the_funds(chain: Chain) -> None:
    """Issue 13: one ``settle`` over 1000 submissions needs more than a block's 30M gas, so
    the contract settles ``count`` submissions a call. Between calls the round is SETTLING:
    no vote, refresh, MetaModel or next round; the funds stay conserved; a second relayer
    (or a restarted run) finishes what the first began, and the outcome is every
    submission's, once."""
    from coopflower.ledger import ContractRevertError
    from tests.fixtures_chain import held_by_contract

    sc = _scenario(chain, 10, 100)
    led, t = sc.ledger, sc.task_id
    rnd = _voted_round(sc, 10)
    accounts = [sc.address(i) for i in range(10)]
    with pytest.raises(ContractRevertError, match="EmptyBatch"):
        led._send("settle", [t, rnd, 0])
    first = led._send("settle", [t, rnd, 4])
    assert not first.named("RoundSettled")
    assert [(int(e.args["settled"]), int(e.args["submissions"]))
            for e in first.named("RoundSettling")] == [(4, 10)]
    info = led.round(t, rnd)
    assert (info.state, info.settled) == (4, 4)
    assert [int(e.args["submission"]) for e in first.named("SubmissionSettled")] == [0, 1, 2, 3]
    assert chain.w3.eth.get_balance(led.address) == held_by_contract(led, [t], accounts)
    for fn, args, error in (("submitVotes", [t, rnd, []], "WrongRoundState"),
                            ("fixRandomness", [t, rnd], "WrongRoundState"),
                            ("refreshRandomness", [t, rnd], "WrongRoundState"),
                            ("recordMetaModel", [t, rnd, b"\x01" * 36, os.urandom(32)],
                             "WrongRoundState"),
                            ("openRound", [t], "RoundInProgress")):
        with pytest.raises(ContractRevertError, match=error):
            led._send(fn, args)
    relayer = chain.with_account(sc.keys[7])  # anyone finishes it
    chain.send_value(sc.address(7), 10**17)
    other = CoopLedger.at(relayer, led.address)
    other.max_batch = 3
    before = relayer.tx_count
    done = other.settle(t, rnd)
    assert relayer.tx_count - before == 2  # 6 submissions left, 3 a call
    assert [s.submission for s in done.submissions] == list(range(10))  # the first 4 read back
    assert [s.status for s in done.submissions] == [
        Status.REJECTED if sid % 3 == 0 else Status.ACCEPTED for sid in range(10)]
    assert done.accepted == 6 == led.round(t, rnd).accepted
    paid_events = [e for e in led.events("Paid", task_id=t) if int(e.args["round"]) == rnd]
    assert done.total_paid == sum(int(e.args["amount"]) for e in paid_events)
    p = sc.params
    assert done.total_paid == 6 * p.reward + (10 * p.k - 1) * p.verifier_fee
    assert sum(done.penalized.values()) == p.penalty_wrong_vote  # submission 1's dissenter
    assert done.returned_to_escrow == p.escrow_per_round() - done.total_paid
    assert led.round(t, rnd).state == 3 and led.round(t, rnd).reserved == 0
    assert chain.w3.eth.get_balance(led.address) == held_by_contract(led, [t], accounts)
    with pytest.raises(ContractRevertError, match="WrongRoundState"):
        led._send("settle", [t, rnd, 4])
    led.open_round(t)  # the next round opens once the last batch settled this one

"""Issue 11, attack 4: re-rolled verifiers. Verifier selection that no single party controls:
each contributor commits to a seed share in its signed submission and reveals it after the
randomness block; the seed mixes the block's hash with the XOR of the shares. On the real
contract (embedded EVM and anvil).

Before: the seed was the randomness block's hash alone, known one block after it. Whoever
fixed it could let 256 blocks pass and refresh: 15 draws gave 8 different verifier sets for
one submission and the wanted one was kept; the sealer of the block could choose among its
own candidate blocks. Now the sealer does not know the shares (they are secret until after the
block), a share's owner commits before the block exists, nobody knows the assignment before
every share is in or the window passed, and a revealed share keeps the block's hash, so the
seed never expires and a refresh cannot re-roll an assignment anyone knows.
"""

from __future__ import annotations

import os

import pytest
from eth_account import Account

from coopflower.ledger import Chain, ContractRevertError, CoopLedger, Status
from coopflower.ledger.rules import PenaltyReason, mix_shares, round_seed
from tests.fixtures_chain import Scenario, anvil_node, new_scenario  # noqa: F401

REVEAL = 5


def _reverts(name: str) -> pytest.RaisesExc[ContractRevertError]:
    return pytest.raises(ContractRevertError, match=rf"reverted: {name}\(")


def _closed(chain: Chain, who: list[int], n: int = 6) -> tuple[Scenario, int]:
    sc = new_scenario(chain, n=n, vote_blocks=20, reveal_blocks=REVEAL)
    rnd = sc.ledger.open_round(sc.task_id).round
    sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, who), close=True)
    return sc, rnd


def _stranger(sc: Scenario) -> CoopLedger:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    sc.chain.send_value(Account.from_key(key).address, 10**17)
    return CoopLedger.at(sc.chain.with_account(key), sc.ledger.address)


def test_the_seed_mixes_every_revealed_share_and_anyone_may_send_them(chain: Chain) -> None:
    sc, rnd = _closed(chain, [0, 1, 2])
    led, t = sc.ledger, sc.task_id
    info = led.round(t, rnd)
    assert info.reveals and info.reveal_end == info.rand_block + REVEAL
    chain.wait_for_block(info.rand_block + 1)
    assert led.seed_of(t, rnd) == bytes(32)  # nobody knows it before the shares are in
    shares = sc.shares_of(rnd)
    _stranger(sc).reveal_seeds(t, rnd, shares)  # a share proves itself: any sender will do
    info = led.round(t, rnd)
    block_hash = chain.block_hash(info.rand_block)
    mix = mix_shares(list(shares.values()))
    # one transaction revealed every share: the seed is fixed in it, with no mix, bits or
    # block hash stored (66k gas less), the shares in its SeedRevealed events
    assert info.revealed == 3 and (info.mix, info.rand_hash) == (bytes(32), bytes(32))
    assert info.seed == round_seed(block_hash, t, rnd, mix) != round_seed(block_hash, t, rnd)
    assert mix_shares([bytes(e.args["share"]) for e in led.events("SeedRevealed", task_id=t)
                       if int(e.args["round"]) == rnd]) == mix
    plan = led.assignments(t, rnd)
    for sid, verifiers in plan.verifiers.items():
        assert verifiers == led.assigned_verifiers_on_chain(t, rnd, sid)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    led.submit_votes(t, rnd, [sc.vote(rnd, sid, digests[sid], v, True)
                              for sid, vs in plan.verifiers.items() for v in vs])
    assert [s.status for s in led.settle(t, rnd).submissions] == [Status.ACCEPTED] * 3


def test_one_share_changes_the_seed_and_a_revealed_round_cannot_be_refreshed(
        chain: Chain) -> None:
    """The last share moves the whole seed (so the block's sealer, who cannot know it, cannot
    pick the verifiers); once a share is in, the seed no longer depends on the block's hash
    staying readable: after 256 blocks a refresh is refused."""
    sc, rnd = _closed(chain, [0, 1])
    led, t = sc.ledger, sc.task_id
    info = led.round(t, rnd)
    chain.wait_for_block(info.rand_block + 1)
    shares = sc.shares_of(rnd)
    led.reveal_seeds(t, rnd, {0: shares[0]})
    block_hash = chain.block_hash(info.rand_block)
    candidates = {round_seed(block_hash, t, rnd, mix_shares([shares[0], os.urandom(32)]))
                  for _ in range(8)}
    assert len(candidates) == 8  # the unrevealed share decides among 2**256 seeds
    led.reveal_seeds(t, rnd, {1: shares[1]})
    assert led.round(t, rnd).seed == round_seed(block_hash, t, rnd,
                                                mix_shares([shares[0], shares[1]]))
    chain.mine(300)
    with _reverts("RandomnessAvailable"):
        led.refresh_randomness(t, rnd)


def test_a_contributor_that_does_not_reveal_is_out_and_pays(chain: Chain) -> None:
    """Contributor 2 keeps its share (say, to withhold a seed it dislikes): its submission is
    not verified (a vote on it is skipped, NotRevealed), settles UNREVEALED and costs it
    ``penalty_no_vote``; its assigned verifiers lose nothing for not voting on it."""
    sc, rnd = _closed(chain, [0, 1, 2])
    led, t = sc.ledger, sc.task_id
    info = led.round(t, rnd)
    chain.wait_for_block(info.rand_block + 1)
    led.reveal_seeds(t, rnd, sc.shares_of(rnd, who=[0, 1]))
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    with _reverts("RevealWindowOpen"):  # the shares are not all in: no seed yet
        led.submit_votes(t, rnd, [sc.vote(rnd, 0, digests[0], sc.address(3), True)])
    plan = led.assignments(t, rnd)  # waits for the window to pass
    late = led.round(t, rnd)
    assert late.seed == bytes(32) and chain.block_number() > late.reveal_end
    assert plan.seed == round_seed(chain.block_hash(late.rand_block), t, rnd, late.mix)
    unrevealed = next(sid for sid, s in sc.shares_of(rnd, who=[2]).items())
    votes = [sc.vote(rnd, sid, digests[sid], v, True)
             for sid, vs in plan.verifiers.items() for v in vs]
    out = led.submit_votes(t, rnd, votes)
    assert {(s.submission, s.reason) for s in out.skipped} == {(unrevealed, "NotRevealed")}
    result = led.settle(t, rnd)
    status = {s.submission: s.status for s in result.submissions}
    assert status[unrevealed] == Status.UNREVEALED
    assert sum(v == Status.ACCEPTED for v in status.values()) == 2
    assert result.penalized.get(sc.address(2), 0) == sc.params.penalty_no_vote
    reasons = {int(e.args["reason"]) for e in result.tx.named("Penalized")}
    assert reasons == {PenaltyReason.NO_REVEAL}


def test_bad_shares_and_late_ones_are_refused(chain: Chain) -> None:
    sc, rnd = _closed(chain, [0, 1])
    led, t = sc.ledger, sc.task_id
    with _reverts("RandomnessNotReady"):  # before the randomness block: a share would leak
        led.reveal_seeds(t, rnd, sc.shares_of(rnd))
    info = led.round(t, rnd)
    chain.wait_for_block(info.rand_block + 1)
    with _reverts("BadReveal"):  # another share than the one committed to
        led.reveal_seeds(t, rnd, {0: os.urandom(32)})
    with _reverts("BadReveal"):  # contributor 1's share for contributor 0's submission
        led.reveal_seeds(t, rnd, {0: sc.shares_of(rnd)[1]})
    with _reverts("CommitsMismatch"):  # a commitment list that is not the round's
        led._send("revealSeeds", [t, rnd, [os.urandom(32), os.urandom(32)],
                                  [(0, sc.shares_of(rnd)[0])]])
    chain.wait_for_block(info.reveal_end + 1)
    with _reverts("RevealWindowClosed"):
        led.reveal_seeds(t, rnd, sc.shares_of(rnd))

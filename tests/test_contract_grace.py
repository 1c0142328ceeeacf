"""Issue 11, attack 3 for submissions: the relayer cannot close the submission window on a
contributor it left out. An authority closes early only once every participant submitted or
``graceBlocks`` blocks passed since the round's last batch (or its opening); in that grace the
left-out contributor (or anyone) sends its own signed submission, which is then verified and
settled like any other. Before the change the relayer closed the window in the batch that left
the submission out."""

from __future__ import annotations

import pytest

from coopflower.ledger import Chain, ContractRevertError, CoopLedger, Status
from coopflower.ledger.rounds import submission_items
from tests.fixtures_chain import Scenario, anvil_node, new_scenario  # noqa: F401


def _reverts(name: str) -> pytest.RaisesExc[ContractRevertError]:
    return pytest.raises(ContractRevertError, match=rf"reverted: {name}\(")


def _as_node(sc: Scenario, i: int) -> CoopLedger:
    """The contract as participant ``i`` sends to it (with ETH for gas)."""
    sc.chain.send_value(sc.address(i), 10**17)
    return CoopLedger.at(sc.chain.with_account(sc.keys[i]), sc.ledger.address)


def test_a_batch_of_everyone_closes_the_window_at_once(chain: Chain) -> None:
    sc = new_scenario(chain, n=4, grace_blocks=6)
    rnd = sc.ledger.open_round(sc.task_id).round
    tx = sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, range(4)), close=True)
    assert len(tx.named("SubmissionsClosed")) == 1
    assert tx.block_number == sc.ledger.round(sc.task_id, rnd).rand_block - 1  # same tx


def test_the_relayer_cannot_close_on_a_left_out_submission(chain: Chain) -> None:
    sc = new_scenario(chain, n=4, grace_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    # the censoring relayer: nodes 0..2 in, node 3 left out; the window stays open
    led._send("submitBatch", [t, rnd, submission_items(sc.submissions(rnd, [0, 1, 2])), True])
    info = led.round(t, rnd)
    assert info.state == 1 and info.n_submissions == 3
    with _reverts("GraceNotOver"):  # and cannot close it right away
        led._send("closeSubmissions", [t, rnd])
    # the left-out node sends its own signed submission within the grace
    _as_node(sc, 3).submit_batch(t, rnd, sc.submissions(rnd, [3]), close=False)
    led.close_submissions(t, rnd)  # everyone is in: at once
    assert led.round(t, rnd).n_submissions == 4
    verifiers = led.assignments(t, rnd).verifiers
    models = led.round_models(t, rnd)
    (sid,) = [s for s, m in models.items() if m[0].lower() == sc.address(3).lower()]
    digest = led.submission(t, rnd, sid).model_digest
    led.submit_votes(t, rnd, [sc.vote(rnd, sid, digest, v, True, 9500) for v in verifiers[sid]])
    chain.wait_for_block(led.round(t, rnd).vote_end + 1)
    settled = {s.submission: s for s in led.settle(t, rnd).submissions}
    assert settled[sid].status == Status.ACCEPTED
    assert settled[sid].contributor.lower() == sc.address(3).lower()


def test_after_the_grace_the_relayer_closes_without_a_silent_node(chain: Chain) -> None:
    """A node that crashed delays the close by the grace only (mined at once here)."""
    sc = new_scenario(chain, n=4, grace_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    batch = led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=False)
    with _reverts("GraceNotOver"):
        led._send("closeSubmissions", [t, rnd])
    close = led.close_submissions(t, rnd)  # waits out the grace
    assert close.block_number > batch.block_number + 6
    closed = led.round(t, rnd)
    assert closed.state == 2 and closed.n_submissions == 2
    # the library's close=True does the same in one call
    rnd2 = _settle_empty(sc, rnd)
    tx = led.submit_batch(t, rnd2, sc.submissions(rnd2, [0]), close=True)
    assert len(tx.named("SubmissionsClosed")) == 1 and led.round(t, rnd2).state == 2


def _settle_empty(sc: Scenario, rnd: int) -> int:
    """Let round ``rnd`` lapse without votes and open the next one."""
    sc.chain.wait_for_block(sc.ledger.round(sc.task_id, rnd).vote_end + 1)
    sc.ledger.settle(sc.task_id, rnd)
    return sc.ledger.open_round(sc.task_id).round


def test_a_grace_as_long_as_the_window_is_refused(chain: Chain) -> None:
    with _reverts("InvalidTaskParameter"):
        new_scenario(chain, n=4, submit_blocks=10, grace_blocks=10)

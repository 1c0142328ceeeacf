"""A round's event reads (``Submitted``: models, seed commitments) start at the block the
round was opened in, not at block 0: the embedded chain's ``eth_getLogs`` reads every block and
receipt in its range, so a scan from 0 grew with every round (the reveal and assign stages
took 0.17 s in round 1 and 0.43 s in round 5 of bench/round_overhead.py). They must still find
exactly what a scan from block 0 finds, also after the chain was reverted under the binding.
"""

from __future__ import annotations

from coopflower.ledger import CoopLedger, connect
from tests.fixtures_chain import new_scenario


def test_round_reads_start_where_the_round_opened_and_find_what_a_full_scan_finds() -> None:
    chain = connect(None)
    sc = new_scenario(chain, n=4, reveal_blocks=3)
    led, t = sc.ledger, sc.task_id
    chain.mine(20)  # blocks the round's reads need not scan
    rnd = led.open_round(t).round
    opened = chain.block_number()
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1, 2]), close=True)
    assert led._round_start(t, rnd) == opened
    fresh = CoopLedger.at(chain, led.address)  # did not open the round: scans from block 0
    assert fresh._round_start(t, rnd) == 0
    assert led.round_models(t, rnd) == fresh.round_models(t, rnd) and len(
        led.round_models(t, rnd)) == 3
    assert led.seed_commits(t, rnd) == fresh.seed_commits(t, rnd)
    assert [s.model_digest for s in led.submissions(t, rnd)] == [
        s.model_digest for s in fresh.submissions(t, rnd)]
    info = led.round(t, rnd)
    chain.wait_for_block(info.rand_block + 1)
    led.reveal_seeds(t, rnd, sc.shares_of(rnd), led.seed_commits(t, rnd))
    assert led.assignments(t, rnd).verifiers == fresh.assignments(t, rnd).verifiers


def test_a_reverted_chain_never_hides_a_rounds_events() -> None:
    """The remembered block is checked by its hash: after a revert the round re-opened at an
    earlier block is read from there (here from block 0), never from the stale block."""
    chain = connect(None)
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    sc = new_scenario(chain, n=4)
    led, t = sc.ledger, sc.task_id
    snapshot = tester.take_snapshot()
    chain.mine(10)
    rnd = led.open_round(t).round
    stale = led._round_start(t, rnd)
    tester.revert_to_snapshot(snapshot)
    chain.resync()
    other = CoopLedger.at(chain, led.address)
    assert other.open_round(t).round == rnd  # opened again, earlier, by another binding
    other.submit_batch(t, rnd, sc.submissions(rnd, [0, 1]), close=True)
    assert chain.block_number() < stale  # the remembered block is not on the chain now
    assert len(led.round_models(t, rnd)) == 2
    assert led._round_start(t, rnd) == 0


def test_a_closed_rounds_kept_events_and_pool_serve_reads_until_the_chain_is_reverted() -> None:
    """The binding that closed a round with every submission in its own batch keeps the
    round's ``Submitted`` events (no ``eth_getLogs``) and the participant pool; a fresh binding
    reads the same from the chain. After a revert and another round under the same number the
    kept ones are dropped (the closing block's hash is gone) and the reads match the chain."""
    chain = connect(None)
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    sc = new_scenario(chain, n=5)
    led, t = sc.ledger, sc.task_id
    snapshot = tester.take_snapshot()
    rnd = led.open_round(t).round
    led.submit_batch(t, rnd, sc.submissions(rnd, [0, 1, 2, 3, 4]), close=True)
    assert (t, rnd) in led._closed_rounds and led._closed_submitted(t, rnd) is not None
    fresh = CoopLedger.at(chain, led.address)
    assert fresh._closed_submitted(t, rnd) is None  # it did not close the round
    assert led.round_models(t, rnd) == fresh.round_models(t, rnd)
    assert led.assignments(t, rnd).verifiers == fresh.assignments(t, rnd).verifiers
    assert led._pool(t, 5) == fresh.participants(t)
    tester.revert_to_snapshot(snapshot)
    chain.resync()
    other = CoopLedger.at(chain, led.address)
    assert other.open_round(t).round == rnd
    other.submit_batch(t, rnd, sc.submissions(rnd, [4, 3]), close=True)  # not all: grace
    assert led._closed_submitted(t, rnd) is None and (t, rnd) not in led._closed_rounds
    models = led.round_models(t, rnd)
    assert models == CoopLedger.at(chain, led.address).round_models(t, rnd) and len(models) == 2
    assert led.assignments(t, rnd).verifiers == other.assignments(t, rnd).verifiers


def test_a_round_closed_with_submissions_from_elsewhere_is_read_from_the_chain() -> None:
    """A contributor that sent its own submission before the batch: the batch's events are not
    all of the round's, so nothing is kept and the reads find all three."""
    chain = connect(None)
    sc = new_scenario(chain, n=4)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    own = sc.submissions(rnd, [0])
    contributor = CoopLedger.at(chain.with_account(sc.keys[0]), led.address)
    chain.send_value(sc.address(0), 10**18)
    contributor.submit_batch(t, rnd, own, close=False)
    led.submit_batch(t, rnd, sc.submissions(rnd, [1, 2, 3]), close=True)
    assert (t, rnd) not in led._closed_rounds
    assert len(led.round_models(t, rnd)) == 4
    assert led.assignments(t, rnd).verifiers == CoopLedger.at(chain, led.address).assignments(
        t, rnd).verifiers

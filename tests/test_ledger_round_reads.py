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

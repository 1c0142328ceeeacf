"""Issue 13, batches across blocks: registrations, submissions, seed shares and votes go out in
as many transactions as the block gas needs (here forced small with ``max_batch``), each
checked on chain as a whole batch is; ids, skipped items and the round's outcome are those of
one batch. On the real contract (embedded EVM and anvil)."""

from __future__ import annotations

import os

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

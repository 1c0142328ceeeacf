"""Issue 11, attacks 8 and 9 on the strategy's side of the chain: a submission the strategy did
not relay is named and ignored, and submission ids come from the events, not from positions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from flwr.app import ArrayRecord

from coopflower.ledger import connect
from coopflower.strategy.progress import PhaseLog
from coopflower.strategy.replies import tally_votes
from coopflower.strategy.rounds import RoundReport
from coopflower.strategy.settlement import finish_on_chain
from coopflower.strategy.stages import RoundState
from tests.fixtures_chain import new_scenario


def test_settlement_names_a_submission_it_did_not_relay() -> None:
    """Before: a participant that sent its own (different) model to the contract before the
    relayer's batch made the batch revert (AlreadySubmitted); had the batch survived, the
    positional ``zip(ids, subs)`` would have failed, and settlement raised ``KeyError`` on the
    submission id the strategy did not send. Now the batch is recorded without the stale item,
    ``SubmitResult.by_id`` maps the ids by contributor and model, and settlement names the
    unknown submission in the report's failures and leaves it out of the accepted models."""
    sc = new_scenario(connect(), n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    relayed = sc.submissions(rnd, [0, 1, 2, 3])
    own = sc.submissions(rnd, [3])[0]  # participant 3 sends another model of its own first
    sc.chain.send_value(sc.address(3), 10**17)
    type(led).at(sc.chain.with_account(sc.keys[3]), led.address).submit_batch(
        t, rnd, [own], close=False)
    out = led.submit_batch(t, rnd, relayed, close=True)
    assert [(s.item, s.reason) for s in out.skipped] == [(3, "AlreadySubmitted")]
    ids = [int(e.args["submission"]) for e in out.named("Submitted")]
    assert len(ids) == 3 != len(relayed)  # what a positional mapping would have zipped
    assert out.by_id == {1: relayed[0], 2: relayed[1], 3: relayed[2]}

    st = RoundState(rnd, ArrayRecord(), RoundReport(1, chain_round=rnd))
    st.by_id = dict(out.by_id)
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    st.assignment = plan
    # every assigned verifier says yes, also on the submission the strategy never saw (its
    # verifiers fetched it from the public event)
    st.votes = [sc.vote(rnd, sid, digests[sid], v, True)
                for sid, vs in plan.verifiers.items() for v in vs]
    s = SimpleNamespace(ledger=led, task_id=t, phases=PhaseLog(1, stream=None), inner=object())
    known = [v for v in st.votes if v.submission in st.by_id]
    tallied = tally_votes(known, st.by_id, sc.params.quorum, sc.params.min_accuracy_bps)
    finish_on_chain(s, st, 10.0, tallied, None)  # type: ignore[arg-type]
    assert sorted(st.report.submissions) == [1, 2, 3]
    assert st.report.accepted == 4  # the contract's count, the unknown one included
    (failure,) = st.report.failures
    assert failure.phase == "settle" and failure.reason == (
        f"submission 0 by {sc.address(3)} (ACCEPTED) was not relayed by this strategy: left out")


def test_the_strategy_names_a_skipped_item_and_still_asks_for_votes_on_the_direct_submission(
) -> None:
    """Attack 8 through the strategy's own stages: participant 3 submits a model itself before
    the relayer's batch. Before: the strategy zipped ids by position and failed (ValueError);
    the direct submission's verifiers were never asked and lost their deposits. Now the stale
    item is a named failure of node 3, and the assign stage takes the direct submission's CID
    and hash from the public event so its verifiers are asked like any other."""
    from coopflower.strategy import stages

    sc = new_scenario(connect(), n=5, vote_blocks=6)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    relayed = sc.submissions(rnd, [0, 1, 2, 3])
    own = sc.submissions(rnd, [3])[0]
    sc.chain.send_value(sc.address(3), 10**17)
    type(led).at(sc.chain.with_account(sc.keys[3]), led.address).submit_batch(
        t, rnd, [own], close=False)
    s = SimpleNamespace(ledger=led, task_id=t, phases=PhaseLog(1, stream=None),
                        addresses={100 + i: sc.address(i) for i in range(5)})
    st = RoundState(1, ArrayRecord(), RoundReport(1, chain_round=rnd))
    st.subs = list(relayed)
    stages.submit(s, st)  # type: ignore[arg-type]
    (failure,) = st.report.failures
    assert failure.node_id == 103 and "AlreadySubmitted" in failure.reason
    stages.assign(s, st)  # type: ignore[arg-type]
    assert sorted(st.by_id) == [0, 1, 2, 3] and sorted(st.assignment.verifiers) == [0, 1, 2, 3]
    assert st.by_id[0].cid == own.cid and st.by_id[0].content_hash == own.content_hash


@pytest.mark.usefixtures("run_identity")  # tests/conftest.py: Messages need a run id
def test_an_inflated_example_count_does_not_make_the_global_model() -> None:
    """Attack 5: a contributor declaring 10**12 examples. Before: weighted averaging (ours and the
    inner FedAvg's) returned exactly its arrays. Now the task's default weighs every accepted
    model the same (the claim sets nothing); a task that takes declared counts clips each at
    twice the round's median claim, so it weighs like two honest contributors."""
    import numpy as np
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    from coopflower.strategy import wrapped
    from coopflower.strategy.aggregate import AcceptedModel, weighted_average

    honest = [{"w": np.full((2, 2), 1.0, np.float32)} for _ in range(3)]
    bad = {"w": np.full((2, 2), 100.0, np.float32)}
    claims = [100, 100, 100, 10**12]
    models = [AcceptedModel(bytes([i]), f"0x{i}", "", n, a, ())
              for i, (a, n) in enumerate(zip([*honest, bad], claims, strict=True))]
    ours = weighted_average(models)
    assert ours is not None
    expected = (3 * 100 * 1.0 + 200 * 100.0) / (3 * 100 + 200)  # the claim clipped to 2 x 100
    np.testing.assert_allclose(ours["w"], expected, rtol=1e-6)

    replies = [Message(RecordDict({"metrics": MetricRecord({"num-examples": n})}), 1, "train")
               for n in claims]
    pairs = [(a, r) for a, r in zip([*honest, bad], replies, strict=True)]
    # the default rule: weights no contributor sets (every accepted model the same)
    new, _ = wrapped.aggregate_accepted(FedAvg(), 1, pairs)
    assert new is not None
    np.testing.assert_allclose(new["w"].numpy(), (3 * 1.0 + 100.0) / 4, rtol=1e-6)
    # a task that takes the declared counts: each clipped to twice the median claim
    new, _ = wrapped.aggregate_accepted(FedAvg(), 1, pairs, weights="declared")
    assert new is not None
    np.testing.assert_allclose(new["w"].numpy(), expected, rtol=1e-6)

"""Pure pieces of the strategies: weighted averaging of accepted models, phase log, meter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from coopflower.strategy.aggregate import AcceptedModel, AggregationError, weighted_average
from coopflower.strategy.metering import ByteMeter, message_bytes
from coopflower.strategy.progress import PhaseLog


def _m(value: float, n: int, shape: tuple[int, ...] = (2, 2)) -> AcceptedModel:
    return AcceptedModel(b"cid", "0xabc", "m", n, {"w": np.full(shape, value, np.float32)})


def test_weighted_average_by_examples() -> None:
    out = weighted_average([_m(1.0, 1), _m(4.0, 3)])
    assert out is not None
    np.testing.assert_allclose(out["w"], np.full((2, 2), 3.25))


def test_weighted_average_leaves_out_other_architectures() -> None:
    current = {"w": np.zeros((2, 2), np.float32)}
    out = weighted_average([_m(1.0, 1), _m(9.0, 5, (3,)), _m(3.0, 1)], current)
    assert out is not None
    np.testing.assert_allclose(out["w"], np.full((2, 2), 2.0))
    assert weighted_average([_m(9.0, 5, (3,))], current) is None
    assert weighted_average([], current) is None
    with pytest.raises(AggregationError):
        weighted_average([_m(1.0, 0)])


def test_phase_log_prints_a_line_per_phase() -> None:
    buf = io.StringIO()
    log = PhaseLog(num_rounds=2, stream=buf)
    with log.phase(1, "train") as rec:
        rec.detail = "4 models"
    with log.phase(1, "verify"):
        pass
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[round 1/2] train") and "4 models" in lines[0]
    assert set(log.seconds(1)) == {"train", "verify"}


def test_message_bytes_counts_payloads(run_identity) -> None:  # type: ignore[no-untyped-def]
    arr = ArrayRecord({"w": Array(np.zeros(1000, np.float32))})
    msg = Message(RecordDict({"arrays": arr, "config": ConfigRecord({"x": b"12345"})}), 0, "train")
    assert message_bytes(msg) >= 4000 + 5
    meter = ByteMeter()
    meter.add_sent(1, [msg, msg])
    meter.add_storage(1, 10)
    assert meter.total(1) == 2 * message_bytes(msg) + 10


def test_record_bytes_handles_empty_values() -> None:
    from flwr.app import ConfigRecord

    from coopflower.strategy.metering import record_bytes

    rec = ConfigRecord({"a": "", "bb": [], "c": [b"xy", b"z"], "d": 3, "e": True})
    assert record_bytes(rec) == 1 + 2 + (1 + 3) + (1 + 8) + (1 + 1)


def test_pull_schedule_grows_to_its_cap_and_rejects_nonsense() -> None:
    from itertools import islice

    from coopflower.strategy.messaging import PullSchedule

    steps = list(islice(PullSchedule(0.01, 0.1, 2.0).intervals(), 6))
    assert steps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    for bad in ((0.0, 0.1, 1.5), (0.2, 0.1, 1.5), (0.01, 0.1, 0.5)):
        with pytest.raises(ValueError, match="pull schedule"):
            PullSchedule(*bad)


def test_a_simulations_grid_is_pulled_every_5_ms_a_superlinks_on_the_growing_schedule() -> None:
    from itertools import islice

    from flwr.superlink.grid import InMemoryGrid

    from coopflower.strategy.messaging import IN_MEMORY, PullSchedule, default_schedule

    assert default_schedule(InMemoryGrid.__new__(InMemoryGrid)) == IN_MEMORY
    assert set(islice(IN_MEMORY.intervals(), 3)) == {0.005}
    assert default_schedule(object()) == PullSchedule()  # type: ignore[arg-type]


def test_tally_of_relayed_votes_follows_the_contract_rule() -> None:
    from types import SimpleNamespace

    from coopflower.strategy.replies import tally_votes as _tally_votes

    def votes(sid: int, *accept: bool, score: int = 9000) -> list[SimpleNamespace]:
        return [SimpleNamespace(submission=sid, accept=a, score_bps=score) for a in accept]

    subs = {0: "a", 1: "b", 2: "c", 3: "d"}
    cast = votes(0, True, True, False) + votes(1, True, False) + votes(2, True) \
        + votes(3, False, False, True)
    # 2 of 3 yes: accepted; a tie: rejected; one vote: below quorum 2; 1 of 3: rejected
    assert _tally_votes(cast, subs, quorum=2, min_accuracy_bps=8000) == [0]
    assert _tally_votes(cast, subs, quorum=1, min_accuracy_bps=8000) == [0, 2]
    # sound-model votes whose signed score is below the task's threshold are noes
    assert _tally_votes(cast, subs, quorum=1, min_accuracy_bps=9001) == []
    low = votes(0, True, True, True, score=7999)
    assert _tally_votes(low, {0: "a"}, quorum=1, min_accuracy_bps=8000) == []


def test_chain_tail_hands_its_error_to_the_joining_round() -> None:
    from coopflower.strategy.coordinated import RoundReport, StrategyError
    from coopflower.strategy.settlement import ChainTail as _ChainTail

    done: list[int] = []
    ok = _ChainTail(RoundReport(1), lambda: done.append(1))
    ok.join()
    assert done == [1]

    def fail() -> None:
        raise ValueError("settle reverted")

    bad = _ChainTail(RoundReport(2), fail)
    bad.wait()  # waiting never raises
    with pytest.raises(StrategyError, match="round 2's chain steps failed: settle reverted"):
        bad.join()


def test_prefetched_accepted_models_are_the_fetched_ones_and_metered_alike(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The initiator's background fetch during verification gives aggregate the same models,
    the same bytes counted and the same refusal (a blob whose content hash is not the signed
    one) as fetching after the votes; submissions never taken are not counted."""
    from types import SimpleNamespace

    from coopflower.blob import pack_arrays
    from coopflower.ledger.eip712 import SignedSubmission, content_hash
    from coopflower.storage.embedded import EmbeddedStore
    from coopflower.strategy.accepted import Prefetch, fetch

    store = EmbeddedStore(tmp_path / "store")
    subs = []
    for i in range(3):
        blob = pack_arrays({"w": np.full((4, 4), float(i), np.float32)}, {"num-examples": "5"})
        chash = content_hash(blob) if i != 1 else bytes(32)  # submission 1 lies about its hash
        subs.append(SignedSubmission(1, 1, f"0x{i:040x}", store.put(blob).to_bytes(), chash,
                                     b""))

    def initiator() -> SimpleNamespace:
        return SimpleNamespace(open_store=lambda: store, meter=ByteMeter(), encryption=None)

    plain, ahead = initiator(), initiator()
    taken = subs[:2]  # submission 2 was prefetched but not accepted
    want = fetch(plain, 1, taken)
    got = fetch(ahead, 1, taken, Prefetch(ahead, subs))
    assert [m.cid for m in got] == [m.cid for m in want] == [subs[0].cid]
    assert all(np.array_equal(g.arrays["w"], w.arrays["w"]) for g, w in zip(got, want, strict=True))
    assert got[0].num_examples == 5
    assert ahead.meter.storage == plain.meter.storage and plain.meter.storage[1] > 0

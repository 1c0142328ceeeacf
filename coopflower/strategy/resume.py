"""Taking up a task after the ServerApp stopped in the middle of a round.

``CoordinatedStrategy(..., task_id=T, resume=True)`` (or ``$COOPFLOWER_RESUME_TASK=T``) reads
the task and its last round from the chain and carries that round on from where the chain
says it stands, then runs the task's remaining rounds (``num_rounds`` counts the task's rounds
from its first):

- OPEN, no submission on chain: the round's contributors train and submit as usual.
- OPEN with submissions on chain: the window is closed and the round goes on from ``assign``
  with those submissions.
- VOTING: the seed shares still missing are asked for while the reveal window is open, the
  verifiers are drawn as the contract checks them, and only the votes not on chain yet are
  asked for (while the vote window is open); then the contract settles.
- SETTLED without its MetaModel: the accepted submissions are aggregated and recorded.

The submissions are the ones on chain (``Submitted`` events): none is lost and none is made
again; settlement is the contract's, which refuses a second one (``WrongRoundState``), so a
round is never paid twice. The global model a round starts from is the last MetaModel recorded
before it (its blob fetched by CID and checked against the hash on chain), else the initial
arrays. The nodes keep their registration: each node's key file (``coopflower.client.keys``)
gives it the same address, and ``publish.register`` registers only addresses the task lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from coopflower.client import protocol as P
from coopflower.ledger.eip712 import SignedSubmission, content_hash
from coopflower.ledger.rules import Status
from coopflower.strategy import accepted, reveal, settlement, stages
from coopflower.strategy.rounds import RoundReport
from coopflower.strategy.stages import RoundState
from coopflower.strategy.task import StrategyError

if TYPE_CHECKING:
    from coopflower.ledger.records import RoundInfo
    from coopflower.strategy.coordinated import CoordinatedStrategy

__all__ = ["TakenUp", "check_task", "global_before", "round_finished", "take_up"]

ROUND_OPEN, ROUND_VOTING, ROUND_SETTLED, ROUND_SETTLING = 1, 2, 3, 4
_STATES = {0: "NONE", ROUND_OPEN: "OPEN", ROUND_VOTING: "VOTING", ROUND_SETTLED: "SETTLED",
           ROUND_SETTLING: "SETTLING"}


@dataclass
class TakenUp:
    """What taking up the task left: the report of the round it finished (``None`` when the
    last round needed nothing), the global model after it, and the next round to run."""

    report: RoundReport | None
    arrays: ArrayRecord
    next_round: int


def round_finished(info: RoundInfo) -> bool:
    """Whether a round needs nothing more: settled, and its MetaModel recorded (or nothing
    accepted to aggregate)."""
    return info.state == ROUND_SETTLED and (info.accepted == 0 or info.meta_digest != bytes(32))


def check_task(s: CoordinatedStrategy) -> None:
    """``StrategyError`` when the task on chain is not the one this run's ``TaskConfig``
    describes (its spec hash, k, quorum and threshold), or is closed."""
    from coopflower.ledger.errors import ContractRevertError

    task_id = int(s.task_id or 0)
    try:
        info = s.ledger.task(task_id)
    except ContractRevertError as exc:
        raise StrategyError(f"task {task_id} is not on contract {s.ledger.address}: "
                            f"nothing to resume ({exc.name})") from exc
    p, t = info.params, s.task
    if info.closed:
        raise StrategyError(f"task {task_id} is closed: nothing to resume")
    mine = (content_hash(t.spec_text().encode()), t.k, t.quorum, t.threshold_bps())
    if (bytes(p.spec_hash), p.k, p.quorum, p.min_accuracy_bps) != mine:
        raise StrategyError(f"task {task_id} on chain has other rules (k={p.k}, quorum="
                            f"{p.quorum}, {p.min_accuracy_bps} bps, its own spec hash) than "
                            "this run's TaskConfig: resume it with the TaskConfig it was "
                            "published with")
    # the task this strategy's initiator published is closed at the end as the first run's
    if str(info.initiator).lower() == str(s.ledger.chain.address).lower():
        s.published_task = True


def global_before(s: CoordinatedStrategy, rnd: int, initial: ArrayRecord) -> ArrayRecord:
    """The global model round ``rnd`` starts from: the last MetaModel recorded for an earlier
    round (fetched by CID, checked against the content hash on chain), else ``initial``."""
    from coopflower.blob import BlobError, unpack_arrays
    from coopflower.storage.errors import StorageError

    task_id = int(s.task_id or 0)
    recorded = [e for e in s.ledger.events("MetaModelRecorded", task_id=task_id)
                if int(e.args["round"]) < rnd]
    if not recorded:
        return initial
    last = max(recorded, key=lambda e: int(e.args["round"]))
    cid, chash = bytes(last.args["cid"]), bytes(last.args["contentHash"])
    try:
        blob = s.open_store().get(cid)
        if content_hash(blob) != chash:
            raise ValueError("its content hash is not the one on chain")
        arrays, _ = unpack_arrays(blob)
    except (StorageError, BlobError, ValueError) as exc:
        raise StrategyError(f"round {last.args['round']}'s MetaModel {cid.hex()[:16]}... "
                            f"cannot start the resumed run: {exc}") from exc
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def take_up(s: CoordinatedStrategy, grid: Grid, initial: ArrayRecord,
            train_config: ConfigRecord, evaluate_config: ConfigRecord | None,
            timeout: float) -> TakenUp:
    """Finish the task's last round if the chain shows it unfinished (see the module
    docstring); returns what the run goes on from."""
    check_task(s)
    task_id = int(s.task_id or 0)
    last = s.ledger.task(task_id).round_count
    if last == 0:
        return TakenUp(None, initial, 1)
    info = s.ledger.round(task_id, last)
    if round_finished(info):
        return TakenUp(None, global_before(s, last + 1, initial), last + 1)
    st = RoundState(last, global_before(s, last, initial), RoundReport(last, chain_round=last))
    st.tx0 = s.ledger.chain.tx_count
    with s.phases.phase(last, "resume") as rec:
        rec.detail = (f"task {task_id} round {last} {_STATES.get(info.state, info.state)} "
                      f"with {info.n_submissions} submissions on chain")
    if info.state == ROUND_OPEN and info.n_submissions == 0:
        stages.train(s, st, grid, train_config, timeout)
        stages.submit(s, st)
    elif info.state == ROUND_OPEN:
        _load_submissions(s, st)
        _close_window(s, st)
    else:
        _load_submissions(s, st)
    if info.state != ROUND_SETTLED:  # VOTING, or SETTLING: settled in part
        _verify_and_settle(s, st, grid, evaluate_config, timeout)
    else:
        _settled_from_chain(s, st)
    ids = sorted(sid for sid, v in st.report.submissions.items() if v[2] == "ACCEPTED")
    _claims(s, st, ids)
    settlement.record_metamodel(s, st, accepted.aggregate(s, st, ids))
    arrays = st.report.new_arrays if st.report.new_arrays is not None else st.arrays
    return TakenUp(st.report, arrays, last + 1)


def _load_submissions(s: CoordinatedStrategy, st: RoundState) -> None:
    """The round's submissions as the chain holds them (``Submitted`` events), each with a
    train reply of its contributor's node (no app metrics: its train reply went with the
    stopped run)."""
    task_id, rnd = int(s.task_id or 0), st.report.chain_round
    node_of = {a.lower(): nid for nid, a in s.addresses.items()}
    for sid, (contributor, _, chash, cid) in sorted(s.ledger.round_models(task_id, rnd).items()):
        sub = SignedSubmission(task_id, rnd, contributor, cid, chash, b"")
        st.by_id[sid] = sub
        st.subs.append(sub)
        st.replies.append(_reply(node_of.get(contributor.lower(), 0), MetricRecord()))


def _reply(node_id: int, metrics: MetricRecord) -> Message:
    return Message(RecordDict({P.METRICS: metrics}), node_id, "train")


def _close_window(s: CoordinatedStrategy, st: RoundState) -> None:
    """Close the submission window the stopped run left open (its submissions stay)."""
    with s.phases.phase(st.rnd, "close") as rec:
        s.ledger.close_submissions(int(s.task_id or 0), st.report.chain_round)
        rec.detail = f"window closed on {len(st.by_id)} submissions already on chain"


def _voted_on_chain(s: CoordinatedStrategy, rnd: int) -> set[tuple[int, str]]:
    """(submission, verifier) of every vote of the round already on chain."""
    return {(int(e.args["submission"]), str(e.args["verifier"]).lower())
            for e in s.ledger.events("VoteCast", task_id=int(s.task_id or 0))
            if int(e.args["round"]) == rnd}


def _revealed_on_chain(s: CoordinatedStrategy, rnd: int) -> set[int]:
    return {int(e.args["submission"])
            for e in s.ledger.events("SeedRevealed", task_id=int(s.task_id or 0))
            if int(e.args["round"]) == rnd}


def _verify_and_settle(s: CoordinatedStrategy, st: RoundState, grid: Grid,
                       evaluate_config: ConfigRecord | None, timeout: float) -> None:
    """The shares still missing, the assignment, the votes still missing, the settlement."""
    task_id, rnd = int(s.task_id or 0), st.report.chain_round
    info = s.ledger.round(task_id, rnd)
    if info.reveals and st.by_id:
        window_open = info.seed == bytes(32) and s.ledger.chain.block_number() <= info.reveal_end
        if window_open and info.revealed < info.n_submissions:
            reveal.reveal(s, st, grid, timeout)
    stages.assign(s, st)
    if st.assignment is not None and info.reveals:
        # submissions without a share on chain by now are settled UNREVEALED, never verified
        st.unrevealed = set(range(info.n_submissions)) - _revealed_on_chain(s, rnd)
        for sid in st.unrevealed:
            st.assignment.verifiers.pop(sid, None)
    if st.assignment is not None:
        voted = _voted_on_chain(s, rnd)
        st.report.votes = len(voted)
        for sid, verifiers in list(st.assignment.verifiers.items()):
            verifiers[:] = [v for v in verifiers if (sid, v.lower()) not in voted]
        vote_open = s.ledger.chain.block_number() < s.ledger.round(task_id, rnd).vote_end
        if st.expected_votes and vote_open:
            stages.verify(s, st, grid, evaluate_config, timeout)
    settlement.finish_on_chain(s, st, timeout, None, None)
    st.report.votes = len(_voted_on_chain(s, rnd))  # the stopped run's and this one's


def _settled_from_chain(s: CoordinatedStrategy, st: RoundState) -> None:
    """A round the stopped run settled: its outcome from the ``SubmissionSettled`` events."""
    task_id, rnd = int(s.task_id or 0), st.report.chain_round
    report = st.report
    for e in s.ledger.events("SubmissionSettled", task_id=task_id):
        if int(e.args["round"]) != rnd:
            continue
        sid = int(e.args["submission"])
        report.submissions[sid] = (str(e.args["contributor"]), st.by_id[sid].cid,
                                   Status(int(e.args["status"])).name,
                                   int(e.args["yesVotes"]), int(e.args["votesCast"]))
    report.accepted = sum(v[2] == "ACCEPTED" for v in report.submissions.values())
    report.votes = len(_voted_on_chain(s, rnd))
    report.verify_metrics = MetricRecord({"votes": report.votes, "accepted": report.accepted,
                                          "failures": len(report.failures)})


def _claims(s: CoordinatedStrategy, st: RoundState, ids: Sequence[int]) -> None:
    """With ``weights="declared"`` the inner strategy weighs each accepted model by its
    contributor's claim: a taken-up round has no train replies, so the claim is the one the
    blob itself carries (``num-examples``, what the audit recomputes from)."""
    if s.task.weights != "declared" or not ids or s.aggregate_fn is not None:
        return
    key = str(getattr(s.inner, "weighted_by_key", "num-examples"))
    models: dict[bytes, Any] = {m.cid: m for m in accepted.fetch(
        s, st.rnd, [st.by_id[sid] for sid in ids])}
    for i, sub in enumerate(st.subs):
        if sub.cid in models:
            nid = st.replies[i].metadata.dst_node_id
            st.replies[i] = _reply(nid, MetricRecord({key: int(models[sub.cid].num_examples)}))

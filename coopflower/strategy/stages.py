"""The coordinated round as a sequence of stage functions over a ``RoundState``.

``coopflower.strategy.one_round.run_round`` calls them in order (the shape of Flower's SecAgg+
workflow):

1. :func:`open_round`: the contract opens the round.
2. :func:`train`: contributors train, upload and sign; the signed submissions are parsed.
3. :func:`submit`: every submission in one transaction, which closes the window.
   (``coopflower.strategy.reveal``: in a task with reveals, the contributors' seed shares.)
4. :func:`assign`: verifiers from the randomness block (and the revealed shares), computed as
   the contract checks it.
5. :func:`verify`: each verifier gets its assignments and returns signed votes.

The chain steps after the votes (relay, settle, record the MetaModel) are in
``coopflower.strategy.settlement``, the aggregation of the accepted models in
``coopflower.strategy.accepted``. Each stage is timed and printed as a phase; failures of nodes
go into the round's report, and the round goes on with the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from coopflower.ledger.eip712 import SignedSubmission, SignedVote
from coopflower.strategy import wrapped
from coopflower.strategy.messaging import send_and_receive
from coopflower.strategy.progress import transactions
from coopflower.strategy.replies import ReplyError, metric, parse_submission, parse_votes
from coopflower.strategy.rounds import NodeFailure, RoundReport
from coopflower.strategy.task import StrategyError

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy

__all__ = ["RoundState", "open_round", "train", "exchange", "submit", "assign", "verify"]


@dataclass
class RoundState:
    """What one round carries from stage to stage."""

    rnd: int
    arrays: ArrayRecord
    report: RoundReport
    started: float = field(default_factory=time.perf_counter)
    tx0: int = 0
    subs: list[SignedSubmission] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)  # the submissions' train replies
    by_id: dict[int, SignedSubmission] = field(default_factory=dict)
    assignment: Any = None
    unrevealed: set[int] = field(default_factory=set)  # submissions without a seed share
    votes: list[SignedVote] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    compute: float = 0.0
    handler: float = 0.0
    prefetched: Any = None  # coopflower.strategy.accepted.Prefetch of the submitted blobs

    @property
    def expected_votes(self) -> int:
        """Votes the assignment asks for (every assigned verifier once per submission)."""
        if self.assignment is None:
            return 0
        return sum(len(v) for v in self.assignment.verifiers.values())

    def fail(self, phase: str, node_id: int, reason: str) -> None:
        self.report.failures.append(NodeFailure(phase, node_id, reason))


def open_round(s: CoordinatedStrategy, st: RoundState, expected: int | None) -> int:
    """Open the contract's next round; ``expected`` is the number contributors signed for."""
    task_id = int(s.task_id or 0)
    with s.phases.phase(st.rnd, "open") as rec:
        info = s.ledger.open_round(task_id)
        if expected is not None and info.round != expected:
            raise StrategyError(f"the contract opened round {info.round} of task {task_id}, "
                                f"the contributors signed for {expected}: another authority "
                                "opened a round of this task")
        rec.detail = f"task {task_id} round {info.round} open until block {info.submit_end}"
        st.report.chain_round = int(info.round)
        return int(info.round)


def train(s: CoordinatedStrategy, st: RoundState, grid: Grid, train_config: ConfigRecord,
          timeout: float) -> None:
    """Contributors train, store their blobs and sign; the valid submissions are kept."""
    with s.phases.phase(st.rnd, "train") as rec:
        msgs, node_ids = train_messages(s, st, grid, train_config)
        for msg in exchange(s, st, "train", grid, msgs, timeout):
            nid = msg.metadata.src_node_id
            try:
                sub = parse_submission(msg, s.ledger.domain, int(s.task_id or 0),
                                       st.report.chain_round, s.addresses[nid])
            except ReplyError as exc:
                st.fail("train", nid, str(exc))
                continue
            st.compute += metric(msg, "compute-seconds")
            st.handler += metric(msg, "handler-seconds")
            s.meter.add_storage(st.rnd, int(metric(msg, "blob-bytes")))
            st.subs.append(sub)
            st.replies.append(msg)
        rec.detail = f"{len(st.subs)} signed submissions from {len(node_ids)} contributors"


def exchange(s: CoordinatedStrategy, st: RoundState, phase: str, grid: Grid,
              msgs: list[Message], timeout: float) -> list[Message]:
    """Send a phase's messages (metered) and collect the replies; an error reply and a node
    that did not answer are the phase's named failures, the usable replies are returned."""
    if not msgs:
        return []
    s.meter.add_sent(st.rnd, msgs)
    replies = send_and_receive(grid, msgs, timeout=timeout)
    s.meter.add_received(st.rnd, replies)
    answered = {m.metadata.src_node_id for m in replies}
    for msg in replies:
        if msg.has_error():
            st.fail(phase, msg.metadata.src_node_id, str(msg.error.reason))
    for nid in sorted({m.metadata.dst_node_id for m in msgs} - answered):
        st.fail(phase, int(nid), "no reply (timeout)")
    return [m for m in replies if not m.has_error()]


def train_messages(s: CoordinatedStrategy, st: RoundState, grid: Grid,
                   train_config: ConfigRecord) -> tuple[list[Message], list[int]]:
    """The round's train messages (the inner strategy's sampling and the user's config, with
    the ``train`` stage added) and the node ids they go to."""
    base = {**s.base_config(), "server-round": st.rnd, "round": st.report.chain_round}
    # with fusion the global arrays are the initiator's MetaModel: the nodes' fusion mod
    # hands each app its own private model instead
    arrays = ArrayRecord() if s.fusing else st.arrays
    if s.fusing:
        base["fusion"] = True
    msgs, outsiders = wrapped.train_messages(s.inner, grid, st.rnd, arrays, train_config,
                                             s.addresses, base)
    for nid in outsiders:
        st.fail("train", nid, "sampled by the inner strategy but not registered: left out")
    return msgs, [m.metadata.dst_node_id for m in msgs]


def submit(s: CoordinatedStrategy, st: RoundState) -> None:
    """Relay every signed submission in as few transactions as the block gas allows, the last
    closing the window (``coopflower.ledger.batches``). Items the
    contract skips (already submitted by the contributor itself, a replay, a copy of a model
    already on chain) do not sink the batch: each is named in the report."""
    task_id, chain_round = int(s.task_id or 0), st.report.chain_round
    with s.phases.phase(st.rnd, "submit") as rec:
        tx0 = s.ledger.chain.tx_count
        st.by_id = {}
        if st.subs:
            tx = s.ledger.submit_batch(task_id, chain_round, st.subs, close=True)
            st.report.gas += tx.gas_used
            st.by_id = dict(tx.by_id)
            node_of = {a.lower(): nid for nid, a in s.addresses.items()}
            for sk in tx.skipped:
                held = (f": the model of round {sk.held[0]} submission {sk.held[1]}"
                        if sk.held else "")
                st.fail("submit", node_of.get(sk.who.lower(), -1),
                        f"submission skipped by the contract ({sk.reason}){held}")
        else:
            s.ledger.close_submissions(task_id, chain_round)
        rec.detail = (f"{len(st.by_id)} submissions in "
                      f"{transactions(s.ledger.chain.tx_count - tx0)}")


def assign(s: CoordinatedStrategy, st: RoundState) -> None:
    """The verifiers of each submission, from the hash of the randomness block."""
    with s.phases.phase(st.rnd, "assign") as rec:
        if st.by_id:
            st.assignment = s.ledger.assignments(int(s.task_id or 0), st.report.chain_round)
        if st.assignment is None or not st.assignment.verifiers:
            st.assignment = None
            rec.detail = "nothing to verify"
            return
        _known_on_chain(s, st)
        for sid in st.unrevealed:  # never verified: the contract skips votes on them
            st.assignment.verifiers.pop(sid, None)
        rec.detail = (f"seed 0x{st.assignment.seed.hex()[:12]}... from block "
                      f"{st.assignment.rand_block}")


def _known_on_chain(s: CoordinatedStrategy, st: RoundState) -> None:
    """Submissions on chain the relayed batch did not carry (a contributor may submit itself,
    before the batch): their CID and content hash from the ``Submitted`` events, so their
    verifiers are asked too and do not lose a deposit for a vote nobody asked for."""
    missing = set(st.assignment.verifiers) - set(st.by_id)
    if not missing:
        return
    models = s.ledger.round_models(int(s.task_id or 0), st.report.chain_round)
    for sid in sorted(missing & set(models)):
        contributor, _, chash, cid = models[sid]
        st.by_id[sid] = SignedSubmission(int(s.task_id or 0), st.report.chain_round,
                                         contributor, cid, chash, b"")


def _per_node(s: CoordinatedStrategy, st: RoundState) -> dict[int, list[int]]:
    """Each connected verifier's node id and the submissions assigned to it."""
    node_of = {a.lower(): nid for nid, a in s.addresses.items()}
    per_node: dict[int, list[int]] = {}
    if st.assignment is None:
        return per_node
    for sid, verifiers in st.assignment.verifiers.items():
        for v in verifiers:
            vnode = node_of.get(v.lower())
            if vnode is None:
                st.fail("verify", -1, f"assigned verifier {v} has no connected node")
                continue
            per_node.setdefault(vnode, []).append(sid)
    return per_node


def verify_messages(s: CoordinatedStrategy, st: RoundState, per_node: dict[int, list[int]],
                    evaluate_config: ConfigRecord | None) -> list[Message]:
    """One verify message per verifier with its assignments (ids, CIDs, content hashes)."""
    out = []
    global_cid = b"" if s.fusing else _store_global(s, st)
    for nid, sids in per_node.items():
        vcfg = {
            **s.base_config(), "server-round": st.rnd, "round": st.report.chain_round,
            "submission-ids": sids,
            "cids": [st.by_id[sid].cid for sid in sids],
            "content-hashes": [st.by_id[sid].content_hash for sid in sids],
        }
        vcfg.update({"metric": s.task.metric, "min-metric-bps": s.task.threshold_bps()})
        if s.fusing:  # each blob is checked against the architecture it names
            vcfg["fusion"] = True
        else:  # verifiers refuse the model a contributor was sent, and every model the
            # task accepted so far, unchanged or within the task's distance
            vcfg.update({"global-cid": global_cid, "accepted-cids": _accepted_before(s),
                         "accepted-digests": _accepted_digests(s),
                         "min-distance": float(s.task.min_distance)})
        shapes_of = ArrayRecord() if s.fusing else st.arrays
        out.append(wrapped.verify_message(nid, vcfg, shapes_of, evaluate_config))
    return out


def _accepted_before(s: CoordinatedStrategy) -> list[bytes]:
    """The CIDs of the models the task accepted in this run's earlier rounds (their reports,
    settled by now), each once, for a task with a copy distance (``min_distance`` > 0): each
    verifier fetches them to refuse near copies, a cost that grows with the task. Without a
    distance none: exact copies are refused by digest (:func:`_accepted_digests`), and the
    contract refuses a blob already submitted. A resumed run names the rounds it ran itself."""
    if not s.task.min_distance:
        return []
    seen: dict[bytes, None] = {}
    for report in s.reports:
        for v in report.submissions.values():
            if v[2] == "ACCEPTED":
                seen.setdefault(bytes(v[1]), None)
    return list(seen)


def _accepted_digests(s: CoordinatedStrategy) -> list[bytes]:
    """The arrays digests (``coopflower.client.copies.arrays_digest``) of every model this run
    accepted in its earlier rounds: 32 bytes a model, so every verifier refuses the same arrays
    repacked in a new blob without fetching any of them."""
    return list(dict.fromkeys(d for report in s.reports for d in report.accepted_digests))


def _store_global(s: CoordinatedStrategy, st: RoundState) -> bytes:
    """The CID of the global model the contributors were sent this round (stored once), so
    each verifier can refuse a submission that is that model, unchanged: a free rider."""
    from coopflower.blob import pack_arrays

    if not len(st.arrays):
        return b""
    blob = pack_arrays({k: np.asarray(a.numpy()) for k, a in st.arrays.items()},
                       {"round": str(st.report.chain_round), "global": "1"})
    s.meter.add_storage(st.rnd, len(blob))
    return bytes(s.open_store().put(blob).to_bytes())


def verify(s: CoordinatedStrategy, st: RoundState, grid: Grid,
           evaluate_config: ConfigRecord | None, timeout: float) -> None:
    """Each verifier evaluates its assigned models and returns signed votes."""
    with s.phases.phase(st.rnd, "verify") as rec:
        per_node = _per_node(s, st)
        msgs = verify_messages(s, st, per_node, evaluate_config)
        if msgs and not s.encryption:  # the initiator's own fetch, while the verifiers work
            from coopflower.strategy.accepted import Prefetch

            st.prefetched = Prefetch(s, sorted(st.by_id.values(), key=lambda b: bytes(b.cid)))
        replies = exchange(s, st, "verify", grid, msgs, s.verify_timeout or timeout)
        for msg in replies:
            nid = msg.metadata.src_node_id
            st.compute += metric(msg, "compute-seconds")
            st.handler += metric(msg, "handler-seconds")
            s.meter.add_storage(st.rnd, int(metric(msg, "fetched-bytes")))
            try:
                batch = parse_votes(msg, s.ledger.domain, int(s.task_id or 0),
                                    st.report.chain_round, s.addresses[nid],
                                    per_node.get(nid, []), st.by_id)
            except ReplyError as exc:
                st.fail("verify", nid, str(exc))
                continue
            for reason in batch.refused:
                st.fail("verify", nid, reason)
            st.votes.extend(batch.votes)
            st.accuracies.extend(score / 10000 for score in batch.scores)
        rec.detail = f"{len(st.votes)} signed votes from {len(replies)} verifiers"

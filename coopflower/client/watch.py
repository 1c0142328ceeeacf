"""The watcher: a node sends the submissions, seed shares and votes a relayer left out, itself,
in time.

A SuperNode opts in by running ``coopflower watch --chain <url> --key-file <its key file>``
beside ``flower-supernode`` (``edge/`` does when the node config names a chain URL); its key
must hold a little ETH for gas. Every ``--interval`` seconds the watcher reads the node's
outbox (:mod:`coopflower.client.outbox`), and for each round still taking votes sends, in one
``submitVotes`` from the node's own key, the node's signed votes the chain does not hold:

- once the round's relayed batch has landed (some vote of the round is on chain) and the
  node's is not among it, or
- when fewer than ``margin`` blocks are left before the vote deadline (a relayer that sends
  nothing at all).

Its signed submissions likewise, for each round still open: once some batch of the round has
landed without it, or when fewer than ``margin`` blocks are left of the task's grace (counted
from the round's last batch or its opening) or of the window; an authority cannot close the
window before that grace is over unless every participant has submitted.

In a task with seed reveals, its seed share too (derived from its key, as the node's mod does):
for each round of its submission whose reveal window is open, once some share of the round has
landed without the node's, or when fewer than ``margin`` blocks are left of the window. A share
the relayer leaves out would otherwise settle the node's submission UNREVEALED and cost it
``penalty_no_vote``.

A vote (or submission) the relayer sends later is then skipped by the contract as a second ballot
(``VoteSkipped``), never a failed batch. Votes of settled or expired rounds leave the outbox.
On a dev chain that mines on request a censoring relayer can mine past the deadline at once;
on a chain with a block time (clique, a real network) the watcher has the whole window.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coopflower.client.keys import NodeKey
from coopflower.client.outbox import (
    OutboxEntry,
    OutboxSubmission,
    OutboxVote,
    keep_entries,
    load_entries,
)
from coopflower.ledger.eip712 import SignedSubmission, SignedVote

__all__ = ["WatchReport", "send_dropped", "send_dropped_shares", "watch_once", "run_watch"]

ROUND_OPEN, ROUND_VOTING = 1, 2


@dataclass
class WatchReport:
    """What one pass did: votes sent, found on chain, expired, and still waiting."""

    sent: list[SignedVote] = field(default_factory=list)
    submitted: list[SignedSubmission] = field(default_factory=list)
    revealed: list[tuple[int, int, int]] = field(default_factory=list)  # task, round, submission
    on_chain: int = 0
    expired: int = 0
    waiting: int = 0


def _cast(ledger: Any, task_id: int, round: int) -> set[tuple[str, int]]:
    """(verifier, submission) of every vote recorded in the round."""
    return {(str(e.args["verifier"]).lower(), int(e.args["submission"]))
            for e in ledger.events("VoteCast", task_id=task_id)
            if int(e.args["round"]) == round}


def send_dropped(ledger: Any, entries: Sequence[OutboxVote], margin: int = 2,
                 ) -> tuple[WatchReport, list[OutboxVote]]:
    """Send the outbox votes for ``ledger``'s deployment that the chain lacks (see the module).

    Returns: what was done, and the entries to keep for a later pass.
    """
    report, keep = WatchReport(), []
    rounds: dict[tuple[int, int], list[OutboxVote]] = {}
    for e in entries:
        rounds.setdefault((e.vote.task_id, e.vote.round), []).append(e)
    for (task_id, rnd), group in sorted(rounds.items()):
        info = ledger.round(task_id, rnd)
        block = ledger.chain.block_number()
        if info.state != ROUND_VOTING or block >= info.vote_end:  # the next block is too late
            report.expired += len(group)
            continue
        cast = _cast(ledger, task_id, rnd)
        missing = [e for e in group if (e.vote.verifier.lower(), e.vote.submission) not in cast]
        report.on_chain += len(group) - len(missing)
        if not missing:
            continue
        if cast or block + margin >= info.vote_end:
            result = ledger.submit_votes(task_id, rnd, [e.vote for e in missing])
            report.sent.extend(result.recorded)
        else:
            report.waiting += len(missing)
            keep.extend(missing)
    return report, keep


def send_dropped_submissions(ledger: Any, entries: Sequence[OutboxSubmission], margin: int = 2,
                             ) -> tuple[WatchReport, list[OutboxSubmission]]:
    """Send the outbox submissions for ``ledger``'s deployment that the chain lacks while their
    round's window is open (see the module). Returns: what was done, the entries to keep."""
    report, keep = WatchReport(), []
    for e in entries:
        sub = e.submission
        info = ledger.round(sub.task_id, sub.round)
        block = ledger.chain.block_number()
        if info.state != ROUND_OPEN or block >= info.submit_end:
            if info.state == ROUND_VOTING and info.reveals and not any(info.seed):
                keep.append(e)  # its seed share may still be needed (send_dropped_shares)
            else:
                report.expired += 1  # closed: on chain or not, nothing more to send
            continue
        if ledger.participant(sub.task_id, sub.contributor).last_round == sub.round:
            report.on_chain += 1
            continue
        # while open, rand_block is the block of the round's last batch (or its opening)
        grace_end = info.rand_block + ledger.task_params(sub.task_id).grace_blocks
        if info.n_submissions or block + margin >= min(grace_end, info.submit_end):
            result = ledger.submit_batch(sub.task_id, sub.round, [sub], close=False)
            report.submitted.extend(result.by_id.values())
        else:
            report.waiting += 1
            keep.append(e)
    return report, keep


def send_dropped_shares(ledger: Any, key: NodeKey, entries: Sequence[OutboxSubmission],
                        margin: int = 2) -> tuple[WatchReport, list[OutboxSubmission]]:
    """Reveal the node's seed share for each outbox submission on chain whose round's reveal
    window is open and lacks it (see the module). Returns: what was done, the entries to keep
    (their round still open, or the window still running without a reason to send yet)."""
    from coopflower.client.duties import seed_share

    report, keep = WatchReport(), []
    for e in entries:
        sub = e.submission
        info = ledger.round(sub.task_id, sub.round)
        block = ledger.chain.block_number()
        if info.state == ROUND_OPEN:
            keep.append(e)
            continue
        if info.state != ROUND_VOTING or any(info.seed) or block >= info.reveal_end:
            report.expired += 1
            continue
        sid = next((s.submission for s in ledger.submissions(sub.task_id, sub.round)
                    if s.contributor.lower() == key.address.lower()), None)
        if sid is None:  # never recorded: nothing to reveal
            report.expired += 1
            continue
        if sid in _revealed(ledger, sub.task_id, sub.round):
            report.on_chain += 1
            continue
        if block > info.rand_block and (info.revealed or block + margin >= info.reveal_end):
            cfg = {"chain-id": e.chain_id, "contract": e.contract, "task-id": sub.task_id,
                   "round": sub.round}
            ledger.reveal_seeds(sub.task_id, sub.round, {sid: seed_share(key, cfg)})
            report.revealed.append((sub.task_id, sub.round, sid))
        else:
            report.waiting += 1
            keep.append(e)
    return report, keep


def _revealed(ledger: Any, task_id: int, round: int) -> set[int]:
    """The submission ids whose seed share the round holds."""
    return {int(e.args["submission"]) for e in ledger.events("SeedRevealed", task_id=task_id)
            if int(e.args["round"]) == round}


def _pass(ledger: Any, key: NodeKey | None, group: Sequence[OutboxEntry], margin: int,
          total: WatchReport) -> list[OutboxEntry]:
    """One deployment's pass: submissions, then seed shares (with the node's ``key``), then
    votes; returns the entries to keep."""
    subs = [e for e in group if isinstance(e, OutboxSubmission)]
    votes = [e for e in group if isinstance(e, OutboxVote)]
    report, kept_subs = send_dropped_submissions(ledger, subs, margin)
    total.submitted += report.submitted
    reports = [report]
    if key is not None:
        sreport, kept_subs = send_dropped_shares(ledger, key, kept_subs, margin)
        total.revealed += sreport.revealed
        reports.append(sreport)
    vreport, kept_votes = send_dropped(ledger, votes, margin)
    for r in (*reports, vreport):
        total.on_chain += r.on_chain
        total.expired += r.expired
        total.waiting += r.waiting
    total.sent += vreport.sent
    return [*kept_subs, *kept_votes]


def watch_once(outbox: Path, chain: Any, margin: int = 2,
               key: NodeKey | None = None) -> WatchReport:
    """One pass over the outbox for the deployments on ``chain`` (others are kept as they are).
    ``key``: the node's, to reveal its seed shares (without it, none is sent)."""
    from coopflower.ledger.contract import CoopLedger

    entries = load_entries(outbox)
    mine = [e for e in entries if e.chain_id == chain.chain_id]
    keep = [e for e in entries if e.chain_id != chain.chain_id]
    total = WatchReport()
    for contract in sorted({e.contract.lower() for e in mine}):
        group = [e for e in mine if e.contract.lower() == contract]
        keep.extend(_pass(CoopLedger.at(chain, group[0].contract), key, group, margin, total))
    if entries:
        keep_entries(outbox, keep)
    return total


def run_watch(chain_url: str, key_file: str, interval: float = 1.0, once: bool = False,
              out: TextIO = sys.stdout) -> int:
    """``coopflower watch``: pass over the node's outbox every ``interval`` seconds."""
    from coopflower.client.keys import load_or_create_key
    from coopflower.client.outbox import outbox_path
    from coopflower.ledger.backend import connect

    path = Path(key_file).expanduser()
    key = load_or_create_key(path)
    chain = connect(chain_url, private_key=key.private_key)
    outbox = outbox_path(path)
    print(f"watching {outbox} for {key.address} on chain {chain.chain_id}", file=out)
    while True:
        report = watch_once(outbox, chain, key=key)
        for sub in report.submitted:
            print(f"sent the submission on task {sub.task_id} round {sub.round} "
                  f"(model {sub.cid.hex()[:16]}...) that no relayer had sent", file=out,
                  flush=True)
        for task_id, rnd, sid in report.revealed:
            print(f"revealed the seed share of submission {sid} on task {task_id} round {rnd} "
                  "that no relayer had sent", file=out, flush=True)
        for v in report.sent:
            print(f"sent the vote on task {v.task_id} round {v.round} submission "
                  f"{v.submission} that no relayer had sent", file=out, flush=True)
        if once:
            return 0
        time.sleep(interval)

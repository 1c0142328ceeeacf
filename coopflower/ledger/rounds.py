"""The contract's round transactions, in life-cycle order: open a round, submit a batch of
signed submissions, close it, fix (or refresh) its randomness, compute the verifier
assignment off chain, submit the signed votes, settle, record the MetaModel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from eth_utils import to_checksum_address

from .batches import GAS_PER_VERIFIER, merge, slices
from .eip712 import SignedSubmission, SignedVote, compact_signature
from .errors import LedgerError, RandomnessTimeout, TransactionError
from .records import (
    ROUND_OPEN,
    ROUND_SETTLING,
    ROUND_VOTING,
    Assignment,
    Event,
    RoundInfo,
    SettledSubmission,
    Settlement,
    Skipped,
    SubmitResult,
    TxResult,
    VoteResult,
)
from .rules import Status, assign_verifiers, round_seed
from .views import LedgerViews

# the events of a round's settlement batches
_SETTLE_EVENTS = frozenset({"SubmissionSettled", "Paid", "Penalized", "RandomnessLost",
                            "RoundSettling"})


def _sums(events: Sequence[Event], name: str) -> dict[str, int]:
    """Amount per account of the ``name`` events (``Paid`` or ``Penalized``)."""
    out: dict[str, int] = {}
    for e in events:
        if e.name == name:
            out[e.args["account"]] = out.get(e.args["account"], 0) + int(e.args["amount"])
    return out


def submission_items(subs: Sequence[SignedSubmission]) -> list[tuple[Any, ...]]:
    """The ``submitBatch`` ABI items of signed submissions (contributor, content hash, seed
    commitment, CID, compact signature)."""
    items: list[tuple[Any, ...]] = []
    for s in subs:
        r, vs = compact_signature(s.signature)
        items.append((to_checksum_address(s.contributor), bytes(s.content_hash),
                      bytes(s.seed_commit), bytes(s.cid), r, vs))
    return items


class RoundCalls(LedgerViews):
    """Transactions of a task's rounds."""

    def open_round(self, task_id: int) -> RoundInfo:
        """Open the task's next round (authority only). Returns: the new round."""
        tx = self._send("openRound", [task_id])
        rnd = int(tx.named("RoundOpened")[0].args["round"])
        self._round_starts[(task_id, rnd)] = (tx.block_number,
                                              self.chain.block_hash(tx.block_number))
        return self.round(task_id, rnd)

    def submit_batch(
        self, task_id: int, round: int, subs: Sequence[SignedSubmission], close: bool = True
    ) -> SubmitResult:
        """Record all signed submissions (in as many transactions as the block gas needs); with
        ``close`` (authority only) the submission window is closed after them: in the last
        batch's transaction when every participant has now submitted, else by
        :meth:`close_submissions` once the task's grace has passed (on dev chains the blocks
        are mined at once; elsewhere this waits up to ``grace_blocks`` blocks).

        Returns: a :class:`SubmitResult`: ``by_id`` (submission id -> signed submission, taken
        from the ``Submitted`` events and matched by contributor and model digest) and
        ``skipped`` (items already submitted, replayed or copies, which did not revert the
        batch)."""
        parts = slices(subs, self.batch_size("submission"))
        results = []
        for n, (offset, part) in enumerate(parts):
            last = n == len(parts) - 1  # the window closes with the last batch
            tx = self._send("submitBatch", [task_id, round, submission_items(part),
                                            close and last])
            results.append((offset, self._submit_result(tx, task_id, round, part)))
        merged = merge([r for _, r in results])
        if close and not merged.named("SubmissionsClosed"):  # someone is missing: the grace
            merged = merge([merged, self.close_submissions(task_id, round)])
        self._keep_closed(task_id, round, merged)
        by_id = {k: v for _, r in results for k, v in r.by_id.items()}
        skipped = [replace(s, item=s.item + offset) for offset, r in results for s in r.skipped]
        return SubmitResult(merged.tx_hash, merged.block_number, merged.gas_used, merged.events,
                            by_id, skipped)

    def _submit_result(
        self, tx: TxResult, task_id: int, round: int, subs: Sequence[SignedSubmission]
    ) -> SubmitResult:
        pending: dict[tuple[str, bytes], SignedSubmission] = {
            (s.contributor.lower(), bytes(s.model_digest)): s for s in subs
        }
        by_id: dict[int, SignedSubmission] = {}
        for e in tx.named("Submitted"):
            key = (str(e.args["contributor"]).lower(), bytes(e.args["modelDigest"]))
            sub = pending.get(key)
            if sub is not None:
                by_id[int(e.args["submission"])] = sub
        skipped = []
        for e in tx.named("SubmissionSkipped"):
            item, who = int(e.args["item"]), str(e.args["contributor"])
            reason = self._error_name(e.args["reason"])
            held = self.first_submission(task_id, bytes(e.args["contentHash"]))
            if reason != "DuplicateModel":  # the contributor's own submission of this round
                held = (round, self.participant(task_id, who).last_submission)
            skipped.append(Skipped(item, who, reason, held))
            sub = subs[item] if item < len(subs) else None
            if sub is not None and held is not None and held[0] == round:
                # already on chain: the same model by the same node (it sent its own message)
                # is the relayed submission, under the id the contract gave it then
                on_chain = self._round_models(task_id, round).get(held[1])
                if on_chain and on_chain[0].lower() == sub.contributor.lower() and on_chain[
                        1] == bytes(sub.model_digest):
                    by_id.setdefault(held[1], sub)
        return SubmitResult(tx.tx_hash, tx.block_number, tx.gas_used, tx.events, by_id, skipped)

    def close_submissions(self, task_id: int, round: int, timeout: float = 120.0) -> TxResult:
        """Close the submission window. Before it expired (an authority) the contract allows it
        once every participant submitted or ``grace_blocks`` blocks passed since the round's
        last batch: this waits for that block first (mined at once on dev chains).

        Raises: TransactionError when the block does not come within ``timeout`` s."""
        info = self.round(task_id, round)
        if (info.state == ROUND_OPEN and info.n_submissions < len(self.participants(task_id))
                and self.is_authority(self.chain.account.address)):
            # while open, rand_block holds the block of the last batch (or of the opening)
            # (one block more: estimateGas at "latest" runs with block.number = latest)
            grace_end = info.rand_block + self.task_params(task_id).grace_blocks
            self.chain.wait_for_block(min(grace_end, info.submit_end) + 1, timeout)
        return self._send("closeSubmissions", [task_id, round])

    def wait_for_randomness(self, task_id: int, round: int, timeout: float = 120.0) -> bytes:
        """Wait for the round's randomness block (mined on request on dev chains).

        Returns: the round seed, computed off chain from the block hash exactly as on chain.
        Raises: RandomnessTimeout, LedgerError when the round is not closed.
        """
        return self._randomness(task_id, round, timeout)[0]

    def _randomness(self, task_id: int, round: int, timeout: float) -> tuple[bytes, RoundInfo]:
        info = self.round(task_id, round)
        if info.state < ROUND_VOTING:
            raise LedgerError(f"round {round} of task {task_id} is not closed")
        if info.seed != bytes(32):
            return info.seed, info
        if info.reveals:
            return self._mixed_seed(task_id, round, info, timeout)
        try:
            # one block more: eth_call / estimateGas at "latest" run with block.number = latest,
            # and blockhash(n) is only visible from block n + 1 on
            self.chain.wait_for_block(info.rand_block + 1, timeout)
        except TransactionError as exc:
            raise RandomnessTimeout(str(exc)) from exc
        return round_seed(self.chain.block_hash(info.rand_block), task_id, round), info

    def _mixed_seed(self, task_id: int, round: int, info: RoundInfo,
                    timeout: float) -> tuple[bytes, RoundInfo]:
        """The seed of a round with reveals: once every share is in (then stored) or the
        reveal window passed, from the kept block hash and the XOR of the revealed shares."""
        target = (info.reveal_end if info.revealed < info.n_submissions else info.rand_block) + 1
        if self.chain.block_number() < target:  # else ``info`` was read at the block needed
            try:
                self.chain.wait_for_block(target, timeout)
            except TransactionError as exc:
                raise RandomnessTimeout(str(exc)) from exc
            info = self.round(task_id, round)
        if info.seed != bytes(32):
            return info.seed, info
        kept = info.rand_hash if info.rand_hash != bytes(32) else None
        block_hash = kept or self.chain.block_hash(info.rand_block)
        return round_seed(block_hash, task_id, round, info.mix), info

    def seed_commits(self, task_id: int, round: int) -> list[bytes]:
        """Every recorded submission's seed commitment, in submission id order (from the
        ``Submitted`` events): what ``revealSeeds`` checks against the round's chain."""
        found = {int(e.args["submission"]): bytes(e.args["seedCommit"])
                 for e in self._submitted(task_id, round)}
        return [found[i] for i in range(len(found))]

    def reveal_seeds(self, task_id: int, round: int, shares: dict[int, bytes],
                     commits: Sequence[bytes] | None = None) -> TxResult:
        """Reveal contributors' seed shares (submission id -> share) in one transaction
        (anyone may send them); shares already revealed are passed over by the contract.
        ``commits``: the round's ``seed_commits`` when the caller just read them (read here
        otherwise); the contract checks them against the commitments it accumulated."""
        items = [(int(sid), bytes(share)) for sid, share in sorted(shares.items())]
        commits = list(commits) if commits is not None else self.seed_commits(task_id, round)
        size = self.batch_size("share", extra_per_tx=700 * len(commits))
        return merge([self._send("revealSeeds", [task_id, round, commits, list(part)])
                      for _, part in slices(items, size)])

    def fix_randomness(self, task_id: int, round: int) -> TxResult:
        """Store the seed on chain now (optional: votes and settlement do it too)."""
        return self._send("fixRandomness", [task_id, round])

    def refresh_randomness(self, task_id: int, round: int) -> TxResult:
        """Move an expired, never fixed randomness block to the next block (anyone; once per
        round, only when more than 256 blocks passed since the randomness block)."""
        return self._send("refreshRandomness", [task_id, round])

    def assignments(self, task_id: int, round: int, timeout: float = 120.0) -> Assignment:
        """The verifiers of every submission of a closed round, computed off chain from the
        seed (waiting for the randomness block first), identical to the contract's check."""
        seed, info = self._randomness(task_id, round, timeout)
        k = self.task_params(task_id).k
        pool = self._pool(task_id, info.n_participants)
        # the contributors alone: what the assignment depends on (from the Submitted events
        # this binding kept when it closed the round, else one call)
        kept = self._closed_submitted(task_id, round) or []
        by_sid = {int(e.args["submission"]): str(e.args["contributor"]) for e in kept}
        if set(by_sid) == set(range(info.n_submissions)):
            contributors = [by_sid[sid] for sid in range(info.n_submissions)]
        else:
            contributors = self._view("getSubmissions", task_id, round)[0]
        verifiers = {
            sid: assign_verifiers(seed, sid, pool, k, str(contributor))
            for sid, contributor in enumerate(contributors)
        }
        return Assignment(task_id, round, seed, info.rand_block, verifiers)

    def submit_votes(self, task_id: int, round: int, votes: Sequence[SignedVote]) -> VoteResult:
        """Record all signed votes in one transaction.

        Returns: a :class:`VoteResult`: the relayed votes recorded (by the verifier and
        submission of each ``VoteCast``) and the ones skipped as second ballots."""
        models = self._round_models(task_id, round) if votes else {}
        results, skipped = [], []
        for offset, part in slices(votes, self.batch_size("vote")):
            items = []
            for v in part:
                r, vs = compact_signature(v.signature)
                chash = models[v.submission][2] if v.submission in models else bytes(32)
                items.append((to_checksum_address(v.verifier), v.submission, v.accept,
                              v.score_bps, bytes(v.model_digest), chash, r, vs))
            part_tx = self._send("submitVotes", [task_id, round, items])
            results.append(part_tx)
            skipped += [
                Skipped(offset + int(e.args["item"]), str(e.args["verifier"]),
                        self._error_name(e.args["reason"]), submission=int(e.args["submission"]))
                for e in part_tx.named("VoteSkipped")
            ]
        tx = merge(results)
        left_out = {s.item for s in skipped}
        cast = {(str(e.args["verifier"]).lower(), int(e.args["submission"]))
                for e in tx.named("VoteCast")}
        recorded = [v for i, v in enumerate(votes)
                    if i not in left_out and (v.verifier.lower(), v.submission) in cast]
        return VoteResult(tx.tx_hash, tx.block_number, tx.gas_used, tx.events, recorded, skipped)

    def settle(self, task_id: int, round: int) -> Settlement:
        """Settle a round (after its vote deadline, or once every assigned verifier voted),
        in as many transactions as the block gas limit needs: the contract settles a batch of
        submissions a call, in id order, and the last call closes the round. A round a
        stopped run left SETTLING is finished, its earlier batches' events read back."""
        info = self.round(task_id, round)
        earlier: list[Event] = []
        if info.state == ROUND_SETTLING:
            earlier = [e for e in self.events(None, self._round_start(task_id, round), task_id)
                       if e.args.get("round") == round and e.name in _SETTLE_EVENTS]
        size = self.batch_size("settlement",
                               extra_per_item=self.task_params(task_id).k * GAS_PER_VERIFIER)
        results: list[TxResult] = []
        for _ in range(info.n_submissions // size + 2):  # each call settles >= 1 or closes
            results.append(self._send("settle", [task_id, round, size]))
            if results[-1].named("RoundSettled"):
                break
        else:
            raise LedgerError(f"task {task_id} round {round}: settlement did not finish "
                              f"in {len(results)} transactions of {size} submissions")
        tx = merge(results)
        events = earlier + tx.events
        subs = [
            SettledSubmission(int(e.args["submission"]), str(e.args["contributor"]),
                              Status(e.args["status"]), int(e.args["yesVotes"]),
                              int(e.args["votesCast"]))
            for e in events if e.name == "SubmissionSettled"
        ]
        done = tx.named("RoundSettled")[0].args
        return Settlement(
            tx, subs, _sums(events, "Paid"), _sums(events, "Penalized"), int(done["accepted"]),
            int(done["paid"]), int(done["returned"])
        )

    def record_metamodel(
        self, task_id: int, round: int, cid: bytes, content_hash: bytes
    ) -> TxResult:
        """Record the round's MetaModel CID (initiator or authority, after settlement)."""
        return self._send("recordMetaModel", [task_id, round, bytes(cid), bytes(content_hash)])

    def log_round(self, task_id: int, round: int, cid: bytes, content_hash: bytes) -> TxResult:
        """Log a FedAvg round's global model CID (authority only; an event, no storage)."""
        return self._send("logRound", [task_id, round, bytes(cid), bytes(content_hash)])

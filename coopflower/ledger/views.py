"""The contract's reads: tasks, rounds, participants, submissions, balances (``eth_call``),
and the ``Submitted`` events and round records read back with ``eth_getLogs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address

from .binding import ContractBinding
from .errors import LedgerError
from .records import (
    AccountState,
    Event,
    ParticipantInfo,
    RoundInfo,
    RoundRecord,
    SubmissionInfo,
    TaskInfo,
    TaskParams,
    TxResult,
)
from .rules import Status


class LedgerViews(ContractBinding):
    """Read-only calls of a deployed CoopLedger (no transaction, no gas)."""

    def is_authority(self, address: str) -> bool:
        """Returns: whether ``address`` is an authority."""
        return bool(self._view("isAuthority", to_checksum_address(address)))

    def authorities(self) -> list[str]:
        """Returns: the authority set named at deployment."""
        return [str(a) for a in self._view("authorities")]

    def task(self, task_id: int) -> TaskInfo:
        """Returns: the task. Raises ContractRevertError(UnknownTask)."""
        initiator, rc, closed, escrow, last_active, p = self._view("getTask", task_id)
        return TaskInfo(
            task_id,
            str(initiator),
            int(rc),
            bool(closed),
            int(escrow),
            TaskParams(bytes(p[0]), *p[1:]),
            int(last_active),
        )

    def task_params(self, task_id: int) -> TaskParams:
        """Returns: the task's parameters (fixed when it is published, so read once)."""
        params = self._params.get(task_id)
        if params is None:
            params = self._params[task_id] = self.task(task_id).params
        return params

    def round(self, task_id: int, round: int) -> RoundInfo:
        """Returns: the round (state 0 when it does not exist)."""
        r = self._view("getRound", task_id, round)
        return RoundInfo(
            task_id=task_id,
            round=round,
            submit_end=int(r[0]),
            rand_block=int(r[1]),
            vote_end=int(r[2]),
            n_submissions=int(r[3]),
            state=int(r[4]),
            n_participants=int(r[5]),
            accepted=int(r[6]),
            reserved=int(r[7]),
            seed=bytes(r[8]),
            meta_digest=bytes(r[9]),
            refreshes=int(r[10]),
            reveal_end=int(r[11]),
            revealed=int(r[12]),
            commit_acc=bytes(r[13]),
            mix=bytes(r[14]),
            rand_hash=bytes(r[15]),
            settled=int(r[16]),
        )

    def participants(self, task_id: int) -> list[str]:
        """Returns: the task's participants in registration order."""
        return [str(a) for a in self._view("getParticipants", task_id)]

    def _pool(self, task_id: int, n: int) -> list[str]:
        """The task's first ``n`` participants (a round's verifier pool). The list only grows
        (the contract appends each registration), so a list read earlier serves while it is
        that long and the block it was read at is still on the chain (its hash checked)."""
        known = self._participants.get(task_id)
        if known is not None and len(known[2]) >= n:
            block, block_hash, accounts = known
            try:
                if self.chain.block_hash(block) == block_hash:
                    return accounts[:n]
            except Exception:  # the block is gone (reverted chain)
                pass
        accounts = self.participants(task_id)
        block = self.chain.block_number()  # the list was read at this block or before
        self._participants[task_id] = (block, self.chain.block_hash(block), accounts)
        return accounts[:n]

    def participant(self, task_id: int, address: str) -> ParticipantInfo:
        """Returns: a participant's record (registered False when unknown)."""
        p = self._view("getParticipant", task_id, to_checksum_address(address))
        return ParticipantInfo(
            to_checksum_address(address), int(p[0]), int(p[1]), int(p[2]), int(p[3]), bool(p[4])
        )

    def submission(self, task_id: int, round: int, submission: int) -> SubmissionInfo:
        """Returns: one submission's state (its model digest from its ``Submitted`` event)."""
        c, st, vm, ym = self._view("getSubmission", task_id, round, submission)
        return SubmissionInfo(submission, str(c), self._digest(task_id, round, submission),
                              Status(st), int(vm), int(ym))

    def model_submitted(self, task_id: int, content_hash: bytes) -> bool:
        """Returns: whether a model with this content hash was already submitted in the task
        (the contract skips a second one as ``DuplicateModel``)."""
        return bool(self._view("modelSubmitted", task_id, bytes(content_hash)))

    def first_submission(self, task_id: int, content_hash: bytes) -> tuple[int, int] | None:
        """Returns: (round, submission id) of the task's submission of this content hash, from
        the ``Submitted`` events, or None."""
        for e in self.events("Submitted", task_id=task_id):
            if bytes(e.args["contentHash"]) == bytes(content_hash):
                return int(e.args["round"]), int(e.args["submission"])
        return None

    def round_models(self, task_id: int, round: int) -> dict[int, tuple[str, bytes, bytes, bytes]]:
        """Returns: per submission id of a round, (contributor, model digest, content hash,
        CID), from its ``Submitted`` events (one ``eth_getLogs``)."""
        return self._round_models(task_id, round)

    def round_commitments(self, task_id: int, round: int) -> dict[int, tuple[str, bytes]]:
        """Returns: per submission id of a round, (contributor, seed commitment), from its
        ``Submitted`` events (one ``eth_getLogs``: the reveal stage needs both)."""
        return {int(e.args["submission"]): (str(e.args["contributor"]),
                                             bytes(e.args["seedCommit"]))
                for e in self._submitted(task_id, round)}

    def _round_models(self, task_id: int, round: int) -> dict[int, tuple[str, bytes, bytes, bytes]]:
        return {
            int(e.args["submission"]): (str(e.args["contributor"]), bytes(e.args["modelDigest"]),
                                        bytes(e.args["contentHash"]), bytes(e.args["cid"]))
            for e in self._submitted(task_id, round)
        }

    def _submitted(self, task_id: int, round: int) -> list[Event]:
        """The round's ``Submitted`` events (one ``eth_getLogs`` by task and round topics, from
        the block the round was opened in when this binding opened it; none when this binding
        closed the round with all of them in its own transactions, see ``_keep_closed``)."""
        kept = self._closed_submitted(task_id, round)
        if kept is not None:
            return kept
        topic = next(t for t, n in self._events.items() if n == "Submitted")
        logs = self.chain.w3.eth.get_logs({
            "address": self.address, "fromBlock": self._round_start(task_id, round),
            "toBlock": "latest",
            "topics": [topic, "0x" + task_id.to_bytes(32, "big").hex(),
                       "0x" + round.to_bytes(32, "big").hex()],
        })
        return self._decode_logs(logs)

    def _keep_closed(self, task_id: int, round: int, tx: TxResult) -> None:
        """Keep the round's ``Submitted`` events from the transactions ``tx`` (merged) that
        closed it, when they are all of the round's: the close event counts as many
        submissions. A closed round takes no more, so its reads need no ``eth_getLogs``."""
        closed, submitted = tx.named("SubmissionsClosed"), tx.named("Submitted")
        if closed and int(closed[0].args["submissions"]) == len(submitted):
            block = closed[0].block_number
            self._closed_rounds[(task_id, round)] = (block, self.chain.block_hash(block),
                                                     tuple(submitted))

    def _closed_submitted(self, task_id: int, round: int) -> list[Event] | None:
        """The kept ``Submitted`` events of a closed round while the block that closed it is
        still on the chain (its hash checked: a reverted chain drops them), else None."""
        known = self._closed_rounds.get((task_id, round))
        if known is None:
            return None
        block, block_hash, events = known
        try:
            if self.chain.block_hash(block) == block_hash:
                return list(events)
        except Exception:  # the block is gone (reverted chain)
            pass
        del self._closed_rounds[(task_id, round)]
        return None

    def _round_start(self, task_id: int, round: int) -> int:
        """The block the round was opened in, as ``open_round`` saw it (0 when this binding
        did not open it, or when that block is no longer on the chain: a reverted snapshot).
        No event of the round is older, so reads start there instead of at block 0: the
        embedded chain's ``eth_getLogs`` reads every block and receipt in its range."""
        known = self._round_starts.get((task_id, round))
        if known is None:
            return 0
        block, block_hash = known
        try:
            if self.chain.block_hash(block) == block_hash:
                return block
        except Exception:  # the block is gone (reverted chain)
            pass
        del self._round_starts[(task_id, round)]
        return 0

    def _digest(self, task_id: int, round: int, submission: int) -> bytes:
        models = self._round_models(task_id, round)
        return models[submission][1] if submission in models else bytes(32)

    def accounts(self, task_id: int, addresses: Sequence[str]) -> dict[str, AccountState]:
        """Returns: per address, its withdrawable balance and its deposit in ``task_id``
        (one call for all)."""
        addrs = [to_checksum_address(a) for a in addresses]
        bal, dep = self._view("getAccounts", task_id, addrs)
        return {a: AccountState(int(b), int(d)) for a, b, d in zip(addrs, bal, dep, strict=True)}

    def submissions(self, task_id: int, round: int) -> list[SubmissionInfo]:
        """Returns: every submission of a round (one call)."""
        c, st, vm, ym = self._view("getSubmissions", task_id, round)
        models = self._round_models(task_id, round) if len(c) else {}
        return [
            SubmissionInfo(i, str(c[i]), models[i][1] if i in models else bytes(32),
                           Status(st[i]), int(vm[i]), int(ym[i]))
            for i in range(len(c))
        ]

    def decode_input(self, tx_hash: str) -> tuple[str, dict[str, Any]]:
        """Decode a transaction's calldata (e.g. the signed items of a batch, for an audit).

        Returns: (function name, arguments by name; structs as tuples in ABI order).
        Raises: LedgerError when the transaction is not a call to this contract.
        """
        tx = self.chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if tx.get("to") is None or to_checksum_address(tx["to"]) != self.address:
            raise LedgerError(f"transaction {tx_hash} is not a call to {self.address}")
        fn, args = self._c.decode_function_input(tx["input"])
        return str(fn.fn_name), dict(args)

    def balance_of(self, address: str) -> int:
        """Returns: the withdrawable balance of ``address`` in the contract."""
        return int(self._view("balanceOf", to_checksum_address(address)))

    def seed_of(self, task_id: int, round: int) -> bytes:
        """Returns: the seed as the contract sees it now (zero bytes when unknown)."""
        return bytes(self._view("seedOf", task_id, round))

    def assigned_verifiers_on_chain(self, task_id: int, round: int, submission: int) -> list[str]:
        """Returns: the contract's own view of a submission's verifiers."""
        return [str(a) for a in self._view("assignedVerifiers", task_id, round, submission)]

    def round_record(self, task_id: int, round: int, from_block: int = 0) -> RoundRecord:
        """Every event of one round, for an audit that replays it from chain data alone."""
        evs = [e for e in self.events(None, from_block, task_id) if e.args.get("round") == round]

        def pick(n: str) -> list[Event]:
            return [e for e in evs if e.name == n]

        return RoundRecord(
            task_id,
            round,
            pick("Submitted"),
            pick("SubmissionsClosed"),
            pick("RandomnessFixed"),
            pick("VoteCast"),
            pick("SubmissionSettled"),
            pick("Paid"),
            pick("Penalized"),
            pick("RoundSettled"),
            pick("MetaModelRecorded"),
            pick("RandomnessRefreshed"),
            pick("RandomnessLost"),
            pick("SubmissionSkipped") + pick("VoteSkipped"),
        )

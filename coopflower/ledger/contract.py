"""The contract binding the Flower strategy calls: one method per life-cycle step.

Every transaction method returns a dataclass; every revert is raised as
:class:`~coopflower.ledger.errors.ContractRevertError` naming the Solidity custom error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3

from .artifact import Artifact, load_artifact
from .backend import Chain, TxOutcome, revert_data
from .eip712 import (
    Eip712Domain,
    SignedRegistration,
    SignedSubmission,
    SignedVote,
    compact_signature,
)
from .errors import ContractRevertError, LedgerError, RandomnessTimeout, TransactionError
from .rules import Status, assign_verifiers, round_seed

ROUND_NONE, ROUND_OPEN, ROUND_VOTING, ROUND_SETTLED = 0, 1, 2, 3


@dataclass(frozen=True)
class TaskParams:
    """A task's rules (amounts in wei, windows in blocks). See ``CoopLedger.TaskParams``."""

    spec_hash: bytes
    k: int = 3
    quorum: int = 2
    min_accuracy_bps: int = 9000
    submit_blocks: int = 1000
    vote_blocks: int = 1000
    max_submissions: int = 16
    reward: int = 10**15
    verifier_fee: int = 10**14
    min_deposit: int = 10**15
    penalty_wrong_vote: int = 10**14
    penalty_no_vote: int = 10**14
    idle_blocks: int = 100_000
    invite_only: bool = True

    def escrow_per_round(self) -> int:
        """Returns: what ``openRound`` reserves: max_submissions * (reward + k * fee)."""
        return self.max_submissions * (self.reward + self.k * self.verifier_fee)

    def as_tuple(self) -> tuple[Any, ...]:
        """Returns: the ABI tuple."""
        return (
            bytes(self.spec_hash),
            self.k,
            self.quorum,
            self.min_accuracy_bps,
            self.submit_blocks,
            self.vote_blocks,
            self.max_submissions,
            self.reward,
            self.verifier_fee,
            self.min_deposit,
            self.penalty_wrong_vote,
            self.penalty_no_vote,
            self.idle_blocks,
            self.invite_only,
        )


@dataclass(frozen=True)
class TaskInfo:
    """A task as stored on chain."""

    task_id: int
    initiator: str
    round_count: int
    closed: bool
    escrow: int
    params: TaskParams
    last_active: int = 0  # block of the last publish / openRound / settle


@dataclass(frozen=True)
class RoundInfo:
    """A round as stored on chain (state 0 none, 1 open, 2 voting, 3 settled)."""

    task_id: int
    round: int
    submit_end: int
    rand_block: int
    vote_end: int
    n_submissions: int
    state: int
    n_participants: int
    accepted: int
    reserved: int
    seed: bytes
    meta_digest: bytes
    refreshes: int = 0


@dataclass(frozen=True)
class ParticipantInfo:
    """A participant of a task."""

    address: str
    deposit: int
    index: int
    last_round: int
    last_submission: int
    registered: bool


@dataclass(frozen=True)
class AccountState:
    """An account's withdrawable balance and its security deposit in one task (wei)."""

    balance: int
    deposit: int


@dataclass(frozen=True)
class SubmissionInfo:
    """One submission's on-chain state; bit j of the masks is the j-th assigned verifier."""

    submission: int
    contributor: str
    model_digest: bytes
    status: Status
    voted_mask: int
    yes_mask: int


@dataclass(frozen=True)
class Event:
    """A decoded contract event."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TxResult:
    """A mined contract transaction with its decoded events."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: list[Event]

    def named(self, name: str) -> list[Event]:
        """Returns: this transaction's events called ``name``."""
        return [e for e in self.events if e.name == name]


@dataclass(frozen=True)
class Skipped:
    """A batch item the contract left out without reverting the batch.

    ``item`` is its position in the batch sent, ``who`` its author, ``reason`` the contract's
    error name (``AlreadySubmitted``, ``SignatureReplayed``, ``DuplicateModel``,
    ``AlreadyVoted``); for a submission, ``held`` is (round, submission id) of the model the
    contract already holds in its place, for a vote ``submission`` the one it voted on."""

    item: int
    who: str
    reason: str
    held: tuple[int, int] | None = None
    submission: int | None = None


@dataclass(frozen=True)
class SubmitResult(TxResult):
    """A mined ``submitBatch``: the ids the contract gave, by the contributor and model of
    each ``Submitted`` event (never by position), and the items it skipped.

    ``by_id`` maps submission id to the relayed signed submission; it also holds an item the
    contract skipped as already recorded when the model on chain is the relayed one (the node
    sent the same signed message itself). ``skipped`` names every skipped item."""

    by_id: dict[int, SignedSubmission] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class VoteResult(TxResult):
    """A mined ``submitVotes``: the relayed votes the contract recorded (matched by verifier
    and submission of each ``VoteCast``) and the ones it skipped (``AlreadyVoted``)."""

    recorded: list[SignedVote] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    """The round's verifier assignment: seed and, per submission id, its verifiers."""

    task_id: int
    round: int
    seed: bytes
    rand_block: int
    verifiers: dict[int, list[str]]

    def for_verifier(self, address: str) -> list[int]:
        """Returns: the submission ids ``address`` must verify."""
        a = address.lower()
        return [s for s, vs in self.verifiers.items() if any(v.lower() == a for v in vs)]


@dataclass(frozen=True)
class SettledSubmission:
    """The decision on one submission."""

    submission: int
    contributor: str
    status: Status
    yes: int
    cast: int


@dataclass(frozen=True)
class Settlement:
    """What ``settle`` decided and moved."""

    tx: TxResult
    submissions: list[SettledSubmission]
    paid: dict[str, int]
    penalized: dict[str, int]
    accepted: int
    total_paid: int
    returned_to_escrow: int


@dataclass(frozen=True)
class RoundRecord:
    """A round replayed from events alone (for an audit)."""

    task_id: int
    round: int
    submissions: list[Event]
    closes: list[Event]
    randomness: list[Event]
    votes: list[Event]
    settled: list[Event]
    payments: list[Event]
    penalties: list[Event]
    round_settled: list[Event]
    metamodel: list[Event] = field(default_factory=list)
    refreshed: list[Event] = field(default_factory=list)
    lost: list[Event] = field(default_factory=list)
    skipped: list[Event] = field(default_factory=list)


class CoopLedger:
    """A deployed CoopLedger contract on a :class:`~coopflower.ledger.backend.Chain`.

    Create with :meth:`deploy` or :meth:`at`. Transactions are sent from ``chain.account``.
    """

    def __init__(self, chain: Chain, address: str, artifact: Artifact | None = None):
        self.chain = chain
        self.artifact = artifact or load_artifact()
        self.address = to_checksum_address(address)
        self._c = chain.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self._events = {
            "0x" + event_abi_to_log_topic(e).hex(): e["name"]  # type: ignore[arg-type]
            for e in self.artifact.abi
            if e["type"] == "event"
        }
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for e in self.artifact.abi:
            if e["type"] == "error":
                types = [i["type"] for i in e["inputs"]]
                sel = bytes(keccak(f"{e['name']}({','.join(types)})".encode()))[:4]
                self._errors[sel] = (e["name"], types, [i["name"] for i in e["inputs"]])
        self.domain = Eip712Domain(chain.chain_id, self.address)
        self._params: dict[int, TaskParams] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def deploy(cls, chain: Chain, authorities: Sequence[str] | None = None) -> CoopLedger:
        """Deploy a new contract.

        Args:
            chain: the connection. authorities: accounts allowed to publish tasks and open
                rounds (default: the chain's sending account).
        Returns: the binding.
        """
        art = load_artifact()
        auths = [to_checksum_address(a) for a in (authorities or [chain.address])]
        data = art.bytecode + chain.w3.codec.encode(["address[]"], [auths])
        out = chain.transact(None, data)
        address = out.logs[0]
        if not address:
            raise TransactionError(f"deployment {out.tx_hash} produced no contract")
        ledger = cls(chain, str(address), art)
        ledger.deploy_gas = out.gas_used
        return ledger

    @classmethod
    def at(cls, chain: Chain, address: str) -> CoopLedger:
        """Bind to an existing deployment. Raises LedgerError if no code is there."""
        if not chain.w3.eth.get_code(to_checksum_address(address)):
            raise LedgerError(f"no contract code at {address}")
        return cls(chain, address)

    deploy_gas: int = 0

    # ------------------------------------------------------------ tasks and participants
    def publish_task(self, params: TaskParams, escrow: int) -> int:
        """Publish a task with ``escrow`` wei (authority only). Returns: the task id."""
        tx = self._send("publishTask", [params.as_tuple()], value=escrow)
        return int(tx.named("TaskPublished")[0].args["taskId"])

    def fund_task(self, task_id: int, amount: int) -> TxResult:
        """Add ``amount`` wei to a task's escrow."""
        return self._send("fundTask", [task_id], value=amount)

    def close_task(self, task_id: int) -> TxResult:
        """Close a task; its escrow returns to the initiator's balance (initiator or authority
        at any time, anyone once ``idle_blocks`` passed since the last round event)."""
        return self._send("closeTask", [task_id])

    def register(self, task_id: int, deposit: int) -> TxResult:
        """Register the sending account itself with ``deposit`` wei."""
        return self._send("register", [task_id], value=deposit)

    def register_for(self, task_id: int, regs: Sequence[SignedRegistration]) -> TxResult:
        """Register nodes from their signed consent in one transaction; the sender pays all
        deposits (credited to each node)."""
        items = []
        for g in regs:
            r, vs = compact_signature(g.signature)
            items.append((to_checksum_address(g.participant), g.deposit, r, vs))
        return self._send("registerFor", [task_id, items], value=sum(g.deposit for g in regs))

    def release_deposits(self, task_id: int, accounts: Sequence[str]) -> TxResult:
        """After a task closed, move deposits to their owners' balances."""
        return self._send("releaseDeposits", [task_id, [to_checksum_address(a) for a in accounts]])

    def withdraw(self) -> TxResult:
        """Withdraw the sending account's balance."""
        return self._send("withdraw", [])

    # ------------------------------------------------------------ rounds
    def open_round(self, task_id: int) -> RoundInfo:
        """Open the task's next round (authority only). Returns: the new round."""
        tx = self._send("openRound", [task_id])
        return self.round(task_id, int(tx.named("RoundOpened")[0].args["round"]))

    def submit_batch(
        self, task_id: int, round: int, subs: Sequence[SignedSubmission], close: bool = True
    ) -> SubmitResult:
        """Record all signed submissions in one transaction; with ``close`` the submission
        window closes in the same transaction (authority only).

        Returns: a :class:`SubmitResult`: ``by_id`` (submission id -> signed submission, taken
        from the ``Submitted`` events and matched by contributor and model digest) and
        ``skipped`` (items already submitted, replayed or copies, which did not revert the
        batch)."""
        items = []
        for s in subs:
            r, vs = compact_signature(s.signature)
            items.append(
                (to_checksum_address(s.contributor), bytes(s.content_hash), bytes(s.cid), r, vs)
            )
        tx = self._send("submitBatch", [task_id, round, items, close])
        return self._submit_result(tx, task_id, round, subs)

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

    def close_submissions(self, task_id: int, round: int) -> TxResult:
        """Close the submission window."""
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
        try:
            # one block more: eth_call / estimateGas at "latest" run with block.number = latest,
            # and blockhash(n) is only visible from block n + 1 on
            self.chain.wait_for_block(info.rand_block + 1, timeout)
        except TransactionError as exc:
            raise RandomnessTimeout(str(exc)) from exc
        return round_seed(self.chain.block_hash(info.rand_block), task_id, round), info

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
        pool = self.participants(task_id)[: info.n_participants]
        verifiers = {
            sub.submission: assign_verifiers(seed, sub.submission, pool, k, sub.contributor)
            for sub in self.submissions(task_id, round)
        }
        return Assignment(task_id, round, seed, info.rand_block, verifiers)

    def submit_votes(self, task_id: int, round: int, votes: Sequence[SignedVote]) -> VoteResult:
        """Record all signed votes in one transaction.

        Returns: a :class:`VoteResult`: the relayed votes recorded (by the verifier and
        submission of each ``VoteCast``) and the ones skipped as second ballots."""
        models = self._round_models(task_id, round) if votes else {}
        items = []
        for v in votes:
            r, vs = compact_signature(v.signature)
            chash = models[v.submission][2] if v.submission in models else bytes(32)
            items.append((to_checksum_address(v.verifier), v.submission, v.accept, v.score_bps,
                          bytes(v.model_digest), chash, r, vs))
        tx = self._send("submitVotes", [task_id, round, items])
        skipped = [
            Skipped(int(e.args["item"]), str(e.args["verifier"]),
                    self._error_name(e.args["reason"]), submission=int(e.args["submission"]))
            for e in tx.named("VoteSkipped")
        ]
        left_out = {s.item for s in skipped}
        cast = {(str(e.args["verifier"]).lower(), int(e.args["submission"]))
                for e in tx.named("VoteCast")}
        recorded = [v for i, v in enumerate(votes)
                    if i not in left_out and (v.verifier.lower(), v.submission) in cast]
        return VoteResult(tx.tx_hash, tx.block_number, tx.gas_used, tx.events, recorded, skipped)

    def settle(self, task_id: int, round: int) -> Settlement:
        """Settle a round (after its vote deadline, or once every assigned verifier voted)."""
        tx = self._send("settle", [task_id, round])
        subs = [
            SettledSubmission(
                int(e.args["submission"]),
                str(e.args["contributor"]),
                Status(e.args["status"]),
                int(e.args["yesVotes"]),
                int(e.args["votesCast"]),
            )
            for e in tx.named("SubmissionSettled")
        ]
        paid: dict[str, int] = {}
        for e in tx.named("Paid"):
            paid[e.args["account"]] = paid.get(e.args["account"], 0) + int(e.args["amount"])
        pen: dict[str, int] = {}
        for e in tx.named("Penalized"):
            pen[e.args["account"]] = pen.get(e.args["account"], 0) + int(e.args["amount"])
        done = tx.named("RoundSettled")[0].args
        return Settlement(
            tx, subs, paid, pen, int(done["accepted"]), int(done["paid"]), int(done["returned"])
        )

    def record_metamodel(
        self, task_id: int, round: int, cid: bytes, content_hash: bytes
    ) -> TxResult:
        """Record the round's MetaModel CID (initiator or authority, after settlement)."""
        return self._send("recordMetaModel", [task_id, round, bytes(cid), bytes(content_hash)])

    def log_round(self, task_id: int, round: int, cid: bytes, content_hash: bytes) -> TxResult:
        """Log a FedAvg round's global model CID (authority only; an event, no storage)."""
        return self._send("logRound", [task_id, round, bytes(cid), bytes(content_hash)])

    # ------------------------------------------------------------ reads
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
        )

    def participants(self, task_id: int) -> list[str]:
        """Returns: the task's participants in registration order."""
        return [str(a) for a in self._view("getParticipants", task_id)]

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

    def _round_models(self, task_id: int, round: int) -> dict[int, tuple[str, bytes, bytes, bytes]]:
        topic = next(t for t, n in self._events.items() if n == "Submitted")
        logs = self.chain.w3.eth.get_logs({
            "address": self.address, "fromBlock": 0, "toBlock": "latest",
            "topics": [topic, "0x" + task_id.to_bytes(32, "big").hex(),
                       "0x" + round.to_bytes(32, "big").hex()],
        })
        return {
            int(e.args["submission"]): (str(e.args["contributor"]), bytes(e.args["modelDigest"]),
                                        bytes(e.args["contentHash"]), bytes(e.args["cid"]))
            for e in self._decode_logs(logs)
        }

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

    def events(
        self, name: str | None = None, from_block: int = 0, task_id: int | None = None
    ) -> list[Event]:
        """Returns: the contract's events (optionally one kind, one task), oldest first."""
        topics: list[Any] = []
        if name is not None:
            topic = next((t for t, n in self._events.items() if n == name), None)
            if topic is None:
                raise LedgerError(f"no event {name!r} in the contract")
            topics.append(topic)
        elif task_id is not None:
            topics.append(None)
        if task_id is not None:
            topics.append("0x" + task_id.to_bytes(32, "big").hex())
        flt: dict[str, Any] = {
            "address": self.address,
            "fromBlock": from_block,
            "toBlock": "latest",
        }
        if topics:
            flt["topics"] = topics
        return self._decode_logs(self.chain.w3.eth.get_logs(flt))  # type: ignore[arg-type]

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

    # ------------------------------------------------------------ internals
    def _error_name(self, selector: bytes) -> str:
        """Returns: the name of the contract's error with this 4-byte selector."""
        spec = self._errors.get(bytes(selector)[:4])
        return spec[0] if spec else "0x" + bytes(selector).hex()

    def decode_revert(self, data: bytes) -> ContractRevertError | None:
        """Returns: the named error for revert ``data``, or None when it is not ours."""
        spec = self._errors.get(bytes(data[:4]))
        if spec is None:
            return None
        name, types, names = spec
        try:
            values = abi_decode(types, bytes(data[4:]))
        except Exception:
            return ContractRevertError(name)
        return ContractRevertError(name, dict(zip(names, values, strict=True)))

    def _send(self, fn: str, args: list[Any], value: int = 0) -> TxResult:
        if value < 0:
            raise LedgerError(f"{fn}: negative value {value}")
        try:
            data = bytes.fromhex(self._c.encode_abi(fn, args=args)[2:])
        except Exception as exc:  # web3 raises several types for out-of-range or wrong types
            raise LedgerError(f"{fn}: arguments do not fit the contract's ABI: {exc}") from exc
        out: TxOutcome = self.chain.transact(self.address, data, value, self.decode_revert)
        return TxResult(out.tx_hash, out.block_number, out.gas_used, self._decode_logs(out.logs))

    def _view(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self._c.functions, fn)(*args).call()
        except Exception as exc:
            data = revert_data(exc)
            named = self.decode_revert(data) if data else None
            if named is not None:
                raise named from exc
            raise TransactionError(f"{fn} call failed: {exc}") from exc

    def _decode_logs(self, logs: Sequence[Any]) -> list[Event]:
        out = []
        for log in logs:
            if to_checksum_address(log["address"]) != self.address or not log["topics"]:
                continue
            topic = "0x" + bytes(log["topics"][0]).hex()
            name = self._events.get(topic)
            if name is None:
                continue
            ev = getattr(self._c.events, name)().process_log(log)
            out.append(
                Event(
                    name,
                    _plain(dict(ev["args"])),
                    int(log["blockNumber"]),
                    "0x" + bytes(log["transactionHash"]).hex(),
                    int(log["logIndex"]),
                )
            )
        return out


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in args.items():
        if isinstance(v, bytes):
            out[k] = bytes(v)
        elif isinstance(v, tuple | list):
            out[k] = tuple(v)
        else:
            out[k] = v
    return out


def to_wei_ether(x: float) -> int:
    """Returns: ``x`` ether in wei."""
    return int(Web3.to_wei(x, "ether"))

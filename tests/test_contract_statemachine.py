"""Hypothesis state machine on the embedded EVM: random sequences of rounds, submissions,
votes (valid and invalid), block mining and settlements. Invariants: funds are conserved; a
model is accepted iff at least `quorum` votes were cast and a strict majority said yes; every
balance and deposit matches a Python model of the rules."""

from __future__ import annotations

import os

from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coopflower.ledger import (
    ContractRevertError,
    CoopLedger,
    Status,
    TaskParams,
    connect,
    settle_submission,
    sign_registration,
    sign_submission,
    sign_vote,
)

N = 6
CHAIN = connect()
LEDGER = CoopLedger.deploy(CHAIN)
TESTER = CHAIN.w3.provider.ethereum_tester  # type: ignore[attr-defined]
SNAPSHOT = TESTER.take_snapshot()
LATE = 2  # nodes that may register later (between rounds; refused while a round is on)
KEYS = ["0x" + f"{0xA000 + i:064x}" for i in range(N + LATE)]
ADDRS = [Account.from_key(k).address for k in KEYS]
KEY_OF = {a: k for a, k in zip(ADDRS, KEYS, strict=True)}


class LedgerMachine(RuleBasedStateMachine):
    """One task per example on a shared deployment; a Python model of every amount."""

    def __init__(self) -> None:
        super().__init__()
        TESTER.revert_to_snapshot(SNAPSHOT)  # every example starts from the fresh deployment
        CHAIN.resync()
        self.led = LEDGER
        self.params = TaskParams(
            spec_hash=os.urandom(32),
            k=3,
            quorum=2,
            submit_blocks=30,
            vote_blocks=5,
            max_submissions=N,
            reward=1000,
            verifier_fee=100,
            min_deposit=500,
            penalty_wrong_vote=70,
            penalty_no_vote=130,
        )
        self.task = self.led.publish_task(self.params, self.params.escrow_per_round() * 3)
        regs = [sign_registration(k, self.led.domain, self.task, 500) for k in KEYS[:N]]
        self.led.register_for(self.task, regs)
        self.balance = {a: self.led.balance_of(a) for a in ADDRS}
        self.deposit = {a: 500 if i < N else 0 for i, a in enumerate(ADDRS)}
        self.late_registered: set[int] = set()
        self.round = 0
        self.state = 0  # 0 none/settled, 1 open, 2 voting, 4 settled in part
        self.settled: set[int] = set()  # the round's submissions settled so far
        self.subs: list = []
        self.plan: dict[int, list[str]] = {}
        self.ballots: dict[int, dict[str, bool]] = {}

    # ------------------------------------------------------------ rules
    @precondition(lambda self: self.state == 0 and self.round < 3)
    @rule()
    def open_round(self) -> None:
        self.round = self.led.open_round(self.task).round
        self.state, self.subs, self.plan, self.ballots = 1, [], {}, {}
        self.settled = set()

    @precondition(lambda self: self.state == 1)
    @rule(who=st.sets(st.integers(0, N - 1), max_size=4), close=st.booleans())
    def submit(self, who: set[int], close: bool) -> None:
        done = {s.contributor for s in self.subs}
        fresh = [i for i in sorted(who) if ADDRS[i] not in done]
        if not fresh and not close:
            return
        new = [
            sign_submission(
                KEYS[i], self.led.domain, self.task, self.round, os.urandom(34), os.urandom(32)
            )
            for i in fresh
        ]
        self.led.submit_batch(self.task, self.round, new, close=close)
        self.subs += new
        if close:
            self._closed()

    @precondition(lambda self: self.state == 1)
    @rule()
    def resubmit_is_replay(self) -> None:
        if not self.subs:
            return
        if len(self.subs) >= N:  # a full round takes nothing more: the batch reverts first
            try:
                self.led.submit_batch(self.task, self.round, [self.subs[0]], close=False)
            except ContractRevertError as exc:
                assert "RoundFull" in str(exc), exc
                return
            raise AssertionError("a batch into a full round was accepted")
        out = self.led.submit_batch(self.task, self.round, [self.subs[0]], close=False)
        assert [s.reason for s in out.skipped] == ["SignatureReplayed"], out.skipped
        assert not out.named("Submitted")

    def _closed(self) -> None:
        self.state = 2
        if self.subs:
            self.plan = self.led.assignments(self.task, self.round).verifiers
        self.ballots = {s: {} for s in range(len(self.subs))}

    @precondition(lambda self: self.state == 2 and bool(self.subs))
    @rule(data=st.data())
    def vote(self, data: st.DataObject) -> None:
        pending = [(s, v) for s, vs in self.plan.items() for v in vs if v not in self.ballots[s]]
        if not pending:
            return
        picks = data.draw(st.lists(st.sampled_from(pending), min_size=1, max_size=6, unique=True))
        accepts = data.draw(st.lists(st.booleans(), min_size=len(picks), max_size=len(picks)))
        # a signed accept counts as a yes only with a score reaching the task's threshold
        scores = data.draw(st.lists(st.sampled_from([0, self.params.min_accuracy_bps - 1,
                                                     self.params.min_accuracy_bps, 10000]),
                                    min_size=len(picks), max_size=len(picks)))
        votes = [
            sign_vote(
                KEY_OF[v], self.led.domain, self.task, self.round, s, self.subs[s].model_digest,
                a, bps,
            )
            for (s, v), a, bps in zip(picks, accepts, scores, strict=True)
        ]
        late = self.CHAIN_BLOCK() + 1 > self.led.round(self.task, self.round).vote_end
        try:
            self.led.submit_votes(self.task, self.round, votes)
            assert not late
            for (s, v), a, bps in zip(picks, accepts, scores, strict=True):
                self.ballots[s][v] = a and bps >= self.params.min_accuracy_bps
        except ContractRevertError as exc:
            assert late and exc.name == "VoteTooLate", exc

    @precondition(lambda self: self.state == 2 and bool(self.subs))
    @rule(data=st.data())
    def vote_unassigned(self, data: st.DataObject) -> None:
        s = data.draw(st.integers(0, len(self.subs) - 1))
        registered = ADDRS[:N] + [ADDRS[i] for i in sorted(self.late_registered)]
        outsiders = [a for a in registered if a not in self.plan[s]]
        v = data.draw(st.sampled_from(outsiders))
        vote = sign_vote(
            KEY_OF[v], self.led.domain, self.task, self.round, s, self.subs[s].model_digest, True
        )
        try:
            self.led.submit_votes(self.task, self.round, [vote])
            raise AssertionError("a vote by an unassigned verifier was accepted")
        except ContractRevertError as exc:
            assert exc.name in ("NotAssigned", "VoteTooLate"), exc

    @rule(i=st.integers(N, N + LATE - 1))
    def register_late(self, i: int) -> None:
        """A node joins between rounds; while a round is in progress it is refused."""
        if i in self.late_registered:
            return
        reg = [sign_registration(KEYS[i], self.led.domain, self.task, 500)]
        if self.state:
            try:
                self.led.register_for(self.task, reg)
                raise AssertionError("a registration in the middle of a round was accepted")
            except ContractRevertError as exc:
                assert exc.name == "RoundInProgress", exc
            return
        self.led.register_for(self.task, reg)
        self.late_registered.add(i)
        self.deposit[ADDRS[i]] = 500

    @rule(blocks=st.integers(1, 4))
    def mine(self, blocks: int) -> None:
        CHAIN.mine(blocks)

    @precondition(lambda self: self.state == 1)
    @rule()
    def close(self) -> None:
        self.led.close_submissions(self.task, self.round)
        self._closed()

    @precondition(lambda self: self.state in (2, 4))
    @rule()
    def settle(self) -> None:
        """The rest of the round's settlement, as ``ledger.settle`` sends it."""
        self._settle(None)

    @precondition(lambda self: self.state in (2, 4))
    @rule(count=st.integers(1, 3))
    def settle_some(self, count: int) -> None:
        """One ``settle`` call over the next ``count`` submissions (the round SETTLING until
        the last one)."""
        self._settle(count)

    def _settle(self, count: int | None) -> None:
        info = self.led.round(self.task, self.round)
        all_voted = all(len(self.ballots[s]) == 3 for s in self.ballots)
        due = self.state == 4 or self.CHAIN_BLOCK() + 1 > info.vote_end or all_voted
        try:
            if count is None:
                result = self.led.settle(self.task, self.round)
                settled = {s.submission: s.status for s in result.submissions}
                done = True
            else:
                tx = self.led._send("settle", [self.task, self.round, count])
                settled = {int(e.args["submission"]): Status(e.args["status"])
                           for e in tx.named("SubmissionSettled")}
                done = bool(tx.named("RoundSettled"))
        except ContractRevertError as exc:
            assert not due and exc.name == "SettlementTooEarly", exc
            return
        assert due
        p = self.params
        for s in sorted(set(settled) - self.settled):
            sub = self.subs[s]
            ballots = [self.ballots[s].get(v) for v in self.plan[s]]
            exp = settle_submission(
                ballots, p.quorum, p.reward, p.verifier_fee, p.penalty_wrong_vote, p.penalty_no_vote
            )
            yes = sum(b is True for b in ballots)
            cast = sum(b is not None for b in ballots)
            # the acceptance invariant, stated directly
            assert (settled[s] is Status.ACCEPTED) == (cast >= p.quorum and 2 * yes > cast)
            assert settled[s] == exp.tally.status
            self.balance[sub.contributor] += exp.contributor_reward
            for j, fee in exp.fees.items():
                self.balance[self.plan[s][j]] += fee
            for j, (_, amount) in exp.penalties.items():
                v = self.plan[s][j]
                self.deposit[v] -= min(amount, self.deposit[v])
        self.settled |= set(settled)
        assert done == (self.settled == set(range(len(self.subs))))
        self.state = 0 if done else 4
        assert self.led.round(self.task, self.round).state == (3 if done else 4)

    # ------------------------------------------------------------ invariants
    def CHAIN_BLOCK(self) -> int:  # noqa: N802
        return CHAIN.block_number()

    @invariant()
    def funds_conserved_and_model_matches(self) -> None:
        state = self.led.accounts(self.task, ADDRS + [CHAIN.address])
        for a in ADDRS:
            assert state[a].balance == self.balance[a], a
            assert state[a].deposit == self.deposit[a], a
        info = self.led.task(self.task)
        held = sum(x.balance + x.deposit for x in state.values()) + info.escrow
        if self.state:  # a round in progress holds its reservation
            held += self.led.round(self.task, self.round).reserved
        assert CHAIN.balance(self.led.address) == held


LedgerMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=16,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase

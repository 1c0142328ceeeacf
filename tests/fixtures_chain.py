"""Chain fixtures and helpers: real nodes (anvil, a clique PoA chain) and the embedded EVM.

Import in a test module: ``from tests.fixtures_chain import anvil_url  # noqa: F401``.
Fixtures: ``anvil_node`` (session; a :class:`ChainNode`), ``anvil_url`` (its URL),
``anvil_key`` (a funded key), ``clique_node`` (module scope); ``chain`` (tests/conftest.py)
runs a module's tests on the embedded EVM and on anvil, for modules that import
``anvil_node``. Tests using the nodes carry the ``node`` marker and are skipped with the
reason when the npm tools are not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from eth_account import Account

from coopflower.ledger import (
    Chain,
    CoopLedger,
    SignedSubmission,
    SignedVote,
    TaskParams,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.ledger.eip712 import seed_commitment
from coopflower.ledger.nodes import ChainNode, NodeToolMissing, anvil, clique


def _skip_missing(exc: NodeToolMissing) -> None:
    pytest.skip(f"npm tool missing: {exc}")


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[ChainNode]:
    """A session-wide anvil on a free loopback port (stopped at the end)."""
    try:
        with anvil() as node:
            yield node
    except NodeToolMissing as exc:
        _skip_missing(exc)


@pytest.fixture(scope="session")
def anvil_url(anvil_node: ChainNode) -> str:
    """The session anvil's JSON-RPC URL."""
    return anvil_node.url


@pytest.fixture(scope="session")
def anvil_key(anvil_node: ChainNode) -> str:
    """A funded anvil key (the first dev account)."""
    return anvil_node.private_keys[0]


@pytest.fixture(scope="module")
def clique_node() -> Iterator[ChainNode]:
    """A one-sealer clique PoA chain (ethereumjs 0.9.0, period 1 s) for one test module."""
    try:
        with clique() as node:
            yield node
    except NodeToolMissing as exc:
        _skip_missing(exc)


# ---------------------------------------------------------------- helpers for ledger tests
@dataclass
class Scenario:
    """A deployed ledger with a task and its participants' keys."""

    chain: Chain
    ledger: CoopLedger
    task_id: int
    params: TaskParams
    keys: list[str]

    def address(self, i: int) -> str:
        """Returns: participant i's address."""
        return str(Account.from_key(self.keys[i]).address)

    def key_of(self, address: str) -> str:
        """Returns: the key of a participant address."""
        for k in self.keys:
            if Account.from_key(k).address.lower() == address.lower():
                return k
        raise KeyError(address)

    def share(self, round: int, i: int) -> bytes:
        """Returns: participant ``i``'s seed share for ``round``, derived from its key as a
        node's mod derives it (so its watcher can reveal it)."""
        from coopflower.client.duties import seed_share
        from coopflower.client.keys import NodeKey

        key = NodeKey(bytes.fromhex(self.keys[i][2:]), self.address(i))
        return seed_share(key, {"chain-id": self.ledger.chain.chain_id, "task-id": self.task_id,
                                "contract": self.ledger.address, "round": round})

    def submissions(self, round: int, who: Sequence[int]) -> list[SignedSubmission]:
        """Returns: signed submissions with fresh CIDs for participants ``who`` (committing
        to their seed shares when the task takes reveals)."""
        return [
            sign_submission(
                self.keys[i],
                self.ledger.domain,
                self.task_id,
                round,
                b"\x01\x55\x12\x20" + os.urandom(32),
                os.urandom(32),
                seed_commitment(self.share(round, i), self.address(i))
                if self.params.reveal_blocks else bytes(32),
            )
            for i in who
        ]

    def shares_of(self, round: int, who: Sequence[int] | None = None) -> dict[int, bytes]:
        """Returns: submission id -> share, for the round's submissions by ``who`` (all)."""
        index = {self.address(i).lower(): i for i in range(len(self.keys))}
        out = {}
        for s in self.ledger.submissions(self.task_id, round):
            i = index[s.contributor.lower()]
            if who is None or i in who:
                out[s.submission] = self.share(round, i)
        return out

    def vote(
        self, round: int, submission: int, digest: bytes, verifier: str, accept: bool,
        score_bps: int = 9000,
    ) -> SignedVote:
        """Returns: a vote signed by ``verifier``'s key (its score ``score_bps``)."""
        return sign_vote(
            self.key_of(verifier),
            self.ledger.domain,
            self.task_id,
            round,
            submission,
            digest,
            accept,
            score_bps,
        )


def new_scenario(chain: Chain, n: int = 5, ledger: CoopLedger | None = None, **kw: int) -> Scenario:
    """Deploy (unless given), publish a task funded for two rounds, register ``n`` nodes.

    Args:
        chain: the sender (an authority). n: participants. kw: TaskParams overrides.
    Returns: the :class:`Scenario`.
    """
    ledger = ledger or CoopLedger.deploy(chain)
    defaults: dict[str, int] = dict(
        k=3, quorum=2, max_submissions=n, submit_blocks=40, vote_blocks=40
    )
    defaults.update(kw)
    params = TaskParams(spec_hash=os.urandom(32), **defaults)  # type: ignore[arg-type]
    task_id = ledger.publish_task(params, params.escrow_per_round() * 2)
    keys = ["0x" + Account.create().key.hex().removeprefix("0x") for _ in range(n)]
    regs = [sign_registration(k, ledger.domain, task_id, params.min_deposit) for k in keys]
    ledger.register_for(task_id, regs)
    return Scenario(chain, ledger, task_id, params, keys)


def held_by_contract(ledger: CoopLedger, task_ids: Sequence[int], accounts: Sequence[str]) -> int:
    """Everything the contract owes: balances + escrows + round reservations + deposits.

    Returns: wei; equals the contract's ether balance when funds are conserved.
    """
    total = sum(ledger.balance_of(a) for a in set(accounts))
    for t in task_ids:
        info = ledger.task(t)
        total += info.escrow
        for r in range(1, info.round_count + 1):
            total += ledger.round(t, r).reserved
        total += sum(ledger.participant(t, p).deposit for p in ledger.participants(t))
    return total

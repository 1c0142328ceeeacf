"""The contract binding the Flower strategy calls: one method per life-cycle step.

Every transaction method returns a dataclass; every revert is raised as
:class:`~coopflower.ledger.errors.ContractRevertError` naming the Solidity custom error.

:class:`CoopLedger` assembles the parts: ``binding`` (sending, calling, decoding), ``views``
(reads), ``tasks`` (task and participant transactions), ``rounds`` (round transactions);
the dataclasses it returns live in ``records`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address
from web3 import Web3

from .artifact import load_artifact
from .backend import Chain
from .errors import LedgerError, TransactionError
from .records import (
    ROUND_NONE,
    ROUND_OPEN,
    ROUND_SETTLED,
    ROUND_SETTLING,
    ROUND_VOTING,
    AccountState,
    Assignment,
    Event,
    ParticipantInfo,
    RoundInfo,
    RoundRecord,
    SettledSubmission,
    Settlement,
    Skipped,
    SubmissionInfo,
    SubmitResult,
    TaskInfo,
    TaskParams,
    TxResult,
    VoteResult,
)
from .rounds import RoundCalls
from .tasks import TaskCalls

__all__ = [
    "ROUND_NONE",
    "ROUND_OPEN",
    "ROUND_SETTLED",
    "ROUND_SETTLING",
    "ROUND_VOTING",
    "AccountState",
    "Assignment",
    "CoopLedger",
    "Event",
    "ParticipantInfo",
    "RoundInfo",
    "RoundRecord",
    "SettledSubmission",
    "Settlement",
    "Skipped",
    "SubmissionInfo",
    "SubmitResult",
    "TaskInfo",
    "TaskParams",
    "TxResult",
    "VoteResult",
    "to_wei_ether",
]


class CoopLedger(TaskCalls, RoundCalls):
    """A deployed CoopLedger contract on a :class:`~coopflower.ledger.backend.Chain`.

    Create with :meth:`deploy` or :meth:`at`. Transactions are sent from ``chain.account``.
    """

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


def to_wei_ether(x: float) -> int:
    """Returns: ``x`` ether in wei."""
    return int(Web3.to_wei(x, "ether"))

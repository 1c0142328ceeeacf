"""Exceptions of the ledger layer: every failure surfaces as a :class:`LedgerError`."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base class of every error raised by ``coopflower.ledger``."""


class SignatureError(LedgerError):
    """A signature is malformed or was not made by the expected account."""


class ContractRevertError(LedgerError):
    """The contract reverted with a named custom error.

    Attributes:
        name: the Solidity error's name, e.g. ``"NotAssigned"``.
        args: its decoded arguments, by parameter name.
    """

    def __init__(self, name: str, args: dict[str, Any] | None = None, tx_hash: str | None = None):
        self.name = name
        self.args_by_name: dict[str, Any] = dict(args or {})
        self.tx_hash = tx_hash
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.args_by_name.items())
        where = f" (tx {tx_hash})" if tx_hash else ""
        super().__init__(f"contract reverted: {name}({shown}){where}")


class TransactionError(LedgerError):
    """A transaction could not be sent, was not mined in time, or failed without a reason."""


class RandomnessTimeout(LedgerError):
    """The block whose hash seeds verifier assignment did not appear in time."""


class NodeToolMissing(LedgerError):
    """A chain node cannot start because its npm tool is not installed."""


class NodeStartError(LedgerError):
    """A chain node process exited or its JSON-RPC did not answer in time."""


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)

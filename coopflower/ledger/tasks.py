"""The contract's task and participant transactions: publish, fund and close a task, register
(oneself or others from their signed consent), release deposits, withdraw."""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address

from .batches import merge, slices
from .binding import ContractBinding
from .eip712 import SignedRegistration, compact_signature
from .records import TaskParams, TxResult


class TaskCalls(ContractBinding):
    """Transactions on a task and its participants."""

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
        """Register nodes from their signed consent, in as few transactions as the block gas
        allows. Each deposit comes first from the node's own balance in the contract
        (``top_up``), the rest from the sender."""
        results = []
        for _, part in slices(regs, self.batch_size("registration")):
            who = [to_checksum_address(g.participant) for g in part]
            balances, _ = self._view("getAccounts", task_id, who)  # one read per batch
            items, value = [], 0
            for g, addr, own in zip(part, who, balances, strict=True):
                r, vs = compact_signature(g.signature)
                items.append((addr, g.deposit, r, vs))
                value += g.deposit - min(int(own), g.deposit)
            results.append(self._send("registerFor", [task_id, items], value=value))
        return merge(results)

    def top_up(self, amount: int) -> TxResult:
        """Add ``amount`` wei to the sending account's balance in the contract: the node's own
        money, from which its deposits are paid when it is registered."""
        return self._send("topUp", [], value=amount)

    def release_deposits(self, task_id: int, accounts: Sequence[str]) -> TxResult:
        """After a task closed, move deposits to their owners' balances."""
        return self._send("releaseDeposits", [task_id, [to_checksum_address(a) for a in accounts]])

    def withdraw(self) -> TxResult:
        """Withdraw the sending account's balance."""
        return self._send("withdraw", [])

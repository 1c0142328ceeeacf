"""A node's own money in the task's contract: ``coopflower deposit`` tops up its balance.

``registerFor`` takes each node's deposit from the node's own balance in the contract first
(the node's signed consent names the deposit), so a node that topped up risks its own money:
its penalties cost it, not the initiator who relays its registration. The node needs a funded
key for the one transaction; the balance left after a task is the node's to ``withdraw``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

__all__ = ["run_top_up"]


def run_top_up(chain_url: str, key_file: str, contract: str, amount: int,
               out: TextIO = sys.stdout) -> int:
    """``coopflower deposit``: make the node's balance in ``contract`` at least ``amount`` wei
    (tops up only the shortfall, so a SuperNode may run it at every start)."""
    from coopflower.client.keys import load_or_create_key
    from coopflower.ledger.backend import connect
    from coopflower.ledger.contract import CoopLedger

    if amount <= 0:
        print("deposit: --wei must be positive", file=sys.stderr)
        return 2
    key = load_or_create_key(Path(key_file).expanduser())
    ledger = CoopLedger.at(connect(chain_url, private_key=key.private_key), contract)
    short = amount - ledger.balance_of(key.address)
    if short > 0:
        ledger.top_up(short)
    print(f"{key.address} holds {ledger.balance_of(key.address)} wei in {ledger.address}: "
          "its deposits are paid from it", file=out)
    return 0

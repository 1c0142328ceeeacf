"""The FedAvg baseline's optional chain log: store each round's global model, log its CID."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord

__all__ = ["ChainRoundLogger"]


@dataclass
class ChainRoundLogger:
    """A ``round_logger`` for ``FedAvgBaseline``: each call packs the global model, puts it
    into ``store`` and sends one ``logRound(task_id, round, cid, content hash)`` transaction.

    Attributes:
        ledger: a bound ``coopflower.ledger.CoopLedger`` (its account must be an authority).
        store: a content store (``coopflower.storage.open_store(...)``).
        task_id: the namespace the rounds are logged under.
        cids: round -> CID bytes logged so far.
    """

    ledger: Any
    store: Any
    task_id: int = 0
    cids: dict[int, bytes] = field(default_factory=dict)

    def __call__(self, server_round: int, arrays: ArrayRecord) -> int:
        """Log one round; returns the bytes put into storage."""
        from coopflower.blob import pack_arrays
        from coopflower.ledger.eip712 import content_hash

        blob = pack_arrays({k: np.asarray(a.numpy()) for k, a in arrays.items()},
                           {"round": str(server_round), "strategy": "fedavg"})
        cid = self.store.put(blob).to_bytes()
        self.ledger.log_round(self.task_id, server_round, cid, content_hash(blob))
        self.cids[server_round] = cid
        return len(blob)

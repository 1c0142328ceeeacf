"""Batches that fit a block: a relayed list (registrations, submissions, shares, votes) goes out
in as many transactions as the block gas limit needs, each one checked on chain as a whole
batch is, so a round costs ceil(n / B) + a constant transactions.

Pure helpers: the batch size from the block gas limit and an upper estimate of one item's gas,
the slices, and the merge of the mined transactions into one result (gas summed, events in
order, skipped items renumbered to their place in the whole list).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from .records import TxResult

__all__ = ["GAS_PER_ITEM", "GAS_PER_VERIFIER", "batch_size", "slices", "merge"]

T = TypeVar("T")

# upper estimates of one item's gas (bench/gas.py measures 62 k, 53-59 k, 21 k and 9-21 k),
# and a transaction's fixed part; a settled submission costs a part of its own and one a
# verifier (a payment or a penalty: a balance or deposit slot, an event), so its estimate is
# ``GAS_PER_ITEM["settlement"] + k * GAS_PER_VERIFIER``
GAS_PER_ITEM = {"registration": 80_000, "submission": 75_000, "vote": 40_000, "share": 30_000,
                "settlement": 45_000}
GAS_PER_VERIFIER = 27_000
FIXED_GAS = 200_000
SHARE_OF_BLOCK = 0.6  # leave room for other transactions and for the estimate's error


def batch_size(block_gas_limit: int, kind: str, extra_per_tx: int = 0,
               cap: int | None = None, extra_per_item: int = 0) -> int:
    """Items of ``kind`` per transaction under ``block_gas_limit`` (at least 1; at most
    ``cap`` when given); ``extra_per_tx`` is gas every transaction of the kind pays on top
    (the reveal's list of commitments), ``extra_per_item`` gas each item pays on top (a
    settled submission's verifiers)."""
    room = int(block_gas_limit * SHARE_OF_BLOCK) - FIXED_GAS - extra_per_tx
    size = max(1, room // (GAS_PER_ITEM[kind] + extra_per_item))
    return min(size, cap) if cap else size


def slices(items: Sequence[T], size: int) -> list[tuple[int, Sequence[T]]]:
    """``(offset, items[offset:offset + size])`` covering ``items`` (one empty slice for none)."""
    if not items:
        return [(0, items)]
    return [(i, items[i:i + size]) for i in range(0, len(items), size)]


def merge(results: Sequence[TxResult]) -> TxResult:
    """One result for the batch's transactions: the last one's hash and block, the gas summed,
    every event in order."""
    last = results[-1]
    return TxResult(last.tx_hash, last.block_number, sum(r.gas_used for r in results),
                    [e for r in results for e in r.events])

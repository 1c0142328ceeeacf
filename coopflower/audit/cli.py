"""``coopflower audit``: collect a task's history from a chain, replay it, print a table per
round and return the process exit code (0 clean, 1 discrepancies, 2 could not audit)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from coopflower.audit.history import collect_history
from coopflower.audit.records import AuditError, RoundAudit, short
from coopflower.audit.replay import replay

__all__ = ["format_round", "audit_ledger", "run_audit", "add_arguments", "main"]


def format_round(ra: RoundAudit) -> str:
    """A plain-text table of one round's replay, what its MetaModel check did, and its
    discrepancies (``!``) and refused batch items (``~``) below."""
    head = (f"task {ra.task_id} round {ra.round}: seed {ra.seed}, {len(ra.rows)} submissions, "
            f"{'OK' if ra.ok else f'{len(ra.problems)} DISCREPANCIES'}")
    lines = [head, f"  {'sub':>3} {'contributor':<12} {'cid':<16} {'blob':<4} {'sig':<4} "
                   f"{'yes/cast':>8} {'replayed':<9} {'recorded':<9}"]
    for r in ra.rows:
        lines.append(f"  {r.submission:>3} {short(r.contributor, 10):<12} {r.cid:<16} "
                     f"{r.blob:<4} {r.signature:<4} {f'{r.yes}/{r.cast}':>8} {r.replayed:<9} "
                     f"{r.recorded:<9}")
    lines.append(f"  MetaModel: {ra.metamodel}")
    lines += [f"  ! {p}" for p in ra.problems]
    lines += [f"  ~ {n}" for n in ra.notes]
    return "\n".join(lines)


def audit_ledger(ledger: Any, store: Any, task_id: int | None = None,
                 stream: TextIO | None = sys.stdout) -> list[RoundAudit]:
    """Collect and replay; print a table per round to ``stream``; return the audits."""
    audits = []
    for task in collect_history(ledger, task_id):
        for ra in replay(task, store.get):
            if stream is not None:
                print(format_round(ra), file=stream, flush=True)
            audits.append(ra)
    return audits


def run_audit(chain: str, contract: str, store: str | None, task_id: int | None = None,
              stream: TextIO = sys.stdout) -> int:
    """``coopflower audit``: replay from a JSON-RPC chain, a contract address and a store.

    Args:
        chain: the chain's JSON-RPC URL. contract: the CoopLedger address.
        store: storage spec (directory or IPFS RPC URL; ``None``: the default store).
        task_id: one task, or every task.

    Returns:
        The exit code: 0 clean, 1 discrepancies found, 2 the audit could not run.
    """
    import secrets

    from coopflower.ledger import CoopLedger, LedgerError, connect
    from coopflower.storage import StorageError, open_store

    try:
        # a throwaway key: the audit only reads, it never sends a transaction
        ledger = CoopLedger.at(connect(chain, private_key=secrets.token_bytes(32)), contract)
        audits = audit_ledger(ledger, open_store(store), task_id, stream)
    except (AuditError, LedgerError, StorageError) as exc:
        print(f"audit failed: {exc}", file=stream)
        return 2
    bad = sum(len(a.problems) for a in audits)
    notes = sum(len(a.notes) for a in audits)
    print(f"{len(audits)} rounds replayed, {bad} discrepancies"
          + (f", {notes} notes (batch items the contract refused)" if notes else ""), file=stream)
    return 1 if bad else 0


def add_arguments(parser: Any) -> None:
    """Add the audit's options to an ``argparse`` (sub)parser."""
    parser.add_argument("--chain", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument("--contract", required=True, help="the CoopLedger contract address")
    parser.add_argument("--store", default=None, help="store directory or IPFS RPC URL")
    parser.add_argument("--task", type=int, default=None, help="audit one task only")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coopflower.audit --chain URL --contract ADDR [--store S] [--task N]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="coopflower audit",
                                     description="Replay a task from chain and storage alone.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_audit(args.chain, args.contract, args.store, args.task)

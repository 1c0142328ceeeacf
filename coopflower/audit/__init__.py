"""Audit: replay every round of a task from chain data and storage alone.

Nothing the initiator says is trusted. From the contract's events, the batch transactions'
calldata (which carries every signature) and the chain's block hashes, and from the blobs in
content-addressed storage, the audit rechecks:

- every signature: each submission recovers to its contributor and each vote to its verifier
  (EIP-712, the same typed data the contract checks);
- every verifier assignment, recomputed from the round's randomness block hash
  (``round_seed``, ``assign_verifiers``): each vote must come from an assigned verifier, once;
- every blob against its CID (the store checks the bytes) and its recorded content hash, and
  the recorded model digest;
- every tally (majority of valid votes cast, with quorum) against the settled status, and the
  payments against the task's rules;
- the recorded MetaModel against the accepted models (:mod:`coopflower.audit.metamodel`): its
  inputs must be exactly the accepted ones, and a deterministic aggregation is recomputed bit
  for bit; for fusion, and for what is not recomputed, each round states what was checked and
  what was taken on trust;
- what no single party should decide, named as a discrepancy when the chain shows it: a
  refreshed randomness (every ``RandomnessRefreshed``: the first draw was public and someone let
  it expire), a round whose randomness was lost (settled void), a submission window closed
  twice, a model (content hash) submitted twice in the task, a participant registered while a
  round was in progress. Items a batch skipped (copies, second submissions, second ballots) are
  listed as notes: refused by the contract, they changed nothing.

Modules: ``records`` (the data), ``history`` (``collect_history``, the adapter that reads the
chain), ``replay`` (pure; takes a ``fetch(cid) -> bytes`` function), ``metamodel`` and
``provenance`` (what a MetaModel blob records of its making), ``cli`` (``run_audit`` prints a
table per round and returns the process exit code: 0 clean, 1 discrepancies, 2 could not audit).
"""

from __future__ import annotations

from coopflower.audit.cli import add_arguments, audit_ledger, format_round, main, run_audit
from coopflower.audit.history import collect_history
from coopflower.audit.records import (
    AuditError,
    RoundAudit,
    RoundHistory,
    SettledRecord,
    SubmissionRecord,
    TaskHistory,
    VoteRecord,
)
from coopflower.audit.replay import replay

__all__ = [
    "AuditError",
    "SubmissionRecord",
    "VoteRecord",
    "SettledRecord",
    "RoundHistory",
    "TaskHistory",
    "RoundAudit",
    "collect_history",
    "replay",
    "format_round",
    "audit_ledger",
    "run_audit",
    "add_arguments",
    "main",
]

"""The ledger: the CoopLedger contract, its binding, EIP-712 signing and chain backends.

One round, as the coordinated strategy drives it (every step is one transaction, whatever the
number of nodes; nodes need no chain client and no gas, they only sign)::

    from coopflower.ledger import CoopLedger, TaskParams, connect
    from coopflower.ledger import sign_registration, sign_submission, sign_vote

    chain = connect()        # embedded EVM; connect(url, private_key=...) for a real node
    ledger = CoopLedger.deploy(chain)         # or CoopLedger.at(chain, address)
    params = TaskParams(spec_hash=h, k=3, quorum=2, max_submissions=10)
    task = ledger.publish_task(params, escrow=params.escrow_per_round() * rounds)

    # each node, once: sign_registration(node_key, ledger.domain, task, params.min_deposit)
    ledger.register_for(task, consents)       # the initiator pays the deposits, one tx

    rnd = ledger.open_round(task).round
    # each contributor: sign_submission(key, ledger.domain, task, rnd, cid, content_hash)
    ledger.submit_batch(task, rnd, submissions, close=True)   # one tx, closes the window
    plan = ledger.assignments(task, rnd)   # waits for the randomness block
    #   plan.verifiers: {submission id: [verifier addresses]}
    #   plan.for_verifier(addr) -> the submission ids that node must evaluate
    # each verifier: sign_vote(key, ledger.domain, task, rnd, sub_id, sub.model_digest,
    #                          accept, score_bps)
    ledger.submit_votes(task, rnd, votes)     # one tx
    result = ledger.settle(task, rnd)         # Settlement: per submission status, paid, penalized
    ledger.record_metamodel(task, rnd, meta_cid, meta_hash)

    ledger.log_round(task_or_namespace, rnd, cid, content_hash)   # FedAvg baseline: one cheap tx

Reads for an audit: ``ledger.round_record(task, rnd)`` (every event of the round),
``ledger.round / submission / participants / task``, and the pure rules in
:mod:`coopflower.ledger.rules` (``round_seed``, ``assign_verifiers``, ``tally``,
``settle_submission``) recompute every decision from them. Signatures:
:mod:`coopflower.ledger.eip712` (``recover_submission``, ``recover_vote``).

Errors: every revert is a :class:`ContractRevertError` whose ``name`` is the contract's custom
error (``"NotAssigned"``, ``"VoteTooLate"``, ...); all errors derive from :class:`LedgerError`.
Nodes: :func:`coopflower.ledger.nodes.anvil` and :func:`coopflower.ledger.nodes.clique` start
real chains on loopback. See docs/ledger.md for the contract's rules and gas figures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Chain, connect
    from .contract import (
        Assignment,
        CoopLedger,
        Event,
        ParticipantInfo,
        RoundInfo,
        RoundRecord,
        Settlement,
        Skipped,
        SubmissionInfo,
        SubmitResult,
        TaskInfo,
        TaskParams,
        TxResult,
        VoteResult,
    )
    from .eip712 import (
        Eip712Domain,
        SignedRegistration,
        SignedSubmission,
        SignedVote,
        content_hash,
        model_digest,
        recover_registration,
        recover_submission,
        recover_vote,
        sign_registration,
        sign_submission,
        sign_vote,
    )
    from .errors import (
        ContractRevertError,
        LedgerError,
        NodeStartError,
        NodeToolMissing,
        RandomnessTimeout,
        SignatureError,
        TransactionError,
    )
    from .rules import Status, assign_verifiers, round_seed, settle_submission, tally

# Imported on first use (PEP 562), so that a node that only signs (``coopflower.ledger.eip712``)
# does not pay for web3 and the contract binding: a deployed ClientApp starts a fresh process
# for every message.
_LAZY: dict[str, str] = {
    "Chain": "backend",
    "connect": "backend",
    "Assignment": "contract",
    "CoopLedger": "contract",
    "Event": "contract",
    "ParticipantInfo": "contract",
    "RoundInfo": "contract",
    "RoundRecord": "contract",
    "Settlement": "contract",
    "Skipped": "contract",
    "SubmissionInfo": "contract",
    "SubmitResult": "contract",
    "TaskInfo": "contract",
    "TaskParams": "contract",
    "TxResult": "contract",
    "VoteResult": "contract",
    "Eip712Domain": "eip712",
    "SignedRegistration": "eip712",
    "SignedSubmission": "eip712",
    "SignedVote": "eip712",
    "content_hash": "eip712",
    "model_digest": "eip712",
    "recover_registration": "eip712",
    "recover_submission": "eip712",
    "recover_vote": "eip712",
    "sign_registration": "eip712",
    "sign_submission": "eip712",
    "sign_vote": "eip712",
    "ContractRevertError": "errors",
    "LedgerError": "errors",
    "NodeStartError": "errors",
    "NodeToolMissing": "errors",
    "RandomnessTimeout": "errors",
    "SignatureError": "errors",
    "TransactionError": "errors",
    "Status": "rules",
    "assign_verifiers": "rules",
    "round_seed": "rules",
    "settle_submission": "rules",
    "tally": "rules",
}

__all__ = [
    "Assignment",
    "Chain",
    "ContractRevertError",
    "CoopLedger",
    "Eip712Domain",
    "Event",
    "LedgerError",
    "NodeStartError",
    "NodeToolMissing",
    "ParticipantInfo",
    "RandomnessTimeout",
    "RoundInfo",
    "RoundRecord",
    "Settlement",
    "SignatureError",
    "SignedRegistration",
    "SignedSubmission",
    "SignedVote",
    "Skipped",
    "Status",
    "SubmissionInfo",
    "SubmitResult",
    "TaskInfo",
    "TaskParams",
    "TransactionError",
    "TxResult",
    "VoteResult",
    "assign_verifiers",
    "connect",
    "content_hash",
    "model_digest",
    "recover_registration",
    "recover_submission",
    "recover_vote",
    "round_seed",
    "settle_submission",
    "sign_registration",
    "sign_submission",
    "sign_vote",
    "tally",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

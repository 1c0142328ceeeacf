"""Real rounds for the audit tests: a task on a real chain (the embedded EVM or anvil), real
model blobs in a real store, signed submissions and votes, the contract's settlement, and the
round's aggregate made by the strategy's own aggregate stage (``strategy.accepted.aggregate``)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from coopflower.blob import state_dict_to_blob
from coopflower.ledger import (
    Chain,
    CoopLedger,
    SignedSubmission,
    TaskParams,
    content_hash,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.models import build_model
from coopflower.storage import open_store

__all__ = ["AuditTask", "new_task", "strategy_aggregate"]


@dataclass
class AuditTask:
    """A published task with five registered participants, its store and their keys."""

    ledger: CoopLedger
    store: Any
    task: int
    keys: list[bytes]
    addr: dict[str, bytes] = field(default_factory=dict)  # address (lower) -> key

    def submit(self, rnd: int, seeds: Sequence[int]) -> list[SignedSubmission]:
        """One real model blob per contributor (participants 0, 1, ...), stored and signed,
        each declaring a different number of examples; all in one closing batch."""
        subs = []
        for i, seed in enumerate(seeds):
            torch.manual_seed(seed)
            blob = state_dict_to_blob(build_model("table4"),
                                      {"model": "table4", "num-examples": str(100 + 50 * i)})
            cid = self.store.put(blob).to_bytes()
            subs.append(sign_submission(self.keys[i], self.ledger.domain, self.task, rnd, cid,
                                        content_hash(blob)))
        self.ledger.submit_batch(self.task, rnd, subs, close=True)
        return subs

    def vote_and_settle(self, rnd: int, subs: Sequence[SignedSubmission],
                        rejected: Sequence[int] = (1,)) -> list[int]:
        """Every assigned verifier votes (no on ``rejected``); settle; the accepted ids."""
        plan = self.ledger.assignments(self.task, rnd)
        votes = [sign_vote(self.addr[v.lower()], self.ledger.domain, self.task, rnd, sid,
                           subs[sid].model_digest, sid not in rejected,
                           1000 if sid in rejected else 9000)
                 for sid, verifiers in plan.verifiers.items() for v in verifiers]
        self.ledger.submit_votes(self.task, rnd, votes)
        settled = self.ledger.settle(self.task, rnd)
        return sorted(s.submission for s in settled.submissions if s.status.name == "ACCEPTED")

    def round(self, seed: int, rejected: Sequence[int] = (1,),
              ) -> tuple[int, list[SignedSubmission], list[int]]:
        """A settled round of three submissions: its number, submissions and accepted ids."""
        rnd = self.ledger.open_round(self.task).round
        subs = self.submit(rnd, [10 * seed + i for i in range(3)])
        return rnd, subs, self.vote_and_settle(rnd, subs, rejected)


def new_task(chain: Chain, tmp_path: Path, rounds: int = 2) -> AuditTask:
    """Deploy, publish a task funded for ``rounds`` rounds and register five participants."""
    ledger = CoopLedger.deploy(chain)
    store = open_store(tmp_path / "store")
    params = TaskParams(spec_hash=bytes(32), k=3, quorum=2, max_submissions=5, vote_blocks=20)
    task = ledger.publish_task(params, params.escrow_per_round() * rounds)
    keys = [secrets.token_bytes(32) for _ in range(5)]
    regs = [sign_registration(k, ledger.domain, task, params.min_deposit) for k in keys]
    ledger.register_for(task, regs)
    return AuditTask(ledger, store, task, keys,
                     {r.participant.lower(): k for r, k in zip(regs, keys, strict=True)})


def strategy_aggregate(at: AuditTask, rnd: int, subs: Sequence[SignedSubmission],
                       accepted: Sequence[int], inner: Any = None,
                       replies: Sequence[Any] = (), fuse: Any = None,
                       weights: str = "equal") -> tuple[bytes, bytes]:
    """The round's aggregate as the coordinated strategy's aggregate stage makes and stores it
    (coopflower's weighted averaging, ``inner``'s ``aggregate_train`` on ``replies``, one per
    submission, or the fusion ``fuse``): its (CID, content hash), not yet recorded."""
    from flwr.app import ArrayRecord

    from coopflower.strategy import accepted as stage
    from coopflower.strategy.aggregate import weighted_average
    from coopflower.strategy.metering import ByteMeter
    from coopflower.strategy.progress import PhaseLog
    from coopflower.strategy.rounds import RoundReport
    from coopflower.strategy.stages import RoundState

    s = SimpleNamespace(phases=PhaseLog(1, stream=None), open_store=lambda: at.store,
                        inner=inner, fusing=fuse is not None,
                        aggregate_fn=fuse or (weighted_average if inner is None else None),
                        meter=ByteMeter(), encryption=False, secret_key=None, task_id=at.task,
                        task=SimpleNamespace(weights=weights))
    st = RoundState(1, ArrayRecord(), RoundReport(1, chain_round=rnd))
    st.by_id = dict(enumerate(subs))
    st.subs, st.replies = list(subs), list(replies)
    meta = stage.aggregate(s, st, accepted)  # type: ignore[arg-type]
    assert meta is not None
    return meta

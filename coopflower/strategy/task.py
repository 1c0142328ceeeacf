"""The task the initiator publishes and the error that stops a coordinated run.

``TaskConfig`` holds the task's rules as the contract records them (windows in blocks, amounts
in wei, the acceptance threshold in basis points) and the criterion: the key the app's own
evaluate returns and the threshold a model must reach.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StrategyError", "TaskConfig"]


class StrategyError(RuntimeError):
    """The coordinated round cannot proceed (no chain, no nodes, a contract refusal)."""


@dataclass(frozen=True)
class TaskConfig:
    """The task the initiator publishes (windows in blocks, amounts in wei).

    ``k`` verifiers per submission, ``quorum`` votes needed for a decision, ``metric`` the key
    the app's own evaluate returns that verifiers judge by (e.g. ``"eval_acc"``; required with
    an inner strategy) and ``min_metric`` its threshold in [0, 1] (recorded on chain in basis
    points; without a metric, ``min_accuracy_bps`` for the paper app's handlers),
    ``max_submissions`` per round (default: the number of nodes), the rest as in
    ``coopflower.ledger.TaskParams``.
    """

    k: int = 3
    quorum: int = 2
    min_accuracy_bps: int = 5000
    metric: str = ""
    min_metric: float | None = None
    submit_blocks: int = 1000
    vote_blocks: int = 30
    max_submissions: int | None = None
    reward: int = 10**15
    verifier_fee: int = 10**14
    min_deposit: int = 10**15
    penalty_wrong_vote: int = 10**14
    penalty_no_vote: int = 10**14
    spec: str = "coopflower MNIST task"

    def threshold_bps(self) -> int:
        """The acceptance threshold recorded on chain: ``min_metric`` in basis points when
        the task names the app's metric, else ``min_accuracy_bps``."""
        if self.min_metric is None:
            return self.min_accuracy_bps
        if not 0.0 <= self.min_metric <= 1.0:
            raise StrategyError(f"min_metric {self.min_metric} must lie in [0, 1] (the "
                                "contract records it in basis points)")
        return int(round(self.min_metric * 10000))

    def spec_text(self) -> str:
        """What the task's on-chain spec hash commits to (the criterion's metric included)."""
        if not self.metric:
            return self.spec
        return f"{self.spec}; criterion: {self.metric} >= {self.threshold_bps()} bps"



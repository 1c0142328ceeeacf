"""The task the initiator publishes and the error that stops a coordinated run.

``TaskConfig`` holds the task's rules as the contract records them (windows in blocks, amounts
in wei, the acceptance threshold in basis points) and the criterion: the key the app's own
evaluate returns and the threshold a model must reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import Strategy

from coopflower.client.stages import IVHE_METRIC

__all__ = ["StrategyError", "TaskConfig", "check_options"]


class StrategyError(RuntimeError):
    """The coordinated round cannot proceed (no chain, no nodes, a contract refusal)."""


@dataclass(frozen=True)
class TaskConfig:
    """The task the initiator publishes (windows in blocks, amounts in wei).

    ``k`` verifiers per submission, ``quorum`` votes needed for a decision, ``metric`` the key
    the app's own evaluate returns that verifiers judge by (e.g. ``"eval_acc"``) and
    ``min_metric`` its threshold in [0, 1] (recorded on chain in basis points): both required
    by ``CoordinatedStrategy``, which refuses a task without them. ``max_submissions`` per
    round (default: the number of nodes); ``reveal_blocks`` the window in which contributors
    reveal the seed shares their submissions commit to (default 4; 0: the randomness block
    alone picks the verifiers, which its sealer can bias); ``grace_blocks`` the blocks after the
    submission batch in which a contributor the relayer left out can still send its own signed
    submission before the window closes, counted from the opening and from each batch: choose
    it no shorter than the nodes' training in blocks (default 30; the strategy waits them only
    when some participant's submission is missing, and dev chains mine them at once; 0: the
    relayer may close at once, and so censor); the rest as in
    ``coopflower.ledger.TaskParams``. ``weights`` how the inner strategy weighs the accepted
    models: ``"equal"`` (the default: no contributor sets its own weight) or ``"declared"``
    (the count each contributor's train reply claims, clipped to twice the round's median
    claim); the task's spec hash on chain commits to the rule. ``min_distance`` the relative L2
    distance (``coopflower.client.copies``) within which verifiers refuse a submission as the
    global model it was sent or a copy of a model the task accepted before (0: exact
    copies only).
    """

    k: int = 3
    quorum: int = 2
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
    reveal_blocks: int = 4
    grace_blocks: int = 30
    weights: str = "equal"
    min_distance: float = 0.0
    spec: str = "coopflower task"

    def threshold_bps(self) -> int:
        """The acceptance threshold recorded on chain: ``min_metric`` in basis points."""
        if self.min_metric is None:
            raise StrategyError(f"TaskConfig(metric={self.metric!r}) needs min_metric, the "
                                "threshold in [0, 1] a model must reach")
        if not 0.0 <= self.min_metric <= 1.0:
            raise StrategyError(f"min_metric {self.min_metric} must lie in [0, 1] (the "
                                "contract records it in basis points)")
        return int(round(self.min_metric * 10000))

    def spec_text(self) -> str:
        """What the task's on-chain spec hash commits to (the criterion's metric included)."""
        return (f"{self.spec}; criterion: {self.metric} >= {self.threshold_bps()} bps; "
                f"weights: {self.weights}; copies within {self.min_distance:g}")


def check_options(strategy: Strategy | None, task: TaskConfig | None, encryption: str | None,
                  aggregate_fn: Any) -> Strategy:
    """The strategy to wrap, once ``CoordinatedStrategy``'s options fit together; else
    ``StrategyError`` saying what to pass."""
    if not isinstance(strategy, Strategy):
        raise StrategyError(
            "CoordinatedStrategy wraps the project's own Flower strategy: pass it first, e.g. "
            "CoordinatedStrategy(FedAvg(fraction_train=1.0), task=TaskConfig(metric=<the key "
            f"your evaluate returns>, min_metric=<its threshold>)); got {strategy!r}")
    if task is None or not task.metric:
        raise StrategyError("the task's criterion is required: task=TaskConfig(metric=<the key "
                            "your evaluate returns>, min_metric=<its threshold in [0, 1]>)")
    task.threshold_bps()  # a missing or bad threshold fails here, not mid-run
    if not task.min_distance >= 0.0:
        raise StrategyError(f"TaskConfig(min_distance={task.min_distance}) must be >= 0")
    if task.weights not in ("equal", "declared"):
        raise StrategyError(f"TaskConfig(weights={task.weights!r}): 'equal' (every accepted "
                            "model weighs the same) or 'declared' (the contributors' own "
                            "counts, each clipped to twice the round's median)")
    if encryption and task.metric != IVHE_METRIC:
        raise StrategyError(f"with IVHE encryption the verifiers score models in cipherspace: "
                            f"TaskConfig(metric={IVHE_METRIC!r}, ...) and, on the nodes, "
                            "coopflower.client.ivhe_mod.make_ivhe_mod")
    if aggregate_fn is not None and not getattr(aggregate_fn, "produces_metamodel", False):
        raise StrategyError("the inner strategy aggregates the accepted models: aggregate_fn "
                            "is for fusion only (coopflower.fusion.make_fusion_aggregate(...))")
    return strategy

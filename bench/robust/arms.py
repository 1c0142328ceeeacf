"""The arms: Flower's own strategies and the coordinated round, and what each decided.

Flower's robust strategies are given the true number of attackers ``f`` of the cell (their
best case): ``Krum``/``MultiKrum``/``Bulyan`` as ``num_malicious_nodes``, ``MultiKrum`` keeps
``n - f``, ``FedTrimmedAvg`` trims ``beta = min(0.45, max(0.1, f / n))`` at each end (Flower's
default 0.2 when ``f / n`` is 0.2). ``Bulyan`` runs only where ``n >= 4f + 3``. No arm runs a
federated evaluation (``fraction_evaluate=0``): the figure is the central accuracy.

``coordinated-absolute-k3`` is ``CoordinatedStrategy(FedAvg(fraction_train=1.0),
task=TaskConfig(k=3, metric=..., min_metric=...), store=...)`` on the embedded chain: only the
models k = 3 verifiers accept (majority, the absolute threshold) reach FedAvg's aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FLOWER_ARMS = ("fedavg", "krum", "multikrum", "fedmedian", "fedtrimmedavg", "bulyan")
COORDINATED_ARMS = ("coordinated-absolute-k3",)
ARMS = FLOWER_ARMS + COORDINATED_ARMS
# the paper's relative criterion needs a contract rule that has not landed yet
NOT_RUN_ARMS = ("coordinated-improves-k3", "coordinated-improves-k5")


def bulyan_fits(n: int, f: int) -> bool:
    """Bulyan's precondition, ``n >= 4f + 3``."""
    return n >= 4 * f + 3


def runnable(arm: str, n: int, f: int) -> bool:
    """Whether ``arm`` runs at ``n`` nodes with ``f`` attackers."""
    return arm != "bulyan" or bulyan_fits(n, f)


def make(arm: str, n: int, f: int, *, metric: str, min_metric: float, store: Path) -> Any:
    """The strategy of ``arm`` for ``n`` nodes of which ``f`` attack."""
    from flwr.serverapp import strategy as fs

    common: dict[str, Any] = {"fraction_train": 1.0, "fraction_evaluate": 0.0,
                              "min_train_nodes": n, "min_available_nodes": n}
    if arm == "fedavg":
        return fs.FedAvg(**common)
    if arm == "krum":
        return fs.Krum(num_malicious_nodes=f, **common)
    if arm == "multikrum":
        return fs.MultiKrum(num_malicious_nodes=f, num_nodes_to_select=max(1, n - f), **common)
    if arm == "fedmedian":
        return fs.FedMedian(**common)
    if arm == "fedtrimmedavg":
        return fs.FedTrimmedAvg(beta=min(0.45, max(0.1, f / n)), **common)
    if arm == "bulyan":
        if not bulyan_fits(n, f):
            raise ValueError(f"Bulyan needs n >= 4f + 3 (n={n}, f={f})")
        return fs.Bulyan(num_malicious_nodes=f, **common)
    if arm.startswith("coordinated-absolute-k"):
        from coopflower.strategy import CoordinatedStrategy, TaskConfig

        k = int(arm.rsplit("k", 1)[1])
        return CoordinatedStrategy(fs.FedAvg(**common),
                                   task=TaskConfig(k=k, metric=metric, min_metric=min_metric),
                                   store=str(store), progress=None)
    raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def rejection_shares(reports: Iterable[Any], pid_of: Mapping[str, int], attackers: Iterable[int],
                     n: int) -> dict[str, Any]:
    """Shares of malicious and honest contributions not aggregated, over every round.

    Every round samples all ``n`` nodes (``fraction_train=1.0``), so each round counts one
    contribution per partition id; it counts as accepted only when the round's
    ``RoundReport.submissions`` holds an ``ACCEPTED`` submission by that node's address.
    Rejected, without quorum, never recorded on chain (e.g. skipped as a duplicate of another
    node's model) and failed all count as not aggregated. Also per round: submissions,
    accepted, the nodes with no recorded submission, failures; and any submission whose
    contributor is not a known node."""
    bad = set(attackers)
    counts = {"malicious": [0, 0], "honest": [0, 0]}
    unknown, per_round = 0, []
    for rep in reports:
        accepted, recorded = set(), set()
        for contributor, _cid, status, _yes, _cast in rep.submissions.values():
            pid = pid_of.get(str(contributor).lower())
            if pid is None:
                unknown += 1
                continue
            recorded.add(pid)
            if status == "ACCEPTED":
                accepted.add(pid)
        for pid in range(n):
            side = counts["malicious" if pid in bad else "honest"]
            side[1] += 1
            side[0] += pid not in accepted
        per_round.append({"round": rep.server_round, "submissions": len(rep.submissions),
                          "accepted": len(accepted), "accepted_malicious": len(accepted & bad),
                          "not_recorded": sorted(set(range(n)) - recorded),
                          "failures": len(rep.failures)})

    def share(side: list[int]) -> float | None:
        return round(side[0] / side[1], 4) if side[1] else None

    return {"malicious_rejected": share(counts["malicious"]),
            "honest_rejected": share(counts["honest"]),
            "contributions": {k: v[1] for k, v in counts.items()}, "unknown": unknown,
            "per_round": per_round}

"""The shipped ServerApp: the coordinated strategy around Flower's ``FedAvg`` (or the FedAvg
baseline) on MNIST, with the paper's initial model and central evaluation on held-out digits.

Run config keys: see ``coopflower.app.settings.AppSettings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result, Strategy

from coopflower.app.settings import AppSettings
from coopflower.strategy import write_report

__all__ = ["app", "central_evaluator", "held_out_parts", "initial_arrays", "run_server",
           "make_server_app", "write_report"]


def initial_arrays(model_name: str, seed: int = 0) -> ArrayRecord:
    """The initial global model's arrays (a seeded fresh paper CNN)."""
    import torch

    from coopflower.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name)
    return ArrayRecord({k: Array(v.numpy()) for k, v in model.state_dict().items()})


def held_out_parts(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The held-out test part split into two disjoint stratified halves.

    Args:
        labels: every MNIST sample's label.
        seed: the split's seed.

    Returns:
        ``{"fusion": initiator's fusion digits, "eval": central evaluation digits}`` (indices).
    """
    from coopflower.app.data import test_indices
    from coopflower.data.partition import stratified_split

    test = test_indices(labels)
    parts = stratified_split(labels[test], {"fusion": test.size // 2,
                                            "eval": test.size - test.size // 2}, seed=seed)
    return {name: test[idx] for name, idx in parts.items()}


def central_evaluator(
    model_name: str, indices: np.ndarray | None = None,
    digits: tuple[np.ndarray, np.ndarray] | None = None,
) -> Callable[[int, ArrayRecord], MetricRecord | None]:
    """Central evaluation on held-out test digits (disjoint from every node's data).

    Args:
        model_name: the global architecture (plain arrays).
        indices: the digits to evaluate on; ``None``: the whole held-out test part.
        digits: ``(images, labels)`` to evaluate on instead of the loaded MNIST's (the
            experiments pass their own test split).

    A MetaModel (fusion aggregation) is evaluated as the MetaModel its arrays encode.
    """
    from coopflower.fusion import arrays_to_metamodel, is_metamodel_arrays
    from coopflower.models import build_model, model_factories
    from coopflower.training import evaluate_model, set_weights

    if digits is not None:
        x, y = digits
    else:
        from coopflower.app.data import test_indices
        from coopflower.data.mnist import load_mnist

        data = load_mnist()
        idx = test_indices(data.labels) if indices is None else indices
        x, y = data.images[idx], data.labels[idx]

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        plain = {k: np.asarray(a.numpy()) for k, a in arrays.items()}
        if is_metamodel_arrays(plain):
            model: Any = arrays_to_metamodel(plain, model_factories())
        else:
            model = build_model(model_name)
            set_weights(model, plain)
        res = evaluate_model(model, x, y)
        return MetricRecord({"accuracy": res.accuracy, "loss": res.loss,
                             "num-examples": res.num_examples})

    return evaluate


def run_server(grid: Grid, settings: AppSettings) -> tuple[Strategy, Result]:
    """Build the configured strategy and run it on ``grid``.

    Returns:
        The strategy (its ledger, reports and meters stay inspectable) and Flower's ``Result``.
    """
    from coopflower.app.wiring import build_strategy

    eval_idx, fusion_digits = None, None
    if settings.strategy == "coordinated" and settings.aggregation in ("I", "II"):
        from coopflower.data.mnist import load_mnist

        data = load_mnist()
        parts = held_out_parts(data.labels, settings.seed)
        eval_idx = parts["eval"]
        fusion_digits = {"images": data.images[parts["fusion"]],
                         "labels": data.labels[parts["fusion"]]}
    strategy = build_strategy(settings, fusion_digits)
    train_config = ConfigRecord({
        "epochs": settings.epochs,
        "lr": settings.lr,
        "batch-size": settings.batch_size,
        "seed": settings.seed,
        "model": settings.model,
    })
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_arrays(settings.model, settings.seed),
        num_rounds=settings.num_rounds,
        timeout=settings.timeout,
        train_config=train_config,
        evaluate_fn=(central_evaluator(settings.model, eval_idx) if settings.central_eval
                     else None),
    )
    if settings.report_file:
        write_report(settings.report_file, strategy, result)
    return strategy, result


def make_server_app(
    settings: AppSettings | None = None,
    on_done: Callable[[Strategy, Result], None] | None = None,
) -> ServerApp:
    """A ServerApp running coopflower.

    Args:
        settings: fixed settings; ``None`` reads them from the run config (``flwr run``).
        on_done: called with the strategy and result when the run ends (tests, benchmarks).

    Returns:
        The ``ServerApp``.
    """
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        chosen = settings or AppSettings.from_run_config(context.run_config)
        strategy, result = run_server(grid, chosen)
        if on_done is not None:
            on_done(strategy, result)

    return server


app = make_server_app()

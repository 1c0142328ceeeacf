"""Build a strategy from the app's settings: chain, store, contract, task, aggregation.

The coordinated strategy wraps Flower's ``FedAvg`` as any app's would: the inner strategy
samples the contributors and averages the accepted models; ``aggregation`` I or II replaces
its averaging with the initiator's fusion (``make_fusion_aggregate`` over the paper's CNNs, on
the initiator's own held-out digits). Verification is the coordinated round's evaluation, so
the inner strategy runs no federated evaluation (``fraction_evaluate=0``); the ServerApp's
central evaluation reports the global model's accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from flwr.serverapp.strategy import FedAvg, Strategy

from coopflower.app.settings import AppSettings
from coopflower.client.ivhe_mod import IVHE_METRIC
from coopflower.fusion import FusionConfig, make_fusion_aggregate
from coopflower.strategy import CoordinatedStrategy, FedAvgBaseline, TaskConfig

__all__ = ["build_strategy", "chain_key", "task_config"]


def chain_key(settings: AppSettings) -> str | None:
    """The initiator's key for a JSON-RPC chain: ``chain-key`` or ``$COOPFLOWER_CHAIN_KEY``."""
    return settings.chain_key or os.environ.get("COOPFLOWER_CHAIN_KEY") or None


def task_config(settings: AppSettings) -> TaskConfig:
    """The task: k verifiers, quorum, and the criterion on the metric the verifiers read
    (the app's evaluate's ``accuracy``, or the IVHE mod's ``ivhe-accuracy`` when encrypted)."""
    return TaskConfig(k=settings.verifiers, quorum=settings.quorum,
                      metric=IVHE_METRIC if settings.encryption else "accuracy",
                      min_metric=settings.min_accuracy_bps / 10000,
                      spec=f"coopflower paper app: MNIST, {settings.model}")


def _fedavg_baseline(settings: AppSettings) -> FedAvgBaseline:
    logger = None
    if settings.log_fedavg:
        from coopflower.ledger import CoopLedger, connect
        from coopflower.storage import open_store
        from coopflower.strategy import ChainRoundLogger

        chain = connect(settings.chain or None, private_key=chain_key(settings))
        ledger = (CoopLedger.at(chain, settings.contract) if settings.contract
                  else CoopLedger.deploy(chain))
        logger = ChainRoundLogger(ledger, open_store(settings.store_spec()))
    return FedAvgBaseline(round_logger=logger, fraction_train=settings.fraction_train,
                          fraction_evaluate=1.0)


def build_strategy(settings: AppSettings,
                   fusion_digits: Mapping[str, np.ndarray] | None = None) -> Strategy:
    """The coordinated strategy or the FedAvg baseline, as configured.

    Args:
        settings: the run's settings.
        fusion_digits: with ``aggregation`` I or II, the initiator's own ``images`` and
            ``labels`` that train the fusion network (required then).
    """
    if settings.strategy == "fedavg":
        return _fedavg_baseline(settings)
    fusion = None
    if settings.aggregation in ("I", "II"):
        from coopflower.models import PAPER_HEAD, model_factories

        if fusion_digits is None:
            raise ValueError(f"aggregation {settings.aggregation} needs the initiator's fusion "
                             "digits (fusion_digits)")
        fusion = make_fusion_aggregate(
            fusion_digits["images"], fusion_digits["labels"],
            "I" if settings.aggregation == "I" else "II",
            FusionConfig(epochs_stage1=settings.fusion_epochs,
                         epochs_stage2=settings.fusion_epochs, seed=settings.seed),
            factories=model_factories(), heads=PAPER_HEAD)
    return CoordinatedStrategy(
        FedAvg(fraction_train=settings.fraction_train, fraction_evaluate=0.0),
        task=task_config(settings),
        chain=settings.chain or None,
        private_key=chain_key(settings),
        contract=settings.contract or None,
        store=settings.store_spec(),
        aggregate_fn=fusion,
        encryption=settings.encryption or None,
        connect_timeout=settings.connect_timeout,
        task_id=settings.resume_task or None,
        resume=bool(settings.resume_task),
    )

"""Build a strategy from the app's settings: chain, store, contract, task."""

from __future__ import annotations

import os

from flwr.serverapp.strategy import Strategy

from coopflower.app.settings import AppSettings
from coopflower.strategy.baseline import FedAvgBaseline
from coopflower.strategy.coordinated import CoordinatedStrategy, TaskConfig

__all__ = ["build_strategy", "chain_key"]


def chain_key(settings: AppSettings) -> str | None:
    """The initiator's key for a JSON-RPC chain: ``chain-key`` or ``$COOPFLOWER_CHAIN_KEY``."""
    return settings.chain_key or os.environ.get("COOPFLOWER_CHAIN_KEY") or None


def build_strategy(settings: AppSettings) -> Strategy:
    """The coordinated strategy or the FedAvg baseline, as configured."""
    if settings.strategy == "fedavg":
        logger = None
        if settings.log_fedavg:
            from coopflower.ledger.backend import connect
            from coopflower.ledger.contract import CoopLedger
            from coopflower.storage import open_store
            from coopflower.strategy.chainlog import ChainRoundLogger

            chain = connect(settings.chain or None, private_key=chain_key(settings))
            ledger = (CoopLedger.at(chain, settings.contract) if settings.contract
                      else CoopLedger.deploy(chain))
            logger = ChainRoundLogger(ledger, open_store(settings.store_spec()))
        return FedAvgBaseline(
            round_logger=logger,
            fraction_train=settings.fraction_train,
            fraction_evaluate=1.0,
        )
    return CoordinatedStrategy(
        task=TaskConfig(k=settings.verifiers, quorum=settings.quorum,
                        min_accuracy_bps=settings.min_accuracy_bps),
        chain=settings.chain or None,
        private_key=chain_key(settings),
        contract=settings.contract or None,
        store=settings.store_spec(),
        fraction_train=settings.fraction_train,
        encryption=settings.encryption or None,
        connect_timeout=settings.connect_timeout,
    )

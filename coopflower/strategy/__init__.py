"""The Flower strategies: the coordinated strategy and the FedAvg baseline.

``CoordinatedStrategy`` swaps in for Flower's ``FedAvg`` (same ``start()`` signature and
``Result``); ``FedAvgBaseline`` is Flower's FedAvg with metering and optional chain logging.
"""

from coopflower.strategy.aggregate import AcceptedModel, AggregateFn, weighted_average
from coopflower.strategy.baseline import FedAvgBaseline
from coopflower.strategy.chainlog import ChainRoundLogger
from coopflower.strategy.coordinated import (
    CoordinatedStrategy,
    NodeFailure,
    RoundReport,
    StrategyError,
    TaskConfig,
)
from coopflower.strategy.report import write_report

__all__ = [
    "AcceptedModel",
    "AggregateFn",
    "ChainRoundLogger",
    "CoordinatedStrategy",
    "FedAvgBaseline",
    "NodeFailure",
    "RoundReport",
    "StrategyError",
    "TaskConfig",
    "weighted_average",
    "write_report",
]

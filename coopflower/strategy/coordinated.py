"""The coordinated strategy: the paper's blockchain-coordinated round around a Flower strategy.

``CoordinatedStrategy`` wraps the project's own strategy (as Flower's DP wrappers wrap one) and
overrides ``start()`` with the same signature and ``Result``, so a ServerApp's ``FedAvg(...)``
becomes::

    strategy = CoordinatedStrategy(FedAvg(fraction_train=1.0),
                                   task=TaskConfig(k=3, metric="accuracy", min_metric=0.8))
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=3)

The nodes run coopflower's mod around the app's own handlers (``ClientApp(mods=[coop_mod])``).

Before the first round every node signs its consent and the strategy registers them on the
contract in one transaction (the strategy pays their deposits). Each round then:

1. open: the contract opens the round.
2. train: the inner strategy samples the contributors; they train (the app's own train),
   upload their blob, and return CID, content hash and an EIP-712 signature; the strategy
   checks each signature and relays all in one transaction.
3. assign: verifiers come from the hash of a block mined after the submission window closed,
   computed off chain exactly as the contract checks it.
4. verify: each verifier gets its own assignments (the ``verify`` stage) and returns signed
   votes, scored by the app's own evaluate; the strategy checks them and relays all in one
   transaction.
5. settle: the contract tallies (majority of votes cast, with quorum), pays and penalises;
   without every vote, settlement waits for the voting deadline.
6. aggregate: the accepted models are fetched by CID, checked, and aggregated by the inner
   strategy (or fused, ``aggregate_fn=make_fusion_aggregate(...)``); the result's CID is
   recorded on chain. Then the inner strategy's federated evaluation, and ``evaluate_fn``.

Nodes that time out or answer with errors are recorded in the round's report, and the round
goes on with the rest. A line is printed per phase per round.

Pipelining (``pipeline=True``, the default): once every assigned verifier has voted, the
outcome is fixed by the signed votes and the contract's own rule (``coopflower.ledger.rules``),
so the strategy aggregates at once and starts the next round's training while a background
thread relays the votes, settles and records the MetaModel; the next round joins it before its
``open`` (allowed only after settlement), its contributors signing for the round number the
contract will give (checked). A settlement that differs from the tally stops the run with
``StrategyError``. A round with missing votes, and the last round, settle before aggregating.

Where each part lives: the set-up before the first round in ``coopflower.strategy.publish``
(``setup``), one round in ``coopflower.strategy.one_round`` (``run_round``), its stages in
``coopflower.strategy.stages``, ``reveal``, ``settlement`` and ``accepted``.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterable
from logging import INFO
from typing import Any, TextIO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from coopflower.strategy import evaluation, publish, resume
from coopflower.strategy.aggregate import AggregateFn
from coopflower.strategy.metering import ByteMeter
from coopflower.strategy.one_round import run_round
from coopflower.strategy.progress import PhaseLog
from coopflower.strategy.rounds import (
    NodeFailure,
    RoundReport,
    failure_lines,
    record_result,
    reports_table,
)
from coopflower.strategy.settlement import ChainTail
from coopflower.strategy.task import StrategyError, TaskConfig, check_options

__all__ = ["CoordinatedStrategy", "TaskConfig", "RoundReport", "NodeFailure", "StrategyError",
           "reports_table", "failure_lines"]


class CoordinatedStrategy(Strategy):
    """The coordinated round (see the module docstring).

    Args:
        strategy: the project's own Flower strategy to wrap (``FedAvg``, ``FedProx``,
            ``FedAdam``, ``FedMedian``, ``Krum``, ...), required: it samples the contributors
            with the user's ``train_config`` (and its ``min_available_nodes`` and
            ``min_train_nodes`` are waited for), aggregates the accepted models and runs the
            federated evaluation with ``evaluate_config``; nodes run ``coop_mod`` around the
            app's own handlers.
        task: the task's rules, required: ``TaskConfig(metric=<the key the app's evaluate
            returns>, min_metric=<its threshold>)`` (published on first use unless ``task_id``
            is given).
        chain: a JSON-RPC URL, or ``None`` for ``$COOPFLOWER_CHAIN`` or else the embedded
            in-process EVM (``private_key`` and ``contract`` likewise default to
            ``$COOPFLOWER_CHAIN_KEY`` and ``$COOPFLOWER_CONTRACT``; ``$COOPFLOWER_REPORT`` names
            a file for the run's JSON report): an operator points an app's unchanged code at a
            chain.
        private_key: the initiator's sending key (required for a URL).
        contract: an existing deployment's address (default: deploy a new one).
        ledger: an already bound ``coopflower.ledger.CoopLedger`` (overrides the three above).
        task_id: an existing task to run rounds of (default: publish one).
        resume: take up the task ``task_id`` after a stopped run (``coopflower.strategy.
            resume``): its last round is finished from the chain's state, then the task's
            remaining rounds run (``num_rounds`` then counts the task's rounds from its first).
            ``$COOPFLOWER_RESUME_TASK`` sets both for an app's unchanged code.
        store: the storage spec (directory or IPFS RPC URL) the initiator and, unless their
            node config says otherwise, the nodes use (default: ``$COOPFLOWER_STORE``, else
            the embedded store's folder).
        aggregate_fn: fusion of the accepted models into the initiator's MetaModel
            (``coopflower.fusion.make_fusion_aggregate``, whose ``produces_metamodel`` is
            true), which replaces the inner strategy's aggregation and its federated
            evaluation; the train messages then carry no arrays and the nodes run
            ``coopflower.client.fusion_mod``, which continues each contributor's own model.
            ``None`` (default): the inner strategy aggregates.
        verify_timeout: seconds to wait for votes (default: ``start``'s ``timeout``).
        encryption: ``"elementwise"`` to have contributors encrypt their models' first layer
            with IVHE under the initiator's public key (published by CID), verifiers evaluate
            in cipherspace, and the initiator decrypt the accepted ones (``None``: plaintext).
        ivhe_p, ivhe_q: the scaling factors of weights and inputs.
        ivhe_input_range: the range of the app's inputs after its own preprocessing (e.g.
            ``(-1.0, 1.0)``), declared once: contributors quantise for it.
        progress: where the per-phase lines go (``None``: silent).
        pipeline: overlap a round's vote, settle and MetaModel transactions with the next
            round's training (see the module docstring).
        connect_timeout: seconds to wait for the federation to reach k + 1 nodes before
            failing with a ``StrategyError`` that says how many are there.
        close_at_end: after the last round, close the task the strategy published and release
            every participant's deposit (a task given by ``task_id`` is left open).

    Raises ``StrategyError`` at construction when something required is missing or the
    options do not fit together, saying what to pass.
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        *,
        task: TaskConfig | None = None,
        chain: str | None = None,
        private_key: str | bytes | None = None,
        contract: str | None = None,
        ledger: Any = None,
        task_id: int | None = None,
        store: str | None = None,
        aggregate_fn: AggregateFn | None = None,
        verify_timeout: float | None = None,
        progress: TextIO | None = sys.stderr,
        encryption: str | None = None,
        ivhe_p: int = 2**7,
        ivhe_q: int = 1000,
        ivhe_input_range: tuple[float, float] = (0.0, 1.0),
        pipeline: bool = True,
        connect_timeout: float = 60.0,
        close_at_end: bool = True,
        resume: bool = False,
    ) -> None:
        self.inner: Strategy = check_options(strategy, task, encryption, aggregate_fn)
        self.task: TaskConfig = task  # type: ignore[assignment]  # checked just above
        # an operator points an app's unchanged code at a chain through the environment
        self.chain_url = chain or os.environ.get("COOPFLOWER_CHAIN") or None
        self.private_key = private_key or os.environ.get("COOPFLOWER_CHAIN_KEY") or None
        self.contract_address = contract or os.environ.get("COOPFLOWER_CONTRACT") or None
        self.report_file = os.environ.get("COOPFLOWER_REPORT") or None
        self.ledger = ledger
        self.task_id = task_id
        self.resume = resume
        resume_env = os.environ.get("COOPFLOWER_RESUME_TASK") or ""
        if task_id is None and resume_env:
            try:
                self.task_id, self.resume = int(resume_env), True
            except ValueError:
                raise StrategyError(f"COOPFLOWER_RESUME_TASK={resume_env!r}: expected the id "
                                    "of the task to resume") from None
        if self.resume and self.task_id is None:
            raise StrategyError("resume=True takes up an existing task: pass its task_id")
        if self.resume and ledger is None and not self.contract_address:
            raise StrategyError(f"resuming task {self.task_id} needs the contract it is on: "
                                "contract=<address> (or $COOPFLOWER_CONTRACT)")
        self.published_task = False  # a task this strategy published: closed after its run
        self.close_at_end = close_at_end
        self.store_spec = store or os.environ.get("COOPFLOWER_STORE") or None
        self.aggregate_fn = aggregate_fn
        self.verify_timeout = verify_timeout
        self.progress = progress
        self.meter = ByteMeter()
        self.reports: list[RoundReport] = []
        self.phases = PhaseLog(0, progress)
        self.addresses: dict[int, str] = {}  # Flower node id -> registered address
        self.models: dict[int, str] = {}  # Flower node id -> architecture it reported
        self._store: Any = None
        if encryption not in (None, "", "elementwise"):
            raise StrategyError(f"encryption {encryption!r}: contributors hold only the public "
                                "key, so the round supports 'elementwise' (or None)")
        self.encryption = encryption or None
        if self.resume and self.encryption:
            raise StrategyError("resume with encryption: the stopped run's IVHE secret key is "
                                "gone, so its encrypted submissions cannot be aggregated")
        self.ivhe_p, self.ivhe_q = ivhe_p, ivhe_q
        self.ivhe_input_range = (float(ivhe_input_range[0]), float(ivhe_input_range[1]))
        self.pipeline = pipeline
        self.connect_timeout = connect_timeout
        self.secret_key: Any = None
        self.ivhe_key_cid: bytes | None = None

    # ------------------------------------------------------------------ Flower's Strategy
    @property
    def min_available_nodes(self) -> int:
        """The inner strategy's ``min_available_nodes`` (0 when it has none)."""
        return int(getattr(self.inner, "min_available_nodes", 0))

    @property
    def min_train_nodes(self) -> int:
        """The inner strategy's ``min_train_nodes`` (0 when it has none)."""
        return int(getattr(self.inner, "min_train_nodes", 0))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The inner strategy's (``start`` adds the coordination stage to its messages)."""
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message],
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The inner strategy's (``start`` calls it on the accepted models only)."""
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """The inner strategy's federated evaluation."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message],
                           ) -> MetricRecord | None:
        """The inner strategy's federated evaluation."""
        return self.inner.aggregate_evaluate(server_round, replies)

    # ------------------------------------------------------------------ set-up
    def summary(self) -> None:
        """Log the inner strategy, the task and backends."""
        self.inner.summary()
        t = self.task
        log(INFO, "\t└──> Coordination: k=%d quorum=%d criterion %s >= %d bps, chain=%s, "
            "store=%s", t.k, t.quorum, t.metric, t.threshold_bps(),
            self.chain_url or "embedded", self.store_spec or "embedded (default folder)")

    def open_store(self) -> Any:
        from coopflower.storage import open_store

        if self._store is None:
            self._store = open_store(self.store_spec)
        return self._store

    def _store_spec_text(self) -> str:
        from coopflower.storage import default_store_dir

        return self.store_spec or str(default_store_dir())

    def base_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "task-id": int(self.task_id or 0),
            "chain-id": int(self.ledger.chain.chain_id),
            "contract": str(self.ledger.address),
            "store": self._store_spec_text(),
        }
        if self.encryption:
            cfg.update({"encryption": self.encryption, "ivhe-key-cid": self.ivhe_key_cid,
                        "ivhe-p": self.ivhe_p, "ivhe-q": self.ivhe_q,
                        "ivhe-input-lo": self.ivhe_input_range[0],
                        "ivhe-input-hi": self.ivhe_input_range[1]})
        return cfg

    # ------------------------------------------------------------------ the round
    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run ``num_rounds`` coordinated rounds (same signature and ``Result`` as Flower's).

        Returns:
            Flower's ``Result``: the final global arrays, per-round train metrics (the numbers
            of submissions and accepted models, the app's own metrics as the inner strategy
            aggregated them, the verification figures prefixed ``verify-``), the inner
            strategy's federated evaluation (``evaluate_metrics_clientapp``) and
            ``evaluate_fn``'s central metrics.
            ``self.reports`` holds a ``RoundReport`` per round.
        """
        log(INFO, "Starting %s strategy:", self.__class__.__name__)
        self.summary()
        self.phases = PhaseLog(num_rounds, self.progress)
        train_config = ConfigRecord() if train_config is None else train_config
        reg_failures = publish.setup(self, grid, num_rounds, timeout)
        result = Result()
        arrays, first = initial_arrays, 1
        if self.resume:  # the stopped run's last round first, from the chain's state
            taken = resume.take_up(self, grid, initial_arrays, train_config, evaluate_config,
                                   timeout)
            arrays, first = taken.arrays, taken.next_round
            if taken.report is not None:
                taken.report.failures[:0], reg_failures = reg_failures, []
                arrays = self._round_done(result, grid, taken.report, None, arrays,
                                          evaluate_config, timeout, evaluate_fn)
        elif evaluate_fn:
            res = evaluate_fn(0, initial_arrays)
            if res is not None:
                result.evaluate_metrics_serverapp[0] = res

        pending: ChainTail | None = None
        try:
            for rnd in range(first, num_rounds + 1):
                report, tail = run_round(self, grid, rnd, arrays, train_config, timeout, pending,
                                         pipeline=self.pipeline and rnd < num_rounds,
                                         evaluate_config=evaluate_config)
                if pending is not None:  # joined inside the round, before its open
                    record_result(result, pending.report)
                pending = tail
                report.failures[:0], reg_failures = reg_failures, []
                arrays = self._round_done(result, grid, report, tail, arrays, evaluate_config,
                                          timeout, evaluate_fn)
        finally:
            if pending is not None:  # only after an error: the last round never pipelines
                pending.wait()
        if self.close_at_end and self.published_task:
            publish.close_task(self)
        return self._finish(result, arrays)

    def _round_done(self, result: Result, grid: Grid, report: RoundReport,
                    tail: ChainTail | None, arrays: ArrayRecord,
                    evaluate_config: ConfigRecord | None, timeout: float,
                    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None,
                    ) -> ArrayRecord:
        """A round's report kept, its global model taken and evaluated; returns the model."""
        rnd = report.server_round
        self.reports.append(report)
        if report.new_arrays is not None:
            arrays = result.arrays = report.new_arrays
        if tail is None:
            record_result(result, report)
        if not self.fusing:  # a MetaModel fits no node's app
            evaluation.federated(self, grid, rnd, arrays, evaluate_config, timeout, result)
        if evaluate_fn:
            evaluation.central(self, evaluate_fn, rnd, arrays, result)
        return arrays

    def _finish(self, result: Result, arrays: ArrayRecord) -> Result:
        if len(result.arrays) == 0:
            result.arrays = arrays
        for line in io.StringIO(str(result)):
            log(INFO, "\t%s", line.strip("\n"))
        if self.report_file:
            from coopflower.strategy.report import write_report

            write_report(self.report_file, self, result)
        return result

    @property
    def fusing(self) -> bool:
        """Whether the aggregation fuses the accepted models into the initiator's MetaModel
        (``make_fusion_aggregate``): contributors then keep their own models."""
        return self.aggregate_fn is not None

    # the name earlier releases (and their tests) used
    _open_store = open_store


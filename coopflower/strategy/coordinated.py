"""The coordinated strategy: the paper's blockchain-coordinated round as a Flower strategy.

``CoordinatedStrategy`` subclasses Flower's ``FedAvg`` and overrides ``start()`` with the same
signature and ``Result``, so a ServerApp swaps it in for ``FedAvg`` with no other change::

    strategy = CoordinatedStrategy(task=TaskConfig(k=3, min_accuracy_bps=8000))
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=3)

Before the first round every node signs its consent and the strategy registers them on the
contract in one transaction (the strategy pays their deposits). Each round then:

1. open: the contract opens the round.
2. train: contributors train, upload their blob, and return CID, content hash and an
   EIP-712 signature; the strategy checks each signature and relays all in one transaction.
3. assign: verifiers come from the hash of a block mined after the submission window closed,
   computed off chain exactly as the contract checks it.
4. verify: each verifier gets its own assignments (``evaluate.verify``) and returns signed
   votes; the strategy checks them and relays all in one transaction.
5. settle: the contract tallies (majority of votes cast, with quorum), pays and penalises;
   without every vote, settlement waits for the voting deadline.
6. aggregate: the accepted models are fetched by CID, checked, and aggregated by a pluggable
   function (weighted averaging by default); the result's CID is recorded on chain.

Nodes that time out or answer with errors are recorded in the round's report, and the round
goes on with the rest. A line is printed per phase per round.

Pipelining (``pipeline=True``, the default): once every assigned verifier has voted, the
outcome is fixed by the signed votes and the task's rules (``coopflower.ledger.rules.tally``,
the contract's own rule), so the strategy aggregates the accepted models at once and starts
the next round's training while a background thread relays the votes, settles and records the
MetaModel. The next round joins that thread before its own ``open`` transaction (which the
contract allows only after settlement) and before any submission; its contributors sign for
the round number the contract will give (the previous one plus one, checked at ``open``). If
the contract's settlement differs from the tally, the run stops with ``StrategyError``. A round
with missing votes, and the last round, settle before aggregating, as in the list above.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, TextIO

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result, Strategy
from flwr.supercore import log

from coopflower.client import protocol as P
from coopflower.client.mod import COOP_METRICS
from coopflower.ledger.eip712 import content_hash
from coopflower.strategy import wrapped
from coopflower.strategy.aggregate import AcceptedModel, AggregateFn, weighted_average
from coopflower.strategy.messaging import send_and_receive
from coopflower.strategy.metering import ByteMeter
from coopflower.strategy.progress import PhaseLog

__all__ = ["CoordinatedStrategy", "TaskConfig", "RoundReport", "NodeFailure", "StrategyError",
           "reports_table", "failure_lines"]


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


@dataclass(frozen=True)
class NodeFailure:
    """A node that did not do its part: ``phase``, Flower ``node_id`` and ``reason``."""

    phase: str
    node_id: int
    reason: str


@dataclass
class RoundReport:
    """What one coordinated round did.

    ``chain_round`` is the contract's round number; ``submissions`` maps submission id to
    (contributor, CID bytes, status name, yes votes, votes cast); ``meta_cid`` the aggregate's
    CID (``None`` when no model was accepted); ``phase_seconds``, ``compute_seconds`` (local
    training and evaluation on the nodes), ``handler_seconds`` (the nodes' whole handlers:
    compute plus loading data, packing, storing, fetching and signing), ``bytes`` (messages
    and storage) and ``tx`` count. ``wall_seconds`` is the time the round held the strategy
    (from its first step to its last, including any wait for the previous round's chain steps);
    ``overlapped_phases`` names the chain phases that ran in the background during the next
    round's training (pipelining), whose seconds are in ``phase_seconds`` but not on the
    round's critical path.
    """

    server_round: int
    chain_round: int = 0
    submissions: dict[int, tuple[str, bytes, str, int, int]] = field(default_factory=dict)
    votes: int = 0
    accepted: int = 0
    failures: list[NodeFailure] = field(default_factory=list)
    meta_cid: bytes | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    compute_seconds: float = 0.0
    handler_seconds: float = 0.0
    overlapped_phases: tuple[str, ...] = ()
    bytes: int = 0
    tx: int = 0
    gas: int = 0
    new_arrays: ArrayRecord | None = None
    train_metrics: MetricRecord = field(default_factory=MetricRecord)
    app_train_metrics: MetricRecord | None = None
    verify_metrics: MetricRecord = field(default_factory=MetricRecord)


def _metric(msg: Message, key: str) -> float:
    rec = msg.content.metric_records.get(COOP_METRICS, msg.content.metric_records.get(P.METRICS))
    value = rec.get(key, 0.0) if rec is not None else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def _last_line(text: str) -> str:
    """An error reason's last non-empty line (a node's traceback ends with the exception)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else str(text)


def _tally_votes(votes: Sequence[Any], by_id: dict[int, Any], quorum: int) -> list[int]:
    """The submissions the votes accept, by the contract's rule (majority of votes cast, with
    quorum): what settlement will decide when every assigned verifier voted."""
    from coopflower.ledger.rules import Status, tally

    yes = dict.fromkeys(by_id, 0)
    cast = dict.fromkeys(by_id, 0)
    for v in votes:
        cast[v.submission] += 1
        yes[v.submission] += int(bool(v.accept))
    return sorted(sid for sid in by_id
                  if tally(yes[sid], cast[sid], quorum).status == Status.ACCEPTED)


def _record_result(result: Result, report: RoundReport, federated: bool = False) -> None:
    """Put a finished round's train and verification metrics into Flower's ``Result``.

    With ``federated`` (a wrapped strategy) ``evaluate_metrics_clientapp`` holds the inner
    strategy's federated evaluation, so the verification figures join the train metrics
    (prefixed ``verify-``)."""
    if not federated:
        result.train_metrics_clientapp[report.server_round] = report.train_metrics
        result.evaluate_metrics_clientapp[report.server_round] = report.verify_metrics
        return
    merged = dict(report.train_metrics)
    merged.update({f"verify-{k}": v for k, v in report.verify_metrics.items()})
    result.train_metrics_clientapp[report.server_round] = MetricRecord(merged)


class _ChainTail:
    """A round's last chain steps (relay votes, settle, record the MetaModel) running in a
    background thread while the next round trains; ``join`` waits and re-raises its error."""

    def __init__(self, report: RoundReport, steps: Callable[[], None]) -> None:
        self.report = report
        self._steps = steps
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"coop-chain-{report.server_round}",
                                        daemon=False)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._steps()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def wait(self) -> None:
        """Wait for the steps to end, whatever the outcome."""
        self._thread.join()

    def join(self) -> None:
        """Wait for the steps; raises ``StrategyError`` (from the cause) if one failed."""
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, StrategyError):
                raise self._error
            raise StrategyError(f"round {self.report.server_round}'s chain steps failed: "
                                f"{self._error}") from self._error


class CoordinatedStrategy(FedAvg):
    """The coordinated round (see the module docstring).

    Args:
        strategy: the project's own Flower strategy to wrap (``FedAvg``, ``FedProx``,
            ``FedAdam``, ``FedMedian``, ``Krum``, ...): it samples the contributors with the
            user's ``train_config``, aggregates the accepted models and runs the federated
            evaluation with ``evaluate_config``; nodes run ``coop_mod`` around the app's own
            handlers and the task names the app's metric. ``None``: the paper app's protocol
            (coopflower's own handlers), sampling by ``fedavg_kwargs`` and ``aggregate_fn``.
        task: the task's rules (published on first use unless ``task_id`` is given).
        chain: a JSON-RPC URL, or ``None`` for ``$COOPFLOWER_CHAIN`` or else the embedded
            in-process EVM (``private_key`` and ``contract`` likewise default to
            ``$COOPFLOWER_CHAIN_KEY`` and ``$COOPFLOWER_CONTRACT``; ``$COOPFLOWER_REPORT`` names
            a file for the run's JSON report): an operator points an app's unchanged code at a
            chain.
        private_key: the initiator's sending key (required for a URL).
        contract: an existing deployment's address (default: deploy a new one).
        ledger: an already bound ``coopflower.ledger.CoopLedger`` (overrides the three above).
        task_id: an existing task to run rounds of (default: publish one).
        store: the storage spec (directory or IPFS RPC URL) the initiator and, unless their
            node config says otherwise, the nodes use (default: the embedded store's folder).
        aggregate_fn: turns the accepted models into the new global arrays (default:
            weighted averaging; the MetaModel fusion plugs in here). When it has a true
            ``produces_metamodel`` attribute (``coopflower.fusion.make_fusion_aggregate``),
            rounds after the first send no arrays down: contributors continue their own models.
        verify_timeout: seconds to wait for votes (default: ``start``'s ``timeout``).
        encryption: ``"elementwise"`` to have contributors encrypt their models' first layer
            with IVHE under the initiator's public key (published by CID), verifiers evaluate
            in cipherspace, and the initiator decrypt the accepted ones (``None``: plaintext).
        ivhe_p, ivhe_q: the scaling factors of weights and inputs.
        progress: where the per-phase lines go (``None``: silent).
        pipeline: overlap a round's vote, settle and MetaModel transactions with the next
            round's training (see the module docstring).
        connect_timeout: seconds to wait for the federation to reach k + 1 nodes before
            failing with a ``StrategyError`` that says how many are there.
        **fedavg_kwargs: sampling settings passed to ``FedAvg`` (``fraction_train``,
            ``min_train_nodes``, ``min_available_nodes``, ...).
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
        aggregate_fn: AggregateFn = weighted_average,
        verify_timeout: float | None = None,
        progress: TextIO | None = sys.stderr,
        encryption: str | None = None,
        ivhe_p: int = 2**7,
        ivhe_q: int = 1000,
        pipeline: bool = True,
        connect_timeout: float = 60.0,
        **fedavg_kwargs: Any,
    ) -> None:
        super().__init__(**fedavg_kwargs)
        self.inner = strategy
        self.task = task or TaskConfig()
        if strategy is not None and not self.task.metric:
            raise StrategyError("a wrapped strategy needs the task's criterion: "
                                "TaskConfig(metric=<the key your evaluate returns>, "
                                "min_metric=<its threshold>)")
        if strategy is not None and self.task.min_metric is None:
            raise StrategyError(f"TaskConfig(metric={self.task.metric!r}) needs min_metric, "
                                "the threshold a model must reach")
        self.task.threshold_bps()  # a bad threshold fails here, not mid-run
        if strategy is not None and encryption:
            raise StrategyError("IVHE encryption is not available with a wrapped strategy yet "
                                "(coop_mod packs the app's plaintext arrays)")
        if strategy is not None and aggregate_fn is not weighted_average:
            raise StrategyError("with a wrapped strategy the inner strategy aggregates: pass "
                                "either a strategy or aggregate_fn, not both")
        # an operator points an app's unchanged code at a chain through the environment
        self.chain_url = chain or os.environ.get("COOPFLOWER_CHAIN") or None
        self.private_key = private_key or os.environ.get("COOPFLOWER_CHAIN_KEY") or None
        self.contract_address = contract or os.environ.get("COOPFLOWER_CONTRACT") or None
        self.report_file = os.environ.get("COOPFLOWER_REPORT") or None
        self.ledger = ledger
        self.task_id = task_id
        self.store_spec = store
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
        self.ivhe_p, self.ivhe_q = ivhe_p, ivhe_q
        self.pipeline = pipeline
        self.connect_timeout = connect_timeout
        self._secret_key: Any = None
        self.ivhe_key_cid: bytes | None = None

    # ------------------------------------------------------------------ set-up
    def summary(self) -> None:
        """Log the task and backends."""
        if self.inner is not None:
            self.inner.summary()
        else:
            super().summary()
        t = self.task
        log(INFO, "\t└──> Coordination: k=%d quorum=%d criterion %s >= %d bps, chain=%s, "
            "store=%s", t.k, t.quorum, t.metric or "accuracy", t.threshold_bps(),
            self.chain_url or "embedded", self.store_spec or "embedded (default folder)")

    def _connect(self) -> Any:
        from coopflower.ledger.backend import connect
        from coopflower.ledger.contract import CoopLedger

        if self.ledger is None:
            chain = connect(self.chain_url, private_key=self.private_key)
            if self.contract_address:
                self.ledger = CoopLedger.at(chain, self.contract_address)
            else:
                self.ledger = CoopLedger.deploy(chain)
                self.contract_address = self.ledger.address
        return self.ledger

    def _open_store(self) -> Any:
        from coopflower.storage import open_store

        if self._store is None:
            self._store = open_store(self.store_spec)
        return self._store

    def _store_spec_text(self) -> str:
        from coopflower.storage import default_store_dir

        return self.store_spec or str(default_store_dir())

    def _ensure_task(self, num_rounds: int, num_nodes: int) -> int:
        from coopflower.ledger.contract import TaskParams

        if self.task_id is not None:
            return self.task_id
        t = self.task
        params = TaskParams(
            spec_hash=content_hash(t.spec_text().encode()),
            k=t.k, quorum=t.quorum, min_accuracy_bps=t.threshold_bps(),
            submit_blocks=t.submit_blocks, vote_blocks=t.vote_blocks,
            max_submissions=t.max_submissions or max(num_nodes, 1),
            reward=t.reward, verifier_fee=t.verifier_fee, min_deposit=t.min_deposit,
            penalty_wrong_vote=t.penalty_wrong_vote, penalty_no_vote=t.penalty_no_vote,
        )
        self.task_id = int(self.ledger.publish_task(params, params.escrow_per_round() * num_rounds))
        return self.task_id

    def _base_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "task-id": int(self.task_id or 0),
            "chain-id": int(self.ledger.chain.chain_id),
            "contract": str(self.ledger.address),
            "store": self._store_spec_text(),
        }
        if self.encryption:
            cfg.update({"encryption": self.encryption, "ivhe-key-cid": self.ivhe_key_cid,
                        "ivhe-p": self.ivhe_p, "ivhe-q": self.ivhe_q})
        return cfg

    def _make_ivhe_keys(self) -> None:
        """The initiator's IVHE key pair; the public key is published by CID."""
        from coopflower.crypto import IVHEParams, make_keys, public_key_to_bytes

        self._secret_key, pk = make_keys("elementwise", "table4", IVHEParams())
        self.ivhe_key_cid = self._open_store().put(public_key_to_bytes(pk)).to_bytes()

    def _register(self, grid: Grid, node_ids: Sequence[int], timeout: float) -> list[NodeFailure]:
        """Ask every node for its signed consent and register the new ones in one tx."""
        from coopflower.ledger.eip712 import SignedRegistration, recover_registration

        deposit = self.task.min_deposit
        cfg = ConfigRecord({**self._base_config(), "deposit": str(deposit)})
        if self.inner is not None:
            msgs = [wrapped.register_message(nid, cfg) for nid in node_ids]
        else:
            msgs = [Message(RecordDict({P.CONFIG: cfg}), nid, P.MSG_REGISTER)
                    for nid in node_ids]
        self.meter.add_sent(0, msgs)
        replies = send_and_receive(grid, msgs, timeout=timeout)
        self.meter.add_received(0, replies)
        failures, regs = [], []
        seen: set[str] = set()
        known = {a.lower() for a in self.ledger.participants(self.task_id)}
        for msg in replies:
            nid = msg.metadata.src_node_id
            if msg.has_error():
                failures.append(NodeFailure("register", nid, str(msg.error.reason)))
                continue
            try:
                rec = msg.content.config_records.get(P.REGISTRATION)
                if rec is None:
                    raise ValueError("the reply has no 'registration' record: does the "
                                     "ClientApp run coop_mod (ClientApp(mods=[coop_mod]))?")
                address = P.get_str(rec, "address")
                sig = bytes(rec["signature"])  # type: ignore[arg-type]
                reg = SignedRegistration(int(self.task_id or 0), address, deposit, sig)
                if recover_registration(self.ledger.domain, reg).lower() != address.lower():
                    raise ValueError("signature is not the node's")
            except Exception as exc:  # a malformed reply is the node's failure, not ours
                failures.append(NodeFailure("register", nid, f"bad registration: {exc}"))
                continue
            if address.lower() in seen:
                failures.append(NodeFailure("register", nid, f"address {address} reused"))
                continue
            seen.add(address.lower())
            self.addresses[nid] = address
            self.models[nid] = str(rec.get("model", ""))
            if address.lower() not in known:
                regs.append(reg)
        if regs:
            self.ledger.register_for(self.task_id, regs)
        return failures

    # ------------------------------------------------------------------ the round
    def start(  # noqa: C901 - the six steps read best in order
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
            Flower's ``Result``: the final global arrays, per-round train metrics (with the
            numbers of submissions, votes and accepted models) and verification metrics
            (``evaluate_metrics_clientapp``), and ``evaluate_fn``'s central metrics.
            ``self.reports`` holds a ``RoundReport`` per round.
        """
        log(INFO, "Starting %s strategy:", self.__class__.__name__)
        self.summary()
        self.phases = PhaseLog(num_rounds, self.progress)
        train_config = ConfigRecord() if train_config is None else train_config
        result = Result()
        arrays = initial_arrays

        with self.phases.phase(0, "setup") as rec:
            ledger = self._connect()
            # every connected node becomes a participant (a verifier candidate); each round
            # then samples its contributors by fraction_train
            node_ids = self._wait_for_nodes(grid, self.task.k + 1)
            task_id = self._ensure_task(num_rounds, len(node_ids))
            if self.encryption and self._secret_key is None:
                self._make_ivhe_keys()
            reg_failures = self._register(grid, node_ids, timeout)
            rec.detail = (f"contract {ledger.address}, task {task_id}, "
                          f"{len(self.addresses)} nodes registered")
        for f in reg_failures:
            log(WARNING, "node %d failed to register: %s", f.node_id, f.reason)
        if len(self.addresses) < self.task.k + 1:
            reasons = sorted({_last_line(f.reason) for f in reg_failures}) or ["no reply"]
            hint = (" Does the ClientApp run coopflower's mod: ClientApp(mods=[coop_mod])?"
                    if self.inner is not None else "")
            raise StrategyError(
                f"{len(self.addresses)} of {len(node_ids)} nodes registered, the task needs "
                f"{self.task.k + 1} (k={self.task.k} verifiers besides each contributor); "
                f"the others said: {'; '.join(reasons)[:600]}.{hint}")

        if evaluate_fn:
            res = evaluate_fn(0, initial_arrays)
            if res is not None:
                result.evaluate_metrics_serverapp[0] = res

        pending: _ChainTail | None = None
        try:
            for rnd in range(1, num_rounds + 1):
                report, tail = self._round(grid, rnd, arrays, train_config, timeout, pending,
                                           pipeline=self.pipeline and rnd < num_rounds,
                                           evaluate_config=evaluate_config)
                if pending is not None:  # joined inside the round, before its open
                    _record_result(result, pending.report, self.inner is not None)
                pending = tail
                report.failures[:0] = reg_failures if rnd == 1 else []
                self.reports.append(report)
                if report.new_arrays is not None:
                    arrays = report.new_arrays
                    result.arrays = arrays
                if tail is None:
                    _record_result(result, report, self.inner is not None)
                if self.inner is not None:
                    self._federated_evaluate(grid, rnd, arrays, evaluate_config, timeout,
                                             result)
                if evaluate_fn:
                    res = evaluate_fn(rnd, arrays)
                    log(INFO, "\t└──> central evaluation: %s", res)
                    if res is not None:
                        result.evaluate_metrics_serverapp[rnd] = res
        finally:
            if pending is not None:  # only after an error: the last round never pipelines
                pending.wait()
        if len(result.arrays) == 0:
            result.arrays = arrays
        for line in io.StringIO(str(result)):
            log(INFO, "\t%s", line.strip("\n"))
        if self.report_file:
            from coopflower.strategy.report import write_report

            write_report(self.report_file, self, result)
        return result

    def _wait_for_nodes(self, grid: Grid, need: int) -> list[int]:
        """Every connected node (each becomes a participant: a verifier candidate), waiting at
        most ``connect_timeout`` seconds for ``need`` of them; ``StrategyError`` when the
        federation stays too small for the task."""
        need = max(need, self.min_available_nodes, self.min_train_nodes)
        deadline = time.monotonic() + self.connect_timeout
        while True:
            node_ids = sorted(grid.get_node_ids())
            if len(node_ids) >= need or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if len(node_ids) < need:
            raise StrategyError(
                f"the federation has {len(node_ids)} nodes after {self.connect_timeout:.0f} s; "
                f"the task needs at least {need} (k={self.task.k} verifiers besides each "
                "contributor): run more SuperNodes (e.g. options.num-supernodes in the "
                "federation's config) or lower TaskConfig(k=...)")
        return node_ids

    def _federated_evaluate(self, grid: Grid, rnd: int, arrays: ArrayRecord,
                            evaluate_config: ConfigRecord | None, timeout: float,
                            result: Result) -> None:
        """Flower's federated evaluation by the inner strategy (plain evaluate messages,
        which ``coop_mod`` passes to the app untouched)."""
        assert self.inner is not None
        msgs = list(self.inner.configure_evaluate(rnd, arrays, evaluate_config or ConfigRecord(),
                                                  grid))
        if not msgs:
            return
        self.meter.add_sent(rnd, msgs)
        replies = send_and_receive(grid, msgs, timeout=timeout)
        self.meter.add_received(rnd, replies)
        metrics = self.inner.aggregate_evaluate(rnd, replies)
        if metrics is not None:
            result.evaluate_metrics_clientapp[rnd] = metrics

    def _round(  # noqa: C901
        self, grid: Grid, rnd: int, arrays: ArrayRecord, train_config: ConfigRecord,
        timeout: float, previous: _ChainTail | None, pipeline: bool,
        evaluate_config: ConfigRecord | None = None,
    ) -> tuple[RoundReport, _ChainTail | None]:
        """One round; returns its report and, when pipelined, its pending chain steps.

        ``previous`` is the previous round's pending chain steps (joined before this round's
        ``open``); with ``pipeline`` this round's vote, settle and record steps are left
        running in the background when every vote came in.
        """
        from coopflower.ledger.eip712 import (
            SignedSubmission,
            SignedVote,
            model_digest,
            recover_submission,
            recover_vote,
        )

        ledger, task_id = self.ledger, int(self.task_id or 0)
        report = RoundReport(rnd)
        t_round = time.perf_counter()
        compute = handler = 0.0

        def open_round(expected: int | None) -> int:
            with self.phases.phase(rnd, "open") as rec:
                info = ledger.open_round(task_id)
                if expected is not None and info.round != expected:
                    raise StrategyError(f"the contract opened round {info.round} of task "
                                        f"{task_id}, the contributors signed for {expected}: "
                                        "another authority opened a round of this task")
                rec.detail = (f"task {task_id} round {info.round} open until block "
                              f"{info.submit_end}")
                return int(info.round)

        if previous is None:
            tx0 = ledger.chain.tx_count
            chain_round = open_round(None)
        else:  # the previous round settles in the background: its successor's number is known
            chain_round = previous.report.chain_round + 1
        report.chain_round = chain_round

        # ---- train: contributors train, upload, sign
        with self.phases.phase(rnd, "train") as rec:
            msgs, node_ids = self._train_messages(grid, rnd, chain_round, arrays, train_config,
                                                  report)
            self.meter.add_sent(rnd, msgs)
            replies = send_and_receive(grid, msgs, timeout=timeout)
            self.meter.add_received(rnd, replies)
            subs: list[SignedSubmission] = []
            sub_nodes: list[int] = []
            sub_meta: list[Message] = []
            answered = set()
            for msg in replies:
                nid = msg.metadata.src_node_id
                answered.add(nid)
                if msg.has_error():
                    report.failures.append(NodeFailure("train", nid, str(msg.error.reason)))
                    continue
                try:
                    r = msg.content.config_records[P.SUBMISSION]
                    sub = SignedSubmission(
                        task_id, chain_round, P.get_str(r, "contributor"),
                        bytes(r["cid"]), bytes(r["content-hash"]),  # type: ignore[arg-type]
                        bytes(r["signature"]),  # type: ignore[arg-type]
                    )
                    if sub.contributor.lower() != self.addresses[nid].lower():
                        raise ValueError(f"contributor {sub.contributor} is not the node's "
                                         f"registered address {self.addresses[nid]}")
                    if recover_submission(ledger.domain, sub).lower() != sub.contributor.lower():
                        raise ValueError("signature is not the contributor's")
                except Exception as exc:
                    report.failures.append(NodeFailure("train", nid, f"bad submission: {exc}"))
                    continue
                compute += _metric(msg, "compute-seconds")
                handler += _metric(msg, "handler-seconds")
                self.meter.add_storage(rnd, int(_metric(msg, "blob-bytes")))
                subs.append(sub)
                sub_nodes.append(nid)
                sub_meta.append(msg)
            for nid in set(node_ids) - answered:
                report.failures.append(NodeFailure("train", int(nid), "no reply (timeout)"))
            rec.detail = f"{len(subs)} signed submissions from {len(node_ids)} contributors"

        if previous is not None:
            with self.phases.phase(rnd, "wait-chain") as rec:
                previous.join()
                rec.detail = (f"round {previous.report.server_round}'s votes, settlement and "
                              "MetaModel on chain")
            tx0 = ledger.chain.tx_count
            open_round(chain_round)

        # ---- submit (one transaction) and close the window
        with self.phases.phase(rnd, "submit") as rec:
            if subs:
                tx = ledger.submit_batch(task_id, chain_round, subs, close=True)
                ids = [int(e.args["submission"]) for e in tx.named("Submitted")]
                report.gas += tx.gas_used
            else:
                ids = []
                ledger.close_submissions(task_id, chain_round)
            by_id = dict(zip(ids, subs, strict=True))
            rec.detail = f"{len(ids)} submissions in 1 transaction"

        # ---- assign verifiers from the randomness block
        with self.phases.phase(rnd, "assign") as rec:
            assignment = ledger.assignments(task_id, chain_round) if ids else None
            rec.detail = (f"seed 0x{assignment.seed.hex()[:12]}... from block "
                          f"{assignment.rand_block}" if assignment else "nothing to verify")

        # ---- verify: each verifier gets its own assignments
        votes: list[SignedVote] = []
        with self.phases.phase(rnd, "verify") as rec:
            node_of = {a.lower(): nid for nid, a in self.addresses.items()}
            per_node: dict[int, list[int]] = {}
            if assignment is not None:
                for sid, verifiers in assignment.verifiers.items():
                    for v in verifiers:
                        vnode = node_of.get(v.lower())
                        if vnode is None:
                            report.failures.append(NodeFailure(
                                "verify", -1, f"assigned verifier {v} has no connected node"))
                            continue
                        per_node.setdefault(vnode, []).append(sid)
            vmsgs = []
            for nid, sids in per_node.items():
                vcfg = {
                    **self._base_config(), "server-round": rnd, "round": chain_round,
                    "submission-ids": sids,
                    "cids": [by_id[s].cid for s in sids],
                    "content-hashes": [by_id[s].content_hash for s in sids],
                }
                if self.inner is not None:
                    vcfg.update({"metric": self.task.metric,
                                 "min-metric-bps": self.task.threshold_bps()})
                    vmsgs.append(wrapped.verify_message(nid, vcfg, arrays, evaluate_config))
                else:
                    vcfg["min-accuracy-bps"] = self.task.min_accuracy_bps
                    vmsgs.append(Message(RecordDict({P.CONFIG: ConfigRecord(vcfg)}), nid,
                                         P.MSG_VERIFY))
            self.meter.add_sent(rnd, vmsgs)
            vreplies = send_and_receive(
                grid, vmsgs, timeout=self.verify_timeout or timeout) if vmsgs else []
            self.meter.add_received(rnd, vreplies)
            answered = set()
            accuracies: list[float] = []
            for msg in vreplies:
                nid = msg.metadata.src_node_id
                answered.add(nid)
                if msg.has_error():
                    report.failures.append(NodeFailure("verify", nid, str(msg.error.reason)))
                    continue
                compute += _metric(msg, "compute-seconds")
                handler += _metric(msg, "handler-seconds")
                self.meter.add_storage(rnd, int(_metric(msg, "fetched-bytes")))
                try:
                    r = msg.content.config_records[P.VOTES]
                    sids = P.get_list(r, "submission-ids", int)
                    approve = P.get_list(r, "approve", bool)
                    sigs = P.get_list(r, "signatures", bytes)
                    scores = P.get_list(r, "accuracy-bps", int)
                    if not len(sids) == len(approve) == len(sigs) == len(scores):
                        raise ValueError("vote lists differ in length")
                except Exception as exc:
                    report.failures.append(NodeFailure("verify", nid, f"bad votes: {exc}"))
                    continue
                verifier = self.addresses[nid]
                for sid, ok, sig, score in zip(sids, approve, sigs, scores, strict=True):
                    if sid not in per_node.get(nid, []):
                        report.failures.append(NodeFailure(
                            "verify", nid, f"vote on submission {sid} it was not assigned"))
                        continue
                    sub = by_id[sid]
                    vote = SignedVote(task_id, chain_round, sid,
                                      model_digest(sub.cid, sub.content_hash), verifier,
                                      bool(ok), int(score), sig)
                    try:
                        if recover_vote(ledger.domain, vote).lower() != verifier.lower():
                            raise ValueError("not signed by the verifier")
                    except Exception as exc:
                        report.failures.append(NodeFailure(
                            "verify", nid, f"bad vote on submission {sid}: {exc}"))
                        continue
                    votes.append(vote)
                    accuracies.append(score / 10000)
            for nid in set(per_node) - answered:
                report.failures.append(NodeFailure("verify", nid, "no reply (timeout)"))
            rec.detail = f"{len(votes)} signed votes from {len(answered)} verifiers"

        # ---- the outcome: known from the votes once all are in, else from the settlement
        expected = sum(len(v) for v in assignment.verifiers.values()) if assignment else 0
        finish = functools.partial(self._finish_on_chain, rnd, report, votes, by_id, expected,
                                   accuracies, sub_meta, tx0, timeout)
        settle_first = len(votes) < expected or not by_id  # the votes alone do not decide
        if settle_first:
            finish(None, None)
            accepted_ids = [sid for sid, v in report.submissions.items() if v[2] == "ACCEPTED"]
        else:
            accepted_ids = _tally_votes(votes, by_id, self.task.quorum)

        # ---- aggregate the accepted models, store the result (its CID goes on chain)
        with self.phases.phase(rnd, "aggregate") as rec:
            models = self._fetch(rnd, [by_id[sid] for sid in accepted_ids])
            if self.inner is not None:
                reply_of = {s.cid: m for s, m in zip(subs, sub_meta, strict=True)}
                agg = self._inner_aggregate(rnd, models, reply_of, report)
            else:
                current = {k: np.asarray(a.numpy()) for k, a in arrays.items()}
                agg = self.aggregate_fn(models, current or None)
            meta: tuple[bytes, bytes] | None = None
            if agg is not None:
                from coopflower.blob import pack_arrays

                blob = pack_arrays(agg, {"round": str(chain_round), "task": str(task_id),
                                         "aggregated": str(len(models))})
                meta = (self._open_store().put(blob).to_bytes(), content_hash(blob))
                self.meter.add_storage(rnd, len(blob))
                report.meta_cid = meta[0]
                report.new_arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in agg.items()})
                rec.detail = f"{len(models)} accepted models aggregated and stored"
            else:
                rec.detail = "no accepted model fits: global model unchanged"

        report.compute_seconds = compute
        report.handler_seconds = handler
        report.bytes = self.meter.total(rnd)
        for f in report.failures:
            log(WARNING, "round %d: node %d failed in %s: %s", rnd, f.node_id, f.phase, f.reason)
        if settle_first:
            self._record_metamodel(rnd, report, meta, tx0, sub_meta)
            tail = None
        elif pipeline:
            report.overlapped_phases = ("vote", "settle", "record")
            tail = _ChainTail(report, functools.partial(finish, accepted_ids, meta))
        else:
            finish(accepted_ids, meta)
            tail = None
        report.wall_seconds = time.perf_counter() - t_round
        return report, tail

    def _train_messages(self, grid: Grid, rnd: int, chain_round: int, arrays: ArrayRecord,
                        train_config: ConfigRecord, report: RoundReport,
                        ) -> tuple[list[Message], list[int]]:
        """The round's train messages and the node ids they go to."""
        base = {**self._base_config(), "server-round": rnd, "round": chain_round}
        if self.inner is not None:
            msgs, outsiders = wrapped.train_messages(self.inner, grid, rnd, arrays, train_config,
                                                     self.addresses, base)
            for nid in outsiders:
                report.failures.append(NodeFailure("train", nid, "sampled by the inner "
                                                   "strategy but not registered: left out"))
            return msgs, [m.metadata.dst_node_id for m in msgs]
        cfg = ConfigRecord({**dict(train_config), **base, "mode": P.MODE_COOP})
        node_ids = [n for n in self.addresses]
        n_train = max(int(len(node_ids) * self.fraction_train),
                      min(self.min_train_nodes, len(node_ids)), 1)
        if n_train < len(node_ids):
            node_ids = list(np.random.default_rng([rnd, int(self.task_id or 0)]).choice(
                node_ids, n_train, replace=False))
        from coopflower.fusion.serialize import is_metamodel_arrays

        # a MetaModel (fusion aggregation) is the initiator's, not a starting point for the
        # contributors' own architectures, so it stays home: after round 1 the contributors
        # continue their own private models (even before any MetaModel exists, when no model
        # was accepted yet: the initial arrays would restart them)
        fusing = rnd > 1 and bool(getattr(self.aggregate_fn, "produces_metamodel", False))
        to_nodes = ArrayRecord() if fusing or is_metamodel_arrays(arrays) else arrays
        content = RecordDict({P.ARRAYS: to_nodes, P.CONFIG: cfg})
        return [Message(content, int(nid), "train") for nid in node_ids], [int(n) for n in
                                                                          node_ids]

    def _inner_aggregate(self, rnd: int, models: Sequence[AcceptedModel],
                         reply_of: dict[bytes, Message], report: RoundReport,
                         ) -> dict[str, Any] | None:
        """The accepted models aggregated by the inner strategy (its metrics kept for the
        round's train metrics)."""
        assert self.inner is not None
        pairs = [(m.arrays, reply_of[m.cid]) for m in models]
        new, metrics = wrapped.aggregate_accepted(self.inner, rnd, pairs)
        report.app_train_metrics = metrics
        if new is None:
            return None
        return {k: np.asarray(a.numpy()) for k, a in new.items()}

    def _finish_on_chain(
        self, rnd: int, report: RoundReport, votes: Sequence[Any], by_id: dict[int, Any],
        expected: int, accuracies: Sequence[float], sub_meta: Sequence[Message], tx0: int,
        timeout: float, tallied: Sequence[int] | None, meta: tuple[bytes, bytes] | None,
    ) -> None:
        """Relay the votes (one tx), settle (one tx; after the voting deadline when votes are
        missing) and, given ``meta``, record the MetaModel (one tx). ``tallied``: the accepted
        submissions the votes decide, checked against the contract's settlement."""
        ledger, task_id, chain_round = self.ledger, int(self.task_id or 0), report.chain_round
        with self.phases.phase(rnd, "vote") as rec:
            if votes:
                tx = ledger.submit_votes(task_id, chain_round, votes)
                report.gas += tx.gas_used
            report.votes = len(votes)
            rec.detail = f"{len(votes)} votes in {1 if votes else 0} transaction"

        with self.phases.phase(rnd, "settle") as rec:
            if len(votes) < expected:
                end = ledger.round(task_id, chain_round).vote_end
                rec.detail = f"waiting for block {end + 1} (missing votes); "
                ledger.chain.wait_for_block(end + 1, timeout=max(timeout, 60.0))
            settlement = ledger.settle(task_id, chain_round)
            report.gas += settlement.tx.gas_used
            for sub in settlement.submissions:
                signed = by_id[sub.submission]
                report.submissions[sub.submission] = (
                    sub.contributor, signed.cid, sub.status.name, sub.yes, sub.cast)
            report.accepted = settlement.accepted
            rec.detail += (f"{settlement.accepted} accepted of {len(settlement.submissions)}; "
                           f"paid {settlement.total_paid} wei")
        on_chain = sorted(s.submission for s in settlement.submissions
                          if s.status.name == "ACCEPTED")
        if tallied is not None and on_chain != sorted(tallied):
            raise StrategyError(f"round {rnd}: the contract accepted {on_chain}, the relayed "
                                f"votes decide {sorted(tallied)}")
        report.verify_metrics = MetricRecord({
            "votes": len(votes),
            "mean-verifier-accuracy": float(np.mean(accuracies)) if accuracies else 0.0,
            "accepted": report.accepted,
            "failures": len(report.failures),
        })
        if tallied is not None:
            self._record_metamodel(rnd, report, meta, tx0, sub_meta)

    def _record_metamodel(self, rnd: int, report: RoundReport, meta: tuple[bytes, bytes] | None,
                          tx0: int, sub_meta: Sequence[Message]) -> None:
        """Record the MetaModel's CID and content hash on chain (one tx) and close the
        round's accounts: phases, transactions, train and verification metrics."""
        ledger = self.ledger
        with self.phases.phase(rnd, "record") as rec:
            if meta is not None:
                tx = ledger.record_metamodel(int(self.task_id or 0), report.chain_round, *meta)
                report.gas += tx.gas_used
                rec.detail = f"MetaModel {meta[0].hex()[:16]}... recorded"
            else:
                rec.detail = "nothing to record"
        report.tx = ledger.chain.tx_count - tx0
        report.phase_seconds = self.phases.seconds(rnd)
        report.train_metrics = self._train_metrics(sub_meta, report)

    def _train_metrics(self, replies: Sequence[Message], report: RoundReport) -> MetricRecord:
        n = [_metric(m, "num-examples") for m in replies]
        total = sum(n) or 1.0
        out: dict[str, int | float | list[int] | list[float]] = {
            "submissions": len(replies),
            "accepted": report.accepted,
            "tx": report.tx,
        }
        if self.inner is not None:
            for key, value in (report.app_train_metrics or {}).items():
                out[key] = value
            return MetricRecord(out)
        for key in ("train-loss", "train-accuracy"):
            out[key] = sum(w * _metric(m, key) for w, m in zip(n, replies, strict=True)) / total
        return MetricRecord(out)

    def _decrypt(self, blob: bytes) -> tuple[dict[str, Any], dict[str, str]]:
        """The initiator decrypts an accepted model: plaintext arrays and its metadata."""
        from coopflower.crypto import EncryptedModel, decrypt_model

        enc = EncryptedModel.from_bytes(blob)
        state = decrypt_model(enc, self._secret_key)
        arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
        return arrays, {"model": enc.arch, **enc.metadata}

    def _fetch(self, rnd: int, accepted: Sequence[Any]) -> list[AcceptedModel]:
        """Fetch accepted blobs by CID (the store checks the bytes) and unpack them."""
        from coopflower.blob import BlobError, unpack_arrays
        from coopflower.crypto.errors import IVHEError
        from coopflower.storage.errors import StorageError

        store = self._open_store()
        out = []
        for sub in accepted:
            try:
                blob = store.get(sub.cid)
                self.meter.add_storage(rnd, len(blob))
                if content_hash(blob) != sub.content_hash:
                    raise ValueError("content hash mismatch")
                arrays, meta = unpack_arrays(blob)
                if self.encryption and meta.get("format", "").startswith("coopflower-ivhe"):
                    arrays, meta = self._decrypt(blob)
                classes = tuple(int(c) for c in meta.get("classes", "").split(",") if c)
                out.append(AcceptedModel(sub.cid, sub.contributor, meta.get("model", ""),
                                         int(meta.get("num-examples", "1")), arrays, classes))
            except (StorageError, BlobError, IVHEError, ValueError) as exc:
                log(WARNING, "accepted model %s unusable by the initiator: %s",
                    sub.cid.hex()[:16], exc)
        return out


def reports_table(reports: Sequence[RoundReport]) -> str:
    """A plain-text table of round reports (for logs and docs)."""
    lines = [f"{'round':>5} {'subs':>4} {'votes':>5} {'acc':>3} {'fail':>4} {'tx':>3} "
             f"{'wall s':>7} {'compute s':>9} {'bytes':>10}"]
    for r in reports:
        lines.append(f"{r.server_round:>5} {len(r.submissions):>4} {r.votes:>5} {r.accepted:>3} "
                     f"{len(r.failures):>4} {r.tx:>3} {r.wall_seconds:>7.2f} "
                     f"{r.compute_seconds:>9.2f} {r.bytes:>10}")
    return "\n".join(lines)


def failure_lines(reports: Sequence[RoundReport]) -> list[str]:
    """Every node failure of the rounds, one line each (``round R phase node N: reason``)."""
    return [f"round {r.server_round} {f.phase} node {f.node_id}: {f.reason}"
            for r in reports for f in r.failures]

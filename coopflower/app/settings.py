"""The shipped app's run config (``[tool.flwr.app.config]`` or ``--run-config``), parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATIONS", "AppSettings", "SettingsError"]

AGGREGATIONS = ("average", "I", "II")


class SettingsError(ValueError):
    """A run config value of the wrong type or out of range."""


@dataclass(frozen=True)
class AppSettings:
    """What the ServerApp runs.

    ``strategy`` ``coordinated`` or ``fedavg``; ``model`` the global architecture (Table I/IV
    name); ``chain`` a JSON-RPC URL or empty for the embedded EVM; ``store`` a directory (the
    embedded store, shared with simulated nodes) or an IPFS RPC URL; ``chain-key`` the initiator's
    hex key for a JSON-RPC chain (or ``$COOPFLOWER_CHAIN_KEY``); ``contract`` an existing
    deployment's address or empty to deploy; ``verifiers`` k per submission, ``quorum``;
    ``min-accuracy-bps`` the task's acceptance criterion (``TaskConfig(metric="accuracy",
    min_metric=min-accuracy-bps / 10000)``: a verifier's accuracy on all of its verification
    digits, or ``ivhe-accuracy`` in cipherspace when encrypted); ``log-fedavg`` whether the baseline
    logs its rounds on chain; ``report-file`` a path where the ServerApp writes a JSON report
    (contract, task, per-round phases and timings) when the run ends; ``encryption``
    ``elementwise`` for IVHE-encrypted models evaluated in cipherspace (empty: plaintext; not
    with fusion); ``aggregation`` the coordinated strategy's aggregation step: ``average`` (the
    inner ``FedAvg``'s weighted averaging, one architecture), ``I`` or ``II`` (MetaModel fusion,
    Strategy I or gradual fusion II, ``make_fusion_aggregate``); ``fraction-train`` the inner
    ``FedAvg``'s (the coordinated strategy runs no federated evaluation: verification is its
    evaluation);
    ``fusion-epochs`` the fusion network's epochs per stage (``FusionConfig.epochs_stage1`` and
    ``epochs_stage2``); ``connect-timeout`` the seconds the ServerApp waits for k + 1 nodes before
    it stops with a message saying how many came (plain ``flwr run .`` starts 2);
    ``resume-task`` the id of a task on ``contract`` whose ServerApp stopped mid-run: the run
    takes up its last round from the chain and runs its remaining rounds (0: a new task).

    Data with ``aggregation`` I or II: the held-out test part (``coopflower.app.data.
    test_indices``, 20% of MNIST, seed 0) is split by ``coopflower.data.partition.
    stratified_split`` (seed ``seed``) into two disjoint halves: ``fusion`` (the initiator's own
    digits that train the fusion network) and ``eval`` (central evaluation). With ``average``
    central evaluation uses the whole test part, as before. Both halves are disjoint from the
    nodes' partitions only while the nodes keep the default node config ``test-fraction`` 0.2 and
    ``seed`` 0 (nodes cut their pool with their own node config; the server cannot check it).
    """

    num_rounds: int = 3
    strategy: str = "coordinated"
    model: str = "table4"
    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 32
    fraction_train: float = 1.0
    chain: str = ""
    chain_key: str = ""
    store: str = ""
    contract: str = ""
    verifiers: int = 3
    quorum: int = 2
    min_accuracy_bps: int = 3000
    log_fedavg: bool = True
    timeout: float = 600.0
    connect_timeout: float = 30.0
    central_eval: bool = True
    seed: int = 0
    report_file: str = ""
    encryption: str = ""
    aggregation: str = "average"
    fusion_epochs: int = 20
    resume_task: int = 0

    @classmethod
    def from_run_config(cls, cfg: Mapping[str, Any]) -> AppSettings:
        """Parse the run config (dash-separated keys); unknown keys are ignored."""
        out: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            key = "num-server-rounds" if name == "num_rounds" else name.replace("_", "-")
            if key not in cfg:
                continue
            value = cfg[key]
            try:
                if isinstance(default, bool):
                    value = value if isinstance(value, bool) else str(value).lower() in (
                        "1", "true", "yes")
                else:
                    value = type(default)(value)
            except (TypeError, ValueError):
                raise SettingsError(f"run config {key}={value!r}: expected "
                                    f"{type(default).__name__}") from None
            out[name] = value
        s = cls(**out)
        if s.strategy not in ("coordinated", "fedavg"):
            raise SettingsError(f"strategy must be 'coordinated' or 'fedavg', got {s.strategy!r}")
        if s.num_rounds < 1 or s.epochs < 0 or not 1 <= s.quorum <= s.verifiers:
            raise SettingsError(f"bad sizes in {s}")
        if s.encryption not in ("", "elementwise"):
            raise SettingsError(f"encryption must be '' or 'elementwise', got {s.encryption!r}")
        if s.aggregation not in AGGREGATIONS:
            raise SettingsError(f"aggregation must be one of {AGGREGATIONS}, got "
                                f"{s.aggregation!r}")
        if s.encryption and s.aggregation != "average":
            raise SettingsError("encryption with aggregation I or II: coopflower's IVHE mod and "
                                "its fusion mod do not combine (the paper's encrypted fusion, "
                                "Case II, runs in experiments.cases.case2)")
        if s.fusion_epochs < 1:
            raise SettingsError(f"fusion-epochs must be >= 1, got {s.fusion_epochs}")
        if not 0 <= s.min_accuracy_bps <= 10000:
            raise SettingsError("min-accuracy-bps must be in [0, 10000]")
        return s

    def store_spec(self) -> str:
        """The storage spec: the configured one, or the default embedded store directory."""
        if self.store:
            return self.store
        from coopflower.storage import default_store_dir

        return str(default_store_dir())

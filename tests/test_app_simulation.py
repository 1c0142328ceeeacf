"""The shipped Flower app in simulation: 10 SuperNodes, the coordinated strategy and the FedAvg
baseline on the embedded chain and store (real Flower runs, real EVM, real MNIST)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.simulation import run_simulation

from coopflower.app.client_app import app as client_app
from coopflower.app.server_app import make_server_app
from coopflower.app.settings import AppSettings
from coopflower.strategy.baseline import FedAvgBaseline
from coopflower.strategy.chainlog import ChainRoundLogger
from coopflower.strategy.coordinated import CoordinatedStrategy

BACKEND = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}}


@pytest.fixture
def sim_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    return tmp_path


def _run(settings: AppSettings, nodes: int = 10) -> tuple[Any, Any]:
    out: dict[str, Any] = {}

    def done(strategy: Any, result: Any) -> None:
        out["strategy"], out["result"] = strategy, result

    run_simulation(make_server_app(settings, done), client_app, num_supernodes=nodes,
                   backend_config=BACKEND)  # type: ignore[arg-type]
    assert "result" in out, "the ServerApp did not finish"
    return out["strategy"], out["result"]


def test_coordinated_strategy_ten_supernodes(sim_env: Path) -> None:
    settings = AppSettings(strategy="coordinated", num_rounds=2, store=str(sim_env / "store"),
                           min_accuracy_bps=3000, verifiers=3, quorum=2)
    strategy, result = _run(settings)
    assert isinstance(strategy, CoordinatedStrategy)
    ledger, task = strategy.ledger, strategy.task_id
    assert len(ledger.participants(task)) == 10
    for rnd, report in enumerate(strategy.reports, start=1):
        assert report.chain_round == rnd and not report.failures
        assert len(report.submissions) == 10 and report.votes == 30
        # open, submissions, seed shares, votes, settle, MetaModel: whatever n is
        assert report.tx == 6
        rec = ledger.round_record(task, rnd)
        assert len(rec.submissions) == 10 and len(rec.votes) == 30
        assert len(rec.round_settled) == 1
        if report.accepted:
            assert rec.metamodel and rec.metamodel[0].args["cid"] == report.meta_cid
            assert strategy._open_store().has(report.meta_cid)
    # round 1's vote, settle and MetaModel transactions ran during round 2's training; the
    # last round drains the pipeline; the replayed history is the same as a sequential run's
    assert strategy.reports[0].overlapped_phases == ("vote", "settle", "record")
    assert strategy.reports[1].overlapped_phases == ("open",)  # opened in round 1's tail
    assert "wait-chain" in strategy.reports[1].phase_seconds
    assert all(result.train_metrics_clientapp[r]["tx"] == 6 for r in (1, 2))
    from coopflower.audit import audit_ledger

    audits = audit_ledger(ledger, strategy._open_store(), stream=None)
    assert [a.round for a in audits] == [1, 2] and all(a.ok for a in audits)
    accuracy = {r: float(m["accuracy"]) for r, m in result.evaluate_metrics_serverapp.items()}
    assert accuracy[2] > accuracy[0] + 0.3, accuracy
    assert result.train_metrics_clientapp[2]["submissions"] == 10


def test_fedavg_baseline_logs_rounds_to_the_contract(sim_env: Path) -> None:
    settings = AppSettings(strategy="fedavg", num_rounds=2, store=str(sim_env / "store"))
    strategy, result = _run(settings)
    assert isinstance(strategy, FedAvgBaseline)
    logger = strategy.round_logger
    assert isinstance(logger, ChainRoundLogger)
    accuracy = {r: float(m["accuracy"]) for r, m in result.evaluate_metrics_serverapp.items()}
    assert accuracy[2] > accuracy[0] + 0.3, accuracy
    events = logger.ledger.events("RoundLogged")
    assert [(e.args["round"], e.args["cid"]) for e in events] == sorted(logger.cids.items())
    for cid in logger.cids.values():
        assert logger.store.has(cid)
    assert strategy.meter.total(1) > 10 * 2 * 80_000  # the model down and up for 10 nodes


@pytest.mark.slow
@pytest.mark.node
def test_both_strategies_on_anvil_and_ipfs(sim_env: Path, shared_ipfs_daemon: str) -> None:
    """The same app configured for a real chain node and a real IPFS daemon."""
    from flwr.serverapp import ServerApp

    from coopflower.app.server_app import run_server
    from coopflower.ledger.nodes import anvil

    ipfs_url = shared_ipfs_daemon  # the session's js-ipfs daemon
    with anvil() as node:
        common = dict(chain=node.url, chain_key=node.private_keys[0], store=ipfs_url,
                      central_eval=False)
        out: dict[str, Any] = {}
        server = ServerApp()

        @server.main()
        def main(grid: Any, context: Any) -> None:
            out["coop"] = run_server(grid, AppSettings(strategy="coordinated", num_rounds=1,
                                                       min_accuracy_bps=2000, **common))
            out["fedavg"] = run_server(grid, AppSettings(strategy="fedavg", num_rounds=1,
                                                         **common))

        run_simulation(server, client_app, num_supernodes=10,
                       backend_config=BACKEND)  # type: ignore[arg-type]
        coop, _ = out["coop"]
        (report,) = coop.reports
        assert coop.ledger.chain.kind == "rpc" and not report.failures
        assert len(report.submissions) == 10 and report.votes == 30 and report.tx == 6
        assert coop.ledger.round(coop.task_id, 1).state == 3
        fed, _ = out["fedavg"]
        logger = fed.round_logger
        assert isinstance(logger, ChainRoundLogger) and set(logger.cids) == {1}
        assert logger.ledger.events("RoundLogged")[0].args["cid"] == logger.cids[1]
        from coopflower.storage import open_store

        assert open_store(ipfs_url).has(logger.cids[1])

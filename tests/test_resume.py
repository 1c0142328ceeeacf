"""Issue 13, a ServerApp killed in the middle of a round and started again: the new run takes up
the task from the chain and finishes it.

The breastcancer app (``tests/apps``, patched by its ``coop.diff``) runs in a fresh interpreter
under Flower's simulation engine, on anvil and an embedded store on disk, pointed there by the
operator's environment as in ``tests/test_thirdparty_apps.py``. The first run is SIGKILLed, with
its whole process group (the ServerApp and the simulated SuperNodes), the moment it prints the
line of a chosen phase of round 2 (a tripwire on its stderr: no hook in coopflower). The chain
then shows round 2 stopped after that phase. A second run of the unchanged app with
``COOPFLOWER_RESUME_TASK`` finishes round 2 and round 3 and closes the task.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from coopflower.audit import run_audit
from coopflower.ledger import ContractRevertError, CoopLedger, connect
from coopflower.ledger.nodes import anvil
from coopflower.strategy import CoordinatedStrategy, StrategyError, TaskConfig
from tests.fixtures_chain import held_by_contract
from tests.test_thirdparty_apps import _copy

pytestmark = [pytest.mark.slow, pytest.mark.node]

NODES, ROUNDS, STOPPED = 4, 3, 2

RUNNER = """
import os, signal, sys

KILL_AT = os.environ.get("KILL_AT", "")


class Tripwire:
    '''stderr that kills the process group once the ServerApp prints the KILL_AT line.'''

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        n = self.stream.write(text)
        if KILL_AT and KILL_AT in text:
            self.stream.flush()
            os.killpg(0, signal.SIGKILL)
        return n

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stderr = Tripwire(sys.stderr)  # before coopflower binds its progress stream
from flwr.simulation import run_simulation

sys.path.insert(0, sys.argv[1])
server = __import__(sys.argv[2] + ".server_app", fromlist=["app"]).app
client = __import__(sys.argv[2] + ".client_app", fromlist=["app"]).app
run_simulation(server_app=server, client_app=client, num_supernodes=int(sys.argv[3]),
               backend_config={"client_resources": {"num_cpus": 1}})
"""


def _run(app: Path, env: dict[str, str], log: Path) -> int:
    """The app in a fresh interpreter, in its own process group; returns its exit code."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(app), "bcapp", str(NODES)],
                                env={**env, "PYTHONPATH": str(app)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()


def _events(ledger: CoopLedger, name: str, task: int, rnd: int) -> list:
    return [e for e in ledger.events(name, task_id=task) if int(e.args["round"]) == rnd]


def _submitted(ledger: CoopLedger, task: int, rnd: int) -> dict[int, tuple[str, bytes]]:
    return {int(e.args["submission"]): (str(e.args["contributor"]), bytes(e.args["cid"]))
            for e in _events(ledger, "Submitted", task, rnd)}


# what the chain shows of round 2 after the kill: (state, submissions, votes)
AFTER_KILL = {"open": (1, 0, 0), "submit": (2, NODES, 0), "vote": (2, NODES, 3 * NODES),
              "settle": (3, NODES, 3 * NODES)}


def _check_money(ledger: CoopLedger, task: int) -> None:
    """Everything that went in (escrow, deposits) is in some account's balance: the task is
    closed, its escrow and every deposit released, and the contract holds exactly that."""
    info = ledger.task(task)
    assert info.closed and info.escrow == 0
    people = ledger.participants(task)
    assert all(p.deposit == 0 for p in ledger.accounts(task, people).values())
    escrow_in = sum(int(e.args["escrow"]) for e in ledger.events("TaskPublished", task_id=task))
    deposits_in = sum(int(e.args["deposit"]) for e in ledger.events("Registered", task_id=task))
    accounts = [*people, ledger.chain.address]
    held = held_by_contract(ledger, [task], accounts)
    assert ledger.chain.balance(ledger.address) == held == escrow_in + deposits_in
    for rnd in range(1, info.round_count + 1):  # each round settled and paid once
        (done,) = _events(ledger, "RoundSettled", task, rnd)
        settled = [int(e.args["submission"]) for e in _events(ledger, "SubmissionSettled",
                                                              task, rnd)]
        assert sorted(settled) == list(range(ledger.round(task, rnd).n_submissions))
        paid = sum(int(e.args["amount"]) for e in _events(ledger, "Paid", task, rnd))
        assert paid == int(done.args["paid"])
        assert len(_events(ledger, "MetaModelRecorded", task, rnd)) == (
            1 if int(done.args["accepted"]) else 0)


@pytest.mark.parametrize("phase", list(AFTER_KILL))
def test_a_killed_serverapp_is_taken_up_from_the_chain(tmp_path: Path, phase: str) -> None:
    app = _copy(tmp_path, "breastcancer", True)
    with anvil() as node:
        ledger = CoopLedger.deploy(connect(node.url, private_key=node.private_keys[0]))
        store = tmp_path / "store"
        env = {**os.environ, "COOPFLOWER_CHAIN": node.url,
               "COOPFLOWER_CHAIN_KEY": node.private_keys[0],
               "COOPFLOWER_CONTRACT": ledger.address, "COOPFLOWER_STORE": str(store),
               "COOPFLOWER_HOME": str(tmp_path / "home"), "FLWR_TELEMETRY_ENABLED": "0",
               "RAY_TMPDIR": "/tmp/coopflower-ray"}
        kill_at = f"[round {STOPPED}/{ROUNDS}] {phase:<8}"
        first = _run(app, {**env, "KILL_AT": kill_at}, tmp_path / "first.log")
        text = (tmp_path / "first.log").read_text()
        assert first == -9 and kill_at in text, text[-4000:]

        (published,) = ledger.events("TaskPublished")
        task = int(published.args["taskId"])
        info = ledger.round(task, STOPPED)
        before = _submitted(ledger, task, STOPPED)
        votes_before = len(_events(ledger, "VoteCast", task, STOPPED))
        assert ledger.task(task).round_count == STOPPED
        assert (info.state, len(before), votes_before) == AFTER_KILL[phase], info

        second = _run(app, {**env, "COOPFLOWER_RESUME_TASK": str(task),
                            "COOPFLOWER_REPORT": str(tmp_path / "report.json")},
                      tmp_path / "second.log")
        text = (tmp_path / "second.log").read_text()
        assert second == 0, text[-6000:]
        assert f"[round {STOPPED}/{ROUNDS}] resume" in text

        # the stopped round settled the submissions it had: the same ones, none added (a
        # round stopped before any submission trains again)
        after = _submitted(ledger, task, STOPPED)
        assert after == before if before else len(after) == NODES
        assert len(_events(ledger, "VoteCast", task, STOPPED)) == 3 * NODES
        assert ledger.task(task).round_count == ROUNDS
        assert all(ledger.round(task, r).state == 3 for r in range(1, ROUNDS + 1))
        with pytest.raises(ContractRevertError, match="WrongRoundState"):
            ledger.settle(task, STOPPED)  # nothing is paid twice: the contract refuses
        _check_money(ledger, task)
        import json

        doc = json.loads((tmp_path / "report.json").read_text())
        assert [r["round"] for r in doc["rounds"]] == [STOPPED, ROUNDS], doc["rounds"]
        assert all(r["submissions"] == NODES for r in doc["rounds"])
        assert run_audit(node.url, ledger.address, str(store), task) == 0
        _check_global_model(ledger, task, store)


def _check_global_model(ledger: CoopLedger, task: int, store: Path) -> None:
    """The model a resumed round starts from is the last MetaModel recorded before it, read
    back by CID and refused when the stored bytes are not the ones the chain names."""
    from coopflower.blob import unpack_arrays
    from coopflower.storage import open_store
    from coopflower.strategy.resume import check_task, global_before

    s = CoordinatedStrategy(FedAvg(), task=TaskConfig(metric="eval_acc", min_metric=0.6),
                            ledger=ledger, task_id=task, store=str(store), progress=None)
    initial = ArrayRecord()
    assert global_before(s, 1, initial) is initial
    (meta,) = _events(ledger, "MetaModelRecorded", task, STOPPED)
    want, _ = unpack_arrays(open_store(str(store)).get(bytes(meta.args["cid"])))
    got = global_before(s, STOPPED + 1, initial)
    assert sorted(got) == sorted(want)
    assert all((got[k].numpy() == want[k]).all() for k in want)
    s.open_store().get = lambda cid: b"not the MetaModel"  # type: ignore[method-assign]
    with pytest.raises(StrategyError, match="content hash is not the one on chain"):
        global_before(s, STOPPED + 1, initial)
    with pytest.raises(StrategyError, match=f"task {task} is closed: nothing to resume"):
        check_task(s)


def test_resume_needs_a_task_and_no_encryption(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TaskConfig(metric="eval_acc", min_metric=0.6)
    with pytest.raises(StrategyError, match="pass its task_id"):
        CoordinatedStrategy(FedAvg(), task=task, resume=True)
    monkeypatch.setenv("COOPFLOWER_RESUME_TASK", "seven")
    with pytest.raises(StrategyError, match="COOPFLOWER_RESUME_TASK='seven'"):
        CoordinatedStrategy(FedAvg(), task=task)
    monkeypatch.setenv("COOPFLOWER_RESUME_TASK", "7")
    with pytest.raises(StrategyError, match="resuming task 7 needs the contract it is on"):
        CoordinatedStrategy(FedAvg(), task=task)
    monkeypatch.setenv("COOPFLOWER_CONTRACT", "0x" + "11" * 20)
    s = CoordinatedStrategy(FedAvg(), task=task)
    assert (s.task_id, s.resume) == (7, True)
    from coopflower.app.settings import AppSettings
    from coopflower.app.wiring import build_strategy

    monkeypatch.delenv("COOPFLOWER_RESUME_TASK")
    cfg = {"resume-task": 5, "contract": "0x" + "22" * 20}
    app = build_strategy(AppSettings.from_run_config(cfg))
    assert isinstance(app, CoordinatedStrategy) and (app.task_id, app.resume) == (5, True)
    with pytest.raises(StrategyError, match="IVHE secret key is gone"):
        CoordinatedStrategy(FedAvg(), task=TaskConfig(metric="ivhe-accuracy", min_metric=0.5),
                            task_id=3, resume=True, encryption="elementwise")



# in-process stops: (what the stopped run did of round 1, the state it leaves, submissions on
# chain, votes on chain)
STOPS = {"one-batch": (1, 3, 0), "some-votes": (2, 4, 5)}


@pytest.mark.parametrize("stop", list(STOPS))
def test_a_round_stopped_between_batches_is_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    """A run stopped between two batches (the embedded chain, in process): after one of two
    submission batches the window is OPEN with submissions on chain, and the resumed run closes
    it on them; after one vote batch of two only the verifiers whose votes are missing are
    asked. Either way the round settles what is on chain and the task's other round runs."""
    from flwr.app import ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from coopflower.audit import audit_ledger
    from coopflower.strategy import publish, reveal, stages
    from coopflower.strategy.rounds import RoundReport
    from tests import plugin_misfits as app_code
    from tests.test_plugin_failures import _client

    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    store, out = str(tmp_path / "store"), {}
    state, n_subs, n_votes = STOPS[stop]

    def strategy(**kw: object) -> CoordinatedStrategy:
        return CoordinatedStrategy(FedAvg(fraction_train=1.0), store=store, progress=None,
                                   task=TaskConfig(metric="eval_acc", min_metric=0.5), **kw)

    def stopped(grid: Grid, context: Context) -> None:  # round 1 up to its first batch
        s = out["first"] = strategy()
        publish.setup(s, grid, 2, 120)
        st = stages.RoundState(1, ArrayRecord(app_code.Net().state_dict()), RoundReport(1))
        stages.open_round(s, st, None)
        stages.train(s, st, grid, ConfigRecord({"lr": 0.5}), 120)
        if stop == "one-batch":
            s.ledger.submit_batch(s.task_id, 1, st.subs[:n_subs], close=False)
            return
        stages.submit(s, st)
        reveal.reveal(s, st, grid, 120)
        stages.assign(s, st)
        stages.verify(s, st, grid, None, 120)
        s.ledger.submit_votes(s.task_id, 1, st.votes[:n_votes])

    def resumed(grid: Grid, context: Context) -> None:
        first = out["first"]
        s = out["second"] = strategy(ledger=first.ledger, task_id=first.task_id, resume=True)
        out["result"] = s.start(grid=grid, initial_arrays=ArrayRecord(
            app_code.Net().state_dict()), train_config=ConfigRecord({"lr": 0.5}), num_rounds=2)

    for main in (stopped, resumed):
        server = ServerApp()
        server.main()(main)
        run_simulation(server_app=server, client_app=_client(), num_supernodes=4,
                       backend_config={"client_resources": {"num_cpus": 1}})
        if main is stopped:
            ledger, task = out["first"].ledger, out["first"].task_id
            before = _submitted(ledger, task, 1)
            votes = _events(ledger, "VoteCast", task, 1)
            assert (ledger.round(task, 1).state, len(before), len(votes)) == STOPS[stop]
    s = out["second"]
    assert "result" in out, "the resumed ServerApp did not finish"
    assert [r.server_round for r in s.reports] == [1, 2]
    assert ("close" in s.reports[0].phase_seconds) == (stop == "one-batch")
    assert _submitted(ledger, task, 1) == before
    cast = [(int(e.args["submission"]), str(e.args["verifier"]).lower())
            for e in _events(ledger, "VoteCast", task, 1)]
    assert len(cast) == len(set(cast)) == 3 * n_subs == s.reports[0].votes
    # the resumed run asked for, and relayed, only the votes that were missing
    assert s.reports[0].verify_metrics["votes"] == 3 * n_subs - n_votes
    assert len(s.reports[0].submissions) == n_subs and len(s.reports[1].submissions) == 4
    _check_money(ledger, task)
    audits = audit_ledger(ledger, s.open_store(), stream=None)
    assert [a.round for a in audits] == [1, 2] and all(a.ok for a in audits)

"""Helpers of the fault tests (issue 13, Faults): a chain node and an IPFS daemon that can be
killed and started again on the same port and data, a progress stream that fires a fault when
the strategy prints a chosen phase line, and the money check: every wei that went into the
contract (escrow, deposits) is in exactly one place afterwards, and nothing was paid twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from coopflower.client import coop_mod
from coopflower.ledger.nodes import ANVIL_BIN, NodeToolMissing, _wait_rpc, free_port
from tests import plugin_misfits as app_code

__all__ = ["RestartableAnvil", "RestartableIpfs", "Tripwire", "money_adds_up", "simulate"]


def simulate(tmp_path: Path, make: Callable[[], Any], rounds: int, nodes: int,
             mods: Sequence[Any] = ()) -> dict[str, Any]:
    """One Flower simulation of ``nodes`` SuperNodes running ``tests.plugin_misfits``' own
    train and evaluate behind ``mods`` and ``coop_mod``; its ServerApp starts ``make()``'s
    strategy from the app's initial model. Returns the strategy (``"s"``) and its Result
    (``"result"``) or the error it raised (``"error"``: the fault under test)."""
    os.environ["COOPFLOWER_HOME"] = str(tmp_path / "home")  # the nodes keep their keys
    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        s = out["s"] = make()
        try:
            out["result"] = s.start(grid=grid, train_config=ConfigRecord({"lr": 0.5}),
                                    initial_arrays=ArrayRecord(app_code.Net().state_dict()),
                                    num_rounds=rounds, timeout=120)
        except Exception as exc:  # kept for the test's assertions
            out["error"] = exc

    client = ClientApp(mods=[*mods, coop_mod])
    client.train()(app_code.train)
    client.evaluate()(app_code.evaluate)
    run_simulation(server_app=server, client_app=client, num_supernodes=nodes,
                   backend_config={"client_resources": {"num_cpus": 1}})
    return out


class RestartableAnvil:
    """anvil with ``--state FILE`` on a fixed loopback port: ``stop`` kills it (SIGTERM: it
    dumps its state on exit; SIGKILL: only what the last ``--state-interval`` dump holds),
    ``start`` brings it back with that state (blocks, logs and transactions included)."""

    def __init__(self, workdir: Path, state_interval: int | None = None) -> None:
        if not ANVIL_BIN.exists():
            raise NodeToolMissing(f"anvil not found at {ANVIL_BIN}: bash scripts/setup.sh --node")
        self.dir, self.port = workdir, free_port()
        self.state, self.state_interval = workdir / "anvil-state.json", state_interval
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.private_keys: list[str] = []
        self.starts = 0

    def start(self) -> None:
        cmd = [str(ANVIL_BIN), "--host", "127.0.0.1", "--port", str(self.port),
               "--state", str(self.state), "--preserve-historical-states"]
        if self.state_interval:
            cmd += ["--state-interval", str(self.state_interval)]
        self.starts += 1
        log = self.dir / f"anvil-{self.starts}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.dir, start_new_session=True)
        _wait_rpc(self.url, self.proc, log, 30.0, "anvil")
        self.private_keys = re.findall(r"\(\d+\) (0x[0-9a-fA-F]{64})", log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None

    def __enter__(self) -> RestartableAnvil:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(signal.SIGKILL)


class RestartableIpfs:
    """A js-ipfs daemon (the Kubo RPC API) on a fixed loopback port and a repository on disk
    that outlives it: ``stop`` kills it, ``start`` runs it again on the same blocks."""

    def __init__(self, workdir: Path) -> None:
        from coopflower.storage.daemon import _configure, find_jsipfs

        self.node, self.cli = find_jsipfs()
        self.repo = workdir / "ipfs-repo"
        self.env = dict(os.environ, IPFS_PATH=str(self.repo), IPFS_MONITORING="0")
        subprocess.run([self.node, str(self.cli), "init", "--profile", "test"], env=self.env,
                       capture_output=True, timeout=120, check=True)
        self.port = free_port()
        _configure(self.repo, self.port, free_port(), free_port())
        self.url, self.dir = f"http://127.0.0.1:{self.port}", workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> None:
        import httpx

        self.starts += 1
        log = self.dir / f"ipfs-{self.starts}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([self.node, str(self.cli), "daemon", "--offline"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"js-ipfs exited: {log.read_text()[-2000:]}")
            try:
                if httpx.post(f"{self.url}/api/v0/version", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"js-ipfs did not answer in {timeout} s: {log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)
        self.proc = None
        import shutil

        for lock in self.repo.rglob("*.lock"):  # a killed daemon leaves its repo locked
            if lock.is_dir():
                shutil.rmtree(lock, ignore_errors=True)
            else:
                lock.unlink(missing_ok=True)

    def __enter__(self) -> RestartableIpfs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Tripwire:
    """A progress stream (``CoordinatedStrategy(progress=...)``) that runs ``fault`` once,
    in the strategy's own thread, right after it prints a line containing ``marker``; a
    ``then`` callback runs in a background thread after ``delay`` seconds (a restart)."""

    def __init__(self, marker: str, fault: Callable[[], None],
                 then: Callable[[], None] | None = None, delay: float = 2.0) -> None:
        self.marker, self.fault, self.then, self.delay = marker, fault, then, delay
        self.fired = threading.Event()
        self.lines: list[str] = []
        self.restarted: threading.Thread | None = None

    def write(self, text: str) -> int:
        self.lines.append(text)
        if self.marker in text and not self.fired.is_set():
            self.fired.set()
            self.fault()
            if self.then is not None:
                def later() -> None:
                    time.sleep(self.delay)
                    self.then()  # type: ignore[misc]
                self.restarted = threading.Thread(target=later, daemon=True)
                self.restarted.start()
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.lines)


def _sum(events: list[Any], key: str = "amount", **match: Any) -> int:
    return sum(int(e.args[key]) for e in events
               if all(str(e.args[k]).lower() == str(v).lower() for k, v in match.items()))


def money_adds_up(ledger: Any) -> dict[str, int]:
    """Check, from the contract's events and balances, that every wei that went in is held in
    exactly one place and nothing was paid twice; returns the totals.

    - ether in (escrows, funding, deposits paid by a relayer, top-ups) less what was withdrawn
      equals the contract's ether balance, which equals what it owes (balances, escrows, round
      reservations, deposits);
    - each task's escrow is what was published and funded, less each round's reservation, plus
      what settlement returned and the penalties, less the refund at closing;
    - each participant's deposit is its registered deposit less its penalties and release;
    - each account's balance is what it was paid, released and refunded, less withdrawals;
    - each round settled at most once, each submission once, and its ``Paid`` events add up to
      its ``RoundSettled.paid`` (a settled round's reservation is paid or returned, not both).
    """
    ev = {n: ledger.events(n) for n in (
        "TaskPublished", "TaskFunded", "TaskClosed", "Registered", "RoundOpened", "RoundSettled",
        "SubmissionSettled", "Paid", "Penalized", "DepositReleased", "Withdrawn", "ToppedUp")}
    tasks = [int(e.args["taskId"]) for e in ev["TaskPublished"]]
    regs = ev["Registered"]
    relayed = sum(int(e.args["deposit"]) for e in regs
                  if str(e.args["payer"]).lower() != str(e.args["participant"]).lower())
    own = Counter({str(e.args["participant"]).lower(): int(e.args["deposit"]) for e in regs
                   if str(e.args["payer"]).lower() == str(e.args["participant"]).lower()})
    ether_in = (_sum(ev["TaskPublished"], "escrow") + _sum(ev["TaskFunded"]) + relayed
                + _sum(ev["ToppedUp"]) - _sum(ev["Withdrawn"]))
    owed = 0
    for t in tasks:
        info = ledger.task(t)
        opened = {int(e.args["round"]): int(e.args["reserved"]) for e in ev["RoundOpened"]
                  if int(e.args["taskId"]) == t}
        settled = [e for e in ev["RoundSettled"] if int(e.args["taskId"]) == t]
        rounds = Counter(int(e.args["round"]) for e in settled)
        assert all(n == 1 for n in rounds.values()), f"task {t}: a round settled twice {rounds}"
        assert len(opened) == info.round_count
        returned = 0
        for e in settled:
            rnd = int(e.args["round"])
            paid = _sum(ev["Paid"], taskId=t, round=rnd)
            assert paid == int(e.args["paid"]), f"task {t} round {rnd}: Paid events {paid}"
            assert paid + int(e.args["returned"]) == opened[rnd]
            assert ledger.round(t, rnd).reserved == 0
            subs = Counter(int(s.args["submission"]) for s in ev["SubmissionSettled"]
                           if int(s.args["taskId"]) == t and int(s.args["round"]) == rnd)
            n = ledger.round(t, rnd).n_submissions
            assert sorted(subs) == list(range(n)) and set(subs.values()) <= {1}, subs
            returned += int(e.args["returned"])
        reserved = sum(ledger.round(t, r).reserved for r in opened if r not in rounds)
        assert reserved == sum(v for r, v in opened.items() if r not in rounds)
        escrow = (_sum(ev["TaskPublished"], "escrow", taskId=t) + _sum(ev["TaskFunded"], taskId=t)
                  - sum(opened.values()) + returned + _sum(ev["Penalized"], taskId=t)
                  - _sum(ev["TaskClosed"], "refund", taskId=t))
        assert info.escrow == escrow, f"task {t}: escrow {info.escrow}, the events say {escrow}"
        deposits = 0
        for p, acc in ledger.accounts(t, ledger.participants(t)).items():
            want = (_sum(regs, "deposit", taskId=t, participant=p)
                    - _sum(ev["Penalized"], taskId=t, account=p)
                    - _sum(ev["DepositReleased"], taskId=t, participant=p))
            assert acc.deposit == want, f"task {t}: {p} holds {acc.deposit}, events say {want}"
            deposits += acc.deposit
        owed += info.escrow + reserved + deposits
    people = {str(e.args["participant"]).lower() for e in regs}
    people |= {str(e.args["initiator"]).lower() for e in ev["TaskPublished"]}
    for a in people:
        want = (_sum(ev["Paid"], account=a) + _sum(ev["DepositReleased"], participant=a)
                + sum(int(c.args["refund"]) for c in ev["TaskClosed"]
                      if ledger.task(int(c.args["taskId"])).initiator.lower() == a)
                + _sum(ev["ToppedUp"], account=a) - _sum(ev["Withdrawn"], account=a) - own[a])
        have = ledger.balance_of(a)
        assert have == want, f"{a}: balance {have}, the events say {want}"
        owed += have
    held = ledger.chain.balance(ledger.address)
    assert held == ether_in == owed, f"contract holds {held}, in {ether_in}, owes {owed}"
    return {"held": held, "paid": _sum(ev["Paid"]), "penalized": _sum(ev["Penalized"]),
            "released": _sum(ev["DepositReleased"])}

"""An emulated arm64 SuperNode, as on a Raspberry Pi, beside native ones in the loopback lab.

Builds (once, cached under ``~/.cache/coopflower/arm64-root``) an arm64 Debian bookworm root
with ``debootstrap`` under ``qemu-user-static`` (binfmt_misc), installs coopflower's node side
in a venv there (``/opt/node``: Debian's Python 3.11, ``edge/requirements.txt`` and the
breastcancer app's scikit-learn as aarch64 wheels that pip downloads on the host, and torch,
see ``--torch``), then runs the loopback deployment of ``tests/test_thirdparty_deployment.py``
(a ``flower-superlink``, ``--native`` native ``flower-supernode`` processes and one
``flower-supernode`` running in the arm64 root, anvil, a js-ipfs daemon or the embedded
store) through one coordinated round of the breastcancer app (``tests/apps/breastcancer``,
patched by its ``coop.diff``).

Not part of the test suite: a first run builds the root (~2.5 min) and installs ~0.6 GB of
wheels under emulation. Needs root (debootstrap, chroot, mounts).

    python bench/arm64_node.py                 # build or reuse the root, run one round
    python bench/arm64_node.py --rebuild       # build the root and the venv again

One progress line per phase on stderr; the last stdout line is one JSON object: seconds of the
root build and the install (0 when cached), each SuperNode's start, the torch import, and each
message the emulated node and a native one handled (Flower's ``Receiving`` to ``Sending`` log
lines: a fresh ClientApp process, imports and the handler), with the round's phase seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arm64_root import (  # noqa: E402
    CACHE,
    NODE_VENV,
    VENV_BIN,
    Arm64LabError,
    build_root,
    chroot_env,
    ensure_emulation,
    install_node,
    mounted,
    resolve_torch,
    say,
    sh,
    sync_coopflower,
)

# ---------------------------------------------------------------- the loopback lab

class Lab:
    """Processes this run started, each in its own session, their output stamped by line
    (seconds since the lab started) into ``logs/<name>.log``; stopped by process group."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.t0 = logs, time.monotonic()
        self.procs: list[tuple[subprocess.Popen[bytes], threading.Thread]] = []
        self.lines: dict[str, list[tuple[float, str]]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        lines = self.lines.setdefault(name, [])

        def pump() -> None:
            with open(self.logs / f"{name}.log", "w") as fh:
                for raw in proc.stdout or ():
                    t, text = time.monotonic() - self.t0, raw.decode(errors="replace").rstrip()
                    lines.append((t, text))
                    fh.write(f"{t:9.2f} {text}\n")
                    fh.flush()

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self.procs.append((proc, thread))
        return proc

    def wait_line(self, name: str, pattern: str, proc: subprocess.Popen[bytes],
                  timeout: float) -> float:
        """Seconds since the lab started at which ``name`` printed ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, text in list(self.lines.get(name, ())):
                if re.search(pattern, text):
                    return t
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n".join(x for _, x in self.lines.get(name, [])[-30:])
        raise Arm64LabError(f"{name} printed no {pattern!r} in {timeout} s "
                            f"(exit {proc.poll()}):\n{tail}")

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            for sig, wait in ((15, 10), (9, 5)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        for _, thread in self.procs:
            thread.join(5)


def message_seconds(lines: list[tuple[float, str]]) -> dict[str, list[float]]:
    """Per message type, the seconds from Flower's ``Receiving: T message`` to its
    ``Sending: T message`` (a ClientApp process's start, imports and handler)."""
    open_: dict[str, list[float]] = {}
    out: dict[str, list[float]] = {}
    for t, text in lines:
        if m := re.search(r"(Receiving|Sending): (\S+) message", text):
            kind, mtype = m.groups()
            if kind == "Receiving":
                open_.setdefault(mtype, []).append(t)
            elif open_.get(mtype):
                out.setdefault(mtype, []).append(round(t - open_[mtype].pop(0), 2))
    return out


def start_nodes(lab: Lab, root: Path, run: Path, port: int, native: int,
                base_env: dict[str, str]) -> dict[str, float]:
    """``native`` native SuperNodes and one emulated arm64 one (the last partition); returns
    each one's start seconds (process start to its ``SuperNode ID`` line)."""
    from coopflower.ledger.nodes import free_port

    total, procs = native + 1, []
    inside = Path("/") / run.relative_to(root)  # the same folder, as the emulated node sees it
    for i in range(total):
        emulated = i == native
        where = inside if emulated else run
        args = ["--insecure", "--superlink", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                "--port", str(free_port()), "--node-config",
                f"partition-id={i} num-partitions={total} key-file='{where}/keys/node{i}.json'"]
        name = "supernode-arm64" if emulated else f"supernode{i}"
        if emulated:
            env_args = chroot_env({"FLWR_HOME": f"{inside}/flwr-arm64",
                                   "COOPFLOWER_HOME": f"{inside}/coop-arm64"})
            cmd = ["chroot", str(root), *env_args, f"{NODE_VENV}/bin/flower-supernode", *args]
        else:
            cmd = [str(VENV_BIN / "flower-supernode"), *args]
        procs.append((name, lab.start(name, cmd, base_env), time.monotonic() - lab.t0))
    return {name: round(lab.wait_line(name, r"SuperNode ID", proc,
                                      600) - t, 2) for name, proc, t in procs}


def run_round(root: Path, native: int, store_kind: str) -> dict[str, Any]:
    """The loopback deployment through one coordinated round of the breastcancer app."""
    from coopflower.ledger.nodes import anvil, free_port
    from coopflower.storage.daemon import ipfs_daemon
    from tests.test_thirdparty_apps import _copy

    (root / "tmp").mkdir(exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="arm64-lab-", dir=root / "tmp"))
    logs = run / "logs"
    for d in (logs, run / "flwr", run / "keys"):
        d.mkdir()
    env = {**os.environ, "FLWR_HOME": str(run / "flwr"), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "COOPFLOWER_HOME":
           str(run / "coop"), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for var in ("COOPFLOWER_CHAIN", "COOPFLOWER_CHAIN_KEY", "COOPFLOWER_CONTRACT",
                "COOPFLOWER_STORE", "COOPFLOWER_REPORT", "APP_RESULT_FILE"):
        env.pop(var, None)
    app, report, lab = _copy(run, "breastcancer", True), run / "report.json", Lab(logs)
    out: dict[str, Any] = {"logs": str(logs)}
    with ExitStack() as stack:
        stack.callback(lab.stop)
        chain = stack.enter_context(anvil())
        if store_kind == "ipfs":
            store = stack.enter_context(ipfs_daemon(startup_timeout=90.0, verbose=False))
            stack.enter_context(mounted(root))
        else:  # the embedded store: one folder, bound into the root at the same path
            (run / "store").mkdir()
            store = str(run / "store")
            stack.enter_context(mounted(root, run / "store"))
        port = free_port()
        link_env = {**env, "COOPFLOWER_CHAIN": chain.url, "COOPFLOWER_STORE": store,
                    "COOPFLOWER_CHAIN_KEY": chain.private_keys[0],
                    "COOPFLOWER_REPORT": str(report)}
        say("superlink: start")
        link = lab.start("superlink", [
            str(VENV_BIN / "flower-superlink"), "--insecure", "--isolation", "subprocess",
            "--disable-runtime-dependency-installation", "--database", str(run / "state.db"),
            "--host", "127.0.0.1", "--port", str(port)], link_env)
        _wait_port(port, link, 120)
        say(f"supernodes: {native} native and one emulated arm64")
        out["supernode_start_s"] = start_nodes(lab, root, run, port, native, env)
        say(f"supernodes up: {out['supernode_start_s']}")
        (run / "flwr" / "config.toml").write_text(
            '[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
            f'address = "127.0.0.1:{port}"\ninsecure = true\n')
        say("flwr run: one coordinated round of the breastcancer app")
        t = time.perf_counter()
        flwr = lab.start("flwr-run", [str(VENV_BIN / "flwr"), "run", str(app), "deploy",
                                      "--run-config", "num-server-rounds=1", "--stream"], env)
        for phase in _follow(lab, "flwr-run", flwr, timeout=3600):
            say(f"  {phase}")
        out["flwr_run_s"] = round(time.perf_counter() - t, 2)
        out["flwr_run_exit"] = flwr.returncode
        out["messages_s"] = {n: message_seconds(lab.lines.get(n, []))
                             for n in lab.lines if n.startswith("supernode")}
    if not report.exists():
        raise Arm64LabError(f"the ServerApp wrote no report (exit {out['flwr_run_exit']}); "
                            f"logs in {logs}")
    doc = json.loads(report.read_text())
    out["rounds"] = [{"wall_s": round(r["wall_seconds"], 2), "accepted": r["accepted"],
                      "submissions": r["submissions"], "votes": r["votes"],
                      "failures": r["failures"],
                      "phase_seconds": {k: round(v, 2) for k, v in r["phase_seconds"].items()}}
                     for r in doc["rounds"]]
    out["central_accuracy"] = {r: round(float(m["accuracy"]), 3)
                               for r, m in doc.get("central", {}).items()}
    return out


def _follow(lab: Lab, name: str, proc: subprocess.Popen[bytes],
            timeout: float) -> Iterator[str]:
    """The coordinated round's phase lines of the streamed ServerApp log, as they come."""
    seen, deadline, done = 0, time.monotonic() + timeout, False
    while not done:
        done = proc.poll() is not None  # then one last pass over what it printed
        if done:
            time.sleep(1.0)
        lines = lab.lines.get(name, [])
        for _, text in lines[seen:]:
            if re.search(r"\[round \d+/\d+\]|ERROR|Error:", text):
                yield text.strip()[:160]
        seen = len(lines)
        if time.monotonic() > deadline:
            raise Arm64LabError(f"flwr run did not finish in {timeout} s")
        time.sleep(0.5)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise Arm64LabError(f"flower-superlink did not listen on {port} (exit {proc.poll()})")


def torch_import_s(root: Path, repeat: int = 3) -> dict[str, float]:
    """Median seconds of a fresh ``import torch``, emulated arm64 and native."""
    code = "import torch; torch.nn.Linear(30, 16)(torch.zeros(8, 30)).sum().item()"
    runs: dict[str, list[float]] = {"emulated": [], "native": []}
    with mounted(root):
        for _ in range(repeat):
            for kind, cmd in (("emulated", ["chroot", str(root), *chroot_env(),
                                            f"{NODE_VENV}/bin/python", "-c", code]),
                              ("native", [sys.executable, "-c", code])):
                t = time.perf_counter()
                sh(cmd)
                runs[kind].append(time.perf_counter() - t)
    return {k: round(statistics.median(v), 2) for k, v in runs.items()}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The emulated node against the first native one, message type by message type."""
    msgs = result["lab"]["messages_s"]
    emu, nat = msgs.get("supernode-arm64", {}), msgs.get("supernode0", {})
    return {t: {"emulated_s": sum(emu[t]), "native_s": sum(nat.get(t, [])),
                "ratio": round(sum(emu[t]) / max(sum(nat.get(t, [])), 1e-9), 1)}
            for t in emu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=CACHE / "arm64-root")
    ap.add_argument("--native", type=int, default=3, help="native SuperNodes beside it")
    ap.add_argument("--torch", choices=["auto", "cpu-index", "debian"], default="auto",
                    help="torch for the node: PyTorch's CPU wheel index (as edge/install.sh "
                         "on a Pi), Debian's python3-torch (1.13.1), or auto: the index when "
                         "it is reachable, else Debian's")
    ap.add_argument("--store", choices=["ipfs", "embedded"], default="ipfs")
    ap.add_argument("--rebuild", action="store_true", help="build the root and venv again")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise Arm64LabError("needs root: debootstrap, chroot and mounts")
    ensure_emulation()
    result: dict[str, Any] = {"store": args.store, "native": args.native}
    result["root_build_s"] = round(build_root(args.root, args.rebuild), 1)
    result["torch"] = torch = resolve_torch(args.torch, args.root)
    with mounted(args.root):
        result["install_s"], result["sizes_mb"] = install_node(args.root, torch, args.rebuild)
    sync_coopflower(args.root)
    say("torch import: emulated vs native")
    result["torch_import_s"] = torch_import_s(args.root)
    say(f"torch import: {result['torch_import_s']}")
    result["lab"] = run_round(args.root, args.native, args.store)
    result["emulated_vs_native"] = summary(result)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

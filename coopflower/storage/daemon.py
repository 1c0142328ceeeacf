"""Start a real IPFS daemon (js-ipfs 0.66.1 from ``tools/ipfs``) on loopback for tests and
local runs.

No kubo binary installs from the package registries here; js-ipfs serves the same Kubo RPC
API. The daemon gets a fresh repository (``jsipfs init --profile test``) in a temporary
``IPFS_PATH``, its API and gateway on free 127.0.0.1 ports, and runs ``--offline``::

    with ipfs_daemon() as url:
        store = KuboStore(url)

Install the tool with ``scripts/setup.sh --node`` (or ``npm install`` in ``tools/ipfs``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from coopflower.storage.errors import DaemonError

__all__ = ["ipfs_daemon", "find_jsipfs", "DEFAULT_TOOLS_DIR"]

DEFAULT_TOOLS_DIR = (
    Path(os.environ.get("COOPFLOWER_TOOLS", Path(__file__).resolve().parents[2] / "tools"))
    / "ipfs"
)
"""``tools/ipfs`` of the repository (where ``scripts/setup.sh --node`` installs js-ipfs), or
``$COOPFLOWER_TOOLS/ipfs`` (the same variable the chain node launchers read)."""

_CLI = Path("node_modules") / "ipfs" / "src" / "cli.js"


def _log(message: str) -> None:
    print(f"[ipfs] {message}", file=sys.stderr, flush=True)


def find_jsipfs(tools_dir: Path | None = None) -> tuple[str, Path]:
    """Locate ``node`` and js-ipfs's ``cli.js``.

    Args:
        tools_dir: the npm project holding js-ipfs (default ``$COOPFLOWER_IPFS_TOOLS``, else
            :data:`DEFAULT_TOOLS_DIR`).

    Returns:
        (path of node, path of cli.js).

    Raises:
        DaemonError: node or js-ipfs is not installed, with the command that installs it.
    """
    if tools_dir is None:
        env = os.environ.get("COOPFLOWER_IPFS_TOOLS")
        tools_dir = Path(env) if env else DEFAULT_TOOLS_DIR
    node = shutil.which("node")
    if node is None:
        raise DaemonError("node (Node.js >= 18) is not on PATH; js-ipfs needs it")
    cli = Path(tools_dir) / _CLI
    if not cli.is_file():
        raise DaemonError(
            f"js-ipfs is not installed: {cli} is missing. Run `scripts/setup.sh --node` "
            f"(or `npm install` in {tools_dir})"
        )
    return node, cli


def _free_port() -> int:  # as ledger.nodes.free_port, without importing the web3 stack
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _configure(repo: Path, api: int, gateway: int, rpc: int) -> None:
    """Point the API, gateway and gRPC listeners at loopback ports; no bootstrap peers."""
    path = repo / "config"
    config = json.loads(path.read_text())
    addresses = config.setdefault("Addresses", {})
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api}"
    addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{gateway}"
    addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{rpc}"
    addresses["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    config["Bootstrap"] = []
    path.write_text(json.dumps(config, indent=2))


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the daemon's process group, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextmanager
def ipfs_daemon(
    tools_dir: Path | None = None,
    startup_timeout: float = 30.0,
    verbose: bool = True,
) -> Iterator[str]:
    """Run a js-ipfs daemon on loopback for the duration of the ``with`` block.

    Args:
        tools_dir: the npm project holding js-ipfs (default ``tools/ipfs``).
        startup_timeout: seconds to wait for ``/api/v0/version`` to answer.
        verbose: print a line per step (init, start, ready, stop) with timings.

    Yields:
        The RPC API's base URL, e.g. ``http://127.0.0.1:41234``.

    Raises:
        DaemonError: the tool is missing, ``init`` fails, or the daemon does not come up.
    """
    node, cli = find_jsipfs(tools_dir)
    workdir = Path(tempfile.mkdtemp(prefix="coopflower-ipfs-"))
    repo = workdir / "repo"
    log_path = workdir / "daemon.log"
    env = dict(os.environ, IPFS_PATH=str(repo), IPFS_MONITORING="0")
    proc: subprocess.Popen[bytes] | None = None
    say = _log if verbose else (lambda _m: None)
    try:
        t0 = time.monotonic()
        init = subprocess.run(
            [node, str(cli), "init", "--profile", "test"],
            env=env, capture_output=True, timeout=120, check=False,
        )
        if init.returncode != 0:
            raise DaemonError(
                f"jsipfs init failed ({init.returncode}): "
                f"{init.stderr.decode(errors='replace')[-1500:]}"
            )
        say(f"repository initialised in {time.monotonic() - t0:.1f} s ({repo})")
        api = _free_port()
        _configure(repo, api, _free_port(), _free_port())
        url = f"http://127.0.0.1:{api}"
        t1 = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [node, str(cli), "daemon", "--offline"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = t1 + startup_timeout
        while True:
            if proc.poll() is not None:
                raise DaemonError(
                    f"the js-ipfs daemon exited with {proc.returncode} during start-up:\n"
                    f"{_tail(log_path)}"
                )
            try:
                r = httpx.post(f"{url}/api/v0/version", timeout=2.0)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"the js-ipfs daemon did not answer {url}/api/v0/version within "
                    f"{startup_timeout:.0f} s:\n{_tail(log_path)}"
                )
            time.sleep(0.2)
        say(f"daemon {r.json().get('Version', '?')} ready at {url} in "
            f"{time.monotonic() - t1:.1f} s (pid {proc.pid})")
        yield url
    finally:
        if proc is not None:
            _stop(proc)
            say(f"daemon stopped (pid {proc.pid})")
        shutil.rmtree(workdir, ignore_errors=True)

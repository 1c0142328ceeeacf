"""Pytest fixtures for a real IPFS daemon (js-ipfs 0.66.1) on loopback.

Use in a test module::

    from tests.fixtures_ipfs import ipfs_daemon  # noqa: F401

    def test_something(ipfs_daemon: str) -> None:   # the Kubo RPC URL
        ...

The fixture installs js-ipfs into ``tools/ipfs`` (``npm install``, pinned by its lock file)
when it is missing. One daemon serves the whole session (``shared_ipfs_daemon``, registered by
``tests/conftest.py``; it starts in 3-11 s, 24 s at load 9, and each module started its own):
content addressing keeps tests apart, a test that kills or restarts a daemon
(``tests.fixtures_faults.RestartableIpfs``) runs its own.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from coopflower.storage.daemon import DEFAULT_TOOLS_DIR, find_jsipfs
from coopflower.storage.daemon import ipfs_daemon as _run_daemon
from coopflower.storage.errors import DaemonError

__all__ = ["ipfs_daemon", "shared_ipfs_daemon", "ensure_jsipfs"]


def ensure_jsipfs() -> None:
    """Install js-ipfs into tools/ipfs with npm if it is not there yet."""
    try:
        find_jsipfs(DEFAULT_TOOLS_DIR)
        return
    except DaemonError:
        pass
    npm = shutil.which("npm")
    if npm is None:
        raise DaemonError("js-ipfs is not installed and npm is not on PATH to install it")
    t0 = time.monotonic()
    print(f"[ipfs] installing js-ipfs into {DEFAULT_TOOLS_DIR} (npm install, 1.5-4 min)")
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=DEFAULT_TOOLS_DIR, check=True, timeout=900,
    )
    print(f"[ipfs] installed in {time.monotonic() - t0:.0f} s")
    find_jsipfs(DEFAULT_TOOLS_DIR)


@pytest.fixture(scope="session")
def shared_ipfs_daemon() -> Iterator[str]:
    """The session's js-ipfs daemon; yields its Kubo RPC API URL."""
    ensure_jsipfs()
    # 3-11 s measured; a loaded CI machine gets more room than the 30 s default
    with _run_daemon(startup_timeout=90.0, verbose=False) as url:
        yield url


@pytest.fixture(scope="module")
def ipfs_daemon(shared_ipfs_daemon: str) -> str:
    """A js-ipfs daemon for this test module (the session's); its Kubo RPC API URL."""
    return shared_ipfs_daemon

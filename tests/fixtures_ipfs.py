"""Pytest fixtures for a real IPFS daemon (js-ipfs 0.66.1) on loopback.

Use in a test module::

    from tests.fixtures_ipfs import ipfs_daemon  # noqa: F401

    def test_something(ipfs_daemon: str) -> None:   # the Kubo RPC URL
        ...

The fixture installs js-ipfs into ``tools/ipfs`` (``npm install``, pinned by its lock file)
when it is missing, starts one daemon per test module, and stops it afterwards.
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

__all__ = ["ipfs_daemon", "ensure_jsipfs"]


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


@pytest.fixture(scope="module")
def ipfs_daemon() -> Iterator[str]:
    """A js-ipfs daemon for this test module; yields its Kubo RPC API URL."""
    ensure_jsipfs()
    # 3-11 s measured; a loaded CI machine gets more room than the 30 s default
    with _run_daemon(startup_timeout=90.0) as url:
        yield url

"""Shared fixtures. Real parts only: the in-process EVM, anvil, a js-ipfs daemon, MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
# No traffic beyond loopback from the suite: never try the hub, whatever is installed.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO

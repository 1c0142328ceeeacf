"""Shared fixtures. Real parts only: the in-process EVM, anvil, a js-ipfs daemon, MNIST."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from coopflower.ledger import Chain
    from coopflower.ledger.nodes import ChainNode

from tests.fixtures_ipfs import shared_ipfs_daemon  # noqa: F401 - one daemon a session

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
# No traffic beyond loopback from the suite: never try the hub, whatever is installed.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def run_identity() -> Iterator[None]:
    """Messages built outside a Flower run need a task identity (run, node and task ids)."""
    from flwr.supercore.task_identity import TaskIdentity

    names = ("_run_id", "_node_id", "_task_id")
    old = {n: getattr(TaskIdentity, n) for n in names}
    for n in names:
        setattr(TaskIdentity, n, 1)
    yield
    for n, v in old.items():
        setattr(TaskIdentity, n, v)


@pytest.fixture(scope="module", params=["embedded", pytest.param("anvil", marks=pytest.mark.node)])
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """Each test of a module twice: on the embedded EVM and on anvil (a real JSON-RPC node);
    the module imports ``anvil_node`` from ``tests.fixtures_chain``."""
    from coopflower.ledger import connect

    if request.param == "embedded":
        yield connect()
    else:
        node: ChainNode = request.getfixturevalue("anvil_node")
        yield connect(node.url, private_key=node.private_keys[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under ``COOPFLOWER_REQUIRE_TOOLS=1`` (set by scripts/test.sh, which has just installed
    the npm tools) a skipped test is a failure: a real component that is missing must not pass
    as a skip."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("COOPFLOWER_REQUIRE_TOOLS") == "1":
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped, but scripts/test.sh requires every real component: {reason}"

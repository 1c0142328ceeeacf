"""Static analysis of contracts/CoopLedger.sol with slither, fed by the pinned solc-js.

slither (``.venv/tools/slither``, installed by scripts/setup.sh in an environment of its own:
slither-analyzer requires web3<8) compiles the contract through ``scripts/solc``, a solc command
line over tools/evm's solc-js, with the settings of contracts/compile.cjs. Every high or medium
finding must be listed, with its explanation, in docs/ledger.md's "Static analysis" table, and
every finding listed there must still be reported (the table says what is true of the contract
as it is).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SLITHER = Path(os.environ.get("COOPFLOWER_SLITHER", REPO / ".venv/tools/slither/bin/slither"))
SOLC = REPO / "scripts/solc"
DOC = REPO / "docs/ledger.md"
# contracts/compile.cjs's settings, so that slither analyses the contract that is deployed
SOLC_ARGS = "--via-ir --optimize --optimize-runs 800 --evm-version paris"
GATED = ("High", "Medium")

pytestmark = pytest.mark.node


def _finding_key(result: dict[str, Any]) -> tuple[str, str]:
    """(detector, what it is about), e.g. ("uninitialized-local",
    "CoopLedger.settle(uint256,uint32).paid"): the description up to its source location, so
    that a finding keeps its key when lines move."""
    return result["check"], result["description"].split(" (contracts/")[0].strip()


def _documented() -> dict[tuple[str, str], tuple[str, str]]:
    """Returns: the rows of docs/ledger.md's "Static analysis" table:
    (detector, element) -> (severity, explanation)."""
    text = DOC.read_text()
    m = re.search(r"^## Static analysis\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "docs/ledger.md has no '## Static analysis' section"
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4 or set(cells[0]) <= {"-", " "}:
            continue
        detector, severity, element, why = cells
        if detector == "detector":  # the header
            continue
        rows[(detector.strip("`"), element.strip("`"))] = (severity, why)
    return rows


@pytest.fixture(scope="module")
def findings() -> list[dict[str, Any]]:
    if not SLITHER.exists():
        pytest.skip(f"slither missing at {SLITHER}: run `bash scripts/setup.sh --node`")
    if not (REPO / "tools/evm/node_modules/solc").exists():
        pytest.skip("solc-js missing: run `bash scripts/setup.sh --node` (installs tools/evm)")
    out = subprocess.run(
        [str(SLITHER), "contracts/CoopLedger.sol", "--solc", str(SOLC), "--solc-args", SOLC_ARGS,
         "--json", "-", "--disable-color"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    report = json.loads(out.stdout)  # slither exits non-zero when it finds anything
    assert report["success"], f"slither failed: {report.get('error')}\n{out.stderr[-3000:]}"
    return list(report.get("results", {}).get("detectors", []))


def test_the_wrapper_is_the_pinned_solc_js() -> None:
    if not (REPO / "tools/evm/node_modules/solc").exists():
        pytest.skip("solc-js missing: run `bash scripts/setup.sh --node` (installs tools/evm)")
    pinned = json.loads((REPO / "tools/evm/package.json").read_text())["dependencies"]["solc"]
    out = subprocess.run([str(SOLC), "--version"], capture_output=True, text=True, check=True)
    assert re.search(rf"^Version: {re.escape(pinned)}\+commit\.", out.stdout, re.M), out.stdout


def test_every_high_or_medium_finding_is_explained_in_the_docs(
    findings: list[dict[str, Any]],
) -> None:
    documented = _documented()
    unexplained = [
        f"{r['check']} ({r['impact']}): {r['description'].strip()}"
        for r in findings
        if r["impact"] in GATED and not documented.get(_finding_key(r), ("", ""))[1]
    ]
    assert not unexplained, (
        "slither findings without a row in docs/ledger.md's 'Static analysis' table:\n"
        + "\n".join(unexplained)
    )
    for r in findings:
        if r["impact"] in GATED:
            assert documented[_finding_key(r)][0] == r["impact"], _finding_key(r)


def test_the_docs_list_no_finding_slither_no_longer_reports(
    findings: list[dict[str, Any]],
) -> None:
    reported = {_finding_key(r) for r in findings}
    stale = sorted(set(_documented()) - reported)
    assert not stale, f"docs/ledger.md lists findings slither no longer reports: {stale}"

"""Gradual fusion (Strategy II) through the plugin, over two architectures of a third-party app.

The breastcancer app, after its ``coop.diff``, takes ``fusion.diff``: its MLP gets a width
parameter and two architectures (``FACTORIES``: a narrow and a wide one, alternating by
partition), its handlers build the model the arrays fit, the nodes run the fusion mod and the
server fuses the accepted models with ``make_fusion_aggregate`` on its own half of the held-out
data (each block starting from its contributor's own head, ``block_init="private"``: the
paper's random blocks do not train reliably on 48 samples), evaluating the MetaModel on the
other half. Each contributor continues its own private model; the MetaModel's blob names the
app's architecture keys and no paper model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from tests.test_thirdparty_apps import APPS, NODES, _copy, _simulate, diff_size, on_anvil

pytestmark = [pytest.mark.slow, pytest.mark.node]


def test_the_tabular_app_fuses_two_of_its_own_architectures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from coopflower.blob import unpack_arrays
    from coopflower.ledger import CoopLedger, connect
    from coopflower.storage import open_store

    added, removed = diff_size((APPS / "breastcancer" / "fusion.diff").read_text())
    print(f"\nfusion.diff over coop.diff: {added} lines added, {removed} removed")
    app = _copy(tmp_path, "breastcancer", True)
    subprocess.run(["patch", "-p1", "-s", "-i", "fusion.diff"], cwd=app, check=True)
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    with on_anvil(tmp_path, monkeypatch) as (node, report, store):
        curve = _simulate(app, "bcapp", tmp_path / "result.json")
        doc = json.loads(report.read_text())
        print(f"breastcancer fusion II, central accuracy of the MetaModel by round: {curve}")
        for rnd in doc["rounds"]:
            assert rnd["submissions"] == NODES and rnd["votes"] == 3 * NODES, rnd
            assert not rnd["failures"], rnd["failures"]
            assert rnd["meta_cid"], rnd
        assert run_audit(node.url, doc["contract"], str(store), doc["task"]) == 0

        ledger = CoopLedger.at(connect(node.url, private_key=node.private_keys[1]),
                               doc["contract"])
        blobs = open_store(str(store))
        archs = [unpack_arrays(blobs.get(bytes(e.args["cid"])))[1]["model"]
                 for e in ledger.events("Submitted", task_id=doc["task"])]
        assert sorted(set(archs)) == ["narrow", "wide"], archs
        meta_arrays, _ = unpack_arrays(blobs.get(bytes.fromhex(doc["rounds"][-1]["meta_cid"])))
        keys = {bytes(v.tobytes()).decode() for k, v in meta_arrays.items() if k.endswith(".arch")}
        assert keys <= {"narrow", "wide"} and keys, keys
        assert not any("table" in k or "paper" in k.lower() for k in meta_arrays)
    assert curve["3"] >= 0.85 and curve["1"] >= curve["0"] + 0.3, curve

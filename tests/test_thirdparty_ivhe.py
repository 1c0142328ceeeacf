"""IVHE through the plugin on a third-party app: the shapes32 app (its own unpadded CNN,
functional ReLU, inputs normalised to [-1, 1]) adopts encryption by ``ivhe.diff`` on top of its
``coop.diff``: the IVHE mod with the app's own ``Net`` and validation loader on the nodes, the
task naming the cipherspace accuracy and the declared input range on the server.

Every submission on chain is an encrypted model (its blob parses as an IVHE model of ``Net``'s
structure, and not as plaintext arrays); the verifiers judge in cipherspace; the initiator
decrypts the accepted ones and FedAvg aggregates them; the app's model learns."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coopflower.audit import run_audit
from tests.test_thirdparty_apps import APPS, NODES, _copy, _simulate, diff_size, on_anvil

pytestmark = [pytest.mark.slow, pytest.mark.node]


def test_the_image_app_runs_the_coordinated_round_on_encrypted_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from coopflower.blob import unpack_arrays
    from coopflower.crypto import EncryptedModel
    from coopflower.ledger import CoopLedger, connect
    from coopflower.storage import open_store

    diff = (APPS / "shapes32" / "ivhe.diff").read_text()
    assert diff_size(diff) == (6, 4)  # on top of coop.diff: the IVHE mod, task, range
    app = _copy(tmp_path, "shapes32", True)
    subprocess.run(["patch", "-p1", "-s", "-i", "ivhe.diff"], cwd=app, check=True)
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    with on_anvil(tmp_path, monkeypatch) as (node, report, store):
        curve = _simulate(app, "imgapp", tmp_path / "result.json")
        doc = json.loads(report.read_text())
        print(f"\nshapes32 with IVHE, central accuracy by round: {curve}")
        for rnd in doc["rounds"]:
            assert rnd["submissions"] == NODES and rnd["votes"] == 3 * NODES, rnd
            assert not rnd["failures"], rnd["failures"]
        assert sum(r["accepted"] for r in doc["rounds"]) >= 2 * NODES
        assert run_audit(node.url, doc["contract"], str(store), doc["task"]) == 0

        ledger = CoopLedger.at(connect(node.url, private_key=node.private_keys[1]), doc["contract"])
        blobs = [open_store(str(store)).get(bytes(e.args["cid"]))
                 for e in ledger.events("Submitted", task_id=doc["task"])]
        assert len(blobs) == 3 * NODES
        for blob in blobs:
            enc = EncryptedModel.from_bytes(blob)  # validated: an encrypted model of Net
            assert enc.arch == "Net"
            _, meta = unpack_arrays(blob)
            assert meta["format"].startswith("coopflower-ivhe")
    assert curve["3"] > curve["0"] + 0.3 and curve["3"] >= 0.6, curve

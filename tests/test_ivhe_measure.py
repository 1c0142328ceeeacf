"""A small run of experiments/ivhe_measure.py (--quick): the JSON's keys and sanity, not fixed
numbers; the paper's CNN and two models that are not the paper's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ivhe_measure_small_run(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(REPO / "experiments" / "ivhe_measure.py"), "--json", "--quick",
        "--out", str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "timing repeat 1/1" in proc.stderr and "randomisation bound" in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("acc_plain", "acc_p32", "acc_p128", "time_ratio_elementwise",
                "time_ratio_pairwise", "encrypt_s", "decrypt_s", "ciphertext_bytes_ratio"):
        assert isinstance(out[key], float), key
    for key in ("acc_plain", "acc_p32", "acc_p128", "acc_p128_pairwise", "acc_p128_verifier"):
        assert 0.0 <= out[key] <= 100.0
    assert out["acc_plain"] > 30  # trained, not chance, even at this size
    assert abs(out["acc_p128"] - out["acc_int_p128"]) <= 2.0
    assert out["time_ratio_elementwise"] > 1.2 and out["time_ratio_pairwise"] > 0.7
    assert out["encrypt_s"] > 0 and out["decrypt_s"] > 0
    assert out["ciphertext_bytes_ratio"] == 4.0  # int64 pairs over float32 weights
    sweep = out["randomisation_sweep"]
    assert [r["a_bound"] for r in sweep] == sorted(r["a_bound"] for r in sweep)
    assert sweep[0]["weights_read_off_first_component"] > 0.99  # the leak at small bounds
    assert sweep[-1]["weights_read_off_first_component"] < 0.5
    assert json.loads((tmp_path / "ivhe_measure.json").read_text())["acc_p32"] == out["acc_p32"]
    # the non-paper models beside the paper's: trained, and encryption keeps their accuracy
    models = out["models"]
    assert set(models) == {"paper_table4", "template_cnn", "tabular_mlp"}
    for name in ("template_cnn", "tabular_mlp"):
        m = models[name]
        assert m["input_range"] == [-1.0, 1.0]
        assert m["acc_plain"] > 40, name  # 10 or 2 classes: far above chance
        assert abs(m["acc_encrypted"] - m["acc_plain"]) <= 3.0, name
        assert abs(m["acc_decrypted"] - m["acc_int"]) <= 2.0, name
        assert m["argmax_agreement"] >= 0.95 and m["argmax_agreement_pairwise"] >= 0.95
        assert m["time_ratio_elementwise"] > 1.0 and m["time_ratio_pairwise"] > 0.5, name
    png = (tmp_path / "accuracy_vs_randomisation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

"""bench/dishonest_verifiers.py at a tiny size: the JSON's shape, an honest federation decides
every model right, and colluders who hold the majority of a pool flip decisions and lose
deposits (the real contract on the embedded EVM)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "dishonest_verifiers.py"


def test_the_benchmark_prints_its_table_as_json() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--nodes", "10", "--rounds", "1",
                          "--ks", "3", "--fractions", "0.0,0.6", "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    honest, captured = doc["results"]
    assert set(honest) >= {"fraction", "k", "decisions", "flipped", "flip_share", "binomial_f",
                           "predicted_exact", "colluder_penalty_wei", "honest_penalty_wei"}
    assert honest["decisions"] == 10 and honest["flipped"] == 0
    assert honest["honest_penalty_wei"] == 0 and honest["binomial_f"] == 0.0
    assert captured["colluders"] == 6 and captured["flipped"] > 0
    assert captured["binomial_f"] == 0.648  # P(Bin(3, 0.6) >= 2)
    assert captured["honest_penalty_wei"] > 0  # outvoted honest verifiers pay too

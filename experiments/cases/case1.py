"""Case Study I (paper section V-B): three contributors with the Table I CNNs on the Table II
label subsets, verifier votes, and the MetaModel by Strategies I and II as models are added
(Figs. 10 and 11); beside it the centralised model trained on the union of all parties' data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from coopflower.fusion import fuse_models

from .common import (
    ExperimentError,
    PartySplit,
    accuracy,
    fusion_config,
    fusion_seed,
    log,
    meta_accuracy,
    pct,
    split_parties,
    train_private,
    vote,
)


def run_case1(
    cfg: Mapping[str, Any],
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, Any]:
    """Run Case I; returns its JSON-able results (accuracies in percent)."""
    c1 = cfg["case1"]
    split: PartySplit = split_parties(labels, c1["label_sets"], cfg["scale"]["case1"],
                                      int(c1["num_verifiers"]), seed)
    log(f"case I split sizes: {split.sizes()}")
    epochs = int(cfg["scale"]["local_epochs"])
    contributors: list[dict[str, Any]] = []
    accepted = []
    for i, (arch, ls) in enumerate(zip(c1["models"], split.label_sets, strict=True)):
        tr, va = split.contributors[i]
        log(f"case I contributor {i + 1}: training {arch} on {tr.size} digits of {list(ls)}, "
            f"{epochs} epochs")
        model, secs = train_private(arch, images[tr], labels[tr], cfg["train"], epochs, seed + i)
        local = accuracy(model, images[va], labels[va])
        votes = vote([accuracy(model, images[v], labels[v], classes=ls) for v in split.verifiers],
                     float(c1["criterion"]))
        log(f"case I contributor {i + 1}: local verification accuracy {pct(local)}%, "
            f"verifier accuracies {[pct(a) for a in votes.accuracies]}, "
            f"{'accepted' if votes.accepted else 'rejected'} ({secs:.0f} s)")
        contributors.append({
            "model": arch, "labels": list(ls), "train_seconds": round(secs, 1),
            "local_accuracy": pct(local), "verifier_accuracies": [pct(a) for a in votes.accuracies],
            "votes_yes": sum(votes.yes), "accepted": votes.accepted,
            "test_accuracy_own_classes": pct(accuracy(model, images[split.test],
                                                      labels[split.test], classes=ls)),
        })
        if votes.accepted:
            accepted.append((model, ls))

    # Each MetaModel is fused `fusion_repeats` times with different fusion seeds (the fusion
    # network's initialisation and batch order; same models, same data): one run's accuracy
    # moves by a few test digits with the seed, so the reported figure is the mean.
    repeats = int(c1.get("fusion_repeats", 1))
    if repeats < 1:
        raise ExperimentError(f"case1.fusion_repeats must be >= 1, got {repeats}")
    runs: dict[str, list[list[float]]] = {"I": [], "II": []}
    val: dict[str, list[float]] = {"I": [], "II": []}
    x_init, y_init = images[split.initiator], labels[split.initiator]
    for k in range(1, len(accepted) + 1):
        for strategy in ("I", "II"):
            accs, vals = [], []
            for r in range(repeats):
                fcfg = fusion_config(cfg["fusion"], strategy, fusion_seed(seed, r))
                res = fuse_models(accepted[:k], x_init, y_init, fcfg)
                accs.append(pct(meta_accuracy(res.meta, images[split.test], labels[split.test])))
                m = res.metrics
                vals.append(pct(m.val_accuracy if m.num_val else m.train_accuracy))
                log(f"case I MetaModel, Strategy {strategy}, {k} model(s), fusion run "
                    f"{r + 1}/{repeats}: test {accs[-1]}% (initiator's "
                    f"{'hold-out' if m.num_val else 'training'} accuracy {vals[-1]}%, best epoch "
                    f"{m.best_epoch}, {m.seconds:.1f} s)")
            runs[strategy].append(accs)
            val[strategy].append(round(float(np.mean(vals)), 2))
    fused = {s: [round(float(np.mean(a)), 2) for a in runs[s]] for s in runs}
    spread = {s: [round(float(np.std(a)), 2) for a in runs[s]] for s in runs}

    union = np.concatenate([split.initiator, *split.verifiers,
                            *[a for pair in split.contributors for a in pair]])
    arch = str(cfg["centralised"]["model"])
    c_epochs = int(cfg["scale"]["centralised_epochs"])
    log(f"centralised {arch}: training on the union of all parties' data ({union.size} digits), "
        f"{c_epochs} epochs")
    central, secs = train_private(arch, images[union], labels[union], cfg["train"], c_epochs, seed)
    central_acc = accuracy(central, images[split.test], labels[split.test])
    log(f"centralised: test {pct(central_acc)}% ({secs:.0f} s)")
    n = len(accepted)
    return {
        "sizes": split.sizes(),
        "contributors": contributors,
        "accepted": n,
        "fusion_repeats": repeats,
        "meta_acc_by_models": {"I": fused["I"], "II": fused["II"]},
        "meta_std_by_models": spread,
        "meta_runs_by_models": runs,
        "meta_initiator_acc_by_models": val,
        "meta_acc_strategy1": fused["I"][-1] if n else float("nan"),
        "meta_acc_strategy2": fused["II"][-1] if n else float("nan"),
        "centralised_model": arch,
        "centralised_train_size": int(union.size),
        "centralised_acc": pct(central_acc),
    }

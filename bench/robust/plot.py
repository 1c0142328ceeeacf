"""The benchmark's PNGs: final central accuracy per arm per attack, one figure per partition
(a panel per fraction), FedAvg's attack-free accuracy as a dashed line."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write ``accuracy-<dataset>-<partition>.png`` files under ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    paths = []
    for dataset, part in sorted({(r["dataset"], r["partition"]) for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset and r["partition"] == part]
        fractions = sorted({r["fraction"] for r in mine})
        arms = list(dict.fromkeys(r["arm"] for r in mine))
        fig, axes = plt.subplots(1, len(fractions), squeeze=False,
                                 figsize=(4.5 * len(fractions) + 1.5, 4.2))
        for ax, fr in zip(axes[0], fractions, strict=True):
            attacks = list(dict.fromkeys(r["attack"] for r in mine if r["fraction"] == fr))
            width = 0.8 / max(1, len(arms))
            for j, arm in enumerate(arms):
                acc = {r["attack"]: r["accuracy"] for r in mine
                       if r["fraction"] == fr and r["arm"] == arm}
                xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(attacks))]
                ax.bar(xs, [acc.get(a) or 0.0 for a in attacks], width, label=arm)
            base = doc["attack_free"].get(dataset, {}).get(part)
            if base is not None:
                ax.axhline(base, color="k", linestyle="--", linewidth=1,
                           label="fedavg, no attacker")
            ax.set_xticks(range(len(attacks)), attacks, rotation=30, ha="right")
            ax.set_ylim(0, 1)
            ax.set_title(f"{fr:.0%} malicious")
            ax.set_ylabel("final central accuracy")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(f"{dataset}, {part} partition, {doc['config']['nodes']} nodes, "
                     f"{doc['config']['rounds']} rounds")
        fig.tight_layout()
        path = out / f"accuracy-{dataset}-{part}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths

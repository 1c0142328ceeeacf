"""Case Study III (paper section V-D, Fig. 12): the coordinated paradigm against FedAvg.

Both run in process on the same parties and the same total local epochs (no chain, no Flower:
``bench/round_overhead.py`` measures those costs). Four parties: three computing contributors
and a fourth with every label. FedAvg: the four parties are its clients, ``rounds`` rounds of
``local_epochs`` epochs, weighted averaging (``coopflower.strategy.aggregate``). Coordinated:
the three contributors train ``rounds * local_epochs`` epochs once, one verifier votes, the
fourth party is the initiator and fuses the accepted models by Strategy II on its own data.
Bytes moved count model blobs: FedAvg sends the global model to and receives a model from every
client each round; the coordinated paradigm uploads each private model once, the verifier and
the initiator each fetch them, and the initiator uploads the MetaModel.

Scenarios: ``diverse`` (each contributor has all labels, Dirichlet(alpha) proportions) and
``partial`` (the contributors have the Table II label subsets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from coopflower.blob import state_dict_to_blob
from coopflower.data.partition import dirichlet_partition, stratified_split
from coopflower.fusion import fuse_models, metamodel_to_blob
from coopflower.models import build_model
from coopflower.strategy.aggregate import AcceptedModel, weighted_average
from coopflower.training import get_weights, set_weights, train_model

from .common import (
    IntArray,
    PartySplit,
    accuracy,
    fusion_config,
    log,
    meta_accuracy,
    pct,
    split_parties,
    train_options,
    vote,
)


def _diverse_split(labels: npt.NDArray[np.int64], sizes: Mapping[str, int], alpha: float,
                   seed: int) -> PartySplit:
    n_train = int(sizes["contributor_train"])
    top = stratified_split(labels, {"test": int(sizes["test"]),
                                    "initiator": int(sizes["initiator"]),
                                    "verifiers": int(sizes["verifiers"]),
                                    "pool": 3 * n_train}, seed=seed)
    parts = dirichlet_partition(top["pool"], labels, 3, alpha, seed=seed, min_size=n_train // 3)
    empty: IntArray = np.empty(0, np.int64)
    return PartySplit(top["test"], top["initiator"], [top["verifiers"]],
                      [(p, empty) for p in parts], [tuple(range(10))] * 3)


def run_case3(
    cfg: Mapping[str, Any],
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, Any]:
    """Run both scenarios; returns JSON-able results (accuracies in percent, bytes)."""
    c3 = cfg["case3"]
    sizes = cfg["scale"]["case3"]
    arch = str(c3["model"])
    rounds, local_epochs = int(cfg["scale"]["case3_rounds"]), int(cfg["scale"]["case3_epochs"])
    tc = cfg["train"]
    out: dict[str, Any] = {"model": arch, "rounds": rounds, "local_epochs": local_epochs}
    for scenario in c3["scenarios"]:
        if scenario == "diverse":
            split = _diverse_split(labels, sizes, float(c3["alpha"]), seed)
        else:
            split = split_parties(labels, c3["partial_label_sets"], sizes, 1, seed)
        clients = [tr for tr, _ in split.contributors] + [split.initiator]
        log(f"case III {scenario}: client sizes {[int(c.size) for c in clients]}, "
            f"labels per client {[sorted(set(labels[c].tolist())) for c in clients[:3]]}")
        test_x, test_y = images[split.test], labels[split.test]

        # FedAvg: four clients, `rounds` rounds of `local_epochs` epochs
        glob = build_model(arch)
        model_bytes = len(state_dict_to_blob(glob))
        fed_curve = []
        for r in range(1, rounds + 1):
            updates = []
            for j, c in enumerate(clients):
                local = build_model(arch)
                start: dict[str, npt.NDArray[np.generic]] = dict(get_weights(glob))
                set_weights(local, start)
                train_model(local, images[c], labels[c], epochs=local_epochs,
                            seed=seed + 100 * r + j, **train_options(tc))
                updates.append(AcceptedModel(b"", str(j), arch, int(c.size), get_weights(local)))
            avg = weighted_average(updates, get_weights(glob))
            assert avg is not None
            set_weights(glob, dict(avg))
            fed_curve.append(pct(accuracy(glob, test_x, test_y)))
            log(f"case III {scenario}: FedAvg round {r}/{rounds}: test {fed_curve[-1]}%")
        fed_bytes = rounds * len(clients) * 2 * model_bytes

        # Coordinated: contributors train once, one verifier, the initiator fuses (Strategy II)
        accepted = []
        votes_yes: list[int] = []
        verifier_acc: list[list[float]] = []
        for i, (tr, _) in enumerate(split.contributors):
            m = build_model(arch)
            train_model(m, images[tr], labels[tr], epochs=rounds * local_epochs, seed=seed + i,
                        **train_options(tc))
            m.eval()
            ls = sorted(set(labels[tr].tolist()))
            v = vote([accuracy(m, images[vv], labels[vv], classes=ls) for vv in split.verifiers],
                     float(c3["criterion"]))
            votes_yes.append(sum(v.yes))
            verifier_acc.append([pct(a) for a in v.accuracies])
            log(f"case III {scenario}: contributor {i + 1} trained {rounds * local_epochs} epochs; "
                f"verifier accuracy {verifier_acc[-1]}, {'accepted' if v.accepted else 'rejected'}")
            if v.accepted:
                accepted.append((m, tuple(ls)))
        coop_bytes = 3 * model_bytes + 3 * model_bytes + len(accepted) * model_bytes
        coop_acc = float("nan")
        if accepted:
            res = fuse_models(accepted, images[split.initiator], labels[split.initiator],
                              fusion_config(cfg["fusion"], "II", seed))
            coop_acc = pct(meta_accuracy(res.meta, test_x, test_y))
            coop_bytes += len(metamodel_to_blob(res.meta))
        log(f"case III {scenario}: coordinated MetaModel of {len(accepted)} accepted: "
            f"test {coop_acc}%; bytes FedAvg {fed_bytes}, coordinated {coop_bytes}")
        out[scenario] = {
            "client_sizes": [int(c.size) for c in clients],
            "fedavg_acc": fed_curve[-1], "fedavg_acc_by_round": fed_curve,
            "coop_acc": coop_acc, "accepted": len(accepted), "votes_yes": votes_yes,
            "verifier_accuracy": verifier_acc,
            "bytes_fedavg": fed_bytes, "bytes_coop": coop_bytes, "model_blob_bytes": model_bytes,
        }
    return out

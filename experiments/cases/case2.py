"""Case Study II (paper section V-C, Table V): three contributors with the Table IV CNN on the
Table III label subsets; each encrypts its first layer with IVHE (element-wise, p = 2^5 or 2^7,
q = 1000); verifiers evaluate the encrypted models in cipherspace; the initiator decrypts the
accepted ones and fuses them by Strategy II. Accuracy of the MetaModel of {1}, {1,2}, {1,2,3}
in plaintext and with the encryption interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from coopflower.crypto.interface import decrypt_model, encrypt_model, evaluate_encrypted
from coopflower.crypto.ivhe import IVHEParams
from coopflower.crypto.strategies import make_keys
from coopflower.fusion import fuse_models
from coopflower.models import build_model

from .common import accuracy, fusion_config, log, meta_accuracy, pct, split_parties, train_private


def run_case2(
    cfg: Mapping[str, Any],
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, Any]:
    """Run Case II; returns its JSON-able results (accuracies in percent)."""
    c2 = cfg["case2"]
    arch = str(c2["model"])
    split = split_parties(labels, c2["label_sets"], cfg["scale"]["case2"],
                          int(c2["num_verifiers"]), seed)
    log(f"case II split sizes: {split.sizes()}")
    epochs = int(cfg["scale"]["local_epochs_case2"])
    plain_models = []
    local = []
    for i, ls in enumerate(split.label_sets):
        tr, va = split.contributors[i]
        log(f"case II contributor {i + 1}: training {arch} on {tr.size} digits of {list(ls)}")
        model, _ = train_private(arch, images[tr], labels[tr], cfg["train"], epochs, seed + 10 + i)
        local.append(pct(accuracy(model, images[va], labels[va])))
        plain_models.append((model, ls))

    sk, pk = make_keys("elementwise", arch, IVHEParams(), seed + 99)
    settings: dict[str, list[tuple[torch.nn.Module, tuple[int, ...]]]] = {"plain": plain_models}
    verifier_acc: dict[str, list[list[float]]] = {}
    for p in c2["p_values"]:
        name = f"p{int(p)}"
        decrypted: list[tuple[torch.nn.Module, tuple[int, ...]]] = []
        accs: list[list[float]] = []
        for i, (model, ls) in enumerate(plain_models):
            enc = encrypt_model(model, pk, "elementwise", p=int(p), q=int(c2["q"]))
            blob = enc.to_bytes()  # what the contributor stores by CID
            enc = type(enc).from_bytes(blob)
            v_acc = [evaluate_encrypted(enc, images[v], labels[v], classes=ls)
                     for v in split.verifiers]
            accs.append([pct(a) for a in v_acc])
            dec = build_model(arch)
            dec.load_state_dict(decrypt_model(enc, sk))
            dec.eval()
            decrypted.append((dec, ls))
            log(f"case II contributor {i + 1}, p={p}: encrypted {len(blob)} B, verifier "
                f"accuracies in cipherspace {[pct(a) for a in v_acc]}")
        settings[name] = decrypted
        verifier_acc[name] = accs

    x_init, y_init = images[split.initiator], labels[split.initiator]
    table: dict[str, list[float]] = {}
    for name, models in settings.items():
        table[name] = []
        for k in range(1, len(models) + 1):
            res = fuse_models(models[:k], x_init, y_init, fusion_config(cfg["fusion"], "II", seed))
            acc = meta_accuracy(res.meta, images[split.test], labels[split.test])
            table[name].append(pct(acc))
            log(f"case II MetaModel ({name}), models 1..{k}: test {pct(acc)}%")
    return {
        "sizes": split.sizes(),
        "model": arch,
        "local_accuracy": local,
        "verifier_accuracy_cipherspace": verifier_acc,
        "meta_acc_by_models": table,
        "acc_plain": table["plain"][-1],
        **{f"acc_{name}": vals[-1] for name, vals in table.items() if name != "plain"},
    }

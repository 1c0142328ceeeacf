"""The attacks as a Flower client mod, placed in front of the app's handlers.

``ClientApp(mods=[coop_mod, attack_mod])``: Flower wraps the mods so that the first in the list
is the outermost (``flwr.client.mod.utils.make_ffn`` wraps in reverse), so ``attack_mod`` sits
*inside* ``coop_mod`` and what it returns is what ``coop_mod`` checks, packs, signs and submits
to the verifiers' vote. Under Flower's own strategies (no ``coop_mod`` stage) the same app
replies with the attacked arrays directly. The mod refuses a message still carrying
coopflower's ``coop`` record: that is the mod placed outside ``coop_mod``.

Which nodes attack, and how, comes from the grid cell (``$COOPBENCH_CELL``, see
``robust.data``): ``attack``, ``attackers`` (partition ids) and ``params``. Only train messages
are attacked; every node evaluates and verifies honestly. A train message whose config names
an arm ``clean:<arm>`` (``bench-arm``, which the bench adds to the train config) is an
attack-free baseline: no node attacks, no label is flipped.

- ``labelflip``: trains on flipped labels (a data-side override: ``robust.data``); the mod
  passes the app's reply through.
- ``signflip``: ``global - s * (trained - global)``, ``s = params["signflip_scale"]``.
- ``noise``: ``trained + N(0, params["noise_std"]^2)`` element-wise.
- ``freerider``: the arrays it was sent (the app's train runs only for its reply's metrics).
  Two free riders with the same number of examples submit byte-identical blobs: the contract
  skips the second as ``DuplicateModel``.
- ``copy``: a stale copy: the global arrays the node was sent in the previous round of the
  same arm (the current ones in the first), plus ``N(0, params["copy_noise"]^2)`` so that the
  copy is not byte-identical (kept per arm and node in ``<dir>/copy/``).
- ``adaptive``: the sign flip at the largest scale of ``ADAPTIVE_SCALES`` whose model still
  scores ``threshold + params["adaptive_margin"]`` on the task's metric on the node's own
  validation data (the app's own evaluate, called directly); when none does, the scale
  scoring best. A negative scale moves part way along the honest update; the grid leaves out
  0 (the free rider's unchanged model: attackers returning byte-identical models collide on
  chain as copies, see ``freerider``).
"""

from __future__ import annotations

import copy as _copy
import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from robust import data

ATTACKS = ("labelflip", "signflip", "noise", "freerider", "copy", "adaptive")
ADAPTIVE_SCALES = (10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, -0.25, -0.5)
COOP_RECORD = "coop"  # coopflower.client.stages.COOP
CLEAN = "clean:"  # robust.cell.CLEAN: an arm's name prefix for its attack-free run

Arrays = dict[str, np.ndarray]


def attack_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod: on a malicious node's train message, replace the trained arrays by the
    cell's attack; everything else passes through."""
    data.install()
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    if COOP_RECORD in msg.content.config_records:
        raise RuntimeError("attack_mod sees coopflower's coop record: it must sit inside "
                           "coop_mod (ClientApp(mods=[coop_mod, attack_mod]))")
    c = data.cell()
    pid = int(context.node_config.get("partition-id", -1))
    attack = c.get("attack", "none")
    config = msg.content.config_records.get("config", ConfigRecord())
    arm = str(config.get("bench-arm", ""))
    if arm.startswith(CLEAN):  # an attack-free baseline in the same simulation
        with data.clean():
            return call_next(msg, context)
    reply = call_next(msg, context)
    if (attack not in ATTACKS or attack == "labelflip" or pid not in c.get("attackers", [])
            or reply.has_error()):
        return reply
    (sent_key,) = list(msg.content.array_records)
    (key,) = list(reply.content.array_records)
    sent = plain(msg.content.array_records[sent_key])
    trained = plain(reply.content.array_records[key])
    rnd = int(str(config.get("server-round", 0)))
    rng = np.random.default_rng([int(c.get("seed", 0)), pid, rnd,
                                 int(hashlib.sha256(arm.encode()).hexdigest()[:8], 16)])
    p = c.get("params", {})
    if attack == "signflip":
        new = scaled(sent, trained, -float(p.get("signflip_scale", 5.0)))
    elif attack == "noise":
        std = float(p.get("noise_std", 1.0))
        new = {k: _cast(v + rng.normal(0.0, std, v.shape), v) if _floating(v) else v
               for k, v in trained.items()}
    elif attack == "freerider":
        new = sent
    elif attack == "copy":
        new = _stale_copy(Path(c["dir"]) / "copy", arm, pid, sent, rng,
                          float(p.get("copy_noise", 1e-4)))
    else:
        new = _adaptive(msg, context, sent, trained, c)
    reply.content[key] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in new.items()})
    return reply


def plain(record: ArrayRecord) -> Arrays:
    """An ArrayRecord as numpy arrays, in its order."""
    return {k: np.asarray(a.numpy()) for k, a in record.items()}


def _floating(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _cast(new: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(new, dtype=like.dtype)


def scaled(sent: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray],
           lam: float) -> Arrays:
    """``sent + lam * (trained - sent)`` on floating arrays (``lam = -s``: the sign flip)."""
    return {k: _cast(sent[k] + lam * (t.astype(np.float64) - sent[k]), t) if _floating(t)
            else t for k, t in trained.items()}


def _stale_copy(folder: Path, arm: str, pid: int, sent: Arrays, rng: np.random.Generator,
                std: float) -> Arrays:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(arm.encode()).hexdigest()[:12]}-{pid}.npz"
    old = dict(np.load(path)) if path.exists() else sent
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **sent)  # type: ignore[arg-type]
    tmp.replace(path)
    return {k: _cast(v + rng.normal(0.0, std, v.shape), v) if _floating(v) else v
            for k, v in old.items()}


def _own_metric(msg: Message, context: Context, arrays: Arrays, metric: str) -> float:
    """The task's metric of ``arrays`` by the app's own evaluate on this node's data."""
    client = importlib.import_module(f"{data.cell()['package']}.client_app")
    meta = _copy.copy(msg.metadata)
    meta.message_type = MessageType.EVALUATE
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v))
                                                 for k, v in arrays.items()}),
                          "config": ConfigRecord()})
    probe = Message(content=content, metadata=meta)  # type: ignore[call-overload]
    reply = client.evaluate(probe, context)
    (metrics,) = list(reply.content.metric_records.values())
    return float(metrics[metric])


def _adaptive(msg: Message, context: Context, sent: Arrays, trained: Arrays,
              c: Mapping[str, Any]) -> Arrays:
    target = float(c["threshold"]) + float(c.get("params", {}).get("adaptive_margin", 0.05))
    best: tuple[float, Arrays] | None = None
    for s in ADAPTIVE_SCALES:  # the most harmful first
        cand = scaled(sent, trained, -s)
        value = _own_metric(msg, context, cand, str(c["metric"]))
        if value >= target:
            return cand
        if best is None or value > best[0]:
            best = (value, cand)
    assert best is not None
    return best[1]

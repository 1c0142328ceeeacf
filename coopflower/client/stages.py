"""The coordination stages as they travel inside a Flower app's own message types.

Pure names and parsers, no heavy imports (both the ServerApp and each short-lived client process
import this). A coordination message is a ``train`` or ``evaluate`` message whose content holds a
``coop`` ``ConfigRecord`` with a ``stage`` field (the pattern of Flower's SecAgg+ mod); the app's
own records (``arrays``, ``config``) stay exactly as a plain Flower strategy would send them.

- ``register`` (an evaluate message), ``coop``: task-id, chain-id, contract, store, deposit;
  the reply holds ``registration``.
- ``train`` (a train message), ``coop``: the same plus server-round and round; the reply holds
  ``submission``, the app's ``metrics`` and the mod's ``coop-metrics``.
- ``verify`` (an evaluate message), ``coop``: the same plus submission-ids, cids,
  content-hashes, metric (min-metric-bps is informative: the chain applies the task's own
  threshold to the signed score), array-names and array-shapes (the global model's);
  the reply holds ``votes`` and ``coop-metrics``.

An ``evaluate`` message without a ``coop`` record is Flower's federated evaluation and passes
through to the app untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coopflower.client.protocol import ProtocolError, get_list

__all__ = ["COOP", "STAGE", "REGISTER", "TRAIN", "VERIFY", "STAGES", "stage_of",
           "encode_shapes", "decode_shapes", "shape_mismatch", "metric_bps"]

COOP = "coop"
STAGE = "stage"
REGISTER = "register"
TRAIN = "train"
VERIFY = "verify"
REVEAL = "reveal"
STAGES = (REGISTER, TRAIN, REVEAL, VERIFY)
# the figure verifiers report for an IVHE-encrypted model (its cipherspace accuracy)
IVHE_METRIC = "ivhe-accuracy"


def stage_of(records: Mapping[str, Any]) -> str | None:
    """The coordination stage of a message's config records (``None``: not coopflower's).

    Raises ``ProtocolError`` on a ``coop`` record with an unknown or missing stage."""
    coop = records.get(COOP)
    if coop is None:
        return None
    stage = coop.get(STAGE)
    if stage not in STAGES:
        raise ProtocolError(f"coop record with unknown stage {stage!r} (known: {STAGES})")
    return str(stage)


def encode_shapes(shapes: Mapping[str, Sequence[int]]) -> tuple[list[str], list[int]]:
    """A model's names and shapes as two flat lists: the names, and for each array its rank
    followed by its dimensions (what a verifier checks a submission against)."""
    names = sorted(shapes)
    dims: list[int] = []
    for name in names:
        shape = tuple(int(d) for d in shapes[name])
        dims.append(len(shape))
        dims.extend(shape)
    return names, dims


def decode_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The inverse of ``encode_shapes`` from a config record's ``array-names``/``array-shapes``."""
    names = get_list(cfg, "array-names", str)
    dims = get_list(cfg, "array-shapes", int)
    out: dict[str, tuple[int, ...]] = {}
    pos = 0
    for name in names:
        if pos >= len(dims) or dims[pos] < 0 or pos + 1 + dims[pos] > len(dims):
            raise ProtocolError("array-shapes does not match array-names")
        rank = dims[pos]
        out[name] = tuple(dims[pos + 1: pos + 1 + rank])
        pos += 1 + rank
    if pos != len(dims):
        raise ProtocolError("array-shapes has trailing entries")
    return out


def shape_mismatch(arrays: Mapping[str, Any], expected: Mapping[str, Sequence[int]]) -> str:
    """Why ``arrays`` do not fit the ``expected`` names and shapes ("" when they do)."""
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        return (f"arrays do not match the global model: missing {missing[:3]}"
                f"{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                f"{'...' if len(extra) > 3 else ''}")
    for name in sorted(expected):
        got = tuple(int(d) for d in np.shape(arrays[name]))
        if got != tuple(expected[name]):
            return f"array {name!r} has shape {got}, the global model's is {tuple(expected[name])}"
    return ""


def metric_bps(value: float) -> int:
    """A metric in [0, 1] as basis points for the contract's ``uint16`` score (clipped)."""
    if not np.isfinite(value):
        return 0
    return int(min(max(round(float(value) * 10000), 0), 10000))

"""The message protocol between the coordinated strategy and the contributors' ClientApp.

Pure names and small helpers, no heavy imports: both the ServerApp and each (short-lived)
client process import it.

Messages (``RecordDict`` keys, ``ConfigRecord`` fields):

- ``query.register`` -> ``@app.query("register")``: the node answers with ``registration``
  ``{address, signature}`` (its consent to be registered, signed with its own key).
- ``train`` -> ``@app.train()``: ``arrays`` (the global model, may be empty) and ``config``
  ``{server-round, mode, task-id, round, epochs, lr, batch-size, seed, store, chain-id,
  contract}`` and optionally the local recipe ``{momentum, lr-schedule, augment-shift,
  augment-rotate, augment-scale}``. In ``mode="coop"`` the contributor uploads its blob and
  answers with ``submission`` ``{cid, content-hash, signature, contributor, model}`` and
  ``metrics`` (``continued-from-round``: the round of its own model it continued from, 0 when
  it started from the global model or from scratch); in ``mode="fedavg"`` it answers like any
  Flower client, with ``arrays`` and ``metrics``.
- ``evaluate.verify`` -> ``@app.evaluate("verify")``: ``config`` ``{server-round, task-id,
  round, submission-ids, cids, content-hashes, min-accuracy-bps, store, chain-id, contract}``;
  the verifier answers with ``votes`` ``{submission-ids, approve, signatures, accuracy-bps,
  verifier}`` and ``metrics``.
- ``evaluate`` -> ``@app.evaluate()``: Flower's federated evaluation of ``arrays`` on the
  node's verification data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "MSG_REGISTER",
    "MSG_VERIFY",
    "MODE_COOP",
    "MODE_FEDAVG",
    "ProtocolError",
    "get_int",
    "get_float",
    "get_str",
    "get_list",
]

MSG_REGISTER = "query.register"
MSG_VERIFY = "evaluate.verify"
MODE_COOP = "coop"
MODE_FEDAVG = "fedavg"

# record keys
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SUBMISSION = "submission"
VOTES = "votes"
REGISTRATION = "registration"


class ProtocolError(ValueError):
    """A message that lacks a field or carries one of the wrong type."""


def get_int(cfg: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """An integer field of a config record (``default`` when absent and given)."""
    value = _get(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ProtocolError(f"config {key!r} must be an integer, got {value!r}")
    return int(value)


def get_float(cfg: Mapping[str, Any], key: str, default: float | None = None) -> float:
    """A number field of a config record (``default`` when absent and given)."""
    value = _get(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"config {key!r} must be a number, got {value!r}")
    return float(value)


def get_str(cfg: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """A text field of a config record (``default`` when absent and given)."""
    value = _get(cfg, key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"config {key!r} must be text, got {type(value).__name__}")
    return value


def get_list(cfg: Mapping[str, Any], key: str, kind: type) -> list[Any]:
    """A list field whose items are all of ``kind`` (e.g. ``bytes``, ``int``)."""
    value = _get(cfg, key, None)
    if not isinstance(value, list) or not all(
        isinstance(v, kind) and not (kind is int and isinstance(v, bool)) for v in value
    ):
        raise ProtocolError(f"config {key!r} must be a list of {kind.__name__}")
    return list(value)


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    if key in cfg:
        return cfg[key]
    if default is None:
        raise ProtocolError(f"config lacks {key!r}")
    return default

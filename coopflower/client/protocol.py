"""Record names and typed getters shared by the coordinated strategy and coopflower's mods.

Pure names and small helpers, no heavy imports: both the ServerApp and each (short-lived)
client process import it. The coordination stages and the ``coop`` record they travel in are
``coopflower.client.stages``; the app's own records keep Flower's names (``arrays``,
``config``, ``metrics``), and the mods' replies add ``registration``, ``submission`` and
``votes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ProtocolError",
    "get_int",
    "get_float",
    "get_str",
    "get_list",
]

# record keys
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SUBMISSION = "submission"
VOTES = "votes"
REGISTRATION = "registration"
REVEAL = "reveal"


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

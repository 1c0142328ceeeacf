"""The one error type of the fusion package."""

from __future__ import annotations

__all__ = ["FusionError"]


class FusionError(ValueError):
    """Bad input to the fusion mechanism (models, heads, factories, label sets, data, settings
    or serialised arrays)."""

"""The crypto package's own exceptions: every refusal is one of these, never a wrong number."""

from __future__ import annotations

__all__ = [
    "IVHEError",
    "ErrorBudgetExceeded",
    "IntegerOverflow",
    "CipherFormatError",
    "UnsupportedOperation",
    "InputRangeError",
]


class IVHEError(ValueError):
    """Base class of every error raised by ``coopflower.crypto``."""


class ErrorBudgetExceeded(IVHEError):
    """A result's error bound would reach ``w/2``: decryption could be wrong, so we refuse."""


class IntegerOverflow(IVHEError):
    """A value (or its bit decomposition) would not fit its integer type or ``l`` bits."""


class CipherFormatError(IVHEError):
    """Malformed keys, ciphertexts or encrypted models (shapes, dtypes, metadata, blobs)."""


class UnsupportedOperation(IVHEError):
    """A model's structure cannot be evaluated in cipherspace; the message names the first
    operation that cannot (its kind and its node or module name)."""


class InputRangeError(IVHEError):
    """Inputs outside the range declared when the model was encrypted (fixed-point
    quantisation would clip them silently, so they are refused)."""

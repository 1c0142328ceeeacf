"""The structure the cipherspace evaluation runs: a chain of operations with static shapes.

A :class:`Structure` is what ``coopflower.crypto.trace`` reads off a user's ``torch.nn.Module``
and what an encrypted model's blob carries (as JSON in its metadata), so that the verifier can
check a blob's tensors against it and the key holder can name the decrypted tensors:

- ``conv`` (``name`` is the module's state-dict prefix; kernel, stride, padding or ``"same"``),
- ``linear``,
- ``relu``,
- ``maxpool`` and ``avgpool`` (kernel, stride, padding; the integer engine sums and folds the
  division into the scale),
- ``flatten`` (to ``(N, -1)``; ``size`` > 0 is the feature count a ``view(-1, size)`` named),
- ``softmax`` (softmax or log-softmax, allowed only last: it is monotone per row, so the
  cipherspace pass skips it and returns the scores before it).

Everything here is pure data and arithmetic: :func:`propagate` checks a structure against the
tensor shapes it names and returns the per-sample shape after every operation. Any
inconsistency raises :class:`~coopflower.crypto.errors.CipherFormatError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coopflower.crypto.errors import CipherFormatError

__all__ = ["KINDS", "LINEAR_KINDS", "Op", "Structure", "Shape", "step", "propagate", "pool_out"]

KINDS = ("conv", "linear", "relu", "maxpool", "avgpool", "flatten", "softmax")
LINEAR_KINDS = ("conv", "linear")
_NAME = re.compile(r"^[A-Za-z0-9_.]{1,200}$")
_MAX_DIM = 4096
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Op:
    """One operation of the chain (see the module docstring for the kinds)."""

    kind: str
    name: str = ""
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] | str = (0, 0)
    bias: bool = True
    size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CipherFormatError(f"unknown operation kind {self.kind!r}")
        if self.kind in LINEAR_KINDS and not _NAME.match(self.name):
            raise CipherFormatError(f"{self.kind}: bad module name {self.name!r}")
        for what, pair in (("kernel", self.kernel), ("stride", self.stride)):
            if not _pair_ok(pair, 1):
                raise CipherFormatError(f"{self.kind} {self.name}: bad {what} {pair!r}")
        if self.padding != "same" and not _pair_ok(self.padding, 0):
            raise CipherFormatError(f"{self.kind} {self.name}: bad padding {self.padding!r}")
        if self.padding == "same" and (self.kind != "conv" or self.stride != (1, 1)):
            raise CipherFormatError("padding 'same' is only for stride-1 convolutions")
        if not isinstance(self.size, int) or not 0 <= self.size <= 2**31:
            raise CipherFormatError(f"bad flatten size {self.size!r}")

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse: ``Op.from_json``)."""
        pad: Any = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"kind": self.kind, "name": self.name, "kernel": list(self.kernel),
                "stride": list(self.stride), "padding": pad, "bias": self.bias,
                "size": self.size}

    @classmethod
    def from_json(cls, d: Any) -> Op:
        """Parse one operation; ``CipherFormatError`` on anything unexpected."""
        keys = {"kind", "name", "kernel", "stride", "padding", "bias", "size"}
        if not isinstance(d, dict) or set(d) != keys:
            raise CipherFormatError(f"operation must have exactly the keys {sorted(keys)}")
        pad = d["padding"]
        if not isinstance(d["bias"], bool) or not isinstance(d["name"], str):
            raise CipherFormatError("operation 'bias' must be a bool and 'name' a string")
        return cls(
            kind=str(d["kind"]), name=d["name"], kernel=_pair(d["kernel"]),
            stride=_pair(d["stride"]), padding=pad if pad == "same" else _pair(pad),
            bias=d["bias"], size=d["size"] if type(d["size"]) is int else -1,
        )


def _pair_ok(p: Any, low: int) -> bool:
    return (isinstance(p, tuple) and len(p) == 2
            and all(type(v) is int and low <= v <= _MAX_DIM for v in p))


def _pair(v: Any) -> tuple[int, int]:
    if not isinstance(v, list) or len(v) != 2 or not all(type(x) is int for x in v):
        raise CipherFormatError(f"expected a pair of integers, got {v!r}")
    return (v[0], v[1])


@dataclass(frozen=True)
class Structure:
    """A traced model: the per-sample input shape and the chain of operations."""

    input_shape: Shape
    ops: tuple[Op, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if len(self.input_shape) not in (1, 3) or not all(
            type(d) is int and 1 <= d <= 2**24 for d in self.input_shape
        ):
            raise CipherFormatError(f"input shape must be (F,) or (C, H, W): {self.input_shape}")
        if not self.ops or self.first_index() < 0:
            raise CipherFormatError("a structure needs at least one conv or linear layer")
        for i, op in enumerate(self.ops):
            if op.kind == "softmax" and i != len(self.ops) - 1:
                raise CipherFormatError("softmax is only allowed as the last operation")

    def first_index(self) -> int:
        """Index of the first conv/linear operation (the encrypted layer), -1 if none."""
        return next((i for i, op in enumerate(self.ops) if op.kind in LINEAR_KINDS), -1)

    @property
    def first(self) -> Op:
        """The encrypted first layer."""
        return self.ops[self.first_index()]

    def second(self) -> Op | None:
        """The next conv/linear after the first (pair-wise absorbs the key there)."""
        return next((op for op in self.ops[self.first_index() + 1 :]
                     if op.kind in LINEAR_KINDS), None)

    def layer_names(self) -> list[str]:
        """Module prefixes of the conv/linear layers in order."""
        return [op.name for op in self.ops if op.kind in LINEAR_KINDS]

    def to_json(self) -> str:
        """Compact canonical JSON for the blob metadata."""
        return json.dumps({"input_shape": list(self.input_shape),
                           "ops": [op.as_json() for op in self.ops]},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Structure:
        """Parse the blob metadata; ``CipherFormatError`` on anything malformed."""
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CipherFormatError(f"structure is not valid JSON: {exc}") from None
        if not isinstance(d, dict) or set(d) != {"input_shape", "ops"}:
            raise CipherFormatError("structure must have exactly 'input_shape' and 'ops'")
        shape, ops = d["input_shape"], d["ops"]
        if not isinstance(shape, list) or not isinstance(ops, list) or len(ops) > 10_000:
            raise CipherFormatError("structure 'input_shape' and 'ops' must be lists")
        return cls(tuple(shape), tuple(Op.from_json(o) for o in ops))


def pool_out(n: int, k: int, s: int, p: int) -> int:
    """Output length of a convolution or pooling window along one axis (no dilation)."""
    return (n + 2 * p - k) // s + 1


def _spatial(op: Op, shape: Shape, channels: int) -> Shape:
    _, h, w = shape
    if op.padding == "same":
        return (channels, h, w)
    assert not isinstance(op.padding, str)
    out = tuple(pool_out(n, k, s, p) for n, k, s, p in
                zip((h, w), op.kernel, op.stride, op.padding, strict=True))
    if min(out) < 1:
        raise CipherFormatError(f"{op.kind} {op.name}: window larger than its input {shape}")
    return (channels, *out)


def _layer(op: Op, shape: Shape, shapes: Mapping[str, Shape]) -> Shape:
    w = shapes.get(f"{op.name}.weight")
    b = shapes.get(f"{op.name}.bias")
    if w is None or (op.bias and b is None) or (not op.bias and b is not None):
        raise CipherFormatError(f"{op.kind} {op.name}: tensors missing or unexpected")
    if b is not None and b != (w[0],):
        raise CipherFormatError(f"{op.name}.bias has shape {b}, expected {(w[0],)}")
    if op.kind == "linear":
        if len(w) != 2 or len(shape) != 1 or w[1] != shape[0]:
            raise CipherFormatError(f"linear {op.name}: weight {w} does not take input {shape}")
        return (w[0],)
    if len(w) != 4 or len(shape) != 3 or w[1] != shape[0] or w[2:] != op.kernel:
        raise CipherFormatError(f"conv {op.name}: weight {w} does not take input {shape}")
    return _spatial(op, shape, w[0])


def step(op: Op, cur: Shape, shapes: Mapping[str, Shape]) -> Shape:
    """The per-sample shape after ``op`` applied to input shape ``cur``."""
    if op.kind in LINEAR_KINDS:
        return _layer(op, cur, shapes)
    if op.kind in ("maxpool", "avgpool"):
        if len(cur) != 3:
            raise CipherFormatError(f"{op.kind} needs (C, H, W) input, got {cur}")
        assert not isinstance(op.padding, str)
        if any(2 * p > k for p, k in zip(op.padding, op.kernel, strict=True)):
            raise CipherFormatError(f"{op.kind}: padding over half the kernel")
        return _spatial(op, cur, cur[0])
    if op.kind == "flatten":
        n = 1
        for d in cur:
            n *= d
        if op.size and op.size != n:
            raise CipherFormatError(f"flatten to {op.size} features, but input {cur} has {n}")
        return (n,)
    return cur


def propagate(structure: Structure, shapes: Mapping[str, Sequence[int]]) -> list[Shape]:
    """Per-sample shape after each operation, checked against the named tensors' shapes.

    Args:
        structure: the chain.
        shapes: ``"<name>.weight"`` / ``"<name>.bias"`` to tensor shapes.

    Returns:
        One shape per operation; the last must be ``(classes,)``.
    """
    tshapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    cur: Shape = structure.input_shape
    out: list[Shape] = []
    for op in structure.ops:
        cur = step(op, cur, tshapes)
        out.append(cur)
    if len(cur) != 1:
        raise CipherFormatError(f"the network's output must be (N, classes), got (N, *{cur})")
    return out

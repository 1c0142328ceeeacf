"""An accepted private model as the initiator fuses it: the user's model, its head, its
classes, and the architecture key that rebuilds it from the caller's factories."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import (
    Factories,
    FeatureExtractor,
    build_from_factory,
    find_head,
    load_state,
)

__all__ = ["PrivateModel", "as_private_model"]


@dataclass(frozen=True)
class PrivateModel:
    """One accepted private model, of any architecture.

    Attributes:
        model: the user's model with its weights (fusion works on a copy; it is not modified).
        head: the dotted name of its head layer; the head's input is the feature vector
            ``f_i`` the MetaModel fuses.
        labels: the classes it was trained on (``l_i``); empty: all ``d`` classes.
        arch: the architecture key its factory is found by when the MetaModel is loaded
            (``""``: the fused MetaModel cannot be serialised).
        name: a label for messages (e.g. the contributor or its CID).
    """

    model: nn.Module
    head: str
    labels: tuple[int, ...] = ()
    arch: str = ""
    name: str = ""

    @classmethod
    def from_arrays(
        cls,
        arch: str,
        arrays: Mapping[str, Any],
        factories: Factories | None,
        head: str | None = None,
        labels: Sequence[int] = (),
        name: str = "",
        num_classes: int = 10,
    ) -> PrivateModel:
        """Rebuild a model from its named arrays (``name -> ndarray``, e.g. decrypted
        contributor weights) with ``factories[arch]()``.

        ``head=None`` takes the model's only ``nn.Linear`` with ``num_classes`` outputs.
        Raises ``FusionError`` on an unknown key, a missing head, wrong names or shapes, NaN.
        """
        what = f"private model {name or arch!r}"
        model = build_from_factory(factories, arch, what)
        load_state(model, arrays, what)
        return cls(model, find_head(model, num_classes) if head is None else head,
                   tuple(int(c) for c in labels), arch, name)

    def extractor(self) -> FeatureExtractor:
        """A frozen copy cut at the head (raises ``FusionError`` for a missing head)."""
        return FeatureExtractor(copy.deepcopy(self.model), self.head, self.arch)


def as_private_model(item: PrivateModel | tuple[nn.Module, Sequence[int]],
                     num_classes: int) -> PrivateModel:
    """A :class:`PrivateModel`, or a ``(model, labels)`` pair whose head is found by
    :func:`~coopflower.fusion.extractor.find_head` (no architecture key: not serialisable)."""
    if isinstance(item, PrivateModel):
        return item
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module)):
        raise FusionError("a private model is a PrivateModel or a (model, labels) pair, got "
                          f"{type(item).__name__}")
    model, labels = item
    return PrivateModel(model, find_head(model, num_classes), tuple(int(c) for c in labels))

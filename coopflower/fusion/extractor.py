"""A user's private model cut at its head: the feature extractor the MetaModel fuses.

Any ``nn.Module`` works: the feature vector ``f_i`` is the input of the layer the caller names
as the head (paper Fig. 7: the top-layer features of a private model). A forward pre-hook on
the head captures that input (at the head's first call) and stops the forward pass there, so
nothing from the head on runs, whatever the model's ``forward`` does. No architecture is known
here: models are rebuilt from caller-supplied factories (``architecture key -> zero-argument
factory``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from coopflower.fusion.errors import FusionError

__all__ = [
    "Factories",
    "Factory",
    "FeatureExtractor",
    "build_from_factory",
    "find_head",
    "head_keys",
    "load_state",
]

Factory = Callable[[], nn.Module]
Factories = Mapping[str, Factory]


class _Cut(BaseException):  # BaseException: a model's own ``except Exception`` cannot eat it
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def head_keys(model: nn.Module, head: str) -> set[str]:
    """The state-dict names of ``model`` that belong to its head layer ``head``."""
    return {k for k in model.state_dict() if k.startswith(head + ".")}


def find_head(model: nn.Module, num_classes: int) -> str:
    """The name of the only ``nn.Linear`` of ``model`` with ``num_classes`` outputs.

    A convenience for callers that name no head; raises ``FusionError`` when there is no such
    layer or more than one (then the head must be named).
    """
    found = [n for n, m in model.named_modules()
             if n and isinstance(m, nn.Linear) and m.out_features == num_classes]
    if len(found) != 1:
        raise FusionError(
            f"{type(model).__name__}: cannot tell its head layer ({len(found)} Linear layers "
            f"with {num_classes} outputs: {found[:5]}); name it (head=...)"
        )
    return found[0]


class FeatureExtractor(nn.Module):
    """A frozen private model whose ``features(x)`` is the (flattened) input of its head.

    Args:
        model: the user's model, weights loaded (kept in eval mode, parameters frozen).
        head: the dotted name of its head layer (as in ``model.named_modules()``).
        arch: the architecture key its factory is found by when the MetaModel is loaded
            (``""``: the MetaModel can be fused and used, but not serialised).
        feature_dim: ``|f_i|``; ``None``: the head's ``in_features`` when it is an
            ``nn.Linear``, else measured by :meth:`measure`.

    Raises:
        FusionError: no layer named ``head``, or ``feature_dim`` contradicting a Linear head.
    """

    def __init__(self, model: nn.Module, head: str, arch: str = "",
                 feature_dim: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise FusionError(f"{arch or 'private model'}: not a torch nn.Module")
        layers = dict(model.named_modules())
        if not head or head not in layers:
            names = [n for n in layers if n][:10]
            raise FusionError(f"{arch or type(model).__name__}: no head layer named {head!r} "
                              f"(its layers include {names})")
        self.model = model
        self.head = head
        self.arch = arch
        linear = self.head_linear
        if linear is not None and feature_dim is not None and feature_dim != linear.in_features:
            raise FusionError(f"{self.label}: feature_dim {feature_dim} but its head {head!r} "
                              f"takes {linear.in_features} features")
        self._dim = linear.in_features if linear is not None and feature_dim is None \
            else feature_dim
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    @property
    def label(self) -> str:
        """A name for messages: the architecture key or the model's class name."""
        return self.arch or type(self.model).__name__

    @property
    def head_layer(self) -> nn.Module:
        """The head module itself."""
        return self.model.get_submodule(self.head)

    @property
    def head_linear(self) -> nn.Linear | None:
        """The head when it is an ``nn.Linear`` (needed by ``block_init="private"``)."""
        layer = self.head_layer
        return layer if isinstance(layer, nn.Linear) else None

    @property
    def feature_dim(self) -> int:
        """``|f_i|``. Raises ``FusionError`` when neither given, a Linear's nor measured."""
        if self._dim is None:
            raise FusionError(f"{self.label}: feature size unknown; call measure(x) first")
        return self._dim

    @property
    def has_feature_dim(self) -> bool:
        """Whether :attr:`feature_dim` is known."""
        return self._dim is not None

    def train(self, mode: bool = True) -> FeatureExtractor:
        """The private model stays in eval mode (frozen: dropout off, batch-norm statistics
        fixed)."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def measure(self, x: torch.Tensor) -> int:
        """Set (or check) :attr:`feature_dim` from the features of a sample batch ``x``."""
        width = int(self._capture(x[:2]).shape[1])
        if self._dim is not None and self._dim != width:
            raise FusionError(f"{self.label}: its head receives {width} features, "
                              f"expected {self._dim}")
        self._dim = width
        return width

    def _capture(self, x: torch.Tensor) -> torch.Tensor:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            raise _Cut(args[0] if args else next(iter(kwargs.values()), None))

        handle = self.head_layer.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.model(x)
        except _Cut as cut:
            value = cut.value
        except Exception as e:  # the user's forward on the initiator's inputs
            raise FusionError(f"{self.label}: forward failed on inputs of shape "
                              f"{tuple(x.shape)}: {e}") from None
        else:
            raise FusionError(f"{self.label}: its head {self.head!r} is never called in forward")
        finally:
            handle.remove()
        if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != x.shape[0]:
            raise FusionError(f"{self.label}: the input of head {self.head!r} is not a batch "
                              "tensor")
        return value.reshape(value.shape[0], -1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``f_i``, the head's input flattened to ``(N, feature_dim)``."""
        f = self._capture(x)
        if f.shape[1] != self.feature_dim:
            raise FusionError(f"{self.label}: its head receives {f.shape[1]} features, "
                              f"expected {self.feature_dim}")
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features`."""
        return self.features(x)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The private model's state by the user's names, without the head's entries."""
        skip = head_keys(self.model, self.head)
        return {k: v for k, v in self.model.state_dict().items() if k not in skip}


def build_from_factory(factories: Factories | None, arch: str, what: str) -> nn.Module:
    """``factories[arch]()``, with ``FusionError`` for no factories, an unknown key, a raising
    factory or one that returns no ``nn.Module``."""
    if factories is None:
        raise FusionError(f"{what}: rebuilding architecture {arch!r} needs the caller's "
                          "factories={architecture key: zero-argument model factory}")
    if arch not in factories:
        raise FusionError(f"{what}: unknown architecture key {arch!r}; the factories know "
                          f"{sorted(factories)}")
    try:
        model = factories[arch]()
    except Exception as e:  # a user's factory: any failure is a named fusion error
        raise FusionError(f"{what}: the factory of {arch!r} failed: {e}") from None
    if not isinstance(model, nn.Module):
        raise FusionError(f"{what}: the factory of {arch!r} returned {type(model).__name__}, "
                          "not an nn.Module")
    return model


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def load_state(model: nn.Module, arrays: Mapping[str, Any], what: str,
               skip: set[str] | frozenset[str] = frozenset()) -> None:
    """Load ``arrays`` (the user's state-dict names) into ``model``, all of its state except the
    names in ``skip``, checking names, shapes, kinds and finiteness first.

    Raises:
        FusionError: a missing or extra name, a wrong shape, a non-numeric array, NaN or Inf.
    """
    state = {k: v for k, v in model.state_dict().items() if k not in skip}
    missing, extra = sorted(set(state) - set(arrays)), sorted(set(arrays) - set(state))
    if missing or extra:
        raise FusionError(f"{what}: arrays do not fit the model: missing {missing[:5]}, "
                          f"extra {extra[:5]}")
    loaded: dict[str, torch.Tensor] = {}
    for k, ref in state.items():
        arr = _as_array(arrays[k])
        if tuple(arr.shape) != tuple(ref.shape):
            raise FusionError(f"{what}: {k} has shape {tuple(arr.shape)}, the model needs "
                              f"{tuple(ref.shape)}")
        want = "f" if ref.is_floating_point() else "iub"
        if arr.dtype.kind not in want and not (want == "f" and arr.dtype.kind in "iu"):
            raise FusionError(f"{what}: {k} has dtype {arr.dtype}, the model needs {ref.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise FusionError(f"{what}: {k} holds NaN or Inf")
        loaded[k] = torch.from_numpy(np.array(arr, copy=True)).to(ref.dtype)
    result = model.load_state_dict(loaded, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - set(skip):
        raise FusionError(f"{what}: state did not load (missing {result.missing_keys[:5]})")

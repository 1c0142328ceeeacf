"""The paper's private models: the three CNNs of Table I and the CNN of Table IV.

Each model exposes ``features(x)``, the top-layer feature vector ``f_i`` that the MetaModel
fuses (the input of the output layer, paper Fig. 7), and ``forward(x)``, the logits.
Inputs are ``(N, 1, 28, 28)`` float tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

__all__ = ["CNN_SPECS", "CnnSpec", "MODEL_NAMES", "PAPER_HEAD", "PaperCNN", "build_model",
           "model_factories"]


@dataclass(frozen=True)
class CnnSpec:
    """One column of Table I / Table IV.

    ``convs`` lists (filters, kernel) per convolution layer; pooling (2x2, ``pool``) follows
    the first two; ``hidden`` is the fully connected hidden layer size (0: none).
    """

    convs: tuple[tuple[int, int], ...]
    pool: str  # "max" or "avg"
    hidden: int


CNN_SPECS: dict[str, CnnSpec] = {
    # Table I, Case Study I: three contributors with their own architectures.
    "table1_c1": CnnSpec(convs=((32, 5), (16, 5), (8, 2)), pool="max", hidden=500),
    "table1_c2": CnnSpec(convs=((64, 5), (32, 5), (16, 2)), pool="max", hidden=500),
    "table1_c3": CnnSpec(convs=((32, 5), (32, 10), (16, 4)), pool="max", hidden=500),
    # Table IV, Case Study II: two convolutions with average pooling, 7x7x16 = 784 features.
    "table4": CnnSpec(convs=((32, 5), (16, 5)), pool="avg", hidden=0),
}
MODEL_NAMES = tuple(CNN_SPECS)
PAPER_HEAD = "out"
"""Every paper CNN's head layer (its output layer): fusion cuts the model there."""


class PaperCNN(nn.Module):
    """A CNN of the paper: 'same'-padded convolutions with ReLU, 2x2 pooling after the
    first two, flattened, an optional hidden layer, and a 10-way output layer."""

    def __init__(self, spec: CnnSpec, num_classes: int = 10) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        in_ch = 1
        for i, (filters, kernel) in enumerate(spec.convs):
            layers.append(nn.Conv2d(in_ch, filters, kernel, padding="same"))
            layers.append(nn.ReLU())
            if i < 2:
                layers.append(nn.MaxPool2d(2) if spec.pool == "max" else nn.AvgPool2d(2))
            in_ch = filters
        self.conv = nn.Sequential(*layers)
        flat = in_ch * 7 * 7
        self.hidden = (
            nn.Sequential(nn.Linear(flat, spec.hidden), nn.ReLU()) if spec.hidden else nn.Identity()
        )
        self.feature_dim = spec.hidden or flat
        self.out = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The top-layer feature vector ``f_i``, shape ``(N, feature_dim)``."""
        h: torch.Tensor = self.hidden(torch.flatten(self.conv(x), 1))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(N, num_classes)``."""
        logits: torch.Tensor = self.out(self.features(x))
        return logits


def build_model(name: str, num_classes: int = 10) -> PaperCNN:
    """Build a paper model by name (``table1_c1``, ``table1_c2``, ``table1_c3``, ``table4``).

    Raises ``ValueError`` for an unknown name.
    """
    try:
        spec = CNN_SPECS[name]
    except KeyError:
        choices = ", ".join(MODEL_NAMES)
        raise ValueError(f"unknown model {name!r}; choose one of {choices}") from None
    return PaperCNN(spec, num_classes)


def model_factories(num_classes: int = 10) -> dict[str, Callable[[], nn.Module]]:
    """``architecture name -> zero-argument factory`` of every paper model: what the paper's app
    passes to fusion (``make_fusion_aggregate(factories=...)``, ``arrays_to_metamodel``)."""
    return {name: partial(build_model, name, num_classes) for name in MODEL_NAMES}

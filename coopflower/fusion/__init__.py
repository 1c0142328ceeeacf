"""Fusion of accepted private models of any architectures into a MetaModel (paper IV-D).

Each private model is the user's own ``nn.Module`` cut at the head layer the caller names
(:class:`PrivateModel`, :class:`FeatureExtractor`); Strategy I (random ``A``, ``B``) and
Strategy II (gradual fusion) train the fusion network on the initiator's own data. The
MetaModel serialises to named arrays / a model blob that names no architecture of its own: it
is rebuilt from the caller's ``factories`` (``architecture key -> zero-argument factory``).

Example (an MLP with head ``fc`` and a CNN with head ``classifier``, on the same inputs)::

    result = fuse_models([PrivateModel(mlp, "fc", arch="mlp"),
                          PrivateModel(cnn, "classifier", labels=(0, 1, 2), arch="cnn")],
                         inputs, labels, FusionConfig(strategy="II"))
    blob = metamodel_to_blob(result.meta)
    meta = blob_to_metamodel(blob, factories={"mlp": MLP, "cnn": CNN})

In the coordinated strategy: ``make_fusion_aggregate(inputs, labels, "II",
factories={"mlp": MLP, "cnn": CNN}, heads={"mlp": "fc", "cnn": "classifier"})``.
"""

from coopflower.fusion.aggregate import FusionAggregate, Heads, make_fusion_aggregate
from coopflower.fusion.config import EpochRecord, FusionConfig, FusionMetrics, FusionResult
from coopflower.fusion.errors import FusionError
from coopflower.fusion.extractor import Factories, Factory, FeatureExtractor, find_head
from coopflower.fusion.fit import fit_metamodel
from coopflower.fusion.inputs import Transform, as_inputs, images_to_tensor, shift_images
from coopflower.fusion.metamodel import MetaModel, Strategy, block_mask, identity_mask
from coopflower.fusion.private import PrivateModel
from coopflower.fusion.serialize import (
    arrays_to_metamodel,
    blob_to_metamodel,
    is_metamodel_arrays,
    metamodel_to_arrays,
    metamodel_to_blob,
)
from coopflower.fusion.train import compute_features, fuse_models

__all__ = [
    "EpochRecord",
    "Factories",
    "Factory",
    "FeatureExtractor",
    "FusionAggregate",
    "FusionConfig",
    "FusionError",
    "FusionMetrics",
    "FusionResult",
    "Heads",
    "MetaModel",
    "PrivateModel",
    "Strategy",
    "Transform",
    "arrays_to_metamodel",
    "as_inputs",
    "blob_to_metamodel",
    "block_mask",
    "compute_features",
    "find_head",
    "fit_metamodel",
    "fuse_models",
    "identity_mask",
    "images_to_tensor",
    "is_metamodel_arrays",
    "make_fusion_aggregate",
    "metamodel_to_arrays",
    "metamodel_to_blob",
    "shift_images",
]

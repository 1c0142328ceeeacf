"""Fusion of accepted private models into a MetaModel (paper section IV-D).

Strategy I (random ``A``, ``B``) and Strategy II (gradual fusion), trained by the initiator on
its own data; serialisable to a model blob so the strategy stores it by CID.
"""

from coopflower.fusion.aggregate import FusionAggregate, make_fusion_aggregate
from coopflower.fusion.metamodel import FusionError, MetaModel, Strategy, block_mask, identity_mask
from coopflower.fusion.serialize import (
    arch_name,
    arrays_to_metamodel,
    blob_to_metamodel,
    is_metamodel_arrays,
    metamodel_to_arrays,
    metamodel_to_blob,
)
from coopflower.fusion.train import (
    EpochRecord,
    FusionConfig,
    FusionMetrics,
    FusionResult,
    PrivateModel,
    compute_features,
    fit_metamodel,
    fuse_models,
    images_to_tensor,
    shift_images,
)

__all__ = [
    "EpochRecord",
    "FusionAggregate",
    "FusionConfig",
    "FusionError",
    "FusionMetrics",
    "FusionResult",
    "MetaModel",
    "PrivateModel",
    "Strategy",
    "arch_name",
    "arrays_to_metamodel",
    "is_metamodel_arrays",
    "make_fusion_aggregate",
    "metamodel_to_arrays",
    "blob_to_metamodel",
    "block_mask",
    "compute_features",
    "fit_metamodel",
    "fuse_models",
    "identity_mask",
    "images_to_tensor",
    "metamodel_to_blob",
    "shift_images",
]

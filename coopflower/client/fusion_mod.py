"""The coordinated round with MetaModel fusion: contributors keep their own architectures.

With fusion (``CoordinatedStrategy(inner, aggregate_fn=make_fusion_aggregate(...))``) the round's
result is the initiator's MetaModel, which fits no contributor, so the train messages carry no
arrays: each node continues its own private model. The mod keeps that model (in the node's
``context.state``) and hands it to the app's train as the ordinary ``arrays`` of a train
message, so the app's handlers stay as they are, apart from building the model the arrays fit::

    from coopflower.client.fusion_mod import make_fusion_mod
    from bcapp.task import Net

    factories = {"narrow": lambda: Net(8), "wide": lambda: Net(32)}
    arch_of = lambda context: "wide" if context.node_config["partition-id"] % 2 else "narrow"
    app = ClientApp(mods=[make_fusion_mod(factories, arch_of)])

In round 1 (or on a node's first train) the model is ``factories[arch_of(context)]()``'s fresh
state. The blob names the architecture key, which the initiator's fusion resolves with the same
factories; a verifier checks a blob's arrays against its named architecture's names and shapes
(an unknown key is a "no") before the app's evaluate sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from coopflower.client import mod as M
from coopflower.client import stages as S

__all__ = ["make_fusion_mod", "OWN_MODEL"]

OWN_MODEL = "coop-own-model"  # the node's private model in its context.state

Factories = Mapping[str, Callable[[], torch.nn.Module]]


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def make_fusion_mod(factories: Factories, arch_of: Callable[[Context], str],
                    ) -> Callable[..., Message]:
    """A mod like ``coop_mod`` for fusion tasks, over the app's own architectures.

    Args:
        factories: architecture key -> zero-argument constructor of the app's model (the same
            mapping the initiator's ``make_fusion_aggregate`` gets).
        arch_of: the node's architecture key (e.g. from its node config).

    Returns:
        The mod, for ``ClientApp(mods=[...])``.
    """
    if not factories:
        raise ValueError("make_fusion_mod needs at least one architecture")
    expected = {key: _shapes(make()) for key, make in factories.items()}

    def own_arrays(context: Context, arch: str) -> ArrayRecord:
        kept = context.state.array_records.get(OWN_MODEL)
        if kept is not None and len(kept):
            return kept
        return ArrayRecord(factories[arch]().state_dict())

    def train(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        arch = arch_of(context)
        if arch not in factories:
            raise M.CoopModError(f"the node's architecture {arch!r} is none of the factories' "
                                 f"{sorted(factories)}")
        content = RecordDict(dict(msg.content.items()))
        for name in list(content.array_records):
            del content[name]
        content["arrays"] = own_arrays(context, arch)
        msg = M._for_app(msg, content)

        def pack(arrays: Mapping[str, np.ndarray], meta: dict[str, str],
                 coop: Mapping[str, Any], store: str | None) -> bytes:
            from coopflower.blob import pack_arrays

            context.state[OWN_MODEL] = ArrayRecord({k: Array(np.asarray(v))
                                                    for k, v in arrays.items()})
            return pack_arrays(dict(arrays), {**meta, "model": arch})

        return M.train_stage(msg, context, call_next, packer=pack)

    def check(arrays: Mapping[str, np.ndarray], meta: Mapping[str, str]) -> str:
        arch = meta.get("model", "")
        if arch not in expected:
            return f"architecture {arch!r} is none of the task's {sorted(expected)}"
        return S.shape_mismatch(arrays, expected[arch])

    def fusion_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        stage = S.stage_of(msg.content.config_records)
        coop = msg.content.config_records.get(S.COOP)
        fusing = coop is not None and bool(coop.get("fusion"))
        if stage == S.TRAIN and fusing:
            return train(msg, context, call_next)
        if stage == S.VERIFY and fusing:
            return M.verify_stage(msg, context, call_next, check=check)
        return M.coop_mod(msg, context, call_next)

    return fusion_mod

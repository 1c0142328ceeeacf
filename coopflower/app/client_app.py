"""The paper app's ClientApp, in the shape of Flower's templates: its own ``@app.train`` (the
paper's CNN trained with ``coopflower.training`` on the node's MNIST partition) and
``@app.evaluate`` (on the node's verification digits, all of their classes), and coopflower's
mods for the coordinated round.

One ClientApp serves every run of the ServerApp (``coopflower.app.server_app``): the FedAvg
baseline's plain messages pass through the mods to the app's handlers; of the coordinated
round's messages, those that ask for IVHE encryption go to ``make_ivhe_mod`` (the node's
digits for cipherspace verification, the global model's architecture for the encrypted layer)
and the rest to ``make_fusion_mod`` over the paper's CNNs, which answers fusion tasks itself
and every other stage as ``coop_mod`` does. Neither mod combines with the other (a task that
asks for both is refused by the ServerApp's settings).

For a simulation whose nodes should all get some node config keys (Flower gives a simulated
node only ``partition-id`` and ``num-partitions``)::

    from coopflower.app.client_app import make_client_app

    app = make_client_app({"partition-file": "/tmp/parts.npz", "model": "table4"})

Node config keys: see ``coopflower.app.node``, and ``coopflower.app.attacks`` for a node that
poisons its training (``attack``). Train config keys: ``epochs``, ``lr``, ``batch-size``,
``seed``, ``model`` (the architecture when neither the node config nor the global model names
one) and the recipe's (``coopflower.app.node.train_recipe``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from coopflower.app.node import (
    DEFAULT_MODEL,
    NodeConfigError,
    NodeSettings,
    config_float,
    config_str,
    local_data,
    train_recipe,
)

if TYPE_CHECKING:
    from flwr.clientapp.typing import ClientAppCallable, Mod
    from torch import nn

__all__ = ["app", "train", "evaluate", "paper_mod", "make_client_app", "fill_node_config",
           "architecture_of"]

NodeConfigValue = str | int | float | bool
Shapes = Mapping[str, Sequence[int]]


# ---------------------------------------------------------------- the paper's architectures
@functools.lru_cache(maxsize=1)
def _signatures() -> dict[tuple[tuple[str, tuple[int, ...]], ...], str]:
    from coopflower.models import MODEL_NAMES, build_model

    return {tuple(sorted((k, tuple(v.shape)) for k, v in build_model(n).state_dict().items())): n
            for n in MODEL_NAMES}


def architecture_of(shapes: Shapes) -> str | None:
    """The paper CNN (Table I/IV name) whose names and shapes ``shapes`` are, or ``None``."""
    return _signatures().get(tuple(sorted((k, tuple(int(d) for d in v))
                                          for k, v in shapes.items())))


def _shapes(record: ArrayRecord | None) -> dict[str, tuple[int, ...]]:
    return {k: tuple(a.shape) for k, a in (record or ArrayRecord()).items()}


def _node_model(settings: NodeSettings, arrays: ArrayRecord | None,
                cfg: Mapping[str, Any]) -> str:
    """The node's architecture: its node config's ``model``, else the global model's, else
    the train config's ``model``, else ``table4``."""
    return (settings.model or architecture_of(_shapes(arrays))
            or config_str(cfg, "model", DEFAULT_MODEL))


def _load(model: nn.Module, name: str, arrays: ArrayRecord) -> None:
    from coopflower.training import set_weights

    theirs, ours = _shapes(arrays), {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if theirs != ours:
        raise NodeConfigError(f"the model sent does not fit this node's {name}: FedAvg and the "
                              "coordinated round's averaging need one architecture (fusion, "
                              "aggregation I or II, takes several)")
    set_weights(model, {k: np.asarray(a.numpy()) for k, a in arrays.items()})


def _arrays_of(model: nn.Module) -> ArrayRecord:
    return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in model.state_dict().items()})


# ---------------------------------------------------------------- coopflower's mods
def _verify_data(context: Context) -> list[tuple[np.ndarray, np.ndarray]]:
    """The node's verification digits as the IVHE mod evaluates them: floats in [0, 1]."""
    from coopflower.training import to_tensor

    data = local_data(NodeSettings.from_node_config(context.node_config))
    return [(to_tensor(data.verify_x).numpy(), data.verify_y)]


@functools.lru_cache(maxsize=8)
def _ivhe_mod(name: str) -> Callable[..., Message]:
    from coopflower.client.ivhe_mod import make_ivhe_mod
    from coopflower.models import build_model

    return make_ivhe_mod(functools.partial(build_model, name), _verify_data)


def _fusion_arch(context: Context) -> str:
    return NodeSettings.from_node_config(context.node_config).model or DEFAULT_MODEL


@functools.lru_cache(maxsize=1)
def _fusion_mod() -> Callable[..., Message]:
    from coopflower.client.fusion_mod import make_fusion_mod
    from coopflower.models import model_factories

    return make_fusion_mod(model_factories(), _fusion_arch)


def _round_model(msg: Message, context: Context, coop: Mapping[str, Any]) -> str:
    """The architecture an encrypted round uses: the node's own (node config ``model``), else
    the global model's (its arrays on train, the names and shapes the verify stage carries)."""
    from coopflower.client.stages import decode_shapes

    own = NodeSettings.from_node_config(context.node_config).model
    if own:
        return own
    sent = _shapes(msg.content.array_records.get("arrays"))
    if not sent and "array-names" in coop:
        sent = decode_shapes(coop)
    return architecture_of(sent) or DEFAULT_MODEL


def paper_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """coopflower's mod for this app: ``make_ivhe_mod`` for a round that asks for encryption,
    else ``make_fusion_mod`` (fusion tasks; every other stage as ``coop_mod``; plain Flower
    messages pass through to the app)."""
    import torch

    from coopflower.client.stages import COOP, TRAIN, stage_of

    coop = msg.content.config_records.get(COOP)
    if coop is not None and coop.get("encryption"):
        return _ivhe_mod(_round_model(msg, context, coop))(msg, context, call_next)
    if coop is not None and coop.get("fusion") and stage_of(msg.content.config_records) == TRAIN:
        # a contributor's first fused round starts from the factory's fresh model: seeded by
        # the run's seed, it is the ServerApp's initial model (server_app.initial_arrays)
        cfg = msg.content.config_records.get("config", ConfigRecord())
        torch.manual_seed(int(config_float(cfg, "seed", 0)))
    return _fusion_mod()(msg, context, call_next)


# ---------------------------------------------------------------- the app
app = ClientApp(mods=[paper_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the node's paper CNN on its training digits, from the arrays it was sent (or
    attack, as its node config's ``attack`` says: ``coopflower.app.attacks``)."""
    import torch

    from coopflower.app.attacks import NodeAttack
    from coopflower.models import build_model
    from coopflower.training import evaluate_model, train_model

    t0 = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    cfg = msg.content.config_records.get("config", ConfigRecord())
    recipe = train_recipe(cfg)
    arrays = msg.content.array_records.get("arrays")
    name = _node_model(settings, arrays, cfg)
    seed = int(config_float(cfg, "seed", 0)) * 1000 + settings.partition_id
    torch.manual_seed(seed)
    model = build_model(name)
    if arrays is not None and len(arrays):
        _load(model, name, arrays)
    data = local_data(settings)
    attack = NodeAttack.from_node_config(context.node_config)
    rnd = int(config_float(cfg, "server-round", 0))
    if attack.trains:
        res: Any = train_model(model, data.train_x, attack.labels(data.train_y),
                               epochs=int(config_float(cfg, "epochs", 1)),
                               lr=config_float(cfg, "lr", 0.05),
                               batch_size=int(config_float(cfg, "batch-size", 32)),
                               momentum=recipe.momentum, seed=seed + rnd,
                               augment=recipe.augment, lr_schedule=recipe.lr_schedule)
    else:  # a free rider: the model it was sent, on its training digits
        res = evaluate_model(model, data.train_x, data.train_y)
    metrics = MetricRecord({"num-examples": res.num_examples, "train-loss": res.loss,
                            "train-accuracy": res.accuracy, "compute-seconds": res.seconds,
                            "handler-seconds": time.perf_counter() - t0})
    # what the node replies (and coopflower's mod signs): the trained model, or the attack's
    out = attack.replied(arrays, _arrays_of(model), settings.partition_id, rnd)
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=msg)


@functools.lru_cache(maxsize=8)
def _scratch_model(name: str) -> Any:
    """One module per architecture and process, loaded again for each model evaluated."""
    from coopflower.models import build_model

    return build_model(name)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The model sent, of whichever paper architecture its arrays are, on the node's
    verification digits: every digit, whatever classes the model was trained on."""
    from coopflower.training import evaluate_model

    t0 = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    data = local_data(settings)
    if data.verify_y.size == 0:
        source = (f"its partition file {settings.partition_file}" if settings.partition_file
                  else "its split")
        raise NodeConfigError(f"node {settings.partition_id} cannot evaluate: {source} gives "
                              "it no verification digits (a pure contributor)")
    arrays = msg.content.array_records.get("arrays")
    name = architecture_of(_shapes(arrays))
    if arrays is None or name is None:
        raise NodeConfigError("the model sent is none of the paper's architectures")
    model = _scratch_model(name)
    _load(model, name, arrays)
    res = evaluate_model(model, data.verify_x, data.verify_y)
    metrics = MetricRecord({"accuracy": res.accuracy, "loss": res.loss,
                            "num-examples": res.num_examples, "compute-seconds": res.seconds,
                            "handler-seconds": time.perf_counter() - t0})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def fill_node_config(defaults: Mapping[str, NodeConfigValue], msg: Message, context: Context,
                     call_next: ClientAppCallable) -> Message:
    """A Flower mod: put ``defaults`` into ``context.node_config`` where the node's own config
    does not set them (its own keys win), then call the next mod and the handler."""
    for key, value in defaults.items():
        context.node_config.setdefault(key, value)
    return call_next(msg, context)


def make_client_app(node_config: Mapping[str, NodeConfigValue] | None = None) -> ClientApp:
    """The paper app's ClientApp whose nodes also get ``node_config``'s keys where their own
    node config lacks them. Module-level functions only, so it pickles to Ray actors.

    Args:
        node_config: e.g. ``{"partition-file": "/tmp/parts.npz", "model": "table4"}``.

    Returns:
        The new ``ClientApp``. Raises ``NodeConfigError`` on a value that is not str, int,
        float or bool.
    """
    defaults = dict(node_config or {})
    for key, value in defaults.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise NodeConfigError(f"node config {key!r}: {value!r} is not str/int/float/bool")
    mods: list[Mod] = [functools.partial(fill_node_config, defaults)] if defaults else []
    out = ClientApp(mods=[*mods, paper_mod])
    out.train()(train)
    out.evaluate()(evaluate)
    return out


"""The contributor's handlers: train (computing contributor), verify (verification
contributor), evaluate (Flower's federated evaluation) and register (signed consent).

Each handler is a thin adapter: it reads the message and the node config, calls the pure
pieces (``coopflower.training``, ``coopflower.blob``, the ledger's EIP-712 signing, the store)
and builds the reply. Errors inside a handler surface to the strategy as Flower error replies,
which it records; a malformed model under verification is a signed "no" vote, not an error.

A contributor whose architecture the global model does not fit (a MetaModel under gradual
fusion, sent down as empty arrays) keeps its own trained weights in ``context.state`` (which
Flower carries from one message of a run to the node's next) and continues from them in the
next round, instead of starting from scratch each round.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from coopflower.app.node import (
    DEFAULT_MODEL,
    LocalData,
    NodeSettings,
    TrainRecipe,
    local_data,
    train_recipe,
)
from coopflower.client import protocol as P
from coopflower.client.keys import NodeKey, load_or_create_key

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp
    from flwr.clientapp.typing import ClientAppCallable, Mod
    from torch import nn


__all__ = ["NodeSettings", "LocalData", "local_data", "register_handlers", "handle_train",
           "handle_verify", "handle_evaluate", "handle_register", "TrainRecipe", "train_recipe",
           "make_client_app", "fill_node_config", "PRIVATE_MODEL", "PRIVATE_MODEL_INFO"]

# context.state keys: the contributor's own trained weights and {model, round} they belong to
PRIVATE_MODEL = "coopflower.private-model"
PRIVATE_MODEL_INFO = "coopflower.private-model-info"
NodeConfigValue = str | int | float | bool


def _config(msg: Message, key: str = P.CONFIG) -> ConfigRecord:
    try:
        return msg.content.config_records[key]
    except KeyError:
        raise P.ProtocolError(f"message {msg.metadata.message_type} has no {key!r}") from None


def _store_spec(settings: NodeSettings, cfg: Mapping[str, Any]) -> str | None:
    if settings.store:
        return settings.store
    spec = cfg.get("store")
    return str(spec) if spec else None


def _arrays_of(model: nn.Module) -> ArrayRecord:
    return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in model.state_dict().items()})


def _load_global(model: nn.Module, record: ArrayRecord | None) -> bool:
    """Load the global model into ``model`` when it fits its architecture; True if loaded."""
    from coopflower.training import set_weights

    if record is None or len(record) == 0:
        return False
    weights = {k: a.numpy() for k, a in record.items()}
    state = model.state_dict()
    if set(weights) != set(state) or any(
        tuple(weights[k].shape) != tuple(state[k].shape) for k in state
    ):
        return False  # heterogeneous architectures: this contributor keeps its own model
    set_weights(model, weights)
    return True


@functools.lru_cache(maxsize=1)
def _signatures() -> dict[tuple[tuple[str, tuple[int, ...]], ...], str]:
    from coopflower.models import MODEL_NAMES, build_model

    out = {}
    for name in MODEL_NAMES:
        state = build_model(name).state_dict()
        out[tuple(sorted((k, tuple(v.shape)) for k, v in state.items()))] = name
    return out


def _model_name(settings: NodeSettings, arrays: ArrayRecord | None,
                cfg: Mapping[str, Any]) -> str:
    """The node's architecture: its node config's ``model`` if set, else the global model's
    (recognised by its names and shapes), else the config's ``model``, else the default."""
    if settings.model:
        return settings.model
    if arrays is not None and len(arrays):
        sig = tuple(sorted((k, tuple(a.shape)) for k, a in arrays.items()))
        found = _signatures().get(sig)
        if found:
            return found
    return P.get_str(cfg, "model", DEFAULT_MODEL)


def _node_key(settings: NodeSettings, context: Context) -> NodeKey:
    return load_or_create_key(settings.key_file)


def _resume_private(model: nn.Module, name: str, state: RecordDict) -> int:
    """Load the contributor's own weights kept in ``state`` by an earlier round into ``model``
    when they are of the same architecture ``name``.

    Returns:
        The server round they were trained in (0: nothing to continue from).
    """
    info = state.config_records.get(PRIVATE_MODEL_INFO)
    record = state.array_records.get(PRIVATE_MODEL)
    if info is None or record is None or info.get("model") != name:
        return 0
    if not _load_global(model, record):
        return 0
    rnd = info.get("round", 0)
    return int(rnd) if isinstance(rnd, int) else 0


def _keep_private(model: nn.Module, name: str, server_round: int, state: RecordDict) -> None:
    """Keep the contributor's trained weights in ``state`` for its next round."""
    state.array_records[PRIVATE_MODEL] = _arrays_of(model)
    state.config_records[PRIVATE_MODEL_INFO] = ConfigRecord(
        {"model": name, "round": max(server_round, 1)})


def handle_train(msg: Message, context: Context) -> Message:
    """Train locally; in ``coop`` mode upload the blob and return a signed submission."""
    import torch

    from coopflower.models import build_model
    from coopflower.training import train_model

    t0 = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    cfg = _config(msg)
    mode = P.get_str(cfg, "mode", P.MODE_FEDAVG)
    recipe = train_recipe(cfg)
    server_round = P.get_int(cfg, "server-round", 0)
    data = local_data(settings)
    seed = P.get_int(cfg, "seed", 0) * 1000 + settings.partition_id
    torch.manual_seed(seed)
    arrays = msg.content.array_records.get(P.ARRAYS)
    name = _model_name(settings, arrays, cfg)
    model = build_model(name)
    loaded = _load_global(model, arrays)
    if not loaded and mode == P.MODE_FEDAVG and arrays:
        raise P.ProtocolError(f"the global model does not fit this node's {name}: FedAvg "
                              "needs one architecture (use the coordinated strategy)")
    # no usable global model: continue from this contributor's own model of an earlier round
    continued = 0 if loaded else _resume_private(model, name, context.state)
    res = train_model(
        model, data.train_x, data.train_y,
        epochs=P.get_int(cfg, "epochs", 1),
        lr=P.get_float(cfg, "lr", 0.05),
        batch_size=P.get_int(cfg, "batch-size", 32),
        momentum=recipe.momentum,
        seed=seed + server_round,
        augment=recipe.augment,
        lr_schedule=recipe.lr_schedule,
    )
    metrics: dict[str, int | float | list[int] | list[float]] = {
        "num-examples": res.num_examples,
        "train-loss": res.loss,
        "train-accuracy": res.accuracy,
        "compute-seconds": res.seconds,
    }
    if mode == P.MODE_FEDAVG:
        metrics["handler-seconds"] = time.perf_counter() - t0
        content = RecordDict({P.ARRAYS: _arrays_of(model), P.METRICS: MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)
    if mode != P.MODE_COOP:
        raise P.ProtocolError(f"unknown mode {mode!r}")
    _keep_private(model, name, server_round, context.state)
    metrics["continued-from-round"] = continued

    from coopflower.app import judge
    from coopflower.blob import state_dict_to_blob
    from coopflower.client import duties

    classes = sorted(settings.labels) if settings.labels else sorted(
        int(c) for c in np.unique(data.train_y)
    )
    meta = {
        "model": name,
        "classes": ",".join(map(str, classes)),
        "num-examples": str(res.num_examples),
    }
    store_spec = _store_spec(settings, cfg)
    if P.get_str(cfg, "encryption", ""):
        blob = judge.encrypt_blob(model, cfg, store_spec, meta)
    else:
        blob = state_dict_to_blob(model, metadata=meta)
    key = _node_key(settings, context)
    sub = duties.make_submission(key, cfg, blob, store_spec)
    metrics["blob-bytes"] = len(blob)
    metrics["handler-seconds"] = time.perf_counter() - t0
    record = ConfigRecord({
        "cid": sub.cid,
        "content-hash": sub.content_hash,
        "signature": sub.signature,
        "contributor": key.address,
        "model": name,
    })
    content = RecordDict({P.SUBMISSION: record, P.METRICS: MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def _need_verify_data(settings: NodeSettings, data: LocalData, duty: str) -> None:
    """Raise ``ProtocolError`` when the node holds no verification digits (a pure contributor,
    e.g. an empty ``verify-<pid>`` in its partition file) but is asked to ``duty``."""
    if data.verify_y.size == 0:
        source = (f"its partition file {settings.partition_file}" if settings.partition_file
                  else "its split")
        raise P.ProtocolError(f"node {settings.partition_id} cannot {duty}: {source} gives it "
                              "no verification digits (a pure contributor)")


def handle_verify(msg: Message, context: Context) -> Message:
    """Fetch each assigned model by CID, check it, evaluate it on local data, vote (signed)."""
    from coopflower.app import judge
    from coopflower.client import duties

    t0 = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    cfg = _config(msg)
    ids = P.get_list(cfg, "submission-ids", int)
    cids = P.get_list(cfg, "cids", bytes)
    hashes = P.get_list(cfg, "content-hashes", bytes)
    if not (len(ids) == len(cids) == len(hashes)):
        raise P.ProtocolError("submission-ids, cids and content-hashes differ in length")
    min_bps = P.get_int(cfg, "min-accuracy-bps")
    data = local_data(settings)
    if ids:
        _need_verify_data(settings, data, "verify")
    key = _node_key(settings, context)
    store_spec = _store_spec(settings, cfg)
    approve: list[bool] = []
    sigs: list[bytes] = []
    acc_bps: list[int] = []
    reasons: list[str] = []
    compute = 0.0
    n_eval = 0
    fetched = 0
    for sid, cid, chash in zip(ids, cids, hashes, strict=True):
        verdict = judge.judge_model(store_spec, bytes(cid), bytes(chash), data.verify_x,
                                    data.verify_y, min_bps)
        compute += verdict.compute_seconds
        n_eval += verdict.num_examples
        fetched += verdict.fetched_bytes
        approve.append(verdict.approve)
        acc_bps.append(verdict.accuracy_bps)
        reasons.append(verdict.reason)
        digest = duties.model_digest(bytes(cid), bytes(chash))
        sigs.append(
            duties.sign_vote(key, cfg, int(sid), digest, verdict.approve, verdict.accuracy_bps)
        )
    record = ConfigRecord({
        "submission-ids": [int(i) for i in ids],
        "approve": approve,
        "signatures": sigs,
        "accuracy-bps": acc_bps,
        "reasons": reasons,
        "verifier": key.address,
    })
    metrics = MetricRecord({
        "num-examples": n_eval,
        "compute-seconds": compute,
        "fetched-bytes": fetched,
        "handler-seconds": time.perf_counter() - t0,
    })
    return Message(content=RecordDict({P.VOTES: record, P.METRICS: metrics}), reply_to=msg)


def handle_evaluate(msg: Message, context: Context) -> Message:
    """Flower's federated evaluation: the global model on the node's verification data."""
    from coopflower.models import build_model
    from coopflower.training import evaluate_model

    t0 = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    data = local_data(settings)
    _need_verify_data(settings, data, "evaluate")
    arrays = msg.content.array_records.get(P.ARRAYS)
    name = _model_name(settings, arrays, {})
    model = build_model(name)
    if not _load_global(model, arrays):
        raise P.ProtocolError(f"the global model does not fit this node's {name}")
    res = evaluate_model(model, data.verify_x, data.verify_y)
    metrics = MetricRecord({
        "num-examples": res.num_examples,
        "eval-loss": res.loss,
        "eval-accuracy": res.accuracy,
        "compute-seconds": res.seconds,
        "handler-seconds": time.perf_counter() - t0,
    })
    return Message(content=RecordDict({P.METRICS: metrics}), reply_to=msg)


def handle_register(msg: Message, context: Context) -> Message:
    """Answer with the node's address and its signed consent to be registered."""
    from coopflower.client import duties

    settings = NodeSettings.from_node_config(context.node_config)
    key = _node_key(settings, context)
    cfg = _config(msg)
    record = ConfigRecord({
        "address": key.address,
        "signature": duties.sign_registration(key, cfg),
        "partition-id": settings.partition_id,
        "model": settings.model or "",
    })
    return Message(content=RecordDict({P.REGISTRATION: record}), reply_to=msg)


def register_handlers(app: ClientApp) -> ClientApp:
    """Register the four handlers on ``app`` (see ``coopflower.client``)."""
    app.train()(handle_train)
    app.evaluate()(handle_evaluate)
    app.evaluate("verify")(handle_verify)
    app.query("register")(handle_register)
    return app


def fill_node_config(defaults: Mapping[str, NodeConfigValue], msg: Message, context: Context,
                     call_next: ClientAppCallable) -> Message:
    """A Flower mod: put ``defaults`` into ``context.node_config`` where the node's own config
    does not set them (its own keys win), then call the handler.

    Args:
        defaults: node config keys and values. msg, context, call_next: as for any mod.

    Returns:
        The handler's reply.
    """
    for key, value in defaults.items():
        context.node_config.setdefault(key, value)
    return call_next(msg, context)


def make_client_app(node_config: Mapping[str, NodeConfigValue] | None = None) -> ClientApp:
    """A ``ClientApp`` with the four handlers whose nodes also get ``node_config``'s keys where
    their own node config lacks them (in simulation Flower sets only ``partition-id`` and
    ``num-partitions``). Module-level functions only, so it pickles to Ray actors.

    Args:
        node_config: e.g. ``{"partition-file": "/tmp/parts.npz", "model": "table4"}``.

    Returns:
        The new ``ClientApp``. Raises ``ProtocolError`` on a value that is not str, int, float
        or bool.
    """
    from flwr.clientapp import ClientApp

    defaults = dict(node_config or {})
    for key, value in defaults.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise P.ProtocolError(f"node config {key!r}: {value!r} is not str/int/float/bool")
    mods: list[Mod] = [functools.partial(fill_node_config, defaults)] if defaults else []
    return register_handlers(ClientApp(mods=mods))


"""A small Flower app (an MLP on a synthetic 3-class task, the shape of Flower's template) and
misbehaving variants of its handlers, for the plugin's failure tests. Nothing here knows
coopflower except where a test says so (``mods=[coop_mod]``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

W = np.random.default_rng(0).normal(size=(8, 3))


def load_data(pid: int, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(pid + 10)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return torch.tensor(x), torch.tensor((x @ W).argmax(1))


def Net() -> torch.nn.Module:  # noqa: N802 - the template's name
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def train(msg: Message, context: Context) -> Message:
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = load_data(int(context.node_config["partition-id"]))
    opt = torch.optim.SGD(net.parameters(), lr=float(msg.content["config"]["lr"]))
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    metrics = MetricRecord({"train_loss": float(loss.detach()), "num-examples": len(y)})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}),
                   reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = load_data(100 + int(context.node_config["partition-id"]))
    metrics = MetricRecord({"eval_acc": accuracy(net, x, y), "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def misfit_train(msg: Message, context: Context) -> Message:
    """Node 0 returns another architecture, node 1 raises; the others train."""
    pid = int(context.node_config["partition-id"])
    if pid == 0:
        other = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
        return Message(RecordDict({"arrays": ArrayRecord(other.state_dict()),
                                   "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)
    if pid == 1:
        raise RuntimeError("the app's data loader broke")
    return train(msg, context)


def central(x_seed: int = 999):  # type: ignore[no-untyped-def]
    x, y = load_data(x_seed)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = Net()
        net.load_state_dict(arrays.to_torch_state_dict())
        return MetricRecord({"accuracy": accuracy(net, x, y)})

    return evaluate_fn


def free_rider_train(msg: Message, context: Context) -> Message:
    """Node 0 returns the model it was sent, unchanged (claiming its examples); the others
    train."""
    if int(context.node_config["partition-id"]) == 0:
        metrics = MetricRecord({"train_loss": 0.0, "num-examples": 200})
        return Message(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}),
                       reply_to=msg)
    return train(msg, context)


def _nudged(record: ArrayRecord, scale: float = 1e-6, seed: int = 0) -> ArrayRecord:
    """The arrays plus noise of ``scale`` times each array's spread: looks new, is not."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, arr in record.to_torch_state_dict().items():
        a = arr.numpy()
        out[name] = torch.tensor(a + scale * (float(a.std()) or 1.0)
                                 * rng.normal(size=a.shape).astype(a.dtype))
    return ArrayRecord(out)


def noisy_rider_train(msg: Message, context: Context) -> Message:
    """Node 0 returns the model it was sent with a millionth of noise added (no exact copy);
    the others train."""
    if int(context.node_config["partition-id"]) == 0:
        metrics = MetricRecord({"train_loss": 0.0, "num-examples": 200})
        return Message(RecordDict({"arrays": _nudged(msg.content["arrays"]),
                                   "metrics": metrics}), reply_to=msg)
    return train(msg, context)


def _stale(msg: Message, context: Context, resubmit: Callable[[ArrayRecord, int], Message],
           ) -> Message:
    """Node 0 trains in round 1 and keeps that model; in every later round it replies
    ``resubmit(kept, server_round)``. The others train."""
    if int(context.node_config["partition-id"]) != 0:
        return train(msg, context)
    kept = context.state.array_records.get("stale-kept")
    if kept is None:
        reply = train(msg, context)
        context.state["stale-kept"] = reply.content["arrays"]
        return reply
    return resubmit(kept, int(msg.content["config"]["server-round"]))


def stale_train(msg: Message, context: Context) -> Message:
    """Node 0 trains in round 1, then resubmits that (accepted) model, nudged anew, in every
    later round; the others train."""
    metrics = MetricRecord({"train_loss": 0.0, "num-examples": 200})
    return _stale(msg, context, lambda kept, rnd: Message(
        RecordDict({"arrays": _nudged(kept, seed=rnd), "metrics": metrics}), reply_to=msg))


def stale_copy_train(msg: Message, context: Context) -> Message:
    """Node 0 trains in round 1, then returns that (accepted) model's arrays unchanged in every
    later round, claiming another example count each time: a new blob (the count is in its
    metadata), so a new content hash the contract does not know."""
    return _stale(msg, context, lambda kept, rnd: Message(RecordDict({
        "arrays": kept,
        "metrics": MetricRecord({"train_loss": 0.0, "num-examples": 200 + rnd})}), reply_to=msg))

"""The tiny app of the scale bench: softmax regression (8 features, 3 classes) on a synthetic
task, one local gradient step per round, in numpy (no torch), with ``coop_mod`` around it.

Each node's data comes from its ``partition-id`` (train) and ``1000 + partition-id``
(evaluate): 64 points of a linearly separable 3-class task, so one step from the zero model
already scores well above chance and every honest submission passes the task's criterion.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from coopflower.client import coop_mod

FEATURES, CLASSES, POINTS = 8, 3, 64
_W_TRUE = np.random.default_rng(0).normal(size=(FEATURES, CLASSES))

__all__ = ["FEATURES", "CLASSES", "initial_arrays", "load_data", "app"]


def initial_arrays() -> ArrayRecord:
    """The zero model (weights and bias)."""
    return ArrayRecord({"w": Array(np.zeros((FEATURES, CLASSES), np.float32)),
                        "b": Array(np.zeros(CLASSES, np.float32))})


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``POINTS`` points and their labels, drawn from ``seed``."""
    x = np.random.default_rng(seed).normal(size=(POINTS, FEATURES)).astype(np.float32)
    return x, (x @ _W_TRUE).argmax(1)


def _model(arrays: ArrayRecord) -> tuple[np.ndarray, np.ndarray]:
    return arrays["w"].numpy().astype(np.float32), arrays["b"].numpy().astype(np.float32)


def _probabilities(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


app = ClientApp(mods=[coop_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One gradient step of the cross-entropy on the node's own points."""
    w, b = _model(msg.content["arrays"])
    x, y = load_data(int(context.node_config["partition-id"]))
    lr = float(msg.content["config"].get("lr", 1.0))
    p = _probabilities(w, b, x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    p[np.arange(len(y)), y] -= 1.0
    w = w - lr * (x.T @ p) / len(y)
    b = b - lr * p.mean(0)
    arrays = ArrayRecord({"w": Array(w.astype(np.float32)), "b": Array(b.astype(np.float32))})
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(y)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Accuracy on the node's own held-out points."""
    w, b = _model(msg.content["arrays"])
    x, y = load_data(1000 + int(context.node_config["partition-id"]))
    acc = float((_probabilities(w, b, x).argmax(1) == y).mean())
    return Message(RecordDict({"metrics": MetricRecord({"eval_acc": acc,
                                                        "num-examples": len(y)})}),
                   reply_to=msg)

"""What a SuperNode runs: computing contributors train, upload and sign; verification
contributors fetch, check, evaluate and vote.

A Flower app adopts the coordinated round with one mod; its own ``@app.train`` and
``@app.evaluate`` stay as they are (see ``coopflower.client.mod``)::

    from flwr.clientapp import ClientApp
    from coopflower.client import coop_mod

    app = ClientApp(mods=[coop_mod])

The paper's MNIST app registers coopflower's own handlers instead (``register_handlers``),

or, for a simulation whose nodes should all get some node config keys (Flower gives a simulated
node only ``partition-id`` and ``num-partitions``)::

    from coopflower.client import make_client_app

    app = make_client_app({"partition-file": "/tmp/parts.npz", "model": "table4"})

Node config keys (``flower-supernode --node-config "..."``; simulation sets the first two):
``partition-id``, ``num-partitions``, ``key-file`` (the node's Ethereum key, created on first
start; default ``$COOPFLOWER_HOME/keys/node-<partition-id>.json``, home ``~/.coopflower``),
``model`` (a Table I/IV name, default ``table4``), ``partition`` (``iid``, ``dirichlet``,
``labels``), ``alpha``, ``labels`` (e.g. ``"0,1,2,3,4"``), ``data-seed``, ``store``
(overrides the server's storage spec, e.g. the node's own IPFS RPC URL), ``mnist-dir``,
``partition-file`` (an ``.npz`` of ``train-<pid>``/``verify-<pid>`` index arrays, written by
``coopflower.client.data.write_partition_file``; when set it replaces ``partition``, ``alpha``
and ``data-seed`` for the split, and an empty ``verify-<pid>`` makes a pure contributor).

Train config keys of the local recipe (besides ``epochs``, ``lr``, ``batch-size``, ``seed``):
``momentum`` (default 0.9), ``lr-schedule`` (``constant`` | ``cosine``), ``augment-shift``
(pixels), ``augment-rotate`` (degrees), ``augment-scale`` (fraction), all 0 by default (none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["coop_mod", "register_handlers", "make_client_app"]

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flwr.app import Context, Message
    from flwr.clientapp import ClientApp
    from flwr.clientapp.typing import ClientAppCallable


def coop_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """coopflower's client mod: ``ClientApp(mods=[coop_mod])`` (see ``coopflower.client.mod``).

    It answers the coordinated round's stages (register, train, verify) around the app's own
    ``@app.train`` and ``@app.evaluate``, and passes every other message through.
    """
    from coopflower.client.mod import coop_mod as _mod

    return _mod(msg, context, call_next)


def register_handlers(app: ClientApp) -> ClientApp:
    """Register coopflower's train, verify, evaluate and register handlers on ``app``.

    Args:
        app: the user's ``ClientApp`` (it must not already have a ``train`` handler).

    Returns:
        The same ``app``.
    """
    from coopflower.client.handlers import register_handlers as _register

    return _register(app)



def make_client_app(
    node_config: Mapping[str, str | int | float | bool] | None = None,
) -> ClientApp:
    """A ``ClientApp`` with coopflower's four handlers whose nodes also get ``node_config``'s
    keys where their own node config does not set them (the node's own keys win).

    Args:
        node_config: default node config keys, e.g. ``{"partition-file": "parts.npz"}``.

    Returns:
        The new ``ClientApp`` (it pickles, so it can be shipped to Ray actors).
    """
    from coopflower.client.handlers import make_client_app as _make

    return _make(node_config)

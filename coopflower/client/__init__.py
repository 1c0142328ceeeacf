"""What a SuperNode runs: the client side of the coordinated round, as a Flower mod.

A Flower app adopts the coordinated round with one mod; its own ``@app.train`` and
``@app.evaluate`` stay as they are (see ``coopflower.client.mod``)::

    from flwr.clientapp import ClientApp
    from coopflower.client import coop_mod

    app = ClientApp(mods=[coop_mod])

Node config keys the mod reads (``flower-supernode --node-config "..."``): ``key-file`` (the
node's Ethereum key, created on first start; default
``$COOPFLOWER_HOME/keys/node-<partition-id>.json``, home ``~/.coopflower``) and ``store``
(overrides the server's storage spec, e.g. the node's own IPFS RPC URL). Everything else in
the node config is the app's own.

Modules: ``mod`` (the mod), ``stages`` (its protocol: the ``coop`` record and stage names),
``duties`` (store, hash and sign), ``keys`` (the node key), ``protocol`` (record names and
typed getters shared with the strategy), ``ivhe_mod`` and ``fusion_mod`` (the mod for IVHE and
fusion tasks). The paper's MNIST app, ``coopflower.app``, is an app like any other on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["coop_mod"]

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.clientapp.typing import ClientAppCallable


def coop_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """coopflower's client mod: ``ClientApp(mods=[coop_mod])`` (see ``coopflower.client.mod``).

    It answers the coordinated round's stages (register, train, verify) around the app's own
    ``@app.train`` and ``@app.evaluate``, and passes every other message through.
    """
    from coopflower.client.mod import coop_mod as _mod

    return _mod(msg, context, call_next)

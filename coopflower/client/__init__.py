"""What a SuperNode runs: computing contributors train, upload and sign; verification
contributors fetch, check, evaluate and vote.

One call adds the handlers to a user's existing ClientApp::

    from flwr.clientapp import ClientApp
    from coopflower.client import register_handlers

    app = ClientApp()
    register_handlers(app)

Node config keys (``flower-supernode --node-config "..."``; simulation sets the first two):
``partition-id``, ``num-partitions``, ``key-file`` (the node's Ethereum key, created on first
start; default ``$COOPFLOWER_HOME/keys/node-<partition-id>.json``, home ``~/.coopflower``),
``model`` (a Table I/IV name, default ``table4``), ``partition`` (``iid``, ``dirichlet``,
``labels``), ``alpha``, ``labels`` (e.g. ``"0,1,2,3,4"``), ``data-seed``, ``store``
(overrides the server's storage spec, e.g. the node's own IPFS RPC URL), ``mnist-dir``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["register_handlers"]

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp


def register_handlers(app: ClientApp) -> ClientApp:
    """Register coopflower's train, verify, evaluate and register handlers on ``app``.

    Args:
        app: the user's ``ClientApp`` (it must not already have a ``train`` handler).

    Returns:
        The same ``app``.
    """
    from coopflower.client.handlers import register_handlers as _register

    return _register(app)


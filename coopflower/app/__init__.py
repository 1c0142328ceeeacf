"""The paper's MNIST app, shipped as ``coopflower.app``: ``server_app.app`` (ServerApp) and
``client_app.app`` (ClientApp).

It is one app built on coopflower, not coopflower itself: its models (``coopflower.models``,
Tables I and IV), training recipe (``coopflower.training``), MNIST loading and partitions
(``coopflower.data``, ``coopflower.app.data``) and its node handlers
(``coopflower.app.handlers``, ``coopflower.app.judge``) stay here; the strategy, the client
mod, the crypto, fusion, ledger and storage packages import none of them.

Its ClientApp registers the paper app's own handlers (``handlers.register_handlers``), or, for
a simulation whose nodes should all get some node config keys (Flower gives a simulated
node only ``partition-id`` and ``num-partitions``)::

    from coopflower.app.handlers import make_client_app

    app = make_client_app({"partition-file": "/tmp/parts.npz", "model": "table4"})

Node config keys (``flower-supernode --node-config "..."``; simulation sets the first two):
``partition-id``, ``num-partitions``, ``key-file`` (the node's Ethereum key, created on first
start; default ``$COOPFLOWER_HOME/keys/node-<partition-id>.json``, home ``~/.coopflower``),
``model`` (a Table I/IV name, default ``table4``), ``partition`` (``iid``, ``dirichlet``,
``labels``), ``alpha``, ``labels`` (e.g. ``"0,1,2,3,4"``), ``data-seed``, ``store``
(overrides the server's storage spec, e.g. the node's own IPFS RPC URL), ``mnist-dir``,
``partition-file`` (an ``.npz`` of ``train-<pid>``/``verify-<pid>`` index arrays, written by
``coopflower.app.data.write_partition_file``; when set it replaces ``partition``, ``alpha``
and ``data-seed`` for the split, and an empty ``verify-<pid>`` makes a pure contributor).

Train config keys of the local recipe (besides ``epochs``, ``lr``, ``batch-size``, ``seed``):
``momentum`` (default 0.9), ``lr-schedule`` (``constant`` | ``cosine``), ``augment-shift``
(pixels), ``augment-rotate`` (degrees), ``augment-scale`` (fraction), all 0 by default (none).
"""

"""The paper's MNIST app, shipped as ``coopflower.app``: ``server_app.app`` (ServerApp) and
``client_app.app`` (ClientApp).

It is one app built on coopflower's public API, as a third party's would be: its ServerApp
wraps Flower's ``FedAvg`` in ``coopflower.strategy.CoordinatedStrategy`` (fusion through
``coopflower.fusion.make_fusion_aggregate``, IVHE through ``encryption="elementwise"``) or runs
the FedAvg baseline; its ClientApp has its own ``@app.train`` and ``@app.evaluate`` and
coopflower's mods (``coopflower.client.ivhe_mod``, ``coopflower.client.fusion_mod``). Its
models (``coopflower.models``, Tables I and IV), training recipe (``coopflower.training``),
MNIST loading and partitions (``coopflower.data``, ``coopflower.app.data``) stay here; the
strategy, the client mods, the crypto, fusion, ledger and storage packages import none of them.

Node config keys: ``coopflower.app.node``; train config keys: ``coopflower.app.client_app``;
run config keys: ``coopflower.app.settings.AppSettings``.
"""

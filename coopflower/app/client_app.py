"""The shipped ClientApp: a plain Flower ``ClientApp`` with coopflower's handlers."""

from __future__ import annotations

from flwr.clientapp import ClientApp

from coopflower.client import register_handlers

app = register_handlers(ClientApp())

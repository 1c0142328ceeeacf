"""The shipped ClientApp: a plain Flower ``ClientApp`` with coopflower's handlers."""

from __future__ import annotations

from coopflower.client import make_client_app

app = make_client_app()

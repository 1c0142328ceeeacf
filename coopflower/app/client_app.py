"""The paper app's ClientApp: a plain Flower ``ClientApp`` with the paper app's handlers."""

from __future__ import annotations

from coopflower.app.handlers import make_client_app

app = make_client_app()

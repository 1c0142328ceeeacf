"""The shipped Flower app: ``server_app.app`` (ServerApp) and ``client_app.app`` (ClientApp)."""

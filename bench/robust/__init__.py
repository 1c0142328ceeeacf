"""bench/robustness.py's parts: the data override (``data``), the attacks as a Flower client mod
(``attacks``), the arms (``arms``) and one simulation per grid cell (``cell``)."""

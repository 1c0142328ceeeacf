"""The paper's case studies (section V), run by ``python -m experiments.paper``."""

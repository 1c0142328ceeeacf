"""Parts of ``bench/scale_round.py``: the tiny app its simulated contributors run, the round it
measures in Flower's simulation engine, and the figures it derives."""

"""The Flower strategies: the coordinated strategy and the FedAvg baseline."""

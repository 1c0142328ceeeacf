"""IVHE and the paper's encryption interface (interface documented once the layer strategies land)."""

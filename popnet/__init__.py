"""popnet: train populations of small CNNs at once and write zoos of their weights."""
__version__ = "0.1.0"

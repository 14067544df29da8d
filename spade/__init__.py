"""SPADE: structured pruning, fine-tuning and speed/quality reports for unrolled networks."""
__version__ = "0.1.0"

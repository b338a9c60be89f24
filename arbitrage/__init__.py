"""arbitrage: step-level speculative reasoning with advantage-aware routing."""

__version__ = "0.1.0"

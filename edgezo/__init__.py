"""edgezo: forward-only (zeroth-order) training of neural networks."""

__version__ = "0.1.0"

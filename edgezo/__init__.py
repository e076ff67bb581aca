"""edgezo: forward-only (zeroth-order) training of neural networks."""

from ._version import __version__

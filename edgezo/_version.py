"""The one place the package version is written (read by pyproject.toml and edgezo.__version__)."""

__version__ = "0.1.0"

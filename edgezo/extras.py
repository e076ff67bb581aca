"""Optional dependencies: whether an extra is installed, and importing it with the install hint.

Shared by the ahead-of-time side (``export/``) and the runtimes (``oracles/``),
which must not import each other for this.
"""

from __future__ import annotations

from .errors import MissingDependency

__all__ = ["TVM_INSTALL_HINT", "tvm_available", "import_tvm"]

TVM_INSTALL_HINT = "pip install edgezo[tvm]  (Apache TVM >= 0.20 with Relax, e.g. apache-tvm 0.27)"


def tvm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tvm") is not None


def import_tvm():
    """``import tvm`` (with Relax), or a MissingDependency (an ImportError) naming the extra to install."""
    try:
        import tvm
        from tvm import relax  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except ImportError as err:
        raise MissingDependency(f"the TVM backend needs Apache TVM with Relax, which is not installed ({err}); "
                                f"install it with: {TVM_INSTALL_HINT}") from None
    return tvm

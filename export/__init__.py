"""Ahead-of-time export of a model's forward and loss for other runtimes and targets.

* :mod:`edgezo.export.onnx` — ONNX graphs with every trainable parameter a graph input;
* :mod:`edgezo.export.tvm` — TVM (Relax) compilation: host module, C source, cross objects;
* :mod:`edgezo.export.manifest` — the ``manifest.json`` that describes an artifact directory.

Submodules are imported on demand (TVM is an optional extra).
"""

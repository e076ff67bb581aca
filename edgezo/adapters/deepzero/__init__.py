"""DeepZero: sparse coordinate-wise ZO training (Chen et al., ICLR 2024, arXiv:2310.02025).

* :mod:`.grasp` — ZO-GraSP pruning-at-initialization scores from finite
  differences only, and the layer-wise sparsity ratios they give;
* :mod:`.sparse_cge` — the ``sparse-cge`` estimator: CGE over a random mask
  with those layer ratios, reshuffled every K epochs (biases and
  normalization parameters always estimated; the weights stay dense);
* :mod:`.distributed` — coordinates split across ``torch.distributed`` ranks,
  balanced by per-stage cost, exchanging (coordinate, difference) scalars;
* :mod:`.task` — the ``deepzero`` recipe task (staged oracle with feature reuse).

Feature reuse and batched coordinate evaluation live in
:class:`edgezo.oracles.staged.StagedOracle`.

Submodules are imported on first use (the estimator registry imports
``sparse_cge`` while the engine is still loading).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "zo_grasp_scores": "grasp",
    "layer_keep_ratios": "grasp",
    "prunable_entries": "grasp",
    "SparseCGE": "sparse_cge",
    "random_mask": "sparse_cge",
    "DistributedCGE": "distributed",
    "balanced_split": "distributed",
    "stage_costs": "distributed",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

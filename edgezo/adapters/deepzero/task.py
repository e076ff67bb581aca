"""The ``deepzero`` recipe task: a classifier trained with (sparse) CGE and feature reuse.

Builds the classification trainer of :func:`edgezo.recipes.build_classification`
with a :class:`~edgezo.oracles.staged.StagedOracle` (unless ``--backend``
supplies another oracle), then prepares every ``sparse-cge`` phase: its
``steps_per_epoch`` (mask reshuffles count epochs) and its layer keep ratios,
computed by ZO-GraSP at the initial θ on a fixed scoring set — the first
``[deepzero] grasp_samples`` training samples of a seeded permutation
(DeepZero: 25 per class). The model initialization, the scoring set and the
direction seeds all derive from the run seed, so a resumed run recomputes the
same ratios before loading its checkpoint.

Recipe table ``[deepzero]``: ``grasp_samples`` (default 256).
"""

from __future__ import annotations

from ...data import epoch_permutation
from ...oracles.staged import staged_oracle_factory
from .sparse_cge import SparseCGE

GRASP_SALT = 0x6A5


def build(recipe, *, data_path=None, device="cpu", out_dir=None, progress=True, oracle_factory=None):
    from ...recipes import RecipeError, build_classification

    trainer = build_classification(recipe, data_path=data_path, device=device, out_dir=out_dir, progress=progress,
                                   oracle_factory=oracle_factory or staged_oracle_factory)
    options = recipe.section("deepzero")
    samples = int(options.pop("grasp_samples", 256))
    if options:
        raise RecipeError(f"{recipe.source}: unknown [deepzero] options {sorted(options)}; known: grasp_samples")
    if samples < 1:
        raise RecipeError(f"{recipe.source}: [deepzero] grasp_samples must be >= 1, got {samples}")
    seed = trainer.config.seed
    x, y = trainer.batches.x, trainer.batches.y
    info = {}
    for phase in trainer.phases:
        est = phase.estimator
        if not isinstance(est, SparseCGE):
            continue
        est.steps_per_epoch = trainer.batches.steps_per_epoch
        idx = epoch_permutation(x.shape[0], seed ^ GRASP_SALT, 0)[:samples].to(x.device)
        ratios = est.prepare(trainer.oracle, (x[idx], y[idx]), seed=seed)
        info = {"sparsity": est.sparsity, "ratio_source": est.ratio_source,
                "keep_ratios": {k: round(v, 4) for k, v in ratios.items()},
                "active_per_step": int(est.mask(trainer.oracle.layout, 0, seed).numel())}
    if info:
        trainer.info["deepzero"] = info
    trainer.info.setdefault("model", recipe.section("model").get("kind"))
    if hasattr(trainer.oracle, "reuse"):
        trainer.info["feature_reuse"] = bool(trainer.oracle.reuse)
    return trainer


__all__ = ["build"]

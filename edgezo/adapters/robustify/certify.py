"""Randomized smoothing: prediction and L2 certification (Cohen et al., ICML 2019).

The smoothed classifier of a base classifier f is

    g(x) = argmax_c P(f(x + δ) = c),   δ ~ N(0, σ² I).

CERTIFY (Cohen et al., Algorithm 1): draw n0 noisy copies and take the most
frequent class ĉ_A; draw n more and count n_A = #{f(x + δ) = ĉ_A}; the
one-sided (1 − α) Clopper–Pearson lower bound of P(f(x + δ) = ĉ_A) is

    p_A = Beta⁻¹(α; n_A, n − n_A + 1)

(scipy's exact binomial interval at level 1 − 2α). If p_A > 1/2, g(x') = ĉ_A
for every ‖x' − x‖₂ < R = σ Φ⁻¹(p_A) with probability at least 1 − α over the
sampling; otherwise CERTIFY abstains. PREDICT returns ĉ_A when the two-sided
binomial test of n_A against n_B (the runner-up) rejects p = 1/2 at level α.

The certified accuracy at radius r is the fraction of test points that are
classified correctly with a certified radius R ≥ r (abstentions count as wrong).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

ABSTAIN = -1

Classify = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Certificate:
    """The result of CERTIFY for one input."""

    prediction: int
    radius: float
    p_lower: float
    count: int
    n: int
    n0: int

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    def as_dict(self) -> dict:
        return asdict(self)


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound of a binomial proportion ``k / n``."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    return float(stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low)


def radius(p_lower: float, sigma: float) -> float:
    """``σ Φ⁻¹(p_lower)`` (the certified L2 radius; only meaningful for p_lower > 1/2)."""
    return float(sigma * stats.norm.ppf(p_lower))


def sample_counts(classify: Classify, x: torch.Tensor, num: int, *, sigma: float, num_classes: int,
                  batch_size: int = 1000, generator: torch.Generator | None = None) -> np.ndarray:
    """Class counts of ``classify(x + δ)`` over ``num`` draws ``δ ~ N(0, σ² I)``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    remaining = int(num)
    while remaining > 0:
        b = min(batch_size, remaining)
        noise = torch.randn((b, *x.shape), generator=generator, dtype=x.dtype) * sigma
        labels = classify(x.unsqueeze(0) + noise.to(x.device))
        labels = torch.as_tensor(labels).reshape(-1).cpu().numpy().astype(np.int64)
        if labels.shape[0] != b or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"the base classifier must return {b} labels in [0, {num_classes}), "
                             f"got {labels.shape[0]} in [{labels.min()}, {labels.max()}]")
        counts += np.bincount(labels, minlength=num_classes)
        remaining -= b
    return counts


def certify(classify: Classify, x: torch.Tensor, *, sigma: float, n0: int = 100, n: int = 10_000,
            alpha: float = 0.001, num_classes: int, batch_size: int = 1000,
            generator: torch.Generator | None = None) -> Certificate:
    """Cohen et al.'s CERTIFY for one input ``x`` (no batch axis). Costs ``n0 + n`` base-classifier calls."""
    if sigma <= 0 or n0 < 1 or n < 1:
        raise ValueError(f"need sigma > 0, n0 >= 1 and n >= 1; got sigma={sigma}, n0={n0}, n={n}")
    selection = sample_counts(classify, x, n0, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                              generator=generator)
    top = int(selection.argmax())
    estimation = sample_counts(classify, x, n, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                               generator=generator)
    count = int(estimation[top])
    p_lower = lower_confidence_bound(count, n, alpha)
    if p_lower < 0.5:
        return Certificate(ABSTAIN, 0.0, p_lower, count, n, n0)
    return Certificate(top, radius(p_lower, sigma), p_lower, count, n, n0)


def predict(classify: Classify, x: torch.Tensor, *, sigma: float, n: int = 10_000, alpha: float = 0.001,
            num_classes: int, batch_size: int = 1000, generator: torch.Generator | None = None) -> int:
    """Cohen et al.'s PREDICT: the smoothed class, or :data:`ABSTAIN` (two-sided binomial test at α)."""
    counts = sample_counts(classify, x, n, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                           generator=generator)
    order = np.argsort(counts)[::-1]
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]]) if num_classes > 1 else 0
    if stats.binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])


def image_generator(seed: int, index: int) -> torch.Generator:
    """The noise generator of test image ``index``: depends only on (seed, index), so a resumed run matches."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(index), 0xCE27]).generate_state(1)[0]))
    return g


def certified_accuracy(predictions: Sequence[int], radii_: Sequence[float], labels: Sequence[int],
                       at: Iterable[float]) -> dict[str, float]:
    """``{str(r): fraction with prediction == label and radius >= r}`` (abstentions never count)."""
    pred = np.asarray(predictions)
    rad = np.asarray(radii_, dtype=np.float64)
    lab = np.asarray(labels)
    if not (pred.shape == rad.shape == lab.shape):
        raise ValueError("predictions, radii and labels must have the same length")
    if pred.size == 0:
        raise ValueError("no certificates to score")
    correct = (pred == lab) & (pred != ABSTAIN)
    return {_radius_key(r): float(np.mean(correct & (rad >= r))) for r in at}


def _radius_key(r: float) -> str:
    return f"{float(r):g}"

"""Randomized-smoothing certification (Cohen et al. 2019) on classifiers with known answers."""

import numpy as np
import pytest
import torch
from scipy import stats

from edgezo.adapters.robustify.certify import (
    ABSTAIN,
    certified_accuracy,
    certify,
    image_generator,
    lower_confidence_bound,
    predict,
    radius,
    sample_counts,
)


@pytest.mark.parametrize("k,n", [(0, 10), (7, 10), (990, 1000), (9_990, 10_000)])
def test_lower_bound_is_clopper_pearson(k, n):
    alpha = 0.001
    expected = 0.0 if k == 0 else stats.beta.ppf(alpha, k, n - k + 1)
    assert lower_confidence_bound(k, n, alpha) == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_lower_bound_all_successes_is_alpha_to_one_over_n():
    for n in (1, 100, 10_000):
        assert lower_confidence_bound(n, n, 0.001) == pytest.approx(0.001 ** (1 / n), rel=1e-10)


def test_constant_classifier_radius_is_exact():
    """f ≡ 3: every draw votes 3, p_A = α^(1/N) and R = σ Φ⁻¹(α^(1/N)) exactly."""
    sigma, n, alpha = 0.5, 2_000, 0.001

    def constant(x):
        return torch.full((x.shape[0],), 3)

    c = certify(constant, torch.zeros(1, 4, 4), sigma=sigma, n0=100, n=n, alpha=alpha, num_classes=10,
                batch_size=300)
    assert c.prediction == 3 and c.count == n
    assert c.p_lower == pytest.approx(alpha ** (1 / n), rel=1e-12)
    assert c.radius == pytest.approx(sigma * stats.norm.ppf(alpha ** (1 / n)), rel=1e-9)  # Φ⁻¹ is steep near 1


def test_linear_classifier_radius_matches_distance_to_hyperplane():
    """f(x) = 1[wᵀx + b > 0]: the smoothed classifier's exact radius is |wᵀx + b| / ‖w‖.

    Stochastic (fixed seed): the certified radius must lie below the exact one
    (fails with probability ≤ α) and within 0.15 σ of it for N = 20,000.
    """
    torch.manual_seed(0)
    w = torch.randn(16)
    b = 0.3
    sigma = 0.25
    x = torch.randn(16)
    x = x + (1.2816 * sigma - (w @ x + b) / w.norm()) * w / w.norm()  # p_A = Φ(1.2816) = 0.9
    exact = float((w @ x + b) / w.norm())

    def linear(xb):
        return (xb.reshape(xb.shape[0], -1) @ w + b > 0).long()

    c = certify(linear, x, sigma=sigma, n0=100, n=20_000, alpha=0.001, num_classes=2,
                generator=torch.Generator().manual_seed(1))
    assert c.prediction == 1
    assert c.count / c.n == pytest.approx(0.9, abs=0.01)
    assert 0 <= exact - c.radius < 0.15 * sigma


def test_coin_flip_classifier_abstains():
    def coin(x):
        return (torch.rand(x.shape[0], generator=g) < 0.5).long()

    g = torch.Generator().manual_seed(0)
    c = certify(coin, torch.zeros(3), sigma=0.25, n0=100, n=1_000, alpha=0.001, num_classes=2)
    assert c.prediction == ABSTAIN and c.radius == 0.0 and c.p_lower < 0.5
    assert predict(coin, torch.zeros(3), sigma=0.25, n=1_000, alpha=0.001, num_classes=2) == ABSTAIN


def test_predict_returns_clear_class():
    def sign(xb):
        return (xb[:, 0] > 0).long()

    assert predict(sign, torch.tensor([2.0, 0.0]), sigma=0.25, n=500, alpha=0.001, num_classes=2) == 1
    assert predict(sign, torch.tensor([-2.0, 0.0]), sigma=0.25, n=500, alpha=0.001, num_classes=2) == 0


def test_noise_is_reproducible_per_image():
    def first_pixel(xb):
        return (xb[:, 0] > 0).long()

    a = sample_counts(first_pixel, torch.zeros(2), 1000, sigma=1.0, num_classes=2, generator=image_generator(0, 5))
    b = sample_counts(first_pixel, torch.zeros(2), 1000, sigma=1.0, num_classes=2, generator=image_generator(0, 5))
    c = sample_counts(first_pixel, torch.zeros(2), 1000, sigma=1.0, num_classes=2, generator=image_generator(0, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_certified_accuracy_by_radius():
    acc = certified_accuracy([1, 2, ABSTAIN, 0], [0.3, 0.1, 0.0, 0.6], [1, 2, 1, 1], [0, 0.25, 0.5])
    assert acc == {"0": 0.5, "0.25": 0.25, "0.5": 0.0}


def test_bad_base_classifier_output_is_reported():
    with pytest.raises(ValueError, match="labels in"):
        sample_counts(lambda x: torch.full((x.shape[0],), 7), torch.zeros(2), 10, sigma=1.0, num_classes=3)
    with pytest.raises(ValueError, match="alpha"):
        lower_confidence_bound(1, 2, 0.7)
    assert radius(0.5, 1.0) == 0.0

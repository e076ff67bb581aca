"""Shared fixtures. Seeds are fixed; stochastic tests say so and use tolerances
that fail with negligible probability."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def f64():
    """float64 as torch's default dtype for the test (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def digits():
    from edgezo.data import load_digits

    return load_digits()

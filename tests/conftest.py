"""Shared fixtures. Seeds are fixed; stochastic tests say so and use tolerances
that fail with negligible probability."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def digits():
    from edgezo.data import load_digits

    return load_digits()

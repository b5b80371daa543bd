"""Shared test set-up: every test starts from the same random state."""
import random

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    """Seed numpy's global generator and Python's random module before each test."""
    np.random.seed(0)
    random.seed(0)
    yield


@pytest.fixture
def rng():
    """A seeded numpy Generator for tests that draw their own data."""
    return np.random.default_rng(0)

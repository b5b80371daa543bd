"""Shared test set-up: every test starts from the same random state; on numba's CUDA simulator, strict arrays."""
import os
import random

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":     # device arrays that refuse what a real GPU's lack
    import cuda_strict
    cuda_strict.install()


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


@pytest.fixture
def torch_one_thread():
    """PyTorch (the test skips without it) on one thread for the test, then back to its setting.

    For many tiny operations: a second thread only spins between them (7x the CPU time, measured on the
    convolution cross products)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(n)

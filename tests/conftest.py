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


@pytest.fixture
def compiled_and_eager():
    """``train(model) -> (compiled losses, eager losses)``: two epochs of ``training.step`` on padded token batches.

    12 sequences of 5 token ids (0 pads the end, each batch of 4 padded differently), 2 classes. The
    compiled step must trace (a warning, such as the eager fallback's, is an error) and keep its plan;
    a mask made inside the traced step (``x.mask(0)``) must then be each batch's own, so both agree.
    """
    import warnings

    import axon

    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 6, (12, 5))
    for row, n in enumerate([5, 3, 1, 4, 2, 5, 1, 3, 4, 2, 5, 2]):
        tokens[row, n:] = 0
    labels = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 12)]

    def train(model):
        histories = []
        for compile in (True, False):
            s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(1e-2), compile=compile)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                state = axon.training.train(s, tokens, labels, epochs=2, batch_size=4, verbose=0, seed=0)
            assert (s.step.compiled is not None and len(s.step.compiled.plans) >= 1) == compile   # traced, kept
            histories.append(state.history["loss"])
        return histories
    return train

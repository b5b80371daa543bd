"""Every module's docstring examples run, and the functional API documents every function with one."""
import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import axon

MODULES = sorted(m.name for m in pkgutil.walk_packages(axon.__path__, "axon.") if not m.name.startswith("axon.examples"))

# modules where every public function is a user-facing recipe and must show a runnable example
WITH_EXAMPLES = ["axon.functional.activations", "axon.functional.initializers", "axon.functional.losses",
                 "axon.functional.metrics", "axon.schedules", "axon.optimizers"]


# modules whose examples need an optional extra: skipped cleanly without it
NEEDS = {"axon.training.plot": "matplotlib"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    module = importlib.import_module(name)
    np.random.seed(0)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_docstrings_are_collected():
    """The walk finds the package: a broken import would silently shrink the list above."""
    assert len(MODULES) > 40 and "axon.autograd.engine" in MODULES and "axon.kernels.conv" in MODULES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_every_public_function_has_an_example(name):
    module = importlib.import_module(name)
    missing = [f for f in module.__all__ if inspect.isfunction(getattr(module, f))
               and ">>>" not in (getattr(module, f).__doc__ or "")]
    assert not missing, f"{name}: public functions without a runnable example: {missing}"

"""Every module's docstring examples run, and the functional API documents every function with one."""
import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import axon

MODULES = sorted(m.name for m in pkgutil.walk_packages(axon.__path__, "axon.") if not m.name.startswith("axon.examples"))


# modules whose examples need an optional extra: skipped cleanly without it
NEEDS = {"axon.training.plot": "matplotlib", "axon.onnx": "onnx", "axon.onnx._require": "onnx",
         "axon.onnx.exporter": "onnx", "axon.onnx.importer": "onnx"}


def _skip_unless_importable(name):
    """Skip a module that needs an optional extra or a device it cannot have here (axon.cuda without a GPU)."""
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    if name == "axon.cuda" or name.startswith("axon.cuda."):   # its examples run in tests/test_cuda.py
        try:
            importlib.import_module("axon.cuda")
        except RuntimeError as e:
            pytest.skip(f"the CUDA backend cannot run here: {e}")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    _skip_unless_importable(name)
    module = importlib.import_module(name)
    np.random.seed(0)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_docstrings_are_collected():
    """The walk finds the package: a broken import would silently shrink the list above."""
    assert len(MODULES) > 40 and "axon.autograd.engine" in MODULES and "axon.kernels.convolution" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_and_class_has_an_example(name):
    """What a module exports (and defines itself) shows a runnable example in its docstring."""
    _skip_unless_importable(name)
    module = importlib.import_module(name)
    public = [(n, getattr(module, n, None)) for n in getattr(module, "__all__", [])]
    missing = [n for n, obj in public if (inspect.isfunction(obj) or inspect.isclass(obj))
               and obj.__module__ == name and ">>>" not in (inspect.getdoc(obj) or "")]
    assert not missing, f"{name}: public functions or classes without a runnable example: {missing}"

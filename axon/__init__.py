"""axon: a small deep-learning framework after Elixir's Axon, on a readable autodiff engine.

Four layered APIs: functional (``axon.activations``, ``axon.layers``, ...), model creation
(``axon.input(...).dense(...)``), optimization (``axon.updates``, ``axon.optimizers``) and training
(``axon.training``). The engine is ``axon.autograd``; the compiled kernels live in ``axon.kernels``.
"""
from . import autograd, tree
from .autograd import Tensor, grad, no_grad, value_and_grad

__version__ = "0.1.0"
__all__ = ["autograd", "tree", "Tensor", "grad", "value_and_grad", "no_grad", "__version__"]

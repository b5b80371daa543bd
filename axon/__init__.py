"""axon: a small deep-learning framework after Elixir's Axon, on a readable autodiff engine.

Four layered APIs, each usable on its own:

- functional: ``axon.activations``, ``axon.initializers``, ``axon.layers``, ``axon.losses``, ``axon.metrics``
  (plain functions on Tensors, also reachable as ``axon.functional.<module>``);
- model creation: ``axon.input((None, 784)).dense(128, activation="relu")``, ``axon.summary``,
  ``axon.init``/``axon.predict``/``axon.compile``, custom layers with ``axon.nx``/``axon.layer``,
  ``axon.save``/``axon.load`` (one safetensors file; ``axon.register`` names custom functions);
- optimization: ``axon.updates`` (composable transformations), ``axon.optimizers``, ``axon.schedules``;
- training: ``axon.training.step``/``train``/``evaluate``, callbacks, ``axon.datasets.mnist``;
  ``axon.jit`` traces a function once and replays it (the module is ``axon.tracing``).

Underneath: ``axon.autograd`` (the engine), ``axon.backend`` (where arrays live: ``set_backend``,
``to_device``) and ``axon.kernels`` (the Numba CPU kernels; ``axon.cuda`` is the GPU twin).

>>> import axon
>>> model = axon.input((None, 784)).dense(128, activation="relu").dense(10, activation="softmax")
>>> model.shape
(None, 10)
"""
import sys as _sys

from . import backend
from .backend import get_backend, set_backend, to_device
from . import autograd, random, tree
from .autograd import Tensor, check_grads, draw_graph, grad, no_grad, value_and_grad
from . import functional
from .functional import activations, initializers, layers, losses, metrics
from . import model
from .model import *  # noqa: F401,F403  (input, the builders, init, predict, summary, ...)
from . import updates, optimizers, schedules, training, datasets, registry, serialization, distributed
from .serialization import FormatError, load, register, save
from . import tracing
from .tracing import TraceError, jit  # ``axon.jit`` is the function; its module is ``axon.tracing``

# ``import axon.activations`` works too: the functional modules under their short names.
for _name in ("activations", "initializers", "layers", "losses", "metrics"):
    _sys.modules[f"{__name__}.{_name}"] = getattr(functional, _name)



def __getattr__(name):
    """``axon.onnx`` and ``axon.cuda`` load on first use: importing axon imports neither onnx nor numba.cuda."""
    if name in ("onnx", "cuda"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'axon' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "backend", "get_backend", "set_backend", "to_device", "autograd", "random", "tree", "functional", "activations",
    "initializers", "layers", "losses", "metrics", "model", "updates", "optimizers", "schedules", "training",
    "datasets", "registry", "serialization", "distributed", "tracing",
    "Tensor", "grad", "value_and_grad", "jit", "TraceError", "no_grad", "check_grads", "draw_graph", "save", "load", "register",
    "FormatError", "__version__",
    *model.__all__,
]

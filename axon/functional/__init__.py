"""The functional API: plain functions on Tensors (and numpy arrays), no hidden state.

- ``activations``: relu, softmax, gelu, ... and ``get(name)``.
- ``initializers``: factories returning ``init(shape, dtype, key)``.
- ``layers``: dense, conv, pooling, normalization, dropout, shape ops (params passed explicitly).
- ``losses`` and ``metrics``: ``(y_true, y_pred)`` functions, as in Axon.
"""
from . import activations, initializers, layers, losses, metrics

__all__ = ["activations", "initializers", "layers", "losses", "metrics"]
